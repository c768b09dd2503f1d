"""Recovery while another process commits: a bug the crash harness found (xfail until fixed).

With several processes on ZEO, :func:`federation.open` runs recovery while
other processes may be in the middle of a commit.  Recovery takes the
journal entry of a live, decided transaction for one a crash left behind:
it finds the marker of a branch still missing (the live coordinator has not
finished that member yet), redoes the branch against the serials it read,
and by then the live coordinator has finished it, so the redo conflicts and
the transaction is reported in doubt: ``open`` raises
``InDoubtTransactions`` for a transaction that completed normally, and an
operator is asked to settle it.  ``benchmarks/crash.py --members
zeo,zeo,sqlite --clients 3`` without its start barrier hits it within a
few rounds; this test makes the interleaving deterministic.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import transaction
from ZEO.ClientStorage import ClientStorage

import federation
from tests import crash_harness
from tests.models import Item


@pytest.fixture
def zeo_servers(tmp_path: Path) -> Iterator[dict[str, list[object]]]:
    """ZEO servers for members a and b, each in its own process."""
    with crash_harness.zeo_servers(tmp_path, ["a", "b"]) as addresses:
        yield addresses


@pytest.mark.server
@pytest.mark.xfail(strict=True, reason=(
    "Bug found by the crash harness: recovery in a process that opens the federation redoes "
    "a branch that a live coordinator in another process is about to finish, and reports it "
    "in doubt (InDoubtTransactions) though the transaction completes normally."))
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

    def commit() -> None:
        try:
            conn.root("a")["x"].title = "x2"
            conn.root("b")["y"].title = "y2"
            tm.commit()
        finally:
            finished.set()

    ClientStorage.tpc_finish, ClientStorage.tpc_begin = tpc_finish, tpc_begin
    try:
        committer = threading.Thread(target=commit)
        committer.start()
        assert paused.wait(30)
        second = federation.open(members())  # InDoubtTransactions today
        second.close()
    finally:
        ClientStorage.tpc_finish, ClientStorage.tpc_begin = real_finish, real_begin
        resume.set()
        committer.join(30)
    conn.close()
    first.close()
