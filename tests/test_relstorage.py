"""RelStorage on PostgreSQL as a member: references, commits, conflicts, pack, zfed, failures.

Every test runs against the real PostgreSQL server of the session, with
RelStorage databases owned by a role that must give its password
(:mod:`tests.servers.relstorage`), history-free and history-preserving.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import transaction
from BTrees.OOBTree import OOBTree
from click.testing import CliRunner
from persistent.mapping import PersistentMapping

import federation
from federation import gc
from federation.adapters import relstorage
from federation.cli import main
from tests.models import Item
from tests.servers import free_port
from tests.servers.relstorage import PASSWORD, RelStorageDatabases

pytest.importorskip("relstorage")

pytestmark = pytest.mark.server


@pytest.fixture(params=[False, True], ids=["history-free", "history-preserving"])
def history(request: pytest.FixtureRequest) -> bool:
    """Whether the RelStorage member keeps history."""
    return request.param


@pytest.fixture
def rs_uri(relstorage_databases: RelStorageDatabases, history: bool) -> str:
    """The postgres:// URI of a new RelStorage database (with its password)."""
    return relstorage_databases.uri(history=history)


@pytest.fixture
def members(tmp_path: Path, rs_uri: str) -> dict[str, str]:
    """A FileStorage member ``main`` and a RelStorage member ``rs``."""
    return {"main": (tmp_path / "main.fs").as_uri(), "rs": rs_uri}


@pytest.fixture
def fed(members: dict[str, str]) -> Iterator[federation.Federation]:
    """The federation of ``members``."""
    opened = federation.open(members)
    yield opened
    transaction.abort()
    opened.close()


def _config(tmp_path: Path, members: dict[str, str], **read_only: bool) -> Path:
    config = tmp_path / "federation.toml"
    config.write_text("".join(
        f'[members.{name}]\nuri = "{uri}"\n'
        + (f"read_only = {str(read_only[name]).lower()}\n" if name in read_only else "")
        for name, uri in members.items()))
    return config


def _texts(*values: Any) -> str:
    """Every message and repr of ``values`` and of the errors they were raised from."""
    texts = []
    for value in values:
        texts += [str(value), repr(value)]
        while isinstance(value, BaseException) and (value.__cause__ or value.__context__):
            value = value.__cause__ or value.__context__
            texts += [str(value), repr(value)]
    return "\n".join(texts)


# -- references, reopen, storage objects -------------------------------------------


def test_references_both_ways_survive_a_reopen(members):
    """FileStorage -> RelStorage and RelStorage -> FileStorage references load after a reopen."""
    with federation.open(members) as fed, fed.open() as conn:
        page = conn.root("main")["page"] = Item("page")
        transaction.commit()
        note = conn.root("rs")["note"] = Item("note", link=page)
        transaction.commit()
        page.link = note
        transaction.commit()
    with federation.open(members) as fed, fed.open() as conn:
        page, note = conn.root("main")["page"], conn.root("rs")["note"]
        assert page.link is note and note.link is page
        assert conn.get(conn.ref(note)) is note and conn.ref(note).member == "rs"
        assert len(conn.stubs("main")) == len(conn.stubs("rs")) == 1
        transaction.abort()


def test_a_relstorage_object_as_member(tmp_path, relstorage_databases, history):
    """A RelStorage built by the application is a member like a URI, with a stable lock key."""
    from relstorage.adapters.postgresql import PostgreSQLAdapter
    from relstorage.options import Options
    from relstorage.storage import RelStorage

    server, name = relstorage_databases.server, relstorage_databases.create()
    dsn = (f"dbname={name} user=zfed_relstorage password={PASSWORD} host={server.host} "
           f"port={server.port}")

    def storage() -> RelStorage:
        options = Options(keep_history=history)
        return RelStorage(PostgreSQLAdapter(dsn=dsn, options=options), options=options)

    keys = []
    for _ in range(2):
        members = {"main": (tmp_path / "main.fs").as_uri(), "rs": storage()}
        with federation.open(members) as fed, fed.open() as conn:
            if "item" not in conn.root("rs"):
                conn.root("rs")["item"] = Item("item", link=conn.root("main"))
                transaction.commit()
            assert conn.root("rs")["item"].link is conn.root("main")
            keys.append(conn.jar("rs").lock_key())
            transaction.abort()
    assert keys[0] == keys[1] and PASSWORD not in keys[0]


