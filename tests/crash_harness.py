"""Crash harness: kill a process at every step of a commit, recover, check the invariants.

The parent side; the child, and what a scenario and a transaction are, in
:mod:`tests.crash_child`.  :func:`run` runs trials one after the other on
the same files: a child commits one transaction and is killed at a step (a
kill point of the traced commit, :func:`steps`) or at a random instant;
after some kills a second child only opens the federation and is killed at
its ``n``-th event, in the middle of recovery, so that recovery itself is
shown to survive a crash.  :func:`run_concurrent` runs rounds of several
clients committing at once, one of them killed at a random instant.

Then the parent reopens the federation (recovery runs) and :func:`verify`
checks, for every client:

- **failed to open**: the federation opens (``InDoubtTransactions`` included);
- **half-applied**: each transaction is in every member or in none, and the
  counters agree with what is present;
- **dangling**: every cross-member reference of a present transaction loads;
- **misdirected**: it reaches the object of the same transaction;
- **wrong outcome**: what had committed stays; a transaction killed before
  the decision started (the last resource's ``commit``, or without one the
  first ZODB ``tpc_finish``) is absent, one killed after the decision
  returned is present;
- **left over**: once recovery ran, no journal entry but tombstones is left
  and no PostgreSQL transaction of ours is still prepared.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.crash_child import RELSTORAGE_KINDS, SQL_KINDS, ZODB_KINDS, Scenario, row_name

__all__ = ["RELSTORAGE_KINDS", "SQL_KINDS", "ZODB_KINDS", "Scenario", "relstorage_uris", "run",
           "run_concurrent", "verify", "zeo_servers"]

ROOT = Path(__file__).resolve().parent.parent
VIOLATIONS = ("half-applied", "dangling", "misdirected", "failed to open", "wrong outcome",
              "left over")
#: Kills during recovery happen at one of its first 12 or 30 events (a roll back and the
#: deletion of its entry make about 12, a redo in two members about 30).
RECOVERY_EVENTS = (12, 30)
#: Seconds a child may take for its commits before the trial fails.
CHILD_TIMEOUT = 120.0


@contextmanager
def zeo_servers(folder: str | Path, names: list[str]) -> Iterator[dict[str, list[Any]]]:
    """ZEO servers for members ``names``, each serving ``{name}.fs`` in ``folder``.

    Each runs in a process of its own, so that it outlives the clients the
    harness kills; the mapping gives each member's ``[host, port]``.
    """
    import ZEO

    with ExitStack() as stack:
        addresses = {}
        for name in names:
            (host, port), stop = ZEO.server(path=str(Path(folder) / f"{name}.fs"),
                                            port=("127.0.0.1", 0), threaded=False)
            stack.callback(stop)
            addresses[name] = [host, port]
        yield addresses


def relstorage_uris(databases: Any, scenario: Scenario) -> dict[str, str]:
    """A new RelStorage database for each RelStorage member of ``scenario``, by member.

    ``databases`` is a :class:`tests.servers.relstorage.RelStorageDatabases`.
    """
    return {name: databases.uri(history=RELSTORAGE_KINDS[scenario.kind(name)])
            for name in scenario.zodb if scenario.kind(name) in RELSTORAGE_KINDS}


def setup(scenario: Scenario) -> dict[str, dict[int, int]]:
    """Create tables, folders and counters; the SQL counter row keys, by member and client."""
    import transaction
    from persistent.mapping import PersistentMapping

    import federation
    from tests.models import Person

    for name in scenario.sql:
        db = scenario.sql_connect(name)
        try:
            table = scenario.table_of(name)
            db.execute(f'DROP TABLE IF EXISTS "{table}"')
            key = "INTEGER" if scenario.key == "integer" else "TEXT"
            db.execute(f'CREATE TABLE "{table}" (id {key} PRIMARY KEY, name TEXT NOT NULL, '
                       "email TEXT, owner TEXT)")
            db.execute("DROP TABLE IF EXISTS zfed_commits")
        finally:
            db.close()
    fed = federation.open(scenario.members())
    try:
        conn = fed.open()
        rows: dict[str, dict[int, Any]] = {name: {} for name in scenario.sql}
        for client in range(scenario.clients):
            for name in scenario.zodb:
                conn.root(name)[f"client{client}"] = PersistentMapping(count=0)
            for name in scenario.sql:
                row = rows[name][client] = Person(f"count{client}", email="0")
                conn.add(row, name)
            transaction.commit()
        keys = {name: {c: conn.ref(row).key for c, row in by_client.items()}
                for name, by_client in rows.items()}
        conn.close()
    finally:
        transaction.abort()
        fed.close()
    return keys


@dataclass
class Expectation:
    """What the parent knows of one client's transactions."""

    committed: set[int] = field(default_factory=set)  # must be present
    absent: set[int] = field(default_factory=set)  # must never be present
    maybe: set[int] = field(default_factory=set)  # either


