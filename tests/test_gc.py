"""The federation's garbage collector: what it keeps, what it collects, when it refuses."""

from __future__ import annotations

import io
import pickle
import sys
from pathlib import Path

import pytest
import transaction
import ZEO
from ZODB.POSException import POSKeyError
from ZODB.serialize import referencesf

import federation
from federation import gc
from federation.catalog import CATALOG_ATTRIBUTE
from tests.models import Item, Person
from tests.test_adapter_sqlite import make_member


def _exists(fed: federation.Federation, member: str, oid: bytes) -> bool:
    try:
        fed.member(member).db.storage.load(oid)
    except POSKeyError:
        return False
    return True


def _only_notes_references(fed: federation.Federation, title: str) -> bytes:
    """The oid of a new object of 'main' that only an object of 'notes' references."""
    with fed.open() as conn:
        orphan = Item(title)
        conn.add(orphan, "main")
        transaction.commit()
        conn.root("notes")["note"] = Item("note", link=orphan)
        transaction.commit()
        return orphan._p_oid


@pytest.mark.server
def test_pack_refuses_when_a_member_cannot_be_read(tmp_path):
    """With a ZEO member down, pack refuses, naming it; nothing of the others is collected."""
    (host, port), stop = ZEO.server(path=str(tmp_path / "main.fs"), port=("127.0.0.1", 0),
                                    threaded=True)
    uris = {"main": f"zeo://{host}:{port}?wait_timeout=1", "notes": (tmp_path / "n.fs").as_uri()}
    with federation.open(uris) as fed, fed.open() as conn:
        target = conn.root("notes")["kept"] = Item("only main references me")
        transaction.commit()
        del conn.root("notes")["kept"]
        conn.root("main")["link"] = Item("link", link=target)
        transaction.commit()
        oid = target._p_oid
    stop()
    with federation.open(uris) as fed:
        assert not fed.member("main").available
        with pytest.raises(federation.CollectionRefused, match="'main' cannot be read") as caught:
            fed.pack()
        assert "exclude" in str(caught.value)
        assert _exists(fed, "notes", oid)
        # Excluding it is explicit, and does what the documentation warns about.
        report = fed.pack(exclude=["main"])
        assert report.excluded == ("main",) and report["notes"].packed
        assert not _exists(fed, "notes", oid)


def test_unknown_excluded_member_is_refused(fed):
    """Excluding a member the federation does not have is an error naming it."""
    with pytest.raises(federation.CollectionRefused, match="'nope'"):
        fed.pack(exclude=["nope"])


def test_sql_reference_is_the_only_reference(tmp_path):
    """An object that only a SQL row's Ref column references survives the pack."""
    people, _ = make_member(tmp_path, "people")
    members = {"main": (tmp_path / "main.fs").as_uri(), "people": people}
    with federation.open(members) as fed:
        with fed.open() as conn:
            owner = Item("owned by a row")
            conn.add(owner, "main")
            person = Person("Ada", owner=owner)
            conn.add(person, "people")
            transaction.commit()
            ref, oid = conn.ref(person), owner._p_oid
        fed.pack()
        fed.pack()
        assert _exists(fed, "main", oid)
        with fed.open() as conn:
            assert conn.get(ref).owner.title == "owned by a row"
            conn.get(ref).owner = None
            transaction.commit()
        fed.pack()
        assert not _exists(fed, "main", oid)


def test_cross_member_cycle_is_collected(fed):
    """Garbage forming a cycle across two members is collected by one pack."""
    with fed.open() as conn:
        a = conn.root("main")["a"] = Item("a")
        transaction.commit()
        b = conn.root("notes")["b"] = Item("b", link=a)
        transaction.commit()
        a.link = b
        transaction.commit()
        oids = {"main": a._p_oid, "notes": b._p_oid}
        stubs = {name: [s.oid for s in conn.stubs(name)] for name in ("main", "notes")}
        del conn.root("main")["a"], conn.root("notes")["b"]
        transaction.commit()
    report = fed.pack()
    for name, oid in oids.items():
        assert not _exists(fed, name, oid), name
        assert int.from_bytes(oid, "big") in report[name].collectable
    with fed.open() as conn:
        assert conn.stubs("main") == conn.stubs("notes") == []
    assert all(stubs.values())