def test_a_filestorage_member_moved_to_relstorage_with_zodbconvert(tmp_path,
                                                                  relstorage_databases, history):
    """zodbconvert copies a FileStorage member into RelStorage with its oids and catalog: with
    the member's URI changed, references both ways load, and new ones are made."""
    members = {name: (tmp_path / f"{name}.fs").as_uri() for name in ("main", "notes")}
    with federation.open(members) as fed, fed.open() as conn:
        page = conn.root("main")["page"] = Item("page")
        transaction.commit()
        note = conn.root("notes")["note"] = Item("note", link=page)
        transaction.commit()
        page.link = note
        transaction.commit()
        notes_id = fed.members["notes"].member_id
    server, database = relstorage_databases.server, relstorage_databases.create(history)
    config = tmp_path / "zodbconvert.conf"
    config.write_text(
        f"%import relstorage\n<filestorage source>\n  path {tmp_path / 'notes.fs'}\n"
        f"</filestorage>\n<relstorage destination>\n  keep-history {str(history).lower()}\n"
        f"  <postgresql>\n    dsn dbname={database} user=zfed_relstorage "
        f"password={PASSWORD} host={server.host} port={server.port}\n  </postgresql>\n"
        "</relstorage>\n")
    converted = subprocess.run([sys.executable, "-m", "relstorage.zodbconvert", str(config)],
                               capture_output=True, text=True, check=False)
    assert converted.returncode == 0, converted.stderr
    members["notes"] = relstorage_databases.uri(history=history, database=database)
    with federation.open(members) as fed, fed.open() as conn:
        assert fed.members["notes"].member_id == notes_id
        page, note = conn.root("main")["page"], conn.root("notes")["note"]
        assert page.link is note and note.link is page
        conn.root("notes")["new"] = Item("new", link=page)
        transaction.commit()
        assert len(conn.stubs("notes")) == 1  # the existing stub, reused
        transaction.abort()


def test_lock_key_is_the_same_in_every_process(members):
    """Two openings of the same RelStorage database order its locks alike (no address in the
    key), so two processes never take two members' locks in opposite orders."""
    keys = []
    for _ in range(2):
        with federation.open(members) as fed, fed.open() as conn:
            keys.append(conn.jar("rs").lock_key())
    assert keys[0] == keys[1]
    assert PASSWORD not in keys[0] and " at 0x" not in keys[0] and " at 7f" not in keys[0]


def test_storage_name_is_the_settings_without_the_password():
    """The name given to a RelStorage (its lock key) is its settings in a fixed order, without
    the password, even one with spaces or an equals sign."""
    quoted = "dbname='app' user='app' password='two words = tricky' host='db' port='5432'"
    reordered = "port='5432' password='two words = tricky' host='db' user='app' dbname='app'"
    name = relstorage.stable_name(quoted, keep_history=False)
    assert name == relstorage.stable_name(reordered, keep_history=False)
    assert name == "RelStorage (history-free): dbname='app' host='db' port='5432' user='app'"
    plain = relstorage.stable_name("host=db password=Secret-1 dbname=app", keep_history=True)
    assert plain == "RelStorage (history-preserving): dbname=app host=db"


# -- concurrent commits ---------------------------------------------------------------


