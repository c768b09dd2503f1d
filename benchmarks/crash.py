"""Crash harness: ``python benchmarks/crash.py --trials 300 --members file,file,sqlite``.

Kills a child process (SIGKILL) at every step of a commit over several
members and at random instants (and, after some kills, the next process
in the middle of its recovery), reopens the federation (recovery runs) and
checks all-or-nothing, dangling and misdirected references, that every
member opens, and that the outcome follows the decision; see
``tests/crash_harness.py``, which holds the logic (the test suite runs a
fast subset of it in ``tests/test_crash.py``).  Member kinds: ``file``,
``zeo`` (a server in its own process per member), ``relstorage`` and
``relstorage-hf`` (RelStorage, history-preserving and history-free, a
database each), ``sqlite``, ``postgresql`` (a throwaway PostgreSQL server,
as the tests start it, for both).
``--clients 3`` runs the concurrent variant instead: rounds of three
processes committing at once to the same members, one of them killed at a
random instant of a commit (``--no-barrier``: each client starts
committing as soon as it has opened, so that recovery in one runs while
others commit).

Prints one summary line, and exits 1 on any violation.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the tests package

from tests import crash_harness


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(f"crash: stopped by signal {signum}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="crash.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", default="file,file,sqlite",
                        help="member kinds, comma-separated: file, zeo, relstorage, "
                             "relstorage-hf, sqlite, postgresql")
    parser.add_argument("--trials", type=int, default=300,
                        help="trials (rounds with --clients above 1)")
    parser.add_argument("--clients", type=int, default=1,
                        help="processes committing at once; one per round is killed")
    parser.add_argument("--commits", type=int, default=4,
                        help="commits per client and round (with --clients)")
    parser.add_argument("--no-barrier", action="store_true",
                        help="with --clients: clients open (and recover) while others commit")
    parser.add_argument("--key", choices=("integer", "uuid"), default="integer",
                        help="kind of the SQL members' keys")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--random-share", type=float, default=0.25,
                        help="share of trials killed at a random instant instead of a step")
    parser.add_argument("--recovery-share", type=float, default=0.3,
                        help="share of kills after which recovery is killed as well")
    parser.add_argument("--verbose", action="store_true", help="print each violation")
    options = parser.parse_args(argv)
    # Recovery and FileStorage's truncation log at WARNING on every trial; shown with --verbose.
    logging.basicConfig(level=logging.WARNING if options.verbose else logging.CRITICAL)
    signal.signal(signal.SIGTERM, _terminate)  # stop the servers on the way out
    kinds = options.members.split(",")
    unknown = set(kinds) - {*crash_harness.ZODB_KINDS, *crash_harness.SQL_KINDS}
    if unknown:
        parser.error(f"unknown member kinds: {', '.join(sorted(unknown))}")
    with ExitStack() as stack:
        folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="zfed-crash-"))
        scenario = crash_harness.Scenario(kinds, folder, clients=options.clients,
                                          key=options.key)
        scenario.zeo = stack.enter_context(crash_harness.zeo_servers(
            folder, [name for name in scenario.zodb if scenario.kind(name) == "zeo"]))
        if {"postgresql", *crash_harness.RELSTORAGE_KINDS} & set(kinds):
            from tests.servers.postgresql import running_postgresql
            from tests.servers.relstorage import RelStorageDatabases

            server = stack.enter_context(running_postgresql(Path(folder) / "postgresql"))
            scenario.dsn = server.dsn
            scenario.relstorage = crash_harness.relstorage_uris(RelStorageDatabases(server),
                                                                scenario)
        report = print if options.verbose else None
        if options.clients > 1:
            summary = crash_harness.run_concurrent(scenario, options.trials, options.commits,
                                                   seed=options.seed,
                                                   barrier=not options.no_barrier,
                                                   progress=report)
        else:
            summary = crash_harness.run(scenario, options.trials, seed=options.seed,
                                        random_share=options.random_share,
                                        recovery_share=options.recovery_share, progress=report)
    for detail in summary.details:
        print(detail)
    if summary.tombstones:
        print(f"crash: {summary.tombstones} tombstones left in the commit journal")
    print(f"{summary.line()} [members {options.members}"
          f"{f', {options.clients} clients' if options.clients > 1 else ''}]")
    return 0 if summary.ok else 1


if __name__ == "__main__":
    sys.exit(main())
