"""Opening never writes to an existing member: its catalog waits for a transaction that writes.

A plain ZODB database (one that never had a federation catalog) is opened
without a write; ``zfed stubs`` on it writes nothing.  The catalog, with the
member id chosen at open, is stored by the first transaction that writes to
any member, so that references into the member never name an id that was
not stored; another process that stored a catalog first wins, and its id
is taken after the ConflictError.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import transaction
import ZEO
import ZODB
from click.testing import CliRunner
from persistent.mapping import PersistentMapping
from ZODB.POSException import ConflictError

import federation
from federation.catalog import CATALOG_ATTRIBUTE
from federation.cli import main
from tests.models import Item


@pytest.fixture
def plain(tmp_path: Path) -> Path:
    """A plain ZODB FileStorage file with some data and no federation catalog."""
    path = tmp_path / "main.fs"
    db = ZODB.DB(str(path))
    with db.transaction() as conn:
        conn.root()["page"] = Item("page")
        conn.root()["folder"] = PersistentMapping()
    db.close()
    return path


def _catalog_id(path: Path) -> str | None:
    db = ZODB.DB(str(path), read_only=True)
    try:
        with db.transaction() as conn:
            catalog = getattr(conn.root(), CATALOG_ATTRIBUTE, None)
            return None if catalog is None else catalog.member_id
    finally:
        db.close()


def test_zfed_stubs_on_a_plain_file_writes_nothing(plain, tmp_path):
    """zfed stubs, a command that only reads, leaves a plain ZODB file byte for byte."""
    config = tmp_path / "federation.toml"
    config.write_text('[members.main]\npath = "main.fs"\n')
    before = plain.read_bytes()
    result = CliRunner().invoke(main, ["stubs", str(config), "main"])
    assert result.exit_code == 0, result.output
    assert plain.read_bytes() == before
    assert _catalog_id(plain) is None


def test_reading_writes_nothing(plain, tmp_path):
    """Opening, reading and committing a transaction that changed nothing write nothing."""
    before = plain.read_bytes()
    members = {"main": plain.as_uri(), "notes": (tmp_path / "notes.fs").as_uri()}
    tm = transaction.TransactionManager()
    with federation.open(members) as fed, fed.open(tm) as conn:
        assert conn.root("main")["page"].title == "page"
        tm.commit()
    assert plain.read_bytes() == before


def test_first_write_stores_the_catalog_with_the_id_chosen_at_open(plain):
    """The first change to the member stores its catalog, under the member id it had."""
    tm = transaction.TransactionManager()
    with federation.open({"main": plain.as_uri()}) as fed, fed.open(tm) as conn:
        member_id = fed.member("main").member_id
        conn.root("main")["new"] = Item("new")
        tm.commit()
    assert _catalog_id(plain) == member_id


def test_a_reference_into_a_plain_member_stores_its_catalog(plain, tmp_path):
    """A reference from another member into the plain one stores the id it names, and resolves
    after reopening."""
    members = {"main": plain.as_uri(), "notes": (tmp_path / "notes.fs").as_uri()}
    tm = transaction.TransactionManager()
    with federation.open(members) as fed, fed.open(tm) as conn:
        member_id = fed.member("main").member_id
        conn.root("notes")["about"] = Item("note", link=conn.root("main")["page"])
        tm.commit()
    assert _catalog_id(plain) == member_id
    with federation.open(members) as fed, fed.open(tm) as conn:
        assert conn.root("notes")["about"].link is conn.root("main")["page"]
        tm.abort()


@pytest.mark.parametrize("savepoint", [False, True])
def test_an_aborted_write_leaves_no_catalog(plain, tmp_path, savepoint):
    """An aborted transaction (after a savepoint, too) stores nothing; the next one does."""
    members = {"main": plain.as_uri(), "notes": (tmp_path / "notes.fs").as_uri()}
    tm = transaction.TransactionManager()
    with federation.open(members) as fed, fed.open(tm) as conn:
        member_id = fed.member("main").member_id
        conn.root("main")["gone"] = Item("gone")
        if savepoint:
            tm.savepoint()
        tm.abort()
        assert _open_catalog(conn) is None
        conn.root("notes")["about"] = Item("note", link=conn.root("main")["page"])
        if savepoint:
            tm.savepoint()
        tm.commit()
    assert _catalog_id(plain) == member_id
    with federation.open(members) as fed, fed.open(tm) as conn:
        assert conn.root("notes")["about"].link is conn.root("main")["page"]
        assert "gone" not in conn.root("main")
        tm.abort()


def _open_catalog(conn: federation.Manager) -> object:
    return getattr(conn.jar("main").root(), CATALOG_ATTRIBUTE, None)


def test_a_read_only_plain_member_stays_without_catalog(plain, tmp_path):
    """A read-only member never gets a catalog, even when others write."""
    before = plain.read_bytes()
    members = {"main": {"uri": plain.as_uri(), "read_only": True},
               "notes": (tmp_path / "notes.fs").as_uri()}
    tm = transaction.TransactionManager()
    with federation.open(members) as fed, fed.open(tm) as conn:
        conn.root("notes")["x"] = Item("x")
        tm.commit()
    assert plain.read_bytes() == before


@pytest.fixture
def zeo_plain(tmp_path: Path, plain: Path) -> Iterator[str]:
    """The plain database, served by ZEO so that two federations can open it."""
    (host, port), stop = ZEO.server(path=str(plain), port=("127.0.0.1", 0))
    yield f"zeo://{host}:{port}?wait_timeout=5"
    stop()


@pytest.mark.server
def test_two_processes_agree_on_the_member_id(zeo_plain, tmp_path):
    """Two federations that both open the plain member before either wrote: the second one's
    catalog conflicts, is retried, and it takes the first one's id; both references resolve."""
    first = federation.open({"main": zeo_plain, "notes": (tmp_path / "one.fs").as_uri()})
    second = federation.open({"main": zeo_plain, "notes": (tmp_path / "two.fs").as_uri()})
    tm1, tm2 = transaction.TransactionManager(), transaction.TransactionManager()
    try:
        assert first.member("main").member_id != second.member("main").member_id
        with first.open(tm1) as conn1, second.open(tm2) as conn2:
            conn2.root("notes")["about"] = Item("two", link=conn2.root("main")["page"])
            conn1.root("notes")["about"] = Item("one", link=conn1.root("main")["page"])
            tm1.commit()  # the first stores its catalog while the second's is pending
            with pytest.raises(ConflictError):
                tm2.commit()
            tm2.abort()
            conn2.root("notes")["about"] = Item("two", link=conn2.root("main")["page"])
            tm2.commit()
        assert first.member("main").member_id == second.member("main").member_id
        with first.open(tm1) as conn1, second.open(tm2) as conn2:
            assert conn1.root("notes")["about"].link is conn1.root("main")["page"]
            assert conn2.root("notes")["about"].link is conn2.root("main")["page"]
            tm1.abort()
            tm2.abort()
    finally:
        first.close()
        second.close()


