"""A native ZODB multi-database opened as a federation: its references load, pack keeps them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import transaction
import ZODB
from persistent import Persistent
from persistent.mapping import PersistentMapping
from persistent.wref import WeakRef
from ZODB.FileStorage import FileStorage
from ZODB.POSException import POSKeyError

import federation
from federation.connection import Unreachable
from federation.errors import DanglingStub, MemberUnavailable
from federation.native import NativeRef, references
from tests.models import Item


def native_databases(folder: Path,
                     names: tuple[str, ...] = ("main", "other")) -> dict[str, ZODB.DB]:
    """Plain ``ZODB.DB`` objects of one native multi-database, on FileStorage."""
    databases: dict[str, ZODB.DB] = {}
    for name in names:
        ZODB.DB(FileStorage(str(folder / f"{name}.fs")), databases=databases,
                database_name=name)
    return databases


def close_all(databases: dict[str, ZODB.DB]) -> None:
    for db in list(databases.values()):
        db.close()


@pytest.fixture
def written(tmp_path: Path) -> Path:
    """main.fs and other.fs: main's root holds native references to other's objects."""
    databases = native_databases(tmp_path)
    tm = transaction.TransactionManager()
    conn = databases["main"].open(tm)
    other = conn.get_connection("other").root()
    target = other["target"] = Item("target")
    other["only_native"] = Item("reached through main only")
    tm.commit()
    root = conn.root()
    root["link"] = target
    root["holder"] = Item("holder", link=target)
    root["hidden"] = Item("hidden", link=other["only_native"])
    root["weak"] = WeakRef(target)
    del other["only_native"]  # now only main's native reference reaches it
    tm.commit()
    conn.close()
    close_all(databases)
    return tmp_path


def _members(folder: Path, **extra: dict[str, str]) -> dict[str, object]:
    members: dict[str, object] = {name: f"file://{folder / name}.fs"
                                  for name in ("main", "other")}
    members.update(extra)
    return members


@pytest.fixture
def fed(written: Path) -> Iterator[federation.Federation]:
    with federation.open(_members(written)) as opened:
        yield opened


def test_references_lists_native_ones(written: Path):
    """native.references returns referencesf's oids and the 'm' and 'w' references apart."""
    storage = FileStorage(str(written / "main.fs"), read_only=True)
    try:
        root = storage.load(b"\0" * 8)[0]
        oids, natives = references(root)
    finally:
        storage.close()
    assert {ref.form for ref in natives} == {"m", "w"}
    assert all(ref.database_name == "other" for ref in natives)
    assert isinstance(natives[0], NativeRef) and len(oids) == 2  # holder, hidden


def test_native_references_load_as_the_federations_objects(fed: federation.Federation):
    """An ['m', ...] reference loads as the other member's object, in the same manager."""
    with fed.open(transaction.TransactionManager()) as conn:
        root = conn.root("main")
        target = conn.root("other")["target"]
        assert root["link"] is target
        assert root["holder"].link is target
        assert root["weak"]() is target
        assert target._p_jar is conn.jar("other")
        assert conn.ref(root["link"]) == conn.ref(target)


def test_one_object_one_transaction_no_deadlock(fed: federation.Federation):
    """Changing the target through both paths commits once, in the manager's transaction."""
    tm = transaction.TransactionManager()
    with fed.open(tm) as conn:
        conn.root("main")["link"].title = "via main"
        conn.root("other")["target"].title += " and via other"
        tm.commit()
        assert conn.jar("main").connections in ({}, {"main": conn.jar("main")})
    with fed.open(transaction.TransactionManager()) as conn:
        assert conn.root("other")["target"].title == "via main and via other"


def test_adopted_application_dbs_use_the_manager(written: Path):
    """The application's own native DB objects as members: no second connection is opened."""
    databases = native_databases(written)
    try:
        with federation.open(dict(databases)) as fed, \
                fed.open(transaction.TransactionManager()) as conn:
            link = conn.root("main")["link"]
            assert link is conn.root("other")["target"]
            assert link._p_jar is conn.jar("other")
            link.title = "changed"  # one connection per database: one commit, no deadlock
            conn.root("other")["target"].title += "!"
            conn.transaction_manager.commit()
    finally:
        close_all(databases)


