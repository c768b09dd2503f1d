"""The coordinated commit across members, attacked: each test states the promise it checks."""

from __future__ import annotations

import uuid

import psycopg
import pytest
import transaction

import federation
from federation import recovery
from federation.adapters import sql
from federation.connection import FederatedConnection
from tests.helpers import change_page_and_row, journal_entries
from tests.models import Item, Person
from tests.test_zeo import zeo  # noqa: F401 - the fixture


def _pg_table(dsn):
    name = f"person_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {name} (id BIGINT PRIMARY KEY, name TEXT NOT NULL, "
                     "email TEXT, owner_ref TEXT)")
        conn.execute(f"INSERT INTO {name} (id, name) VALUES (1, 'Ada')")
    return sql.Table(name, Person, key="id", columns={"name": "name", "email": "email"},
                     refs={"owner": "owner_ref"})


def _pg_name(dsn, table, key=1):
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(f"SELECT name FROM {table.name} WHERE id = %s", (key,)).fetchone()[0]


def _prepared(dsn):
    with psycopg.connect(dsn, autocommit=True) as conn:
        return [row[0] for row in conn.execute("SELECT gid FROM pg_prepared_xacts").fetchall()
                if row[0].startswith("zfed-")]


@pytest.mark.server
def test_decider_finish_error_after_durable_commit_keeps_prepared_branch(
        postgresql_server, tmp_path, monkeypatch):
    """If the decider's tpc_finish raises after its commit (and journal entry) became durable, the
    PostgreSQL branch is committed too, not rolled back.
    """
    dsn = postgresql_server.dsn
    table = _pg_table(dsn)
    members = {"main": (tmp_path / "main.fs").as_uri(),
               "people": sql.postgresql("people", dsn, table)}
    original = FederatedConnection.tpc_finish

    def finish_then_fail(self, txn):
        original(self, txn)  # the storage committed: the entry is durable, the decision made
        raise ConnectionError("reply of tpc_finish lost (e.g. a ZEO disconnect)")

    with federation.open(members) as fed, fed.open() as conn:
        conn.root("main")["page"] = Item("page")
        transaction.commit()
        conn.get("people:integer:1").name = "Ada Lovelace"
        conn.root("main")["page"].title = "changed"
        monkeypatch.setattr(conn.jar("main"), "tpc_finish",
                            finish_then_fail.__get__(conn.jar("main")))
        with pytest.raises(ConnectionError):
            transaction.commit()
        transaction.abort()
        monkeypatch.undo()
    with federation.open(members) as fed, fed.open() as conn:
        assert conn.root("main")["page"].title == "changed"  # main committed
        # all or nothing: the other member has the transaction too
        assert _pg_name(dsn, table) == "Ada Lovelace"
        transaction.abort()


@pytest.mark.server
def test_prepared_branch_whose_commit_fails_after_decision_is_not_rolled_back(
        postgresql_server, tmp_path, monkeypatch):
    """A PostgreSQL branch whose COMMIT PREPARED fails after the decision (connection still up) is
    committed by recovery, never rolled back.
    """
    dsn = postgresql_server.dsn
    table = _pg_table(dsn)
    members = {"main": (tmp_path / "main.fs").as_uri(),
               "people": sql.postgresql("people", dsn, table)}
    original = sql.SqlAdapter.commit

    def failing_commit(adapter):
        if adapter.two_phase and adapter._writer is not None:
            raise federation.FederationError("transient server error on COMMIT PREPARED")
        return original(adapter)

    with federation.open(members) as fed, fed.open() as conn:
        conn.root("main")["page"] = Item("page")
        transaction.commit()
        conn.get("people:integer:1").name = "Ada Lovelace"
        conn.root("main")["page"].title = "changed"
        monkeypatch.setattr(sql.SqlAdapter, "commit", failing_commit)
        transaction.commit()  # decided when main finished: never rolled back
        monkeypatch.undo()
        transaction.begin()
        assert conn.root("main")["page"].title == "changed"
        transaction.abort()
    with federation.open(members) as fed:
        pass
    assert _pg_name(dsn, table) == "Ada Lovelace"