def test_cycle_inside_a_member_with_a_live_cross_reference_is_kept(fed):
    """A cycle still reachable through another member's stub is kept."""
    with fed.open() as conn:
        a = Item("a")
        conn.add(a, "main")
        a.link = Item("a2", link=a)
        transaction.commit()
        conn.root("notes")["n"] = Item("n", link=a)
        transaction.commit()
    fed.pack()
    with fed.open() as conn:
        a = conn.root("notes")["n"].link
        assert (a.link.title, a.link.link is a) == ("a2", True)
        transaction.abort()


def test_dry_run_lists_what_would_be_collected(fed):
    """dry_run reports, per member, the objects a pack would collect, and changes nothing."""
    with fed.open() as conn:
        gone = conn.root("main")["gone"] = Item("gone")
        transaction.commit()
        del conn.root("main")["gone"]
        transaction.commit()
    oid = gone._p_oid
    size = Path(fed.member("main").db.storage.getName()).stat().st_size
    report = fed.pack(dry_run=True)
    assert report.dry_run
    assert int.from_bytes(oid, "big") in report["main"].collectable
    assert report["notes"].collectable == []
    assert "would collect 1" in report.summary()
    assert Path(fed.member("main").db.storage.getName()).stat().st_size == size
    assert _exists(fed, "main", oid)


# -- commits that land while the collector runs ----------------------------------

STEPS = ["open", "marked", "scanned", "keep_alive", "verified", "pack main", "packed main",
         "pack notes", "packed notes", "pruned"]


def _move_to_notes(fed: federation.Federation) -> None:
    """In one transaction: main's root drops 'x', notes' root references it instead."""
    tm = transaction.TransactionManager()
    with fed.open(tm) as conn:
        x = conn.root("main")["x"]
        del conn.root("main")["x"]
        conn.root("notes")["x"] = Item("holder", link=x)
        tm.commit()


def _move_to_main(fed: federation.Federation) -> None:
    """In one transaction: notes' holder of 'x' goes, main's root references 'x' itself."""
    tm = transaction.TransactionManager()
    with fed.open(tm) as conn:
        x = conn.root("notes")["x"].link
        del conn.root("notes")["x"]
        conn.root("main")["x"] = x
        tm.commit()


@pytest.mark.parametrize("step", STEPS)
@pytest.mark.parametrize("move", [_move_to_notes, _move_to_main], ids=["to-notes", "to-main"])
def test_commit_during_pack_keeps_what_it_references(fed, step, move):
    """A commit that moves the only reference to an object across members, at any step, loses
    nothing: the object loads afterwards, and after one more pack."""
    with fed.open() as conn:
        x = Item("x", link=Item("child of x"))
        if move is _move_to_notes:
            conn.root("main")["x"] = x
        else:
            conn.add(x, "main")
            conn.root("notes")["x"] = Item("holder", link=x)
        transaction.commit()
    seen = []

    def hook(name: str) -> None:
        if name == step and not seen:
            seen.append(name)
            move(fed)

    fed.pack(hook=hook)
    assert seen == [step]
    for _ in range(2):
        with fed.open() as conn:
            moved = move is _move_to_notes
            x = conn.root("notes")["x"].link if moved else conn.root("main")["x"]
            assert (x.title, x.link.title) == ("x", "child of x")
            transaction.abort()
        fed.pack()


