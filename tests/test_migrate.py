"""``zfed migrate``: a native multi-database written with plain ZODB, into stubs and back."""

from __future__ import annotations

import contextlib
import functools
import io
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import transaction
import ZODB
from BTrees.OOBTree import OOBTree
from click.testing import CliRunner
from persistent import Persistent
from persistent.list import PersistentList
from persistent.mapping import PersistentMapping
from persistent.wref import WeakRef
from ZODB.FileStorage import FileStorage
from ZODB.utils import p64
from zope.annotation.attribute import AttributeAnnotations
from zope.annotation.interfaces import IAttributeAnnotatable
from zope.interface import implementer

import federation
from federation import cli
from federation.catalog import Stub
from federation.cli import main
from federation.errors import MigrationError
from federation.native import references
from federation.records import record_class
from tests.models import Item

NAMES = ("main", "other", "outside")  # outside is no member of the federation
BIG = 400  # references in the big tree: many buckets


@implementer(IAttributeAnnotatable)
class Annotated(Persistent):
    """An object that keeps zope.annotation annotations."""


def _databases(folder: Path) -> dict[str, ZODB.DB]:
    databases: dict[str, ZODB.DB] = {}
    for name in NAMES:
        ZODB.DB(FileStorage(str(folder / f"{name}.fs")), databases=databases,
                database_name=name)
    return databases


@contextlib.contextmanager
def native(folder: Path) -> Iterator[dict[str, Any]]:
    """The roots of the native multi-database, opened with plain ZODB."""
    databases = _databases(folder)
    tm = transaction.TransactionManager()
    conn = databases["main"].open(tm)
    try:
        yield {name: conn.get_connection(name).root() for name in NAMES}
        tm.commit()
    finally:
        tm.abort()
        conn.close()
        for db in list(databases.values()):
            db.close()


def write(folder: Path) -> None:
    """References from main to other in every place an application keeps them."""
    with native(folder) as roots:
        other, main = roots["other"], roots["main"]
        for name in ("attr", "small", "list", "mapping", "note", "back"):
            other[name] = Item(f"other {name}")
        other["many"] = PersistentList(Item(f"many {i}") for i in range(BIG))
        roots["outside"]["x"] = Item("outside x")
        transaction.get()  # the objects get their database when committed
    with native(folder) as roots:
        other, main = roots["other"], roots["main"]
        main["attr"] = Item("holder", link=other["attr"])
        main["small"] = OOBTree({"a": other["small"]})
        main["big"] = OOBTree({f"k{i:04}": item for i, item in enumerate(other["many"])})
        main["list"] = PersistentList([other["list"], 1])
        main["mapping"] = PersistentMapping(target=other["mapping"])
        annotated = main["annotated"] = Annotated()
        AttributeAnnotations(annotated)["myapp.note"] = other["note"]
        main["weak"] = WeakRef(other["attr"])
        main["outside"] = Item("holder of outside", link=roots["outside"]["x"])
        main["page"] = Item("page")
    with native(folder) as roots:
        roots["other"]["back"].link = roots["main"]["page"]  # and one the other way


def follow(roots: dict[str, Any]) -> None:
    """Every reference written by :func:`write` reaches its target."""
    main, other = roots["main"], roots["other"]
    assert main["attr"].link is other["attr"]
    assert main["small"]["a"] is other["small"]
    big = main["big"]
    assert len(big) == BIG
    assert all(big[f"k{i:04}"] is other["many"][i] for i in range(BIG))
    assert main["list"][0] is other["list"]
    assert main["mapping"]["target"] is other["mapping"]
    assert AttributeAnnotations(main["annotated"])["myapp.note"] is other["note"]
    assert main["weak"]() is other["attr"]
    assert other["back"].link is main["page"]
    assert main["outside"].link.title == "outside x"


def config(folder: Path) -> Path:
    path = folder / "federation.toml"
    path.write_text('[members.main]\npath = "main.fs"\n\n[members.other]\npath = "other.fs"\n')
    return path