def test_database_name_setting_maps_a_renamed_member(written: Path):
    """A member named differently from its database: the 'database_name' setting maps it."""
    members = {"site": {"uri": f"file://{written / 'main.fs'}"},
               "archive": {"uri": f"file://{written / 'other.fs'}", "database_name": "other"}}
    with federation.open(members) as fed, fed.open(transaction.TransactionManager()) as conn:
        assert conn.root("site")["link"] is conn.root("archive")["target"]
        site = conn.jar("site")  # the application's get_connection names databases too
        assert site.get_connection("other") is site.get_connection("archive") is conn.jar(
            "archive")


def test_two_members_with_one_database_name_are_refused(written: Path):
    """Two members called by one database name: a ConfigurationError naming both."""
    members = {"main": f"file://{written / 'main.fs'}",
               "copy": {"uri": f"file://{written / 'other.fs'}", "database_name": "main"}}
    with pytest.raises(federation.ConfigurationError, match="'main' and 'copy'"):
        federation.open(members)


def test_two_plain_application_databases_join(tmp_path: Path):
    """Two ZODB.DB objects of an application that is no multi-database both carry ZODB's
    default name 'unnamed': each is called by its member name, not refused as a clash."""
    databases = [ZODB.DB(FileStorage(str(tmp_path / f"{name}.fs"))) for name in ("a", "b")]
    multi: dict[str, ZODB.DB] = {}
    for name in ("unnamed", "d"):  # in a multi-database, the name native references use
        ZODB.DB(FileStorage(str(tmp_path / f"{name}.fs")), databases=multi, database_name=name)
    try:
        assert {db.database_name for db in databases} == {"unnamed"}
        with federation.open({"a": databases[0], "b": {"source": databases[1]}}) as fed, \
                fed.open(transaction.TransactionManager()) as conn:
            assert fed.native_names == {"a": "a", "b": "b"}
            conn.root("a")["x"] = conn.root("b")["y"] = Item("x")
            conn.add(conn.root("a")["x"], "b")
            conn.transaction_manager.commit()
        with federation.open({"c": multi["unnamed"], "d": multi["d"]}) as fed:
            assert fed.native_names == {"unnamed": "c", "d": "d"}
    finally:
        close_all({**multi, "a": databases[0], "b": databases[1]})

def test_no_such_member_loads_a_placeholder_and_writes_it_back(written: Path):
    """A native reference to a database that is no member: Unreachable; saving keeps it."""
    tm = transaction.TransactionManager()
    with federation.open({"main": f"file://{written / 'main.fs'}"}) as fed, \
            fed.open(tm) as conn:
        root = conn.root("main")
        link = root["link"]
        assert isinstance(link, Unreachable)
        with pytest.raises(DanglingStub, match="'other'"):
            link.title  # noqa: B018
        root["holder"].title = "changed"  # holds its own native reference, written back
        root["holder"]._p_changed = True
        tm.commit()
    with federation.open(_members(written)) as fed, fed.open(tm) as conn:
        assert conn.root("main")["holder"].link is conn.root("other")["target"]
        assert conn.root("main")["holder"].title == "changed"


def test_unavailable_member_loads_a_placeholder(written: Path):
    """A native reference to a member that cannot be reached: MemberUnavailable on use."""
    members = _members(written, other="zeo://127.0.0.1:1?wait_timeout=1")
    with federation.open(members) as fed, fed.open(transaction.TransactionManager()) as conn:
        link = conn.root("main")["link"]
        assert isinstance(link, Unreachable)
        with pytest.raises(MemberUnavailable, match="'other'"):
            link.title  # noqa: B018


def test_changed_referrer_gets_a_stub(fed: federation.Federation):
    """A referrer changed through the federation is written with a stub, as any other."""
    tm = transaction.TransactionManager()
    with fed.open(tm) as conn:
        holder = conn.root("main")["holder"]
        holder.title = "rewritten"
        tm.commit()
        [stub] = conn.stubs("main")
        assert stub.target == conn.ref(conn.root("other")["target"])
        record = fed.member("main").db.storage.load(holder._p_oid)[0]
    assert references(record)[1] == []


def _commit_through_the_federation(fed: federation.Federation) -> None:
    """One commit: every writable member gets its federation catalog."""
    tm = transaction.TransactionManager()
    with fed.open(tm) as conn:
        conn.root("main")["touched"] = True
        tm.commit()