@pytest.mark.parametrize("step", STEPS)
def test_a_new_reference_reusing_an_unreferenced_stub_during_pack(fed, step):
    """A stub nothing references, whose target lives, is reused by a new reference committed at
    any step of the pack: the stub is kept, and the reference loads then and after more packs."""
    with fed.open() as conn:
        target = conn.root("notes")["target"] = Item("target")
        transaction.commit()
        conn.root("main")["old"] = Item("old", link=target)
        transaction.commit()
        del conn.root("main")["old"]  # the stub in main is referenced by nothing now
        transaction.commit()
        [stub] = conn.stubs("main")
    seen = []

    def reference_again(name: str) -> None:
        if name == step and not seen:
            seen.append(name)
            tm = transaction.TransactionManager()
            with fed.open(tm) as other:
                other.root("main")["new"] = Item("new", link=other.root("notes")["target"])
                tm.commit()
                assert other.stubs("main") == [stub]  # reused, not a new stub

    fed.pack(hook=reference_again)
    for _ in range(2):
        with fed.open() as conn:
            assert conn.root("main")["new"].link.title == "target"
            transaction.abort()
        fed.pack()


@pytest.fixture
def zeo_uris(tmp_path):
    """Two ZEO servers (main, notes) on free loopback ports; their URIs."""
    stops, uris = [], {}
    for name in ("main", "notes"):
        (host, port), stop = ZEO.server(path=str(tmp_path / f"{name}.fs"),
                                        port=("127.0.0.1", 0), threaded=True)
        stops.append(stop)
        uris[name] = f"zeo://{host}:{port}?wait_timeout=5"
    yield uris
    for stop in stops:
        stop()


@pytest.mark.server
@pytest.mark.parametrize("step", ["marked", "keep_alive", "verified", "pack main"])
def test_commit_from_another_client_during_pack(zeo_uris, step):
    """On ZEO, a commit by another client (its own storages, as another process has) that
    moves the only reference across members at a step of the pack loses nothing."""
    with federation.open(zeo_uris) as other, other.open() as conn:
        conn.root("main")["x"] = Item("x", link=Item("child of x"))
        transaction.commit()
    seen = []

    def hook(name: str) -> None:
        if name == step and not seen:
            seen.append(name)
            with federation.open(zeo_uris) as other:
                _move_to_notes(other)

    with federation.open(zeo_uris) as fed:
        fed.pack(hook=hook)
        assert seen == [step]
    with federation.open(zeo_uris) as fed:
        fed.pack()
        with fed.open() as conn:
            x = conn.root("notes")["x"].link
            assert (x.title, x.link.title) == ("x", "child of x")
            transaction.abort()


def test_steps_are_the_documented_ones(fed):
    """The hook sees the steps gc.STEPS documents, in order; pack and packed once per member."""
    seen: list[str] = []
    fed.pack(hook=seen.append)
    assert [s.split()[0] for s in seen] == ["open", "marked", "scanned", "keep_alive",
                                           "verified", "pack", "packed", "pack", "packed",
                                           "pack", "packed", "pruned"]
    assert {s.split()[0] for s in seen} == set(gc.STEPS)


# -- keep_alive without the application's classes -------------------------------

MODULE = '''
from persistent import Persistent

class Thing(Persistent):
    def __init__(self, title):
        self.title = title
'''


class _Refs(pickle.Unpickler):
    """Collects a record's persistent references, with globals as (module, name)."""

    def __init__(self, data: bytes) -> None:
        super().__init__(io.BytesIO(data))
        self.refs: list[object] = []

    def find_class(self, module: str, name: str) -> tuple[str, str]:
        return (module, name)

    def persistent_load(self, pid: object) -> None:
        self.refs.append(pid)