@pytest.mark.server
def test_two_postgresql_members_commit_while_a_savepoint_is_held(
        postgresql_server, tmp_path):
    """A transaction over two PostgreSQL members commits when the application still holds a
    savepoint of it.
    """
    dsn = postgresql_server.dsn
    t1, t2 = _pg_table(dsn), _pg_table(dsn)
    members = {"main": (tmp_path / "main.fs").as_uri(),
               "a": sql.postgresql("a", dsn, t1), "b": sql.postgresql("b", dsn, t2)}
    with federation.open(members) as fed, fed.open() as conn:
        conn.root("main")["page"] = Item("page")  # main has a catalog
        transaction.commit()
        conn.get("a:integer:1").name = "Ada Lovelace"
        conn.get("b:integer:1").name = "Ada Lovelace"
        savepoint = transaction.savepoint()  # kept, as an application may keep it
        try:
            transaction.commit()
        finally:
            transaction.abort()
            del savepoint
        assert _pg_name(dsn, t1) == _pg_name(dsn, t2) == "Ada Lovelace"


def _fs_members(tmp_path, **extra):
    members = {name: (tmp_path / f"{name}.fs").as_uri() for name in ("main", "notes")}
    members.update(extra)
    return members


def test_last_resource_commit_with_a_journal_member_that_has_no_catalog_yet(tmp_path):
    """A transaction over an existing ZODB database (no federation catalog yet) and a SQLite member
    commits.
    """
    import ZODB

    from tests.test_adapter_sqlite import make_member

    db = ZODB.DB(str(tmp_path / "main.fs"))  # an existing database joins the federation
    with db.transaction() as plain:
        plain.root()["old"] = "data"
    db.close()
    people, _path = make_member(tmp_path, "people")
    with federation.open(_fs_members(tmp_path, people=people)) as fed, fed.open() as conn:
        for attempt in transaction.manager.attempts():
            with attempt:  # the first conflicts once: its journal write made the catalog
                person = Person("Ada")
                conn.add(person, "people")
                conn.root("main")["page"] = Item("page", link=person)
    with federation.open(_fs_members(tmp_path, people=people)) as fed, fed.open() as conn:
        assert conn.root("main")["page"].link.name == "Ada"
        transaction.abort()


def test_federation_pack_keeps_markers_of_pending_journal_entries(tmp_path):
    """fed.pack() while a finished transaction's entry is still in the journal does not make that
    transaction in doubt after a crash.
    """
    with federation.open(_fs_members(tmp_path)) as fed, fed.open() as conn:
        conn.root("main")["page"] = Item("page")
        conn.root("notes")["note"] = Item("note")
        transaction.commit()
        conn.root("main")["page"].title = "x" * 10_000  # main decides
        conn.root("notes")["note"].title = "changed"
        transaction.commit()  # finished in both; its entry waits for the next journal write
        assert len(journal_entries(conn, "main")) == 1
        transaction.abort()
        fed.pack()
        fed.journal_queue.take_all()  # kill -9 now: the in-memory queue of finished entries is lost
    with federation.open(_fs_members(tmp_path)) as fed, fed.open() as conn:
        assert conn.root("notes")["note"].title == "changed"
        transaction.abort()


def test_two_managers_on_one_transaction_commit_all_or_nothing(tmp_path, monkeypatch):
    """Two managers of one federation joined to the same (thread's) transaction: a crash between
    their finishes leaves both members changed or neither, once recovery ran.
    """
    with federation.open(_fs_members(tmp_path)) as fed:
        first, second = fed.open(), fed.open()  # both on the thread's transaction manager
        assert first.coordinator is second.coordinator  # one transaction, one coordinator
        first.root("main")["page"] = Item("page")
        first.root("notes")["note"] = Item("note")
        transaction.commit()
        second.sync()
        first.root("main")["page"].title = "changed" + "x" * 10_000  # main decides
        second.root("notes")["note"].title = "changed"

        def killed(txn):
            raise RuntimeError("killed between the two finishes")

        monkeypatch.setattr(second.jar("notes"), "tpc_finish", killed)
        monkeypatch.setattr(recovery, "resolve", lambda *args: None)
        transaction.commit()  # decided by main: the commit stands
        monkeypatch.undo()
        transaction.abort()
        first.close()
        second.close()
    with federation.open(_fs_members(tmp_path)) as fed, fed.open() as conn:
        assert conn.root("main")["page"].title.startswith("changed")
        assert conn.root("notes")["note"].title == "changed"  # redone by recovery
        transaction.abort()