def test_pack_keeps_objects_reached_only_through_native_references(
        fed: federation.Federation):
    """fed.pack marks across native references: what only they reach survives."""
    _commit_through_the_federation(fed)
    report = fed.pack()
    assert report["other"].packed and not report["other"].collectable
    assert report["other"].keep_alive >= 2
    with fed.open(transaction.TransactionManager()) as conn:
        assert conn.root("main")["hidden"].link.title == "reached through main only"
    report = fed.pack()  # again: the keep-alive set protects it in other's own pack
    with fed.open(transaction.TransactionManager()) as conn:
        assert conn.root("main")["hidden"].link.title == "reached through main only"


def test_pack_refuses_native_references_to_an_outside_database(written: Path):
    """Native references to a database that is no member: pack refuses, as for stubs."""
    with federation.open({"main": f"file://{written / 'main.fs'}"}) as fed, \
            pytest.raises(federation.CollectionRefused, match=r"native .* 'other'"):
        fed.pack()


def test_check_reports_a_dangling_native_reference(fed: federation.Federation,
                                                   written: Path):
    """zfed check follows native references: one whose target plain ZODB packed away is
    dangling (ZODB's pack does not see native references)."""
    assert fed.check().ok
    fed.close()
    databases = native_databases(written)
    try:
        databases["other"].pack()
    finally:
        close_all(databases)
    with federation.open(_members(written)) as again:
        report = again.check()
        assert [finding.kind for finding in report.findings] == ["dangling"]
        assert "other:oid:" in report.findings[0].message
        with again.open(transaction.TransactionManager()) as conn, \
                pytest.raises(POSKeyError):
            conn.root("main")["hidden"].link.title  # noqa: B018


class WithNewArgs(Persistent):
    """A class with ``__getnewargs__``: ZODB references it as ['n', (database, oid)]."""

    def __getnewargs__(self) -> tuple[()]:
        return ()


def test_n_references_load_and_are_marked(tmp_path: Path):
    """['n', ...] references (no class in the reference) load as the member's object, and
    pack keeps their targets."""
    databases = native_databases(tmp_path)
    try:
        with databases["other"].transaction() as conn:
            conn.root()["target"] = WithNewArgs()
        with databases["main"].transaction() as conn:
            box = conn.root()["box"] = PersistentMapping()
            box["n"] = conn.get_connection("other").root()["target"]
            del conn.get_connection("other").root()["target"]
        with databases["main"].transaction() as conn:
            record = databases["main"].storage.load(conn.root()["box"]._p_oid)[0]
        assert [ref.form for ref in references(record)[1]] == ["n"]
    finally:
        close_all(databases)
    with federation.open(_members(tmp_path)) as fed:
        _commit_through_the_federation(fed)
        assert fed.pack()["other"].packed
        with fed.open(transaction.TransactionManager()) as conn:
            target = conn.root("main")["box"]["n"]
            assert isinstance(target, WithNewArgs) and target._p_jar is conn.jar("other")
            assert conn.get(conn.ref(target)) is target


def test_existing_uuid_member_gets_its_catalog_and_uuids_in_one_commit(tmp_path: Path):
    """An existing database joins as a uuid member with no catalog yet; the first commit
    references one of its objects from another member: its catalog and the uuids index
    entry are stored in that same commit (the entry was lost: the index, made and stored
    by this commit, was changed after it was stored)."""
    for name in ("main", "other"):
        db = ZODB.DB(FileStorage(str(tmp_path / f"{name}.fs")))
        with db.transaction() as conn:
            conn.root()["x"] = PersistentMapping(name=name)
        db.close()
    members = {"main": f"file://{tmp_path / 'main.fs'}",
               "other": {"uri": f"file://{tmp_path / 'other.fs'}", "key": "uuid"}}
    tm = transaction.TransactionManager()
    with federation.open(members) as fed:
        with fed.open(tm) as conn:
            conn.root("main")["link"] = PersistentMapping(to=conn.root("other")["x"])
            tm.commit()
        assert fed.check().ok
    with federation.open(members) as fed, fed.open(tm) as conn:
        assert conn.root("main")["link"]["to"] is conn.root("other")["x"]
