"""Renaming members in the configuration: references by id, old names, unreachable targets.

Foreign records keep references as text naming the member; stubs in ZODB
members name it by id.  Renaming a member (same store, new name in the
configuration) must keep every reference, old and new, readable and right.
"""

from __future__ import annotations

import socket
import sqlite3
from pathlib import Path

import pytest
import transaction
from ZODB.POSException import ReadConflictError
from ZODB.utils import u64

import federation
from federation.adapters import sql
from federation.adapters.memory import MemoryDatabase
from federation.connection import Unreachable
from federation.errors import ConfigurationError, FederationError, MemberUnavailable
from federation.ref import Ref, parse_ref_text, ref_text
from tests.models import Item, Person

SCHEMA = """CREATE TABLE person (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT, owner_ref TEXT)"""

TABLE = sql.Table("person", Person, key="id", columns={"name": "name", "email": "email"},
                  refs={"owner": "owner_ref"})


def people_file(directory: Path) -> Path:
    path = directory / "people.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute(SCHEMA)
    conn.close()
    return path


def people(path: Path, name: str = "people") -> sql.SqlDatabase:
    return sql.sqlite(name, str(path), TABLE, batch_size=10)


def rows(path: Path, sql_text: str, params: tuple = ()) -> list[tuple]:
    conn = sqlite3.connect(path)
    try:
        with conn:
            return conn.execute(sql_text, params).fetchall()
    finally:
        conn.close()


def owner_ref(path: Path, key: int) -> str:
    return rows(path, "SELECT owner_ref FROM person WHERE id = ?", (key,))[0][0]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- reference text -------------------------------------------------------------


def test_ref_text_keeps_the_name_first_and_the_id():
    ref = Ref("main", "integer", 7)
    assert ref_text(ref, "abc123") == "main@abc123:integer:7"
    assert ref_text(ref, None) == "main:integer:7"
    assert ref_text(ref, "name:main") == "main:integer:7"  # no stable id yet: plain text
    assert parse_ref_text("main@abc123:integer:7") == (ref, "abc123")
    assert parse_ref_text("main:integer:7") == (ref, None)


@pytest.mark.parametrize("text", ["main@:integer:7", "main@a:b@c:integer:7", "@abc:integer:7",
                                  "main@abc", "main@ab c:integer:7", 7])
def test_bad_ref_text_is_a_typed_error(text):
    with pytest.raises(FederationError):
        parse_ref_text(text)


# -- a ZODB member renamed ----------------------------------------------------------


@pytest.fixture
def written(tmp_path):
    """main (FileStorage) and people (SQLite): Ada's row names main's item, in the
    form written now (with main's id); Bob's row in today's form (the name only)."""
    main_uri = (tmp_path / "main.fs").as_uri()
    path = people_file(tmp_path)
    with federation.open({"main": main_uri, "people": people(path)}) as fed:
        with fed.open() as conn:
            item = Item("home")
            conn.add(item, "main")
            conn.root("main")["home"] = item
            ada = Person("Ada", owner=item)
            conn.add(ada, "people")
            transaction.commit()
            oid = u64(item._p_oid)
            ada_key = conn.ref(ada).key
        main_id = fed.member("main").member_id
    rows(path, "INSERT INTO person (id, name, owner_ref) VALUES (?, ?, ?)",
         (100, "Bob", f"main:integer:{oid}"))
    return tmp_path, path, main_id, oid, ada_key


def test_rows_keep_the_member_id(written):
    _, path, main_id, oid, ada_key = written
    assert owner_ref(path, ada_key) == f"main@{main_id}:integer:{oid}"