def native_counts(folder: Path, *, records: bool = False) -> dict[str, int]:
    """How many 'm' and 'n' references (or records holding one) each file holds."""
    counts = {}
    for name in NAMES:
        storage = FileStorage(str(folder / f"{name}.fs"), read_only=True)
        try:
            found = [sum(1 for ref in references(storage.load(oid)[0])[1] if ref.form in "mn")
                     for oid in storage._index]
        finally:
            storage.close()
        counts[name] = sum(map(bool, found) if records else found)
    return counts


def all_records_load(folder: Path) -> None:
    """Plain ZODB opens every member and loads every record."""
    databases = _databases(folder)
    try:
        for _name, db in databases.items():
            with db.transaction() as conn:
                for oid in db.storage._index:
                    conn.get(oid)._p_activate()
    finally:
        for db in list(databases.values()):
            db.close()


def fsrefs_clean(folder: Path) -> None:
    """ZODB's fsrefs finds no broken reference in any file."""
    for name in NAMES:
        checked = subprocess.run([sys.executable, "-m", "ZODB.scripts.fsrefs",
                                  str(folder / f"{name}.fs")],
                                 capture_output=True, text=True, timeout=120)
        assert (checked.returncode, checked.stdout, checked.stderr) == (0, "", ""), name


def through_federation(folder: Path) -> None:
    with federation.open_config(config(folder)) as fed, \
            fed.open(transaction.TransactionManager()) as conn:
        roots = {name: conn.root(name) for name in ("main", "other")}
        roots["outside"] = {}
        main, other = roots["main"], roots["other"]
        assert main["attr"].link is other["attr"]
        assert all(main["big"][f"k{i:04}"] is other["many"][i] for i in range(BIG))
        assert AttributeAnnotations(main["annotated"])["myapp.note"] is other["note"]
        assert main["list"][0] is other["list"] and main["small"]["a"] is other["small"]
        assert main["mapping"]["target"] is other["mapping"]
        assert main["weak"]() is other["attr"]
        assert other["back"].link is main["page"]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    write(tmp_path)
    with native(tmp_path) as roots:
        follow(roots)
    return tmp_path


def _buckets(folder: Path) -> Iterator[Any]:
    """The buckets of main's big tree."""
    with native(folder) as roots:
        bucket = roots["main"]["big"]._firstbucket
        while bucket is not None:
            yield bucket
            bucket = bucket._next


def _zfed(*args: str) -> Any:
    result = CliRunner().invoke(main, list(args), prog_name="zfed", terminal_width=80)
    assert result.exit_code == 0, result.output
    return result.output


def test_dry_run_counts_per_member_and_class(folder: Path):
    """--dry-run counts records per member and class, and what stays; writes nothing."""
    before = {name: (folder / f"{name}.fs").stat().st_size for name in NAMES}
    output = _zfed("migrate", str(config(folder)), "--dry-run")
    buckets = len(list(_buckets(folder)))
    assert output.splitlines() == [
        f"main: would rewrite {BIG + 5} native reference(s) into stubs in {buckets + 5} record(s)",
        "main:   2 BTrees.OOBTree.OOBTree",  # the small tree and the annotations
        f"main:   {buckets} BTrees.OOBTree.OOBucket",
        "main:   1 persistent.list.PersistentList",
        "main:   1 persistent.mapping.PersistentMapping",
        "main:   1 tests.models.Item",
        "main:   1 left: references to database 'outside', which is no member",
        "main:   1 left: weak references (kept native, as ZODB keeps them)",
        "other: would rewrite 1 native reference(s) into stubs in 1 record(s)",
        "other:   1 tests.models.Item",
    ]
    assert before == {name: (folder / f"{name}.fs").stat().st_size for name in NAMES}


def test_migrate_into_stubs_and_back(folder: Path):
    """Into stubs: everything follows, plain ZODB loads every record, fsrefs is clean;
    --to-native: the native multi-database follows every reference again."""
    counts = native_counts(folder)
    assert counts["main"] == BIG + 6 and counts["other"] == 1  # one to outside
    output = _zfed("migrate", str(config(folder)), "--batch", "7")
    assert f"main: rewrote {BIG + 5} native reference(s) into stubs" in output
    assert native_counts(folder) == {"main": 1, "other": 0, "outside": 0}  # outside's stays
    through_federation(folder)
    all_records_load(folder)
    fsrefs_clean(folder)
    assert "rewrote 0 native reference(s)" in _zfed("migrate", str(config(folder)))

    output = _zfed("migrate", str(config(folder)), "--to-native")
    assert f"main: rewrote {BIG + 5} stub reference(s) into native ones" in output
    assert native_counts(folder) == counts
    with native(folder) as roots:
        follow(roots)
    all_records_load(folder)
    fsrefs_clean(folder)


