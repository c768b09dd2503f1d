"""The model-based test with a large budget: ``python benchmarks/model.py [--examples N]``.

Runs :class:`tests.stateful.FederationModel` (three members, two managers,
reopened federations; see its docstring) for many random interleavings and
prints what they did.  The test suite runs the same machine with a budget
of a few seconds (``tests/test_model.py``); docs/performance.md records a
long run.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the tests package

from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test

from tests import stateful


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=2000, help="interleavings to run")
    parser.add_argument("--steps", type=int, default=50, help="steps per interleaving")
    args = parser.parse_args()
    start = time.perf_counter()
    run_state_machine_as_test(stateful.FederationModel, settings=settings(
        max_examples=args.examples, stateful_step_count=args.steps, deadline=None,
        database=None, suppress_health_check=list(HealthCheck)))
    seconds = time.perf_counter() - start
    print(f"{args.examples} interleavings of up to {args.steps} steps passed in {seconds:.0f} s")
    for name, count in sorted(stateful.STATS.items()):
        print(f"  {name}: {count}")


if __name__ == "__main__":
    main()