def test_renamed_zodb_member_keeps_every_row_readable(written):
    """After main is renamed home, rows with its id and rows of today's form (its old name,
    through the names the catalog recorded) load the same object; a new reference names the
    new name and the id."""
    tmp_path, path, main_id, oid, ada_key = written
    members = {"home": (tmp_path / "main.fs").as_uri(), "people": people(path)}
    with federation.open(members) as fed:
        assert fed.member("home").member_id == main_id
        with fed.open() as conn:
            item = conn.root("home")["home"]
            ada = conn.get(f"people:integer:{ada_key}")
            bob = conn.get("people:integer:100")
            assert ada.owner is item and bob.owner is item
            assert conn.ref(ada.owner) == Ref("home", "integer", oid)
            carol = Person("Carol", owner=item)
            conn.add(carol, "people")
            transaction.commit()
            carol_key = conn.ref(carol).key
        assert owner_ref(path, carol_key) == f"home@{main_id}:integer:{oid}"
        report = fed.check()
        assert report.ok, report.findings
        with fed.open() as conn:
            assert conn.get(f"people:integer:{carol_key}").owner is conn.root("home")["home"]
            transaction.abort()


def test_row_written_back_after_a_rename_keeps_its_unchanged_reference_text(written):
    """Only changed attributes are written: a row whose reference did not change keeps its
    text (it still names the member, by its old name or its id), so a change another process
    made to the reference meanwhile is not overwritten; a reference set anew names the
    member by its new name and id."""
    tmp_path, path, main_id, oid, ada_key = written
    members = {"home": (tmp_path / "main.fs").as_uri(), "people": people(path)}
    before = owner_ref(path, ada_key)
    with federation.open(members) as fed, fed.open() as conn:
        bob, ada = conn.get("people:integer:100"), conn.get(f"people:integer:{ada_key}")
        bob.email = ada.email = "x@example.org"
        ada.owner = conn.root("home")["home"]  # the same object: no change
        transaction.commit()
        assert owner_ref(path, 100) == f"main:integer:{oid}"
        assert owner_ref(path, ada_key) == before
        other = Item("other")
        conn.add(other, "home")
        bob.owner = other
        transaction.commit()
        assert owner_ref(path, 100) == f"home@{main_id}:integer:{u64(other._p_oid)}"


def test_unchanged_reference_text_does_not_overwrite_a_concurrent_change(written):
    """Manager 1 changes Bob's email while manager 2 changes his reference: both changes
    stay, although manager 1 would write the reference text in another form."""
    tmp_path, path, _main_id, _oid, _ada_key = written
    members = {"home": (tmp_path / "main.fs").as_uri(), "people": people(path)}
    with federation.open(members) as fed:
        tm1, tm2 = transaction.TransactionManager(), transaction.TransactionManager()
        first, second = fed.open(tm1), fed.open(tm2)
        bob = first.get("people:integer:100")
        bob.email = "bob@example.org"
        other = Item("other")
        second.add(other, "home")
        second.get("people:integer:100").owner = other
        tm2.commit()
        tm1.commit()
        assert owner_ref(path, 100).endswith(f":integer:{u64(other._p_oid)}")
        assert rows(path, "SELECT email FROM person WHERE id = 100") == [("bob@example.org",)]
        first.close()
        second.close()


def test_pack_after_a_rename_keeps_what_only_rows_reference(written):
    """The collector reads the rows the way the jar does: the item only rows name survives."""
    tmp_path, path, _main_id, _oid, ada_key = written
    members = {"home": (tmp_path / "main.fs").as_uri(), "people": people(path)}
    with federation.open(members) as fed:
        with fed.open() as conn:
            del conn.root("home")["home"]
            transaction.commit()
        report = fed.pack()
        assert not report.dangling
        with fed.open() as conn:
            assert conn.get(f"people:integer:{ada_key}").owner.title == "home"
            assert conn.get("people:integer:100").owner.title == "home"
            transaction.abort()


def test_a_new_member_under_the_old_name_does_not_take_rows_with_the_id(written):
    """Rows naming main by id follow the renamed database, not a new database called main;
    rows of today's form name the current member main (documented)."""
    tmp_path, path, _main_id, _oid, ada_key = written
    members = {"home": (tmp_path / "main.fs").as_uri(),
               "main": (tmp_path / "other.fs").as_uri(), "people": people(path)}
    with federation.open(members) as fed, fed.open() as conn:
        assert conn.ref(conn.get(f"people:integer:{ada_key}").owner).member == "home"
        bob = conn.get("people:integer:100")
        assert isinstance(bob.owner, Unreachable)  # the new main has no such object
        with pytest.raises(federation.KeyNotFound, match="'main'"):
            bob.owner.title  # noqa: B018
        transaction.abort()


