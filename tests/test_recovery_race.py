"""Recovery while another process commits: races the crash harness found (both fixed).

With several processes on ZEO, :func:`federation.open` runs recovery while
other processes may be in the middle of a commit, and recovery can take a
live transaction for one a crash left behind:

1. Between the decision and the last member's finish, recovery finds that
   member's marker missing and redoes its branch against the serials it
   read; the live coordinator finishes the member first and the redo
   conflicts.  Before commit 5976568 ("a redo that conflicts checks the
   branch's marker again") ``open`` raised ``InDoubtTransactions`` for a
   transaction that completed normally; the test now guards the fix.
2. With a PostgreSQL branch prepared and no journal entry yet, recovery
   presumes abort: it writes a tombstone (the live coordinator's decision
   then fails on a conflict and it rolls back its own prepared branch) and
   runs ``ROLLBACK PREPARED``, which failed because the coordinator rolled
   back first: ``open`` raised ``FederationError`` before commit ea195bb
   ("treats a prepared branch finished meanwhile as settled"); the test now
   guards the fix.

``benchmarks/crash.py --members zeo,zeo,sqlite --clients 3 --no-barrier``
(and ``zeo,zeo,postgresql``) hit them within a few rounds; these tests
make the interleavings deterministic.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import transaction
from transaction.interfaces import TransientError
from ZEO.ClientStorage import ClientStorage

import federation
from federation.adapters import sql
from tests import crash_harness
from tests.models import Item, Person


@pytest.fixture
def zeo_servers(tmp_path: Path) -> Iterator[dict[str, list[object]]]:
    """ZEO servers for members a and b, each in its own process."""
    with crash_harness.zeo_servers(tmp_path, ["a", "b"]) as addresses:
        yield addresses


@pytest.mark.server
def test_opening_while_another_process_finishes_a_commit(zeo_servers) -> None:
    """Opening the federation while another process finishes a decided commit succeeds."""
    def members() -> dict[str, ClientStorage]:
        return {name: ClientStorage(tuple(address), wait_timeout=30)
                for name, address in zeo_servers.items()}

    first = federation.open(members())
    tm = transaction.TransactionManager()
    conn = first.open(tm)
    conn.add(conn.root("a").setdefault("x", Item("x")), "a")
    conn.root("b")["y"] = Item("y", link=conn.root("a")["x"])
    tm.commit()
    finishing = {id(first.members[name].db.storage): name for name in ("a", "b")}
    paused, resume, finished = threading.Event(), threading.Event(), threading.Event()
    real_finish, real_begin = ClientStorage.tpc_finish, ClientStorage.tpc_begin
    calls = []

    def tpc_finish(storage, *args, **kwargs):
        if id(storage) in finishing and threading.current_thread() is committer:
            calls.append(finishing[id(storage)])
            if len(calls) == 2:  # the decider finished; the other member has voted
                paused.set()
                assert resume.wait(30)
        return real_finish(storage, *args, **kwargs)

    def tpc_begin(storage, *args, **kwargs):
        if id(storage) not in finishing and paused.is_set() and not resume.is_set():
            resume.set()  # recovery found no marker and redoes: let the commit finish first
            assert finished.wait(30)
        return real_begin(storage, *args, **kwargs)

    outcome: list[BaseException | None] = []

    def commit() -> None:
        try:
            conn.root("a")["x"].title = "x2"
            conn.root("b")["y"].title = "y2"
            tm.commit()
            outcome.append(None)
        except BaseException as error:  # checked below
            outcome.append(error)
        finally:
            finished.set()

    ClientStorage.tpc_finish, ClientStorage.tpc_begin = tpc_finish, tpc_begin
    committer = threading.Thread(target=commit)
    try:
        committer.start()
        assert paused.wait(30)
        second = federation.open(members())  # InDoubtTransactions before 5976568
        assert not second.recovery.in_doubt
        second.close()
    finally:
        ClientStorage.tpc_finish, ClientStorage.tpc_begin = real_finish, real_begin
        resume.set()
        committer.join(30)
        conn.close()
    try:
        assert outcome == [None]
        check = first.open(transaction.TransactionManager())
        assert (check.root("a")["x"].title, check.root("b")["y"].title) == ("x2", "y2")
        assert check.root("b")["y"].link is check.root("a")["x"]
        check.close()
    finally:
        first.close()


@pytest.fixture
def person_table(postgresql_server) -> Iterator[sql.Table]:
    """A fresh person table (its own name) in the test server's database."""
    name = f"race_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgresql_server.dsn, autocommit=True) as db:
        db.execute(f"CREATE TABLE {name} (id BIGINT PRIMARY KEY, name TEXT NOT NULL, "
                   "email TEXT, owner TEXT)")
    yield sql.Table(name, Person, key="id", columns={"name": "name", "email": "email"},
                    refs={"owner": "owner"})
    with psycopg.connect(postgresql_server.dsn, autocommit=True) as db:
        db.execute(f"DROP TABLE {name}")


@pytest.mark.server
def test_opening_while_another_process_has_prepared(zeo_servers, postgresql_server,
                                                    person_table) -> None:
    """Opening while another process has a PostgreSQL branch prepared succeeds."""
    def members() -> dict[str, object]:
        zodb = {name: ClientStorage(tuple(address), wait_timeout=30)
                for name, address in zeo_servers.items()}
        return {**zodb, "c": sql.postgresql("c", postgresql_server.dsn, person_table)}

    first = federation.open(members())
    tm = transaction.TransactionManager()
    conn = first.open(tm)
    conn.root("a")["x"] = Item("x")
    conn.root("b")["y"] = Item("y")
    row = Person("p")
    conn.add(row, "c")
    tm.commit()
    paused, resume, finished = threading.Event(), threading.Event(), threading.Event()
    real_prepare, real_finish = sql.SqlAdapter.prepare, sql.SqlAdapter.finish_prepared
    outcome: list[BaseException | None] = []

    def prepare(adapter):
        real_prepare(adapter)
        if threading.current_thread() is committer:  # PREPARE TRANSACTION done, first in order
            paused.set()
            assert resume.wait(30)

    def finish_prepared(adapter, xid, commit):
        if paused.is_set() and not resume.is_set():  # recovery chose: let the coordinator end
            resume.set()
            assert finished.wait(30)
        return real_finish(adapter, xid, commit)

    def commit() -> None:
        try:
            conn.root("a")["x"].title = "x2"
            conn.root("b")["y"].title = "y2"
            row.email = "p@example.org"
            tm.commit()
            outcome.append(None)
        except BaseException as error:  # the coordinator's own outcome, checked below
            outcome.append(error)
            tm.abort()
        finally:
            finished.set()

    sql.SqlAdapter.prepare, sql.SqlAdapter.finish_prepared = prepare, finish_prepared
    committer = threading.Thread(target=commit)
    try:
        committer.start()
        assert paused.wait(30)
        second = federation.open(members())  # FederationError before ea195bb: the xact is gone
        assert second.recovery.rolled_back
        second.close()
    finally:
        sql.SqlAdapter.prepare, sql.SqlAdapter.finish_prepared = real_prepare, real_finish
        resume.set()
        committer.join(30)
        conn.close()
        first.close()
    assert len(outcome) == 1 and isinstance(outcome[0], TransientError)
