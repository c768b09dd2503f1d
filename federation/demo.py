"""``zfed demo``: a federation of three FileStorage members and a SQLite table, linked.

The demo writes its configuration, ``federation.toml``, beside its files,
and opens the federation from it, as every ``zfed`` command can.

- ``library`` holds books (referred to by oid, the ``integer`` kind);
- ``people`` holds authors and names them by ``uuid``;
- ``notes`` holds the reader's notes, which reference books and authors in
  the other two members through stub records, and the reader's ratings of
  books: split objects whose title and author stay in ``library``;
- ``readers`` is a SQLite table: rows are ``Reader`` objects, notes
  reference them through stubs, and each row's ``favourite`` column holds a
  reference to a book.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable
from pathlib import Path

import transaction
from persistent import Persistent

import federation
from federation.errors import ConfigurationError, shorten
from federation.split import Split, SplitObject

BOOKS = [
    ("Persistence in Practice", "Ada Lovelace"),
    ("Objects All the Way Down", "Alan Kay"),
    ("Transactions for Everyone", "Barbara Liskov"),
]


class Person(Persistent):
    """An author, kept in the ``people`` member."""

    def __init__(self, name: str) -> None:
        self.name = name


class Book(Persistent):
    """A book, kept in the ``library`` member; ``author`` lives in ``people``."""

    def __init__(self, title: str, author: Person) -> None:
        self.title = title
        self.author = author


class Reader(Persistent):
    """A row of the ``reader`` table of the SQLite member ``readers``."""

    def __init__(self, name: str, favourite: Book | None = None) -> None:
        self.name = name
        self.favourite = favourite


class Note(Persistent):
    """A reader's note, kept in ``notes``; ``about`` is a book, ``by`` a reader row."""

    def __init__(self, text: str, about: Book, by: Reader) -> None:
        self.text = text
        self.about = about
        self.by = by


def _book_by_title(jar: object, attribute: str, value: str) -> Book | None:
    return jar.root().get(value)  # library's root keeps books by title


class Rating(SplitObject):
    """A book seen with the reader's annotations: ``stars`` is kept in ``notes``."""

    __split__ = Split(primary="library", secondary="notes", primary_attributes={"title", "author"},
                      unique={"title"}, search=_book_by_title)


#: The file, in the demo's directory, that describes its federation.
CONFIG_NAME = "federation.toml"

CONFIG = """\
# The demo federation, written by zfed demo.  Every zfed command takes it
# (zfed info federation.toml), and so does federation.open_config().
# Paths are relative to this file.

[members.library]
path = "library.fs"
create = true

[members.people]
path = "people.fs"
key = "uuid"
create = true

[members.notes]
path = "notes.fs"
create = true

# Rows of the table reader in a SQLite file, as federation.demo.Reader objects.
[members.readers]
adapter = "sqlite"

[members.readers.options]
path = "readers.sqlite"
table = "reader"
class = "federation.demo.Reader"
key = "id"
columns = { name = "name" }
refs = { favourite = "favourite" }
"""


def write_config(directory: Path) -> Path:
    """Write the demo's configuration (and its SQLite table) in ``directory``; its path.

    A ``federation.toml`` there that is not the demo's is refused, untouched.
    """
    config = directory / CONFIG_NAME
    try:
        existing = config.read_text(encoding="utf-8") if config.exists() else CONFIG
    except (OSError, ValueError) as error:
        existing = f"unreadable: {error}"
    if existing != CONFIG:
        raise ConfigurationError(
            f"{shorten(str(config))} exists and is not the demo's configuration; run the "
            "demo in another directory."
        )
    with contextlib.closing(sqlite3.connect(directory / "readers.sqlite")) as db, db:
        db.execute("CREATE TABLE IF NOT EXISTS reader "
                   "(id INTEGER PRIMARY KEY, name TEXT NOT NULL, favourite TEXT)")
    config.write_text(CONFIG, encoding="utf-8")
    return config


def _populate(conn: federation.Manager) -> None:
    people = conn.root("people")
    library = conn.root("library")
    for title, author in BOOKS:
        person = people.get(author)
        if person is None:
            # New and referenced from two members (people's root, a library book):
            # say where it belongs, or the commit raises AmbiguousPlacement.
            person = Person(author)
            conn.add(person, "people")
            people[author] = person
        library[title] = Book(title, person)  # a reference from library into people
    transaction.commit()
    notes = conn.root("notes")
    titles = list(library)
    readers = [Reader("Grace", favourite=library[titles[0]]),
               Reader("Edsger", favourite=library[titles[-1]])]
    for reader in readers:
        conn.add(reader, "readers")  # rows of the SQLite table, inserted on commit
    for number, title in enumerate(titles, start=1):
        by = readers[number % len(readers)]
        notes[f"note-{number}"] = Note(f"Read '{title}' again.", library[title], by)
        conn.find(Rating, title=title).stars = number + 2  # an annotation, kept in notes
    transaction.commit()


def run(directory: Path, echo: Callable[[str], None] = print) -> None:
    """Create (or reopen) the demo federation in ``directory`` and print what is where."""
    directory.mkdir(parents=True, exist_ok=True)
    config = write_config(directory)
    with federation.open_config(config) as fed, fed.open() as conn:
        names = list(fed.members)
        fresh = len(conn.root("library")) == 0
        if fresh:
            _populate(conn)
    echo(f"zodb-federation demo in {directory} (members: {', '.join(names)})")
    echo("Created the demo objects, committed, and reopened the databases."
         if fresh else "Reopened the databases of an earlier run.")
    echo(f"Its configuration is {config}: give it to any zfed command "
         f"(zfed info {config}).")

    with federation.open_config(config) as fed, fed.open() as conn:
        echo("\nObjects, their member and key:")
        for key in sorted(conn.root("people")):
            person = conn.root("people")[key]
            echo(f"  {conn.ref(person)!s:<58} Person {person.name!r}")
        for key in sorted(conn.root("library")):
            book = conn.root("library")[key]
            echo(f"  {conn.ref(book)!s:<58} Book {book.title!r}")
            echo(f"      author -> {conn.ref(book.author)} ({book.author.name})")
        for key in sorted(conn.root("notes")):
            note = conn.root("notes")[key]
            echo(f"  {conn.ref(note)!s:<58} Note {note.text!r}")
            echo(f"      about -> {conn.ref(note.about)} ({note.about.title})")
            echo(f"      by    -> {conn.ref(note.by)} ({note.by.name})")
        for name in ("Grace", "Edsger"):
            [reader] = conn.jar("readers").find("name", name)
            echo(f"  {conn.ref(reader)!s:<58} Reader {reader.name!r} (a SQLite row)")
            echo(f"      favourite -> {conn.ref(reader.favourite)} ({reader.favourite.title})")
        echo("\nAnnotations on library books, kept in notes (split objects):")
        for rating in conn.split_records(Rating):
            echo(f"  {rating.title!r} by {rating.author.name}: {'*' * rating.stars}"
                 f"  (title and author read from library, stars from notes)")
        echo("\nStub records, kept in the referencing member:")
        for name in names:
            stubs = conn.stubs(name)
            echo(f"  {name}: {len(stubs)} stub(s)")
            for stub in stubs:
                echo(f"    stub oid {stub.oid:<4} -> {stub.target} ({stub.class_name})")
        transaction.abort()