def test_the_setting_former_names_resolves_an_old_name(tmp_path):
    """A database whose catalog never recorded its name (written by an older release, or
    opened read-only): the setting former_names says which name old rows use."""
    main_uri = (tmp_path / "main.fs").as_uri()
    path = people_file(tmp_path)
    with federation.open({"main": main_uri}) as fed, fed.open() as conn:
        conn.root("main")["home"] = item = Item("home")
        transaction.commit()
        oid = u64(item._p_oid)
    rows(path, "INSERT INTO person (id, name, owner_ref) VALUES (1, 'Ann', ?)",
         (f"old:integer:{oid}",))
    members = {"home": {"uri": main_uri, "former_names": ["old"]}, "people": people(path)}
    with federation.open(members) as fed, fed.open() as conn:
        assert conn.get("people:integer:1").owner is conn.root("home")["home"]
        transaction.abort()
    with pytest.raises(ConfigurationError, match="former_names"):
        federation.open({"home": {"uri": main_uri, "former_names": "old"}})


def test_the_catalog_records_every_name_a_member_wrote_under(written):
    tmp_path, path, _main_id, _oid, _ada_key = written
    members = {"home": (tmp_path / "main.fs").as_uri(), "people": people(path)}
    with federation.open(members) as fed:
        assert fed.member("home").former_names == ("main",)
        with fed.open() as conn:
            conn.root("home")["x"] = 1
            transaction.commit()
    with federation.open({"third": (tmp_path / "main.fs").as_uri()}) as fed:
        assert fed.member("third").former_names == ("home", "main")


# -- a foreign record naming an unavailable member ------------------------------------


def test_row_naming_an_unavailable_member_loads_with_a_placeholder(written):
    """The row loads; its reference is an Unreachable placeholder raising MemberUnavailable;
    writing the row back keeps the reference text as it was."""
    _tmp_path, path, _main_id, oid, ada_key = written
    before = owner_ref(path, ada_key)
    members = {"main": f"zeo://127.0.0.1:{free_port()}?wait=false", "people": people(path)}
    with federation.open(members) as fed:
        assert not fed.member("main").available
        with fed.open() as conn:
            ada = conn.get(f"people:integer:{ada_key}")
            assert ada.name == "Ada"
            assert isinstance(ada.owner, Unreachable)
            with pytest.raises(MemberUnavailable, match="'main'"):
                ada.owner.title  # noqa: B018
            ada.email = "ada@example.org"
            bob = conn.get("people:integer:100")
            bob.name = "Robert"
            transaction.commit()
    assert owner_ref(path, ada_key) == before
    assert owner_ref(path, 100) == f"main:integer:{oid}"
    assert rows(path, "SELECT email FROM person WHERE id = ?", (ada_key,)) == [
        ("ada@example.org",)]


def test_row_naming_a_member_no_longer_configured_loads_with_a_placeholder(written):
    _tmp_path, path, _main_id, _oid, ada_key = written
    with federation.open({"people": people(path)}) as fed, fed.open() as conn:
        ada = conn.get(f"people:integer:{ada_key}")
        assert isinstance(ada.owner, Unreachable) and ada.name == "Ada"
        with pytest.raises(federation.UnknownMember):
            ada.owner.title  # noqa: B018
        transaction.abort()


@pytest.mark.parametrize("text", ["main:nokind:1", "main:integer:x", "no reference", "@:"])
def test_row_with_bad_reference_text_loads_with_a_placeholder(written, text):
    """Text that is no reference (written by another program) does not make the row
    unreadable: the attribute is a placeholder raising a typed error; the text is kept."""
    tmp_path, path, _main_id, _oid, _ada_key = written
    rows(path, "INSERT INTO person (id, name, owner_ref) VALUES (7, 'Eve', ?)", (text,))
    members = {"main": (tmp_path / "main.fs").as_uri(), "people": people(path)}
    with federation.open(members) as fed, fed.open() as conn:
        eve = conn.get("people:integer:7")
        assert eve.name == "Eve" and isinstance(eve.owner, Unreachable)
        with pytest.raises(FederationError):
            eve.owner.title  # noqa: B018
        eve.email = "eve@example.org"
        transaction.commit()
    assert owner_ref(path, 7) == text