def test_keep_alive_keeps_oid_class_references_without_the_classes(fed, tmp_path, monkeypatch):
    """Written by a process that cannot import the targets' class, keep_alive still holds
    standard (oid, class) references: what referencesf and zc.zodbdgc read."""
    (tmp_path / "gc_thing_module.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    import gc_thing_module

    with fed.open() as conn:
        thing = gc_thing_module.Thing("thing")
        conn.add(thing, "main")
        transaction.commit()
        conn.root("notes")["t"] = Item("t", link=thing)
        transaction.commit()
        oid = thing._p_oid
    monkeypatch.delitem(sys.modules, "gc_thing_module")
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p != str(tmp_path)])
    for db in (fed.member(name).db for name in ("main", "notes")):
        db.cacheMinimize()
        db.pool.clear()
    fed._idle.clear()

    fed.pack()
    assert "gc_thing_module" not in sys.modules
    with fed.member("main").db.transaction() as conn:
        keep_alive = getattr(conn.root(), CATALOG_ATTRIBUTE).keep_alive
        record = fed.member("main").db.storage.load(keep_alive._p_oid)[0]
    reader = _Refs(record)
    reader.load()
    reader.load()
    assert reader.refs == [(oid, ("gc_thing_module", "Thing"))]
    assert referencesf(record) == [oid]
    assert _exists(fed, "main", oid)


def test_days_packs_in_the_past_only_when_keep_alive_protected_it(fed, monkeypatch):
    """With days, a member whose objects other members reference only since then is left
    unpacked, saying why; the objects survive, and a pack without days then proceeds."""
    from persistent.TimeStamp import TimeStamp

    with fed.open() as conn:
        x = conn.root("main")["x"] = Item("x")
        transaction.commit()
    _move_to_notes(fed)
    moved = fed.member("notes").db.storage.lastTransaction()
    monkeypatch.setattr(gc.time, "time", lambda: TimeStamp(moved).timeTime() + 0.5 + 86400)
    report = fed.pack(days=1)
    assert not report["main"].packed
    assert "not kept alive 1 days ago" in report["main"].note
    assert report["notes"].packed
    assert _exists(fed, "main", x._p_oid)
    monkeypatch.undo()
    report = fed.pack(days=1)  # a day ago everything was new: nothing unprotected then
    assert report["main"].packed
    with fed.open() as conn:
        assert conn.root("notes")["x"].link.title == "x"
        transaction.abort()


def test_pack_gives_up_when_cross_references_never_settle(fed, monkeypatch):
    """If every keep-alive round finds a new cross-member reference, nothing is packed."""
    monkeypatch.setattr(gc, "MAX_ROUNDS", 3)
    made = []

    def keep_referencing(step: str) -> None:
        if step == "keep_alive":
            tm = transaction.TransactionManager()
            with fed.open(tm) as conn:
                target = Item(f"t{len(made)}")
                conn.add(target, "main")
                conn.root("notes")[f"n{len(made)}"] = Item("n", link=target)
                tm.commit()
                made.append(target._p_oid)

    with pytest.raises(federation.CollectionRefused, match="3 rounds"):
        fed.pack(hook=keep_referencing)
    assert len(made) == 3
    assert all(_exists(fed, "main", oid) for oid in made)


def test_pack_refuses_when_stubs_name_a_database_left_out(tmp_path):
    """Stubs naming a member missing from the configuration stop the pack; --exclude accepts it."""
    full = {name: (tmp_path / f"{name}.fs").as_uri() for name in ("main", "notes", "extra")}
    with federation.open(full) as fed, fed.open() as conn:
        kept = conn.root("main")["kept"] = Item("kept")  # only 'extra' will reference it
        transaction.commit()
        conn.root("extra")["link"] = Item("link", link=kept)
        transaction.commit()
        del conn.root("main")["kept"]
        conn.root("notes")["to_extra"] = Item("to extra", link=conn.root("extra")["link"])
        transaction.commit()
    partial = {name: full[name] for name in ("main", "notes")}
    with federation.open(partial) as fed:
        with pytest.raises(federation.CollectionRefused, match=r"'extra'.*--exclude extra"):
            fed.pack()
        with pytest.raises(federation.CollectionRefused, match="Cannot exclude 'nope'"):
            fed.pack(exclude=["extra", "nope"])
    with federation.open(full) as fed, fed.open() as conn:
        assert conn.root("extra")["link"].link.title == "kept"  # nothing was collected
