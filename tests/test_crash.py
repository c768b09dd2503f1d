"""Crash tests: a child process killed at every step of a commit, then recovery and the invariants.

A fast subset of ``benchmarks/crash.py`` (the logic is in
:mod:`tests.crash_harness`); figures from full runs are in
``docs/transactions.md``, section "Crash tests".
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import crash_harness
from tests.crash_harness import Scenario


@pytest.fixture
def zeo_servers(tmp_path: Path) -> Iterator[dict[str, list[object]]]:
    """ZEO servers for members a and b, each in its own process (it outlives a killed client)."""
    with crash_harness.zeo_servers(tmp_path, ["a", "b"]) as addresses:
        yield addresses


def assert_clean(summary: crash_harness.Summary) -> None:
    assert summary.ok, "\n".join([summary.line(), *summary.details])


def test_every_step_of_two_filestorages_and_sqlite(tmp_path: Path) -> None:
    """Killed at 30 points of commits on the same files: nothing half-applied or misdirected."""
    summary = crash_harness.run(Scenario(["file", "file", "sqlite"], str(tmp_path)), 30,
                                random_share=0.2)
    assert summary.trials == 30 and summary.killed >= 20
    assert_clean(summary)


def test_the_harness_sees_what_recovery_repairs(tmp_path: Path) -> None:
    """Without recovery, the same kills leave half-applied transactions and dangling references."""
    scenario = Scenario(["file", "file", "sqlite"], str(tmp_path), recover=False)
    summary = crash_harness.run(scenario, 42, random_share=0.0)
    assert summary.counts["half-applied"] and summary.counts["dangling"], summary.line()


@pytest.mark.server
def test_filestorages_and_postgresql(tmp_path: Path, postgresql_server) -> None:
    """With a two-phase PostgreSQL member, kills at steps and instants leave nothing half-done."""
    scenario = Scenario(["file", "file", "postgresql"], str(tmp_path),
                        dsn=postgresql_server.dsn, table=f"crash_{uuid.uuid4().hex[:12]}")
    assert_clean(crash_harness.run(scenario, 8, random_share=0.25))


@pytest.mark.server
def test_relstorage_members_and_filestorage(tmp_path: Path, relstorage_databases) -> None:
    """RelStorage members (history-free and history-preserving) with a FileStorage: kills at
    steps and instants, recovery redoing RelStorage branches, leave nothing half-done."""
    scenario = Scenario(["file", "relstorage-hf", "relstorage"], str(tmp_path))
    scenario.relstorage = crash_harness.relstorage_uris(relstorage_databases, scenario)
    assert_clean(crash_harness.run(scenario, 8, random_share=0.25))


@pytest.mark.server
def test_zeo_members_and_sqlite(tmp_path: Path, zeo_servers) -> None:
    """ZEO members with SQLite as the last resource recover after a kill."""
    scenario = Scenario(["zeo", "zeo", "sqlite"], str(tmp_path), zeo=zeo_servers)
    assert_clean(crash_harness.run(scenario, 8, random_share=0.25))


@pytest.mark.server
def test_concurrent_zeo_clients_one_killed(tmp_path: Path, zeo_servers) -> None:
    """Three processes commit to ZEO members at once, one is killed; every client stays whole."""
    scenario = Scenario(["zeo", "zeo"], str(tmp_path), zeo=zeo_servers, clients=3)
    assert_clean(crash_harness.run_concurrent(scenario, 3, 3, seed=1))


def test_steps_keep_first_and_last_of_a_run_of_stores() -> None:
    """Kill points: every event, but only the first and last call of a run of stores."""
    events = [f"a.{call}:{phase}" for call in ("tpc_begin#1", "store#1", "store#2", "store#3",
                                               "tpc_vote#1") for phase in ("before", "after")]
    assert crash_harness.steps(events) == [
        "a.tpc_begin#1:before", "a.tpc_begin#1:after", "a.store#1:before", "a.store#1:after",
        "a.store#3:before", "a.store#3:after", "a.tpc_vote#1:before", "a.tpc_vote#1:after"]