def test_in_process_redo_invalidates_other_managers_caches(tmp_path, monkeypatch):
    """After a member that failed to finish is redone in the same process, another manager's next
    transaction sees the redone objects, not the old state.
    """
    with federation.open(_fs_members(tmp_path)) as fed, fed.open() as conn:
        conn.root("main")["page"] = Item("page")
        conn.root("notes")["note"] = Item("note")
        transaction.commit()
        other_tm = transaction.TransactionManager()
        other = fed.open(other_tm)
        other_tm.begin()
        other_note = other.root("notes")["note"]
        conn.root("main")["page"].title = "x" * 10_000  # main decides
        conn.root("notes")["note"].title = "changed"

        def fail(txn):
            raise OSError("notes could not finish")

        monkeypatch.setattr(conn.jar("notes"), "tpc_finish", fail)
        transaction.commit()  # decided; notes is redone at once by recovery in this process
        monkeypatch.undo()
        assert other_note.title == "note"  # the other manager's snapshot is older: right
        other_tm.begin()  # a new transaction of the other manager
        assert other.root("notes")["note"].title == "changed"
        other_tm.abort()
        other.close()
        transaction.abort()


@pytest.mark.server
def test_lost_branch_oids_are_not_handed_out_while_the_decider_is_unavailable(
        zeo, tmp_path, monkeypatch):  # noqa: F811 - the fixture
    """A reference written by a decided transaction never ends up naming another object, even if
    its decider member is unavailable at the next open.
    """
    main_uri, stop = zeo("main")
    notes_uri = (tmp_path / "notes.fs").as_uri()
    with federation.open({"main": main_uri, "notes": notes_uri}) as fed, fed.open() as conn:
        conn.root("main")["page"] = Item("page")
        conn.root("notes")["note"] = Item("note")
        transaction.commit()
        child = Item("child")
        conn.add(child, "notes")
        conn.root("notes")["child"] = child
        conn.root("main")["page"].link = child  # a stub in main names notes' new oid
        conn.root("main")["page"].title = "x" * 10_000  # main decides
        monkeypatch.setattr(conn.jar("notes"), "tpc_finish", lambda txn: (_ for _ in ()).throw(
            RuntimeError("killed before notes finished")))
        monkeypatch.setattr(recovery, "resolve", lambda *args: None)
        transaction.commit()  # decided: main has the entry and the stub
        monkeypatch.undo()
        transaction.abort()
    stop()  # main's server is down when the application starts again
    try:
        fed = federation.open({"main": main_uri, "notes": notes_uri})
    except federation.FederationError:
        pass  # refusing is one right answer
    else:
        with fed, fed.open() as conn:
            conn.root("notes")["meanwhile"] = Item("meanwhile")
            with pytest.raises(federation.MemberUnavailable, match="commit journal"):
                transaction.commit()  # refused while main's journal is unread
            transaction.abort()
    main_uri, _stop = zeo("main")  # the same file, back on a new port
    with federation.open({"main": main_uri, "notes": notes_uri}) as fed, fed.open() as conn:
        assert conn.root("main")["page"].link.title == "child"  # redone, never redirected
        transaction.abort()


def test_member_rolled_back_to_a_savepoint_commits_its_later_changes(tmp_path):
    """A member whose changes were rolled back to a savepoint (so it joined but writes nothing)
    commits its changes in the next transaction.
    """
    fed = federation.open(_fs_members(tmp_path))
    try:
        conn = fed.open()
        conn.root("main")["page"] = Item("page")
        conn.root("notes")["note"] = Item("note")
        transaction.commit()
        conn.root("main")["page"].title = "p1"
        savepoint = transaction.savepoint()
        conn.root("notes")["note"].title = "n1"  # notes joins after the savepoint
        savepoint.rollback()
        transaction.commit()  # main only
        conn.root("notes")["note"].title = "n2"
        transaction.commit()  # succeeds...
        other_tm = transaction.TransactionManager()
        other = fed.open(other_tm)
        assert other.root("notes")["note"].title == "n2"  # ...so notes has the change
        other_tm.abort()
        other.close()
        conn.close()
    finally:
        transaction.abort()
        fed.close()


def test_sqlite_member_rolled_back_to_a_savepoint_commits_its_later_changes(tmp_path):
    """A SQLite member whose change was rolled back to a savepoint commits its changes in the next
    transaction.
    """
    import sqlite3

    from tests.test_adapter_sqlite import make_member, seeder

    people, path = make_member(tmp_path, "people")
    seeder(path)(1, {"name": "Ada"})
    with federation.open(_fs_members(tmp_path, people=people)) as fed, fed.open() as conn:
        conn.root("main")["page"] = Item("page")
        transaction.commit()
        conn.root("main")["page"].title = "p1"
        savepoint = transaction.savepoint()
        conn.get("people:integer:1").name = "Ada L"
        savepoint.rollback()
        transaction.commit()  # main only
        conn.get("people:integer:1").name = "Ada Lovelace"
        transaction.commit()  # succeeds...
        with sqlite3.connect(path) as db:
            [(name,)] = db.execute("SELECT name FROM person WHERE id = 1").fetchall()
        assert name == "Ada Lovelace"  # ...so the row has the change