def test_python_api_reports(folder: Path):
    """fed.migrate returns a report: records, references, classes, transactions."""
    with federation.open_config(config(folder)) as fed:
        report = fed.migrate(batch=100)
    assert report["main"].references == BIG + 5
    assert report["main"].transactions == -(-report["main"].records // 100)
    assert report["main"].classes["tests.test_migrate.Annotated"] == 0  # its tree holds it
    assert sum(report["main"].classes.values()) == report["main"].records
    assert report["other"].references == 1


def test_migrated_members_pack_and_follow(folder: Path):
    """After migration, fed.pack keeps every target (through stubs now)."""
    with federation.open_config(config(folder)) as fed:
        fed.migrate()
        dry = fed.pack(exclude=["outside"], dry_run=True)  # native references to it stay
        storage = fed.member("other").db.storage
        garbage = {record_class(storage.load(p64(oid))[0])
                   for oid in dry["other"].collectable}
        assert garbage <= {("federation.journal", "Marker")}  # of the multi-member commit
        assert fed.pack(exclude=["outside"])["other"].packed
    through_federation(folder)


def test_bad_batch_and_member_are_refused(folder: Path):
    """A batch size below 1 and an unknown member are refused before anything is written."""
    with federation.open_config(config(folder)) as fed:
        with pytest.raises(MigrationError, match="batch size"):
            fed.migrate(batch=0)
        with pytest.raises(federation.UnknownMember):
            fed.migrate(members=["nope"])
    assert native_counts(folder)["main"] == BIG + 6


def test_a_foreign_member_named_is_refused(folder: Path):
    """--member naming a foreign member: MigrationError naming it, before anything is
    written (it printed nothing and exited 0)."""
    from tests.test_adapter_sqlite import make_member

    people, _sqlite_path = make_member(folder, "people")
    members = {"main": (folder / "main.fs").as_uri(), "other": (folder / "other.fs").as_uri(),
               "people": people}
    with federation.open(members) as fed:
        with pytest.raises(MigrationError, match="Member 'people' is a foreign member"):
            fed.migrate(members=["main", "people"])
        assert list(fed.migrate(dry_run=True)) == ["main", "other"]
    assert native_counts(folder)["main"] == BIG + 6

CHILD = """
import os, signal, sys
import federation
steps = {"rewrite": 0, "committed": 0}
def hook(step):
    steps[step] += 1
    if steps["committed"] == 2 and steps["rewrite"] == 2 * 10 + 4:
        os.kill(os.getpid(), signal.SIGKILL)  # in the middle of the third commit
from federation.migrate import migrate
with federation.open_config(sys.argv[1]) as fed:
    migrate(fed, batch=10, hook=hook)
"""


def test_kill_mid_migration_then_rerun(folder: Path):
    """kill -9 during a commit: the committed batches stay, a rerun finishes, all correct."""
    root = Path(__file__).resolve().parent.parent
    child = subprocess.run([sys.executable, "-c", CHILD, str(config(folder))], cwd=root,
                           capture_output=True, text=True, timeout=120)
    assert child.returncode == -signal.SIGKILL, child.stderr
    holding = native_counts(folder, records=True)["main"]
    assert holding == len(list(_buckets(folder))) + 6 - 20  # two batches done, the third not
    output = _zfed("migrate", str(config(folder)))
    assert f"into stubs in {holding - 1} record(s)" in output  # the outside holder stays
    assert native_counts(folder) == {"main": 1, "other": 0, "outside": 0}
    through_federation(folder)
    all_records_load(folder)
    fsrefs_clean(folder)


def test_records_of_classes_that_cannot_be_imported(folder: Path, tmp_path: Path):
    """zfed migrate needs no application class: a record of an unknown class is rewritten."""
    module = tmp_path / "gone_app.py"
    module.write_text("from persistent import Persistent\n"
                      "import datetime\n"
                      "class Gone(Persistent):\n    pass\n"
                      "class Value:\n    pass\n")
    sys.path.insert(0, str(tmp_path))
    try:
        import gone_app
        with native(folder) as roots:
            gone = roots["main"]["gone"] = gone_app.Gone()
            value = gone_app.Value()
            value.when, value.target = "now", roots["other"]["attr"]
            gone.value, gone.items = value, {roots["other"]["list"], 3}
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("gone_app", None)
    module.unlink()
    _zfed("migrate", str(config(folder)))
    assert native_counts(folder)["main"] == 1
    sys.path.insert(0, str(tmp_path))
    module.write_text("from persistent import Persistent\n"
                      "class Gone(Persistent):\n    pass\n"
                      "class Value:\n    pass\n")
    try:
        with federation.open_config(config(folder)) as fed, \
                fed.open(transaction.TransactionManager()) as conn:
            gone = conn.root("main")["gone"]
            assert gone.value.when == "now"
            assert gone.value.target is conn.root("other")["attr"]
            assert conn.root("other")["list"] in gone.items and 3 in gone.items
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("gone_app", None)


def test_a_uuid_target_of_a_class_that_cannot_be_imported(folder: Path, tmp_path: Path):
    """A reference into a uuid member whose target has no UUID yet and a class this
    process cannot import: MigrationError naming the member, the oid and the class,
    before anything is written (it said the referrer could not be rewritten, because
    a broken object cannot be given a UUID)."""
    module = tmp_path / "gone_target.py"
    module.write_text("from persistent import Persistent\nclass Gone(Persistent):\n    pass\n")
    sys.path.insert(0, str(tmp_path))
    try:
        import gone_target
        with native(folder) as roots:
            roots["other"]["gone"] = gone_target.Gone()
        with native(folder) as roots:
            roots["main"]["to_gone"] = Item("holder", link=roots["other"]["gone"])
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("gone_target", None)
    module.unlink()
    path = config(folder)
    path.write_text(path.read_text() + 'key = "uuid"\n')
    before = native_counts(folder)
    with federation.open_config(path) as fed, pytest.raises(
            MigrationError, match=r"Member 'other': the object with oid \d+, which member "
                                  r"'main' references, .* gone_target\.Gone cannot be imported"):
        fed.migrate()
    assert native_counts(folder) == before

def test_stub_records_are_plain_zodb(folder: Path):
    """What migration adds to a member is stub records and the catalog, which ZODB loads."""
    _zfed("migrate", str(config(folder)))
    db = ZODB.DB(FileStorage(str(folder / "other.fs"), read_only=True))
    try:
        with db.transaction() as conn:
            link = conn.root()["back"].link
            assert isinstance(link, Stub)
    finally:
        db.close()


def test_into_a_uuid_member_and_back(folder: Path):
    """References into a member named by uuid keys: the targets get UUIDs and indexed
    stubs; --to-native finds their oids again."""
    path = config(folder)
    path.write_text(path.read_text() + 'key = "uuid"\n')
    with federation.open_config(path) as fed:
        fed.migrate(batch=50)
        assert [finding.kind for finding in fed.check().findings] == ["dangling"]  # outside
        with fed.open(transaction.TransactionManager()) as conn:
            main, other = conn.root("main"), conn.root("other")
            assert main["attr"].link is other["attr"]
            assert {stub.target.kind for stub in conn.stubs("main")} == {"uuid"}
        fed.migrate(to_native=True)
    with native(folder) as roots:
        follow(roots)


def test_to_native_leaves_stubs_of_foreign_records(folder: Path):
    """--to-native: a stub naming a foreign member's record stays, and is counted."""
    from tests.test_adapter_sqlite import make_member, seeder

    people, sqlite_path = make_member(folder, "people")
    seeder(sqlite_path)(1, {"name": "Ada"})
    members = {"main": (folder / "main.fs").as_uri(), "other": (folder / "other.fs").as_uri(),
               "people": people}
    tm = transaction.TransactionManager()
    with federation.open(members) as fed:
        fed.migrate()
        with fed.open(tm) as conn:
            conn.root("main")["author"] = Item("author", link=conn.get("people:integer:1"))
            tm.commit()
        report = fed.migrate(to_native=True)
        assert report["main"].left == {
            "stubs naming records of foreign member 'people' (they stay)": 1}
        assert report["main"].references == BIG + 5
        with fed.open(tm) as conn:
            assert conn.root("main")["author"].link.name == "Ada"
            assert conn.root("main")["attr"].link is conn.root("other")["attr"]
    assert native_counts(folder)["main"] == BIG + 6


def test_read_only_member_is_refused(folder: Path):
    """A read-only member with references to migrate: MigrationError, nothing written."""
    members = {"main": {"uri": (folder / "main.fs").as_uri(), "read_only": True},
               "other": (folder / "other.fs").as_uri()}
    with federation.open(members) as fed, pytest.raises(MigrationError, match="'main'"):
        fed.migrate(members=["main"])
    assert native_counts(folder)["main"] == BIG + 6


def test_read_only_member_is_refused_before_another_is_written(folder: Path):
    """A read-only member with references to migrate, listed after a writable one:
    MigrationError naming it, and the writable member is not rewritten either."""
    members = {"main": (folder / "main.fs").as_uri(),
               "other": {"uri": (folder / "other.fs").as_uri(), "read_only": True}}
    before = native_counts(folder)
    with federation.open(members) as fed, pytest.raises(MigrationError, match="'other'"):
        fed.migrate()
    assert native_counts(folder) == before
    with federation.open(members) as fed:
        report = fed.migrate(members=["main"])
        assert list(report) == ["main"] and report["main"].records
        assert list(fed.migrate(dry_run=True)) == ["main", "other"]  # the order given


def test_a_record_that_cannot_be_rebuilt_writes_nothing(folder: Path, monkeypatch):
    """A record whose pickle cannot be rebuilt: MigrationError naming it; its batch is undone."""
    from federation import repickle

    real = repickle.rewrite

    def failing(record: bytes, replace: Any) -> bytes | None:
        if b"many 3" in record or b"holder" in record:
            raise repickle.RewriteError("an extension code")
        return real(record, replace)

    monkeypatch.setattr(repickle, "rewrite", failing)
    with federation.open_config(config(folder)) as fed, \
            pytest.raises(MigrationError, match=r"'main': the record with oid \d+"):
        fed.migrate(members=["main"])
    assert native_counts(folder)["main"] == BIG + 6


class _Terminal(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def test_progress_is_shown_on_a_terminal(folder: Path, monkeypatch: pytest.MonkeyPatch):
    """zfed migrate shows the scan and the rewrite of each member on a terminal."""
    terminal = _Terminal()
    monkeypatch.setattr(cli, "_Progress", functools.partial(cli._Progress, terminal))
    _zfed("migrate", str(config(folder)), "--batch", "5")
    shown = terminal.getvalue()
    assert "scan main" in shown and "rewrite main" in shown and "rewrite other" in shown
    calls: list[tuple[str, int, int | None]] = []
    with federation.open_config(config(folder)) as fed:
        report = fed.migrate(to_native=True, batch=10,
                             progress=lambda *call: calls.append(call))
    records = report["main"].records
    assert [call for call in calls if call[0] == "rewrite main"] == [
        ("rewrite main", min(done, records), records) for done in range(10, records + 10, 10)]
    assert calls[0][0] == "scan main" and calls[0][1] == calls[0][2]


def test_a_record_changed_meanwhile_is_read_again(folder: Path):
    """Another transaction changes a record while its batch commits: the batch is retried
    and the record keeps both that change and its new stub reference."""
    from federation.migrate import migrate

    changed: list[bool] = []
    rewrites: list[str] = []
    with federation.open_config(config(folder)) as fed:
        def hook(step: str) -> None:
            rewrites.append(step)
            if step == "rewrite" and not changed:
                tm = transaction.TransactionManager()
                with fed.open(tm) as conn:
                    conn.root("main")["attr"].title = "changed meanwhile"
                    tm.commit()
                changed.append(True)

        report = migrate(fed, members=["main"], batch=1000, hook=hook)
        assert report["main"].transactions == 1
        assert rewrites.count("rewrite") > report["main"].records  # the batch ran twice
        with fed.open(transaction.TransactionManager()) as conn:
            holder = conn.root("main")["attr"]
            assert holder.title == "changed meanwhile"
            assert holder.link is conn.root("other")["attr"]
    assert native_counts(folder)["main"] == 1


def test_an_unavailable_member_is_refused_before_anything_is_written(folder: Path):
    """A member that cannot be reached: MemberUnavailable naming it; no member is changed."""
    members = {"main": (folder / "main.fs").as_uri(), "other": (folder / "other.fs").as_uri(),
               "remote": "zeo://127.0.0.1:1?wait_timeout=1"}
    before = {name: (folder / f"{name}.fs").stat().st_size for name in NAMES}
    with federation.open(members) as fed, \
            pytest.raises(federation.MemberUnavailable, match="'remote'"):
        fed.migrate()
    assert before == {name: (folder / f"{name}.fs").stat().st_size for name in NAMES}


def test_to_native_rewrites_stub_references_a_plain_zodb_process_left_bare(tmp_path: Path):
    """--to-native also rewrites the bare-oid stub references a process without
    ``federation`` writes: the native application then reads the targets, not stubs."""
    from tests.test_plain_writers import PLAIN_WRITER, _bare_stub_references

    uris = {name: (tmp_path / f"{name}.fs").as_uri() for name in ("main", "people")}
    with federation.open(uris) as fed, fed.open(transaction.TransactionManager()) as conn:
        ada = conn.root("people")["ada"] = Item("Ada")
        conn.add(ada, "people")
        holders = conn.root("main")["holders"] = PersistentMapping()
        holders["mapping"] = PersistentMapping(target=ada)
        holders["list"] = PersistentList([ada])
        holders["tree"] = OOBTree({"target": ada})
        conn.transaction_manager.commit()
    subprocess.run([sys.executable, "-c", PLAIN_WRITER, str(tmp_path / "main.fs")],
                   capture_output=True, text=True, check=True, timeout=120)
    assert _bare_stub_references(tmp_path / "main.fs") == 3
    with federation.open(uris) as fed:
        assert fed.migrate(to_native=True)["main"].references == 3
    assert _bare_stub_references(tmp_path / "main.fs") == 0
    databases: dict[str, ZODB.DB] = {}
    for name in ("main", "people"):
        ZODB.DB(FileStorage(str(tmp_path / f"{name}.fs")), databases=databases,
                database_name=name)
    try:
        with databases["main"].transaction() as conn:
            holders = conn.root()["holders"]
            targets = [holders["mapping"]["target"], holders["list"][0],
                       holders["tree"]["target"]]
            assert [target.title for target in targets] == ["Ada"] * 3
            assert all(target._p_jar.db() is databases["people"] for target in targets)
    finally:
        for db in list(databases.values()):
            db.close()


def test_after_to_native_a_plain_zodb_pack_then_migrate_names_no_missing_stub(folder: Path):
    """--to-native unindexes the stubs it leaves unreferenced: ZODB's own pack of the
    native application removes them, and migrating again makes new stubs, not references
    to the removed ones."""
    with federation.open_config(config(folder)) as fed:
        fed.migrate()
        fed.migrate(to_native=True)
    for name in ("main", "other"):  # the application, native again, packs each database
        db = ZODB.DB(FileStorage(str(folder / f"{name}.fs")))
        try:
            db.pack(days=-1)
        finally:
            db.close()
    with federation.open_config(config(folder)) as fed:
        fed.migrate()
        assert [finding.kind for finding in fed.check().findings] == ["dangling"]  # outside
    through_federation(folder)
    all_records_load(folder)
    fsrefs_clean(folder)


def test_to_native_then_pack_and_migrate_again_in_one_process(folder: Path):
    """After --to-native, check reports the replaced stubs as garbage only; the
    federation's pack removes them and migrating again, in the same process (whose
    connections cached the stubs), makes new stubs."""
    with federation.open_config(config(folder)) as fed:
        fed.migrate()
        fed.migrate(to_native=True)
        kinds = {finding.kind for finding in fed.check().findings}
        assert kinds == {"dangling", "unreferenced-stub"}  # outside, and the old stubs
        fed.pack(exclude=["outside"])
        fed.migrate()
        assert [finding.kind for finding in fed.check().findings] == ["dangling"]
    through_federation(folder)
    fsrefs_clean(folder)