def test_row_naming_an_object_newer_than_the_snapshot_loads_with_a_placeholder(written):
    """Rows are read as they are now, ZODB members at the transaction's snapshot: a row that
    another manager linked to a new ZODB object meanwhile loads; its reference raises the
    ReadConflictError (retried by attempts()), and the next transaction reads it."""
    tmp_path, path, _main_id, _oid, ada_key = written
    members = {"main": (tmp_path / "main.fs").as_uri(), "people": people(path)}
    with federation.open(members) as fed:
        tm0, tm1 = transaction.TransactionManager(), transaction.TransactionManager()
        first, second = fed.open(tm0), fed.open(tm1)
        assert first.root("main")["home"].title == "home"  # first's snapshot of main
        new = Item("new")
        second.add(new, "main")
        second.get(f"people:integer:{ada_key}").owner = new
        tm1.commit()
        ada = first.get(f"people:integer:{ada_key}")
        assert ada.name == "Ada" and isinstance(ada.owner, Unreachable)
        with pytest.raises(ReadConflictError):
            ada.owner.title  # noqa: B018
        tm0.begin()
        assert first.get(f"people:integer:{ada_key}").owner.title == "new"
        tm0.abort()
        first.close()
        second.close()


def test_placeholder_cannot_be_stored_in_a_zodb_member(written):
    """A foreign placeholder has no stub to keep: storing it in a ZODB object raises its error
    and nothing is written."""
    tmp_path, path, _main_id, _oid, ada_key = written
    members = {"main": f"zeo://127.0.0.1:{free_port()}?wait=false", "people": people(path),
               "notes": (tmp_path / "notes.fs").as_uri()}
    with federation.open(members) as fed, fed.open() as conn:
        ada = conn.get(f"people:integer:{ada_key}")
        conn.root("notes")["owner"] = ada.owner
        with pytest.raises(MemberUnavailable):
            transaction.commit()
        transaction.abort()
    with federation.open({"notes": (tmp_path / "notes.fs").as_uri()}) as fed, \
            fed.open() as conn:
        assert "owner" not in conn.root("notes")
        transaction.abort()


# -- a foreign member renamed ------------------------------------------------------------


def test_opening_does_not_write_the_member_table(tmp_path):
    path = people_file(tmp_path)
    with federation.open({"people": people(path)}) as fed:
        assert fed.member("people").member_id == "name:people"
    assert rows(path, "SELECT name FROM sqlite_master WHERE name = 'zfed_members'") == []


def test_foreign_member_gets_a_stable_id_on_the_first_stub(tmp_path):
    path = people_file(tmp_path)
    rows(path, "INSERT INTO person (id, name) VALUES (1, 'Ada')")
    main_uri = (tmp_path / "main.fs").as_uri()
    with federation.open({"main": main_uri, "people": people(path)}) as fed:
        with fed.open() as conn:
            conn.root("main")["ada"] = Item("Ada's", link=conn.get("people:integer:1"))
            transaction.commit()
        member_id = fed.member("people").member_id
        assert not member_id.startswith("name:")
        assert [stub.member_id for stub in fed.open().stubs("main")] == [member_id]
        transaction.abort()
    assert sorted(rows(path, "SELECT tbl, name, member_id FROM zfed_members")) == [
        ("person", "", member_id), ("person", "people", member_id)]
    with federation.open({"main": main_uri, "people": people(path)}) as fed:
        assert fed.member("people").member_id == member_id