@pytest.mark.server
def test_recovery_tolerates_a_prepared_branch_finished_concurrently(
        postgresql_server, tmp_path, monkeypatch):
    """Recovery in two processes at once: the one whose COMMIT PREPARED finds the branch already
    committed by the other still opens the federation.
    """
    from federation.foreign import ForeignJar

    dsn = postgresql_server.dsn
    table = _pg_table(dsn)
    members = {"main": (tmp_path / "main.fs").as_uri(),
               "people": sql.postgresql("people", dsn, table)}
    with federation.open(members) as fed, fed.open() as conn:
        change_page_and_row(conn, monkeypatch)
        monkeypatch.setattr(ForeignJar, "tpc_finish", lambda self, txn: 1 / 0)
        monkeypatch.setattr(recovery, "resolve", lambda *args: None)
        transaction.commit()  # decided by main; people's branch stays prepared
        monkeypatch.undo()
        transaction.abort()
    [xid] = _prepared(dsn)
    original = sql.SqlAdapter.finish_prepared

    def other_process_first(adapter, xid, commit):
        with psycopg.connect(dsn, autocommit=True) as other:  # the other process's recovery
            other.execute(f"COMMIT PREPARED '{xid}'")
        return original(adapter, xid, commit)

    monkeypatch.setattr(sql.SqlAdapter, "finish_prepared", other_process_first)
    with federation.open(members) as fed:
        assert fed.recovery.committed == [xid.rpartition(".")[0]]
    assert _pg_name(dsn, table) == "Ada Lovelace"