def _increment(fed: federation.Federation, rounds: int, barrier: threading.Barrier,
               tries: list[int], errors: list[BaseException]) -> None:
    """``rounds`` transactions over both members; each first try waits until both threads
    have read the counter, so that exactly one of them conflicts and is retried."""
    tm = transaction.TransactionManager()
    try:
        with fed.open(tm) as conn:
            for _ in range(rounds):
                first = True
                for attempt in tm.attempts(10):
                    with attempt:
                        tries.append(1)
                        counter = conn.root("rs")["counter"]
                        value = counter["value"]
                        if first:
                            first = False
                            barrier.wait(30)
                        counter["value"] = value + 1
                        conn.root("main")["last"] = Item("last", link=counter)
    except BaseException as error:
        errors.append(error)
        barrier.abort()


def test_conflicting_commits_from_two_threads_are_retried_to_success(fed):
    """Two threads change the same RelStorage object in transactions over both members at once:
    one conflicts in each round, attempts() retries it, and no increment is lost."""
    with fed.open() as conn:
        conn.root("rs")["counter"] = PersistentMapping(value=0)
        transaction.commit()
    rounds, barrier = 4, threading.Barrier(2)
    tries: list[int] = []
    errors: list[BaseException] = []
    threads = [threading.Thread(target=_increment, args=(fed, rounds, barrier, tries, errors))
               for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(tries) >= 3 * rounds  # at least one retry per round
    with fed.open() as conn:
        assert conn.root("rs")["counter"]["value"] == 2 * rounds
        assert conn.root("main")["last"].link is conn.root("rs")["counter"]
        transaction.abort()


def test_btree_conflicts_are_resolved(fed):
    """Two transactions over both members add different keys to the same RelStorage BTree
    bucket concurrently: BTrees' conflict resolution merges them, nothing is retried.

    (Two transactions that both make the *first* stub of one target do conflict: one stub per
    target; here it exists already.)"""
    with fed.open() as conn:
        conn.root("rs")["tree"] = OOBTree({"a": conn.root("main")})  # the stub exists
        conn.root("main")["one"], conn.root("main")["two"] = Item("one"), Item("two")
        transaction.commit()
    first, second = transaction.TransactionManager(), transaction.TransactionManager()
    with fed.open(first) as one, fed.open(second) as two:
        one.root("rs")["tree"]["b"] = Item("b", link=one.root("main"))
        two.root("rs")["tree"]["c"] = Item("c", link=two.root("main"))
        one.root("main")["one"].title = "changed by one"
        two.root("main")["two"].title = "changed by two"
        first.commit()
        second.commit()
    with fed.open() as conn:
        tree = conn.root("rs")["tree"]
        assert sorted(tree) == ["a", "b", "c"]
        assert tree["b"].link is tree["c"].link is conn.root("main")
        transaction.abort()


# -- pack --------------------------------------------------------------------------------


def _exists(members: dict[str, str], member: str, oid: bytes) -> bool:
    """Whether ``member`` still holds the record ``oid`` (read in a fresh federation)."""
    with federation.open(members) as fed:
        try:
            fed.members[member].db.storage.load(oid)
        except KeyError:
            return False
        return True


def _garbage_and_stub_only(fed: federation.Federation) -> tuple[bytes, bytes]:
    """In rs: garbage, and an object only main references; their oids."""
    with fed.open() as conn:
        garbage = conn.root("rs")["garbage"] = Item("garbage", link=Item("garbage child"))
        only = conn.root("rs")["tmp"] = Item("only through a stub", link=Item("its child"))
        transaction.commit()
        conn.root("main")["only"] = only
        del conn.root("rs")["tmp"], conn.root("rs")["garbage"]
        transaction.commit()
        return garbage._p_oid, only._p_oid


def test_pack_keeps_what_stubs_reach_and_collects_garbage(fed, members):
    """fed.pack() keeps the RelStorage objects that only main's stub reaches, and removes
    RelStorage's garbage (history-free: RelStorage's own collector, fed the federation's
    keep-alive set)."""
    garbage, only = _garbage_and_stub_only(fed)
    report = fed.pack()
    assert report["rs"].packed and report["main"].packed
    assert garbage in {oid.to_bytes(8, "big") for oid in report["rs"].collectable}
    fed.close()
    assert not _exists(members, "rs", garbage) and _exists(members, "rs", only)
    with federation.open(members) as again, again.open() as conn:
        assert conn.root("main")["only"].link.title == "its child"
        assert conn.root("main")["only"]._p_jar is conn.jar("rs")
        transaction.abort()


def test_pack_collects_garbage_made_just_before(members):
    """Garbage committed by a manager that stays open, just before the pack, is collected:
    the mark's snapshot is RelStorage's last transaction, not the one its storage last saw."""
    with federation.open(members) as fed, fed.open() as conn:
        conn.root("rs")["page"] = Item("page", link=conn.root("main"))
        transaction.commit()
    with federation.open(members) as fed, fed.open() as conn:
        conn.root("rs")["old"] = Item("soon garbage")
        transaction.commit()
        old = conn.root("rs")["old"]._p_oid
        del conn.root("rs")["old"]
        transaction.commit()
        report = fed.pack()
        assert report["rs"].collectable == [int.from_bytes(old, "big")]
        assert report["rs"].packed
        transaction.abort()


def test_days_spare_garbage_younger_than_them(fed, members, history):
    """pack(days=1) keeps garbage made today in both modes (history-free: a grace period);
    days=0 then collects it."""
    garbage, only = _garbage_and_stub_only(fed)
    report = fed.pack(days=1)
    if not history:
        assert not report["rs"].packed and "older than the pack point" in report["rs"].note
    fed.close()
    assert _exists(members, "rs", garbage) and _exists(members, "rs", only)
    with federation.open(members) as again:
        again.pack()
    assert not _exists(members, "rs", garbage) and _exists(members, "rs", only)


def _move_to_rs(fed: federation.Federation) -> None:
    """In one transaction: main's root drops 'x', rs' root references it instead."""
    tm = transaction.TransactionManager()
    with fed.open(tm) as conn:
        x = conn.root("main")["x"]
        del conn.root("main")["x"]
        conn.root("rs")["x"] = Item("holder", link=x)
        tm.commit()


def _move_to_main(fed: federation.Federation) -> None:
    """In one transaction: rs' holder of 'x' goes, main's root references 'x' itself."""
    tm = transaction.TransactionManager()
    with fed.open(tm) as conn:
        x = conn.root("rs")["x"].link
        del conn.root("rs")["x"]
        conn.root("main")["x"] = x
        tm.commit()


# Every step for history-free storage, whose pack differs; two for history-preserving.
@pytest.mark.parametrize(("history", "step"), [
    *((False, step) for step in gc.STEPS), (True, "verified"), (True, "pack")])
@pytest.mark.parametrize("move", [_move_to_rs, _move_to_main], ids=["to-rs", "to-main"])
def test_commit_during_pack_keeps_what_it_references(fed, step, move):
    """A commit that moves the only reference to an object between main and rs, at any step
    of the pack, loses nothing: the object loads afterwards, and after one more pack."""
    with fed.open() as conn:
        x = Item("x", link=Item("child of x"))
        if move is _move_to_rs:
            conn.root("main")["x"] = x
        else:
            conn.add(x, "rs")
            conn.root("rs")["x"] = Item("holder", link=x)
        transaction.commit()
    seen = []

    def hook(name: str) -> None:
        if name.split()[0] == step and not seen:
            seen.append(name)
            move(fed)

    fed.pack(hook=hook)
    assert seen
    for _ in range(2):
        with fed.open() as conn:
            moved = move is _move_to_rs
            x = conn.root("rs")["x"].link if moved else conn.root("main")["x"]
            assert (x.title, x.link.title) == ("x", "child of x")
            transaction.abort()
        fed.pack()


def test_zfed_pack_and_check(tmp_path, members):
    """zfed pack keeps what stubs reach and collects garbage; zfed check finds nothing wrong;
    neither shows the password."""
    with federation.open(members) as fed:
        garbage, only = _garbage_and_stub_only(fed)
    config = _config(tmp_path, members)
    runner = CliRunner()
    packed = runner.invoke(main, ["pack", str(config)])
    assert packed.exit_code == 0, packed.output
    assert "rs: packed" in packed.output and PASSWORD not in packed.output
    checked = runner.invoke(main, ["check", str(config)])
    assert checked.exit_code == 0, checked.output
    assert PASSWORD not in checked.output
    assert not _exists(members, "rs", garbage) and _exists(members, "rs", only)


# -- zfed info, read-only members ----------------------------------------------------


def test_zfed_info_names_relstorage_without_the_password(tmp_path, members):
    """zfed info shows the RelStorage member, its objects and stubs, and no password."""
    with federation.open(members) as fed, fed.open() as conn:
        conn.root("rs")["page"] = Item("page", link=conn.root("main"))
        transaction.commit()
    config = _config(tmp_path, members)
    result = CliRunner().invoke(main, ["info", "--json", str(config)])
    assert result.exit_code == 0, result.output
    assert PASSWORD not in result.output
    [rs] = [facts for facts in json.loads(result.output)["members"] if facts["name"] == "rs"]
    assert rs["storage"] == "RelStorage" and rs["available"] and rs["stubs"] == 1


def test_read_only_member(tmp_path, members):
    """A read-only RelStorage member is read and referenced; changing it is refused before
    anything is written, and pack leaves it alone."""
    with federation.open(members) as fed, fed.open() as conn:
        conn.root("rs")["page"] = Item("page")
        transaction.commit()
    spec = {"main": members["main"], "rs": {"source": members["rs"], "read_only": True}}
    with federation.open(spec) as fed, fed.open() as conn:
        assert fed.members["rs"].db.storage.isReadOnly()  # opened read-only, not only refused
        page = conn.root("rs")["page"]
        conn.root("main")["link"] = Item("link", link=page)
        transaction.commit()
        page.title = "changed"
        with pytest.raises(federation.ReadOnlyMember, match="'rs'"):
            transaction.commit()
        transaction.abort()
        report = fed.pack()
        assert not report["rs"].packed and report["main"].packed
        assert conn.root("main")["link"].link.title == "page"
        transaction.abort()
    config = _config(tmp_path, members, rs=True)
    result = CliRunner().invoke(main, ["check", str(config)])
    assert result.exit_code == 0, result.output


# -- unreachable servers, wrong passwords, secrets -------------------------------------


def test_unreachable_server_at_open(tmp_path, relstorage_databases, caplog):
    """A RelStorage member whose server does not answer is unavailable, as a ZEO member is:
    the others are read, touching it raises MemberUnavailable, and (its commit journal unread)
    the ZODB members take no commits; no password anywhere."""
    caplog.set_level(logging.DEBUG)
    server = relstorage_databases.server
    main_uri = (tmp_path / "main.fs").as_uri()
    with federation.open({"main": main_uri}) as fed, fed.open() as conn:
        conn.root("main")["page"] = Item("page")
        transaction.commit()
    uri = relstorage_databases.uri(history=False, database="nowhere").replace(
        f":{server.port}/", f":{free_port()}/")
    with federation.open({"main": main_uri, "rs": uri}) as fed, fed.open() as conn:
        assert not fed.members["rs"].available
        assert conn.root("main")["page"].title == "page"
        with pytest.raises(federation.MemberUnavailable, match="'rs'") as caught:
            conn.root("rs")
        conn.root("main")["page"].title = "changed"
        with pytest.raises(federation.MemberUnavailable, match=r"'rs'.*commit journal"):
            transaction.commit()
        transaction.abort()
        assert PASSWORD not in _texts(caught.value, fed.members["rs"].error, fed, conn)
    assert PASSWORD not in caplog.text


@pytest.mark.parametrize("change", ["password", "database"])
def test_refused_login_is_a_member_open_error(tmp_path, relstorage_databases, change, caplog):
    """A wrong password or database is a configuration error naming the member, not an
    unavailable member; neither the right nor the wrong password is shown."""
    caplog.set_level(logging.DEBUG)
    uri = relstorage_databases.uri(history=True)
    if change == "password":
        uri = uri.replace(PASSWORD, "Wr0ng-Secret")
    else:
        uri = uri.replace(f"/{relstorage_databases.prefix}", "/missing_")
    members = {"main": (tmp_path / "main.fs").as_uri(), "rs": uri}
    with pytest.raises(federation.MemberOpenError, match="'rs'") as caught:
        federation.open(members)
    texts = _texts(caught.value) + caplog.text
    assert PASSWORD not in texts and "Wr0ng-Secret" not in texts


def test_server_going_away_mid_session(tmp_path):
    """RelStorage's server stops while the federation is open: its objects raise
    MemberUnavailable (a transient error), committing to it too; the other member keeps
    working in the next transactions, and the federation closes cleanly."""
    from tests.servers.postgresql import running_postgresql

    with running_postgresql(tmp_path / "own-postgresql") as server:
        uri = RelStorageDatabases(server).uri(history=False)
        members = {"main": (tmp_path / "main.fs").as_uri(), "rs": uri}
        with federation.open(members) as fed, fed.open() as conn:
            conn.root("rs")["page"] = Item("page", link=Item("child"))
            transaction.commit()
        fed = federation.open(members)
        conn = fed.open()
        try:
            page = conn.root("rs")["page"]
            assert page.title == "page"
            server.stop()
            with pytest.raises(federation.MemberUnavailable, match="'rs'") as caught:
                page.link.title  # noqa: B018 - never loaded: needs the server
            assert isinstance(caught.value, transaction.interfaces.TransientError)
            page.title = "changed"
            conn.root("main")["page"] = Item("main's")
            with pytest.raises(federation.MemberUnavailable, match="'rs'"):
                transaction.commit()
            transaction.abort()
            conn.root("main")["page"] = Item("main's")
            transaction.commit()
            assert conn.root("main")["page"].title == "main's"
            with pytest.raises(federation.MemberUnavailable, match="'rs'"):
                conn.root("rs")["page"].title  # noqa: B018 - dropped with the server
            assert PASSWORD not in _texts(caught.value)
        finally:
            transaction.abort()
            conn.close()
            fed.close()


def test_no_password_in_reprs_names_or_logs(tmp_path, members, caplog):
    """Opening, committing, packing, checking and closing a RelStorage member logs nothing,
    and shows in no repr, storage name or lock key, that holds the password."""
    caplog.set_level(logging.DEBUG)
    with federation.open(members) as fed, fed.open() as conn:
        conn.root("rs")["page"] = Item("page", link=conn.root("main"))
        transaction.commit()
        storage = fed.members["rs"].db.storage
        texts = _texts(fed, fed.members["rs"], conn, conn.jar("rs"), storage,
                       storage.getName(), storage.sortKey(), conn.jar("rs").lock_key())
        fed.pack()
        fed.check()
    assert PASSWORD not in texts and PASSWORD not in caplog.text


# -- recovery ----------------------------------------------------------------------------


def test_decided_branch_lost_in_a_crash_is_redone(members, monkeypatch):
    """main decides, rs "dies" before it finishes: the next open redoes rs's branch from the
    journal (RelStorage's vote took row locks; giving up the branch released them)."""
    from federation import recovery

    def die(*args: Any) -> None:
        raise RuntimeError("the process died here")

    with federation.open(members) as fed, fed.open() as conn:
        page = conn.root("main")["page"] = Item("page")
        transaction.commit()
        page.title = "x" * 10_000  # main's branch is the larger: main decides
        conn.root("rs")["note"] = Item("note", link=page)
        monkeypatch.setattr(conn.jar("rs"), "tpc_finish", die)
        monkeypatch.setattr(recovery, "resolve", lambda *args: None)
        transaction.commit()  # decided: the commit stands
        monkeypatch.undo()
    with federation.open(members) as fed, fed.open() as conn:
        assert len(fed.recovery.committed) == 1
        assert conn.root("rs")["note"].link is conn.root("main")["page"]
        transaction.abort()
    with federation.open(members) as fed:
        assert fed.recovery == recovery.RecoveryReport()


def test_redo_after_another_writer_changed_its_objects(members, monkeypatch):
    """rs's lost branch added a key to a BTree that another process then changed too: recovery
    merges them by the BTree's conflict resolution, against the revision the branch read
    (which a history-free RelStorage no longer has: its journal entry keeps it)."""
    from federation import recovery

    def die(*args: Any) -> None:
        raise RuntimeError("the process died here")

    with federation.open(members) as fed, fed.open() as conn:
        page = conn.root("main")["page"] = Item("page")
        conn.root("rs")["tree"] = OOBTree({"a": 1})
        transaction.commit()
        page.title = "x" * 10_000  # main decides
        conn.root("rs")["tree"]["lost"] = 2
        monkeypatch.setattr(conn.jar("rs"), "tpc_finish", die)
        monkeypatch.setattr(recovery, "resolve", lambda *args: None)
        transaction.commit()
        monkeypatch.undo()
    other = federation.open({"rs": members["rs"]}, recover=False)  # another program
    with other.open() as conn:
        conn.root("rs")["tree"]["other"] = 3
        transaction.commit()
    other.close()
    with federation.open(members) as fed, fed.open() as conn:
        assert len(fed.recovery.committed) == 1
        assert dict(conn.root("rs")["tree"]) == {"a": 1, "lost": 2, "other": 3}
        transaction.abort()


def test_recovery_in_a_federation_opened_before_the_crash(relstorage_databases, rs_uri,
                                                          history, monkeypatch):
    """A federation open since before another process read, changed and lost a branch of rs
    recovers it (fed.recover(), as zfed recover does): its RelStorage storage is made to read
    the database as it is now, not as it was when the federation opened."""
    from federation import recovery

    members = {"main": relstorage_databases.uri(history=history), "rs": rs_uri}  # shared

    def die(*args: Any) -> None:
        raise RuntimeError("the process died here")

    with federation.open(members) as fed, fed.open() as conn:
        conn.root("main")["page"] = Item("page")
        conn.root("rs")["tree"] = OOBTree({"a": 1})
        transaction.commit()
    with federation.open(members) as early:
        with federation.open(members) as crashing, crashing.open() as conn:
            conn.root("rs")["tree"]["b"] = 2
            transaction.commit()  # read by the next transaction, not by `early`
            conn.root("main")["page"].title = "x" * 10_000  # main decides
            conn.root("rs")["tree"]["lost"] = 3
            monkeypatch.setattr(conn.jar("rs"), "tpc_finish", die)
            monkeypatch.setattr(recovery, "resolve", lambda *args: None)
            transaction.commit()
            monkeypatch.undo()
        report = early.recover()
        assert len(report.committed) == 1 and report.in_doubt == []
        with early.open() as conn:
            assert dict(conn.root("rs")["tree"]) == {"a": 1, "b": 2, "lost": 3}
            transaction.abort()


def test_branch_redone_in_the_same_process(fed):
    """rs fails to finish after the decision: recovery redoes it at once, in this process, and
    the connections see it (RelStorage's connections poll; nothing to invalidate by hand)."""
    with fed.open() as conn:
        page = conn.root("main")["page"] = Item("page")
        transaction.commit()
        page.title = "x" * 10_000
        conn.root("rs")["note"] = Item("note", link=page)
        jar = conn.jar("rs")
        real = jar.tpc_finish
        calls = []

        def fail_once(txn: Any) -> None:
            calls.append(txn)
            jar.tpc_finish = real
            raise RuntimeError("the server went away between the vote and the finish")

        jar.tpc_finish = fail_once
        transaction.commit()
        assert calls
    with fed.open() as conn:
        assert conn.root("rs")["note"].link is conn.root("main")["page"]
        assert fed.journal_status()["pending"] == 0  # settled now, not at the next open
        transaction.abort()