def test_renamed_sql_member_keeps_its_stubs_old_and_new(tmp_path):
    """Stubs naming people by its id, and stubs of before it had one (``name:people``),
    resolve after people is renamed persons; a new reference reuses the existing stub."""
    path = people_file(tmp_path)
    rows(path, "INSERT INTO person (id, name) VALUES (1, 'Ada'), (2, 'Bob')")
    main_uri = (tmp_path / "main.fs").as_uri()
    # A read-only member keeps no id: its stubs name it name:people, as all did before.
    members = {"main": main_uri, "people": {"adapter": people(path), "read_only": True}}
    with federation.open(members) as fed, fed.open() as conn:
        conn.root("main")["ada"] = Item("Ada's", link=conn.get("people:integer:1"))
        transaction.commit()
    with federation.open({"main": main_uri, "people": people(path)}) as fed, fed.open() as conn:
        conn.root("main")["bob"] = Item("Bob's", link=conn.get("people:integer:2"))
        transaction.commit()
        ids = sorted(stub.member_id for stub in conn.stubs("main"))
        member_id = fed.member("people").member_id
        assert ids == sorted(["name:people", member_id])
    with federation.open({"main": main_uri, "persons": people(path, "persons")}) as fed, \
            fed.open() as conn:
        assert fed.member("persons").member_id == member_id
        assert conn.root("main")["ada"].link.name == "Ada"
        assert conn.root("main")["bob"].link.name == "Bob"
        assert conn.ref(conn.root("main")["bob"].link) == Ref("persons", "integer", 2)
        conn.root("main")["bob2"] = Item("Bob again", link=conn.get("persons:integer:2"))
        conn.root("main")["ada2"] = Item("Ada again", link=conn.get("persons:integer:1"))
        transaction.commit()
        assert len(conn.stubs("main")) == 2  # Ada's stub of before the id is reused
        report = fed.check()
        assert report.ok, report.findings
        assert {str(stub.target) for stub in conn.stubs("main")} == {
            "persons:integer:1", "persons:integer:2"}
    assert sorted(name for name, in rows(path, "SELECT name FROM zfed_members")) == [
        "", "people", "persons"]


def test_read_only_store_takes_its_id_from_the_configuration(tmp_path):
    """An adapter that cannot keep an id (the memory adapter, like LDAP) gets it from the
    setting member_id; renaming the member then keeps its stubs."""
    database = MemoryDatabase("people", Person, batch_size=10)
    database.insert(1, {"name": "Ada", "email": None, "owner": None})
    main_uri = (tmp_path / "main.fs").as_uri()
    with federation.open({"main": main_uri,
                          "people": {"adapter": database, "member_id": "people-dir"}}) as fed:
        assert fed.member("people").member_id == "people-dir"
        with fed.open() as conn:
            conn.root("main")["ada"] = Item("Ada's", link=conn.get("people:integer:1"))
            transaction.commit()
    with federation.open({"main": main_uri,
                          "staff": {"adapter": database, "member_id": "people-dir"}}) as fed, \
            fed.open() as conn:
        assert conn.root("main")["ada"].link.name == "Ada"
        assert conn.ref(conn.root("main")["ada"].link) == Ref("staff", "integer", 1)
        transaction.abort()
    for bad in ["", "a b", "x" * 65, 7]:
        with pytest.raises(ConfigurationError, match="member_id"):
            federation.open({"people": {"adapter": database, "member_id": bad}})


def test_configured_id_must_match_the_stored_one(tmp_path):
    path = people_file(tmp_path)
    rows(path, "INSERT INTO person (id, name) VALUES (1, 'Ada')")
    main_uri = (tmp_path / "main.fs").as_uri()
    with federation.open({"main": main_uri, "people": people(path)}) as fed, fed.open() as conn:
        conn.root("main")["ada"] = Item("Ada's", link=conn.get("people:integer:1"))
        transaction.commit()
    with pytest.raises(ConfigurationError, match="member_id"):
        federation.open({"people": {"adapter": people(path), "member_id": "other"}})
    assert owner_ref(path, 1) is None  # nothing was written