def test_disjoint_commits_of_two_threads_do_not_conflict_over_journal_cleanup(
        tmp_path, monkeypatch):
    """Two managers (threads) committing disjoint changes over the same members do not get a
    ConflictError from the journal clean-up they share.
    """
    import threading

    with federation.open(_fs_members(tmp_path)) as fed:
        with fed.open() as conn:
            for name in ("a", "b"):
                conn.root("main")[name] = Item(name)
                conn.root("notes")[name] = Item(name)
            transaction.commit()
            conn.root("main")["a"].title = "x" * 100
            conn.root("notes")["a"].title = "y"
            transaction.commit()  # a journaled transaction: its entry waits for clean-up
        barrier = threading.Barrier(2, timeout=10)
        original = recovery.JournalQueue.take

        def take(self, member):
            result = original(self, member)
            barrier.wait()  # both commits planned before either finishes
            return result

        monkeypatch.setattr(recovery.JournalQueue, "take", take)
        errors = []

        def work(name):
            tm = transaction.TransactionManager()
            try:
                with fed.open(tm) as conn:
                    conn.root("main")[name].title = "x" * 1000
                    conn.root("notes")[name].title = name * 2
                    tm.commit()
            except Exception as error:
                errors.append(error)


        threads = [threading.Thread(target=work, args=(name,)) for name in ("a", "b")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        monkeypatch.undo()
        assert errors == []


def test_sqlite_change_after_a_no_op_assignment_is_committed(tmp_path):
    """Assigning a SQLite record's attribute its current value, committing, then really changing
    it: the change reaches the row.
    """
    import sqlite3

    from tests.test_adapter_sqlite import make_member, seeder

    people, path = make_member(tmp_path, "people")
    seeder(path)(1, {"name": "Ada"})
    with federation.open(_fs_members(tmp_path, people=people)) as fed, fed.open() as conn:
        person = conn.get("people:integer:1")
        person.name = "Ada"  # the same value: nothing to write
        transaction.commit()
        person.name = "Ada Lovelace"
        transaction.commit()  # succeeds...
        with sqlite3.connect(path) as db:
            [(name,)] = db.execute("SELECT name FROM person WHERE id = 1").fetchall()
        assert name == "Ada Lovelace"  # ...so the row has the change


@pytest.mark.server
def test_prepared_branch_under_a_tombstone_is_rolled_back_by_the_next_recovery(
        postgresql_server, tmp_path, monkeypatch):
    """Recovery killed between writing a tombstone and rolling back the prepared branch: the next
    recovery rolls it back (no prepared transaction, and its locks, left forever).
    """
    dsn = postgresql_server.dsn
    table = _pg_table(dsn)
    members = {"main": (tmp_path / "main.fs").as_uri(),
               "people": sql.postgresql("people", dsn, table)}
    with federation.open(members) as fed, fed.open() as conn:
        change_page_and_row(conn, monkeypatch)
        monkeypatch.setattr(FederatedConnection, "tpc_finish",
                            lambda self, txn: (_ for _ in ()).throw(RuntimeError("killed")))
        with pytest.raises(RuntimeError):
            transaction.commit()
        transaction.abort()
        monkeypatch.undo()
    assert len(_prepared(dsn)) == 1  # an orphan: no entry decides it

    def killed(adapter, xid, commit):
        raise RuntimeError("recovery killed after its tombstone")

    monkeypatch.setattr(sql.SqlAdapter, "finish_prepared", killed)
    with pytest.raises(RuntimeError):
        federation.open(members)
    monkeypatch.undo()
    try:
        with federation.open(members):
            pass
        assert _prepared(dsn) == []
        assert _pg_name(dsn, table) == "Ada"
    finally:  # leave no prepared transaction to the other tests of the session
        with psycopg.connect(dsn, autocommit=True) as admin:
            for left in _prepared(dsn):
                admin.execute(f"ROLLBACK PREPARED '{left}'")


class _FailingVote:
    """Another resource of the same transaction (a mail queue, an SQLAlchemy session...)
    whose vote fails; it sorts after the federation's coordinator."""

    def __init__(self, txn):
        txn.join(self)

    def sortKey(self):
        return "~other-resource"

    def abort(self, txn):
        pass

    tpc_begin = commit = tpc_finish = tpc_abort = abort

    def tpc_vote(self, txn):
        raise RuntimeError("the other resource cannot commit")


@pytest.mark.server
def test_last_resource_decision_then_another_resource_fails_its_vote(
        postgresql_server, tmp_path):
    """When the last resource committed (the decision) and another resource of the transaction then
    fails its vote, every member ends the same: the PostgreSQL branch is not rolled back while
    SQLite and ZODB keep the transaction.
    """
    import sqlite3

    from tests.test_adapter_sqlite import make_member, seeder

    dsn = postgresql_server.dsn
    table = _pg_table(dsn)
    people, path = make_member(tmp_path, "people")
    seeder(path)(1, {"name": "Ada"})
    members = {"main": (tmp_path / "main.fs").as_uri(), "people": people,
               "staff": sql.postgresql("staff", dsn, table)}
    with federation.open(members) as fed, fed.open() as conn:
        conn.root("main")["page"] = Item("page")
        transaction.commit()
        conn.root("main")["page"].title = "changed"
        conn.get("people:integer:1").name = "Ada Lovelace"
        conn.get("staff:integer:1").name = "Ada Lovelace"
        _FailingVote(transaction.get())
        with pytest.raises(RuntimeError):
            transaction.commit()
        transaction.abort()
    with federation.open(members) as fed, fed.open() as conn:
        with sqlite3.connect(path) as db:
            [(sqlite_name,)] = db.execute("SELECT name FROM person WHERE id = 1").fetchall()
        outcome = {conn.root("main")["page"].title == "changed",
                   sqlite_name == "Ada Lovelace", _pg_name(dsn, table) == "Ada Lovelace"}
        assert len(outcome) == 1, (conn.root("main")["page"].title, sqlite_name,
                                   _pg_name(dsn, table))
        transaction.abort()


def test_new_object_of_a_member_redone_in_process_stays_usable(tmp_path, monkeypatch):
    """After a member that failed to finish is redone in the same process, a committed referrer's
    reference to a new object of that member still reaches that object.
    """
    with federation.open(_fs_members(tmp_path)) as fed, fed.open() as conn:
        conn.root("main")["page"] = Item("page")
        transaction.commit()
        child = Item("child")
        conn.add(child, "notes")
        conn.root("notes")["child"] = child
        page = conn.root("main")["page"]
        page.link = child
        page.title = "x" * 10_000  # main decides

        def fail(txn):
            raise OSError("notes could not finish")

        monkeypatch.setattr(conn.jar("notes"), "tpc_finish", fail)
        transaction.commit()  # decided; notes is redone at once in this process
        monkeypatch.undo()
        transaction.begin()
        assert conn.root("notes")["child"].title == "child"  # the redo happened
        assert conn.root("main")["page"].link is conn.root("notes")["child"]
        transaction.abort()