@dataclass
class Summary:
    """Counts of trials and of violations, with the first few described."""

    unit: str = "trials"
    trials: int = 0
    killed: int = 0
    recovery_killed: int = 0
    tombstones: int = 0  # "aborted" journal entries at the last check: never deleted
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(VIOLATIONS, 0))
    details: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def add(self, violations: list[tuple[str, str]], where: str) -> None:
        for kind, detail in violations:
            self.counts[kind] += 1
            if len(self.details) < 20:
                self.details.append(f"{where}: {kind}: {detail}")

    @property
    def ok(self) -> bool:
        return not any(self.counts.values())

    def line(self) -> str:
        figures = ", ".join(f"{self.counts[kind]} {kind}" for kind in VIOLATIONS)
        killed = f"{self.killed} killed"
        if self.recovery_killed:
            killed += f", {self.recovery_killed} more in recovery"
        return f"crash: {self.trials} {self.unit} ({killed}, {self.seconds:.0f} s): {figures}"


def spawn(scenario: Scenario, client: int, ks: list[int], counters: dict[str, dict[int, int]],
          *, kill_at: str | None = None, delay: float | None = None,
          kill_commit: int | None = None, kill_nth: int | None = None,
          barrier: bool = False) -> subprocess.Popen[bytes]:
    """Start a child committing transactions ``ks`` of ``client``."""
    order = {"scenario": scenario.to_json(), "client": client, "ks": ks, "kill_at": kill_at,
             "delay": delay, "kill_commit": kill_commit, "kill_nth": kill_nth,
             "barrier": barrier,
             "counters": {name: by_client[client] for name, by_client in counters.items()}}
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    return subprocess.Popen(
        [sys.executable, "-c", "from tests.crash_child import child_main; child_main()",
         json.dumps(order, default=str)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, env=env)


@dataclass
class ChildResult:
    """What one child reported: its events per commit, commits returned, exit status."""

    returncode: int
    events: list[list[str]]  # per commit attempt, from "B"
    committed: list[int]
    durations: list[float]
    stderr: str


def wait(child: subprocess.Popen[bytes]) -> ChildResult:
    try:
        out, err = child.communicate(b"", timeout=CHILD_TIMEOUT)
    except subprocess.TimeoutExpired:
        child.kill()
        out, err = child.communicate()
    events: list[list[str]] = []
    committed, durations = [], []
    for line in out.decode().splitlines():
        if line == "B":
            events.append([])
        elif line.startswith("E ") and events:
            events[-1].append(line[2:])
        elif line.startswith("C "):
            _, k, seconds = line.split()
            committed.append(int(k))
            durations.append(float(seconds))
    return ChildResult(child.returncode, events, committed, durations, err.decode())


def decision(scenario: Scenario, events: list[str]) -> str:
    """``before`` (the decision had not started), ``after`` (it returned) or ``during``."""
    last = [name for name in scenario.sql if scenario.kind(name) == "sqlite"]
    if last:
        names = [f"{last[0]}.commit#1"]
    else:
        names = [e.rsplit(":", 1)[0] for e in events
                 if ".tpc_finish#" in e and e.split(".")[0] in scenario.zodb]
    if any(f"{name}:after" in events for name in names):
        return "after"
    if not any(f"{name}:before" in events for name in names):
        return "before"
    return "during"


def journaled(result: ChildResult) -> bool:
    """Whether a journal entry had become durable when the child died: recovery has work."""
    events = result.events[-1] if result.events else []
    return any(event.endswith(":after") and (".tpc_finish#" in event or "write_prepared" in event)
               for event in events)


def settle(scenario: Scenario, expect: Expectation, result: ChildResult,
           ks: list[int]) -> None:
    """Update ``expect`` with what a finished or killed child tells."""
    expect.committed.update(result.committed)
    pending = [k for k in ks if k not in result.committed]
    if not pending:
        return
    k = pending[0]  # the one in flight when the child died; later ones never started
    where = decision(scenario, result.events[-1]) if result.events else "before"
    if result.returncode != -signal.SIGKILL or where == "during":
        expect.maybe.add(k)  # a commit that failed may still have been decided
    elif where == "after":
        expect.committed.add(k)
    else:
        expect.absent.add(k)
    expect.absent.update(pending[1:])


def verify(scenario: Scenario, expects: dict[int, Expectation],
           summary: Summary | None = None) -> list[tuple[str, str]]:
    """Reopen (recovery runs) and check every invariant; the violations found."""
    import transaction

    import federation

    try:
        fed = federation.open(scenario.members(), recover=scenario.recover)
    except Exception as error:  # InDoubtTransactions, or anything else: reported
        return [("failed to open", f"{type(error).__name__}: {error}")]
    violations: list[tuple[str, str]] = []
    try:
        conn = fed.open()
        rows = _rows(scenario)
        for client, expect in expects.items():
            violations += _check_client(scenario, conn, rows, client, expect)
        violations += _left_over(scenario, conn, summary)
        conn.close()
    finally:
        transaction.abort()
        fed.close()
    return violations


def _left_over(scenario: Scenario, conn: Any,
               summary: Summary | None) -> list[tuple[str, str]]:
    """Journal entries that are not tombstones, and our prepared PostgreSQL transactions.

    The tombstones are counted in ``summary``.
    """
    from federation import journal
    from federation.catalog import CATALOG_ATTRIBUTE, journal_items

    found = []
    tombstones = 0
    for name in scenario.zodb:
        tree = getattr(getattr(conn.root(name), CATALOG_ATTRIBUTE), "journal", None)
        for gid, entry in journal_items(tree):
            state = journal.decode(entry)["state"]
            tombstones += state == "aborted"
            if state != "aborted":
                found.append(("left over", f"member {name} keeps a {state} entry {gid}"))
    if "postgresql" in scenario.kinds:
        import psycopg

        with psycopg.connect(scenario.dsn, autocommit=True) as db:
            for (gid,) in db.execute("SELECT gid FROM pg_prepared_xacts WHERE gid LIKE 'zfed-%'"):
                found.append(("left over", f"PostgreSQL keeps prepared transaction {gid}"))
    if summary is not None:
        summary.tombstones = tombstones
    return found


def _rows(scenario: Scenario) -> dict[str, dict[str, tuple[int, str | None, str | None]]]:
    """SQL rows by member and name: (key, email, owner text)."""
    found = {}
    for name in scenario.sql:
        db = scenario.sql_connect(name)
        try:
            cursor = db.execute(f'SELECT id, name, email, owner FROM "{scenario.table_of(name)}"')
            found[name] = {row[1]: (row[0], row[2], row[3]) for row in cursor.fetchall()}
        finally:
            db.close()
    return found


def _check_client(scenario: Scenario, conn: Any, rows: dict[str, Any], client: int,
                  expect: Expectation) -> list[tuple[str, str]]:
    violations = []
    present: dict[str, set[int]] = {}
    counts: dict[str, int] = {}
    for name in scenario.zodb:
        folder = conn.root(name)[f"client{client}"]
        present[name] = {int(key[len(name):]) for key in folder if key != "count"}
        counts[name] = folder["count"]
    for name in scenario.sql:
        suffix = f"/{client}"
        present[name] = {int(n[len(name):-len(suffix)]) for n in rows[name]
                         if n.startswith(name) and n.endswith(suffix)
                         and n[len(name):-len(suffix)].isdigit()}
        counts[name] = int(rows[name][f"count{client}"][1])
    union = set().union(*present.values())
    for k in sorted(union):
        missing = [name for name, ks in present.items() if k not in ks]
        if missing:
            violations.append(("half-applied", f"client {client} transaction {k} is missing "
                               f"from {', '.join(missing)}"))
    if len(set(counts.values())) > 1 or max(counts.values()) != max(union, default=0):
        violations.append(("half-applied", f"client {client} counters {counts} disagree "
                           f"(latest transaction present: {max(union, default=0)})"))
    lost = expect.committed - union
    phantom = (union & expect.absent) | (union - expect.committed - expect.maybe)
    if lost:
        violations.append(("wrong outcome", f"client {client}: committed {sorted(lost)} lost"))
    if phantom:
        violations.append(("wrong outcome",
                           f"client {client}: {sorted(phantom)} present, never decided"))
    for k in sorted(union):
        violations += _check_references(scenario, conn, rows, client, k, present)
    expect.committed |= union
    expect.maybe -= union
    expect.absent |= expect.maybe
    expect.maybe = set()
    return violations


def _check_references(scenario: Scenario, conn: Any, rows: dict[str, Any], client: int,
                      k: int, present: dict[str, set[int]]) -> list[tuple[str, str]]:
    ring = scenario.zodb
    checks: list[tuple[str, Callable[[], Any], str]] = []
    for index, name in enumerate(ring):
        if k not in present[name]:
            continue
        item = conn.root(name)[f"client{client}"][f"{name}{k}"]
        target = ring[(index + 1) % len(ring)]
        checks.append((f"{name}{k}.link", lambda item=item: item.link.title, f"{target}{k}"))
        if index == len(ring) - 1:
            for sql in scenario.sql:
                checks.append((f"{name}{k}.row_{sql}",
                               lambda item=item, sql=sql: getattr(item, f"row_{sql}").name,
                               row_name(sql, client, k)))
    for name in scenario.sql:
        if k in present[name]:
            key = rows[name][row_name(name, client, k)][0]
            checks.append((f"{row_name(name, client, k)}.owner",
                           lambda ref=f"{name}:{scenario.key}:{key}": conn.get(ref).owner.title,
                           f"{ring[0]}{k}"))
    violations = []
    for what, follow, wanted in checks:
        try:
            reached = follow()
        except Exception as error:
            violations.append(("dangling", f"client {client}: {what} does not load: "
                               f"{type(error).__name__}: {error}"))
            continue
        if reached != wanted:
            violations.append(("misdirected", f"client {client}: {what} reaches {reached!r}, "
                               f"not {wanted!r}"))
    return violations


def steps(events: list[str]) -> list[str]:
    """The kill points of a traced commit: every event, but of a run of ``store`` or
    ``create`` calls on one member only the first and the last call."""
    calls = list(dict.fromkeys(event.split(":")[0] for event in events))
    method = [call.partition("#")[0] for call in calls]
    inner = {call for index, call in enumerate(calls)
             if method[index].endswith((".store", ".create"))
             and 0 < index < len(calls) - 1
             and method[index - 1] == method[index] == method[index + 1]}
    return [event for event in events if event.split(":")[0] not in inner]


def run(scenario: Scenario, trials: int, *, seed: int = 0, random_share: float = 0.25,
        recovery_share: float = 0.3,
        progress: Callable[[str], None] | None = None) -> Summary:
    """``trials`` sequential trials on one client: each killed at a step or at random.

    The kill points are taken in turns: each once per turn, in a random order.

    After a share ``recovery_share`` of the kills that leave a journal entry,
    the next process to open is killed too, at one of the first events of
    its recovery.
    """
    rng = random.Random(seed)
    started = time.perf_counter()
    counters = setup(scenario)
    expect = Expectation()
    summary = Summary()
    k = 2  # traced, not killed; the second commit is the steady state (the first makes indexes)
    calibration = wait(spawn(scenario, 0, [1, 2], counters))
    if calibration.returncode != 0:
        raise RuntimeError(f"The calibration commits failed:\n{calibration.stderr}")
    settle(scenario, expect, calibration, [1, 2])
    kill_points = steps(calibration.events[-1])
    duration = min(calibration.durations)  # a fresh process, as in the trials, or less
    turn: list[str] = []
    for trial in range(trials):
        k += 1
        if rng.random() < random_share:
            kill_at, delay, how = None, rng.uniform(0, 1.5 * duration), "random instant"
        else:
            if not turn:  # every kill point once per turn, in a random order
                turn = rng.sample(kill_points, len(kill_points))
            kill_at, delay = turn.pop(), None
            how = kill_at
        result = wait(spawn(scenario, 0, [k], counters, kill_at=kill_at, delay=delay))
        if result.returncode not in (0, -signal.SIGKILL):
            summary.add([("failed to open", f"the child failed: {result.stderr[-2000:]}")],
                        f"trial {trial} ({how})")
        summary.killed += result.returncode == -signal.SIGKILL
        settle(scenario, expect, result, [k])
        if (result.returncode == -signal.SIGKILL and journaled(result)
                and rng.random() < recovery_share):
            nth = rng.randint(1, rng.choice(RECOVERY_EVENTS))
            how += f", then recovery killed at its event {nth}"
            again = wait(spawn(scenario, 0, [], counters, kill_nth=nth))
            summary.recovery_killed += again.returncode == -signal.SIGKILL
            if again.returncode not in (0, -signal.SIGKILL):
                summary.add([("failed to open", f"recovery failed: {again.stderr[-2000:]}")],
                            f"trial {trial} ({how})")
        violations = verify(scenario, {0: expect}, summary)
        summary.trials += 1
        summary.add(violations, f"trial {trial} (transaction {k}, killed at {how})")
        if progress is not None and violations:
            progress(f"trial {trial}, killed at {how}: {violations}")
        if any(kind == "failed to open" for kind, _ in violations):
            break  # the files cannot be used any more
    summary.seconds = time.perf_counter() - started
    return summary


def run_concurrent(scenario: Scenario, rounds: int, commits: int, *, seed: int = 0,
                   barrier: bool = True,
                   progress: Callable[[str], None] | None = None) -> Summary:
    """Rounds of ``scenario.clients`` processes committing at once, one killed at random.

    With ``barrier`` every client opens the federation before any commits;
    without it, a client's recovery may run while others commit.
    """
    rng = random.Random(seed)
    started = time.perf_counter()
    counters = setup(scenario)
    expects = {client: Expectation() for client in range(scenario.clients)}
    summary = Summary(unit="rounds")
    calibration = wait(spawn(scenario, 0, [1, 2, 3], counters))
    if calibration.returncode != 0:
        raise RuntimeError(f"The calibration commits failed:\n{calibration.stderr}")
    settle(scenario, expects[0], calibration, [1, 2, 3])
    duration = max(calibration.durations)
    next_k = {client: 1 for client in range(scenario.clients)}
    next_k[0] = 4
    for round_ in range(rounds):
        victim = rng.randrange(scenario.clients)
        children = {}
        for client in range(scenario.clients):
            ks = list(range(next_k[client], next_k[client] + commits))
            next_k[client] += commits
            options: dict[str, Any] = {}
            if client == victim:
                options = {"delay": rng.uniform(0, 1.5 * duration),
                           "kill_commit": rng.randrange(commits)}
            children[client] = (ks, spawn(scenario, client, ks, counters, barrier=barrier,
                                          **options))
        if barrier:  # every client has opened (and recovered) before any commits
            ready = [child for _ks, child in children.values()
                     if child.stdout is not None and child.stdout.readline().strip() == b"R"]
            for child in ready:
                assert child.stdin is not None
                child.stdin.write(b"go\n")
                child.stdin.flush()
        for client, (ks, child) in children.items():
            result = wait(child)
            if result.returncode not in (0, -signal.SIGKILL) or (
                    client != victim and result.returncode != 0):
                summary.add([("failed to open", f"client {client} failed: "
                              f"{result.stderr[-2000:]}")], f"round {round_}")
            summary.killed += result.returncode == -signal.SIGKILL
            settle(scenario, expects[client], result, ks)
        violations = verify(scenario, expects, summary)
        summary.trials += 1
        summary.add(violations, f"round {round_} (client {victim} killed)")
        if progress is not None and violations:
            progress(f"round {round_}: {violations}")
        if any(kind == "failed to open" for kind, _ in violations):
            break
    summary.seconds = time.perf_counter() - started
    return summary