def test_a_row_referencing_a_plain_member_commits_at_the_first_try(plain, tmp_path):
    """A SQL row referencing an object of a plain member: the commit journal's entry,
    written first in a transaction of its own, went to that member and stored a second
    catalog there, so the member's own branch (storing its first catalog) raised a
    ConflictError.  Another ZODB member keeps the entry; the commit succeeds at once."""
    import sqlite3

    from federation.adapters import sql
    from tests.models import Person

    people = tmp_path / "people.sqlite"
    with sqlite3.connect(people) as db:
        db.execute("CREATE TABLE person (id INTEGER PRIMARY KEY, name TEXT, email TEXT, "
                   "owner_ref TEXT)")
    db.close()
    table = sql.Table("person", Person, key="id", columns={"name": "name", "email": "email"},
                      refs={"owner": "owner_ref"})
    members = {"main": plain.as_uri(),
               "notes": {"uri": (tmp_path / "notes.fs").as_uri(), "create": True},
               "people": sql.sqlite("people", str(people), table)}
    with federation.open(members) as fed, fed.open() as conn:
        conn.add(Person("Ada", owner=conn.root("main")["page"]), "people")
        transaction.commit()
    with federation.open(members) as fed, fed.open() as conn:
        assert conn.get("people:integer:1").owner is conn.root("main")["page"]
        assert fed.check().ok
        transaction.abort()