def test_catalog_of_an_older_release_gets_the_names_index_on_the_first_write(tmp_path):
    """A catalog without ``names`` (made by an older release): opening writes nothing, the
    first transaction that writes records the name, so that a later rename finds old rows."""
    from ZODB import DB
    from ZODB.FileStorage import FileStorage

    main_path = tmp_path / "main.fs"
    with federation.open({"main": main_path.as_uri()}) as fed, fed.open() as conn:
        conn.root("main")["home"] = item = Item("home")
        transaction.commit()
        oid = u64(item._p_oid)
    db = DB(FileStorage(str(main_path)))
    with db.transaction() as zconn:
        del zconn.root().zodb_federation.names
    db.close()
    size = main_path.stat().st_size
    with federation.open({"main": main_path.as_uri()}) as fed:
        assert fed.member("main").former_names == ()
    assert main_path.stat().st_size == size
    with federation.open({"main": main_path.as_uri()}) as fed, fed.open() as conn:
        conn.root("main")["other"] = Item("other")
        transaction.commit()
    path = people_file(tmp_path)
    rows(path, "INSERT INTO person (id, name, owner_ref) VALUES (1, 'Ann', ?)",
         (f"main:integer:{oid}",))
    with federation.open({"home": main_path.as_uri(), "people": people(path)}) as fed, \
            fed.open() as conn:
        assert conn.get("people:integer:1").owner is conn.root("home")["home"]
        transaction.abort()


def test_names_record_merges_concurrent_additions(tmp_path):
    """Two processes recording a name at once: no ConflictError, both names kept."""
    from ZODB import DB
    from ZODB.FileStorage import FileStorage

    from federation.catalog import Names

    db = DB(FileStorage(str(tmp_path / "n.fs")))
    try:
        with db.transaction() as zconn:
            zconn.root()["names"] = Names()
        first, second = transaction.TransactionManager(), transaction.TransactionManager()
        one, two = db.open(first), db.open(second)
        one.root()["names"]["home"] = b""
        two.root()["names"]["house"] = b""
        two.root()["names"]["home"] = b""
        first.commit()
        second.commit()
        one.close()
        two.close()
        with db.transaction() as zconn:
            assert list(zconn.root()["names"]) == ["home", "house"]
    finally:
        db.close()


def test_reading_never_stores_a_foreign_member_id(tmp_path):
    """Loading rows and their references, a split object over a row, the stubs, a check and
    a dry-run pack read the SQL members without creating zfed_members."""
    from tests.models import AnnotatedRow, Row

    path = people_file(tmp_path)
    rows(path, "CREATE TABLE page (id INTEGER PRIMARY KEY, path TEXT UNIQUE, title TEXT)")
    rows(path, "INSERT INTO page VALUES (1, '/about', 'About')")
    local_uri = (tmp_path / "local.fs").as_uri()
    with federation.open({"local": local_uri}) as fed, fed.open() as conn:
        conn.root("local")["home"] = item = Item("home")
        transaction.commit()
        oid = u64(item._p_oid)
    rows(path, "INSERT INTO person (id, name, owner_ref) VALUES (1, 'Ann', ?)",
         (f"local:integer:{oid}",))
    pages = sql.sqlite("shared", str(path), sql.Table(
        "page", Row, key="id", columns={"path": "path", "title": "title"}))
    with federation.open({"local": local_uri, "people": people(path), "shared": pages}) as fed:
        with fed.open() as conn:
            ann = conn.get("people:integer:1")
            assert ann.owner.title == "home" and conn.ref(ann).member == "people"
            assert conn.split(AnnotatedRow, 1).title == "About"
            assert conn.stubs("local") == []
            transaction.abort()
        fed.check()
        fed.pack(dry_run=True)
    assert rows(path, "SELECT name FROM sqlite_master WHERE name = 'zfed_members'") == []


def test_get_takes_reference_text_as_rows_keep_it(written):
    tmp_path, path, _main_id, oid, ada_key = written
    members = {"home": (tmp_path / "main.fs").as_uri(), "people": people(path)}
    with federation.open(members) as fed, fed.open() as conn:
        home = conn.root("home")["home"]
        assert conn.get(owner_ref(path, ada_key)) is home  # main@<id>:integer:<oid>
        assert conn.get(f"main:integer:{oid}") is home  # its former name
        assert fed.ref_of_text(f"main:integer:{oid}") == Ref("home", "integer", oid)
        transaction.abort()


@pytest.mark.parametrize("bad", ["bad:id@x", "a b", "x" * 65])
def test_a_member_id_edited_by_hand_is_refused_before_anything_is_written(tmp_path, bad):
    """An id in zfed_members that reference text cannot carry (changed by other software)
    is a CorruptRecord naming the member when the federation opens; adopted, it made every
    new reference to the member unreadable text (``people@bad:id@x:integer:1``)."""
    path = people_file(tmp_path)
    rows(path, "INSERT INTO person (id, name) VALUES (1, 'Ada'), (2, 'Bob')")
    rows(path, "CREATE TABLE zfed_members (tbl TEXT NOT NULL, name TEXT NOT NULL, "
               "member_id TEXT NOT NULL, PRIMARY KEY (tbl, name))")
    rows(path, "INSERT INTO zfed_members VALUES ('person', '', ?), ('person', 'people', ?)",
         (bad, bad))
    with pytest.raises(federation.CorruptRecord, match=r"Member 'people'.*zfed_members") as info:
        federation.open({"people": people(path)})
    assert len(str(info.value)) < 400
    assert owner_ref(path, 2) is None


def test_a_foreign_id_stored_by_another_process_is_found_by_a_long_lived_federation(tmp_path):
    """Two federations (processes) opened before the SQL member had an id: one stores it
    with its first stub; the other, still open, reads that stub (it raised DanglingStub,
    'not part of this federation', until reopened) and rows naming the id."""
    import ZEO

    path = people_file(tmp_path)
    rows(path, "INSERT INTO person (id, name) VALUES (1, 'Ada'), (2, 'Bob')")
    (host, port), stop = ZEO.server(path=str(tmp_path / "main.fs"), port=("127.0.0.1", 0))
    try:
        main_uri = f"zeo://{host}:{port}?wait_timeout=5"
        with federation.open({"main": main_uri}) as fed, fed.open() as conn:
            conn.root("main")["x"] = 1
            transaction.commit()
        first = federation.open({"main": main_uri, "people": people(path)})
        second = federation.open({"main": main_uri, "people": people(path)})
        tm1, tm2 = transaction.TransactionManager(), transaction.TransactionManager()
        conn1, conn2 = first.open(tm1), second.open(tm2)
        conn1.root("main")["ada"] = Item("Ada's", link=conn1.get("people:integer:1"))
        tm1.commit()
        member_id = first.member("people").member_id
        assert second.member("people").member_id == "name:people"
        conn2.close()
        report = second.pack()  # its collector reads the new stub too
        assert not report.dangling, report.dangling
        conn2 = second.open(tm2)
        tm2.begin()
        assert conn2.root("main")["ada"].link.name == "Ada"
        assert second.member("people").member_id == member_id
        conn2.root("main")["ada2"] = Item("Ada again", link=conn2.get("people:integer:1"))
        tm2.commit()
        assert len(conn2.stubs("main")) == 1
        for conn in (conn1, conn2):
            conn.close()
        first.close()
        second.close()
    finally:
        stop()


def test_swapping_the_names_of_members_without_ids_is_refused(tmp_path):
    """Two stores that keep no id (stubs name them name:<name>) swap names, each listing the
    other's name in former_names: a stub made under 's' read the member now called 's',
    the wrong store, silently; the configuration is refused, naming the member."""
    s = MemoryDatabase("s", Person, batch_size=10)
    s.insert(1, {"name": "Ada", "email": None, "owner": None})
    t = MemoryDatabase("t", Person, batch_size=10)
    t.insert(1, {"name": "Tom", "email": None, "owner": None})
    main_uri = (tmp_path / "main.fs").as_uri()
    with federation.open({"main": main_uri, "s": s, "t": t}) as fed, fed.open() as conn:
        conn.root("main")["a"] = Item("a", link=conn.get("s:integer:1"))
        transaction.commit()
    swapped = {"main": main_uri, "t": {"adapter": s, "former_names": ["s"]},
               "s": {"adapter": t, "former_names": ["t"]}}
    with pytest.raises(ConfigurationError, match=r"Member '[st]' keeps no stable id"):
        federation.open(swapped)
    with federation.open({"main": main_uri, "t": {"adapter": s, "former_names": ["s"]}}) as fed, \
            fed.open() as conn:
        assert conn.root("main")["a"].link.name == "Ada"  # a plain rename still works
        transaction.abort()


def test_one_table_configured_as_two_members_is_refused_when_its_id_is_stored(tmp_path):
    """Two members on one table that had no id yet: the second to store it found the
    first's and took its place among the federation's ids (the first's stubs then named
    the second); it is refused as federation.open refuses it once the id is kept."""
    path = people_file(tmp_path)
    rows(path, "INSERT INTO person (id, name) VALUES (1, 'Ada'), (2, 'Bob')")
    main_uri = (tmp_path / "main.fs").as_uri()
    members = {"main": main_uri, "p": people(path, "p"), "q": people(path, "q")}
    with federation.open(members) as fed, fed.open() as conn:
        conn.root("main")["a"] = Item("a", link=conn.get("p:integer:1"))
        transaction.commit()
        conn.root("main")["b"] = Item("b", link=conn.get("q:integer:2"))
        with pytest.raises(ConfigurationError, match="Members 'p' and 'q' are the same database"):
            transaction.commit()
        transaction.abort()
        assert {fed.members_by_id[fed.member("p").member_id].name} == {"p"}
    with pytest.raises(ConfigurationError, match="same database"):
        federation.open(members)


def test_a_catalog_stored_by_another_process_is_found_by_a_long_lived_federation(tmp_path):
    """A plain ZODB database joins two federations (processes) at once; each chose an id
    for it in memory, and the first to write stored its catalog.  The other, still open,
    reads the stubs the first wrote (they raised DanglingStub, 'not part of this
    federation', until it had read that member's root) and the rows (their references
    were placeholders saying the member was 'another database')."""
    import ZEO
    import ZODB
    from ZEO.ClientStorage import ClientStorage

    db = ZODB.DB(str(tmp_path / "main.fs"))
    with db.transaction() as conn:
        conn.root()["it"] = Item("main's")
    db.close()
    servers = {name: ZEO.server(path=str(tmp_path / f"{name}.fs"), port=("127.0.0.1", 0))
               for name in ("main", "notes")}
    try:
        path = people_file(tmp_path)

        def members():  # server_sync: a new transaction sees the other process's commit
            return {**{name: ClientStorage(address, server_sync=True, wait_timeout=5)
                       for name, (address, _stop) in servers.items()}, "people": people(path)}

        first, second = federation.open(members()), federation.open(members())
        assert first.member("main").member_id != second.member("main").member_id
        tm1, tm2 = transaction.TransactionManager(), transaction.TransactionManager()
        conn1, conn2 = first.open(tm1), second.open(tm2)
        conn1.root("notes")["link"] = Item("link", link=conn1.root("main")["it"])
        conn1.add(Person("Ada", owner=conn1.root("main")["it"]), "people")
        tm1.commit()
        tm2.begin()
        assert conn2.get("people:integer:1").owner.title == "main's"
        assert conn2.root("notes")["link"].link.title == "main's"
        assert second.member("main").member_id == first.member("main").member_id
        tm2.abort()
        for conn, fed in ((conn1, first), (conn2, second)):
            conn.close()
            fed.close()
    finally:
        for _address, stop in servers.values():
            stop()


def test_an_unknown_id_under_the_name_of_a_store_keeping_none_opens_no_session(tmp_path):
    """References naming an id the federation does not know, under the name of a member
    whose store keeps no id (LDAP, the memory adapter): nothing to read again, so no new
    adapter session (an LDAP bind) per such reference."""
    database = MemoryDatabase("people", Person, batch_size=10, ref_attributes=["owner"])
    database.insert(1, {"name": "Ada", "email": None, "owner": "people@gone:integer:1"})
    sessions = []

    def factory():
        sessions.append(1)
        return database()

    with federation.open({"people": {"adapter": factory}}) as fed, fed.open() as conn:
        opened = len(sessions)
        for _ in range(3):
            conn.get("people:integer:1").owner  # noqa: B018
            transaction.abort()
        assert len(sessions) == opened
