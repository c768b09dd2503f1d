"""Side-by-side benchmark: the federation against native ZODB (``zfed bench``).

Every workload runs on our federation and on its baseline in the same
process, alternating runs (ours, baseline, ours, baseline...), on
FileStorage files in a temporary folder that is removed afterwards.  Only
the work itself is timed (opening databases and building data are not),
with Python's cyclic garbage collector paused, as ``timeit`` does.

1. cold traversal: new ``DB`` objects on existing files (empty caches);
   follow N references from referrers in member ``b`` to distinct targets
   in member ``a`` and read one attribute of each target.  Baseline: a ZODB
   multi-database, whose pickles hold ``['m', ...]`` references.
2. warm traversal: the same again on the same connections, in a new
   transaction, every object in the connection caches (best of 3 passes).
3. commit: N new cross-member references in commits of 1,000; targets
   exist already.  ``new stubs``: the referencing member has no stub for
   them yet (a fresh member per run); ``stub reused``: it has.
4. key lookup: N UUIDs to objects in a ``uuid`` member, cold (new DB) and
   warm; baseline: ``zope.intid``'s ``IntIds.getObject`` on the same
   objects in the same file.
5. scale: one member holding 10^4, 10^5 (and with ``--full`` 10^6) stubs;
   cold single-stub lookup through the stub index, amortized resolution in a
   traversal, memory and disk per stub.
6. round trips for foreign loads: N references from a ZODB member into a
   SQLite member (the SQL adapter); adapter round trips and time, when each
   referrer holds one reference and when holders hold 100.

The logic lives in :mod:`federation.benchmark_workloads` (workloads) and
:mod:`federation.benchmark_data` (stores and data sets); ``benchmarks/bench.py``
and ``zfed bench`` call :func:`main`.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict
from importlib import metadata
from pathlib import Path
from typing import Any

from federation.benchmark_workloads import NOT_AVAILABLE, TARGETS, TITLES, WORKLOADS, Settings

__all__ = ["TARGETS", "WORKLOADS", "Settings", "main", "report", "run", "settings"]


def settings(n: int | None = None, runs: int | None = None, *, quick: bool = False,
             full: bool = False) -> Settings:
    """The presets of the command line: default, ``--quick`` (smoke) and ``--full``."""
    chosen = Settings(n=1_000, runs=3, scale_sizes=(10**3, 10**4), samples=200) if quick \
        else Settings()
    if full:
        chosen.scale_sizes = (*chosen.scale_sizes, 10**6)
    if n is not None:
        chosen.n = n
    if runs is not None:
        chosen.runs = runs
    return chosen


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {name: metadata.version(name) for name in ("ZODB", "persistent", "BTrees")}
    return {"nproc": os.cpu_count(), "cpu": cpu, "python": platform.python_version(),
            "platform": platform.platform(), **versions}


def run(cfg: Settings | None = None, *, echo: Callable[[str], Any] = print,
        directory: Path | None = None, only: tuple[str, ...] = ()) -> dict[str, Any]:
    """Run the workloads (all, or those named in ``only``) and return the results."""
    cfg = cfg or Settings()
    chosen = [name for name in WORKLOADS if not only or name in only]
    if "commit" in chosen and "traversal" not in chosen:
        chosen.insert(0, "traversal")
    base = Path(tempfile.mkdtemp(prefix="zfed-bench-", dir=directory))
    workloads: dict[str, Any] = {}
    try:
        for name in chosen:
            echo(f"... {name}")
            found = WORKLOADS[name](base, cfg)
            workloads.update(found)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    for name, note in NOT_AVAILABLE.items():
        workloads[name] = {"kind": "n/a", "title": TITLES[name], "note": note}
    return {"settings": asdict(cfg), "machine": machine(), "workloads": workloads,
            "met": all(w.get("met", True) for w in workloads.values())}


def report(results: dict[str, Any]) -> str:
    """The results as text tables."""
    cfg, host = results["settings"], results["machine"]
    lines = [f"N={cfg['n']}, runs={cfg['runs']}, medians of alternating runs; {host['cpu']}, "
             f"{host['nproc']} CPUs, Python {host['python']}, ZODB {host['ZODB']}", "",
             f"{'workload':42} {'ours µs':>8} {'base µs':>8} {'ratio':>6} {'target':>7}  "
             f"{'loads ours/base':>15}  result"]
    notes = []
    for work in results["workloads"].values():
        if work["kind"] == "comparison":
            loads = f"{work['ours_loads']:.0f}/{work['baseline_loads']:.0f}"
            lines.append(f"{work['title']:42} {work['ours_us']:8.2f} {work['baseline_us']:8.2f} "
                         f"{work['ratio']:6.2f} {'<=' + str(work['target']):>7}  {loads:>15}  "
                         f"{'met' if work['met'] else 'MISSED'}")
            if work["ours_bytes_per_op"]:
                notes.append(f"{work['title']}: {work['ours_bytes_per_op']:.0f} bytes written "
                             f"per reference (baseline {work['baseline_bytes_per_op']:.0f})")
        elif work["kind"] == "n/a":
            lines.append(f"{work['title']:42} {work['note']}")
        elif work["kind"] == "round_trips":
            notes.append(
                f"{work['title']} (SQLite member, batch size {work['batch_size']}), "
                f"{work['refs']} references: one referrer per row "
                f"{work['referrers_round_trips']:.0f} ({work['referrers_us']:.1f} µs/ref), "
                f"holders of 100 {work['holders_round_trips']:.0f} "
                f"({work['holders_us']:.1f} µs/ref); a ZODB member: {work['refs']} loads; "
                f"target at most {work['target']}: {'met' if work['met'] else 'MISSED'}")
    baselines = {work["baseline_name"] for name, work in results["workloads"].items()
                 if name.startswith("key_lookup") and work["kind"] == "comparison"}
    notes += [f"key lookup baseline: {name}" for name in sorted(baselines)]
    lines += ["", *notes]
    scale = results["workloads"].get("scale")
    if scale is not None:
        lines += ["", "stub lookup at scale (ours; scan, memory and disk per reference: ours/base)",
                  f"{'stubs':>9} {'cold µs':>8} {'loads':>5} {'warm µs':>8} {'scan µs':>13} "
                  f"{'memory bytes':>13} {'disk bytes':>11}"]
        for size in scale["sizes"]:
            pairs = {what: f"{size['ours_' + what]:.{n}f}/{size['baseline_' + what]:.{n}f}"
                     for what, n in (("scan_us_per_ref", 2), ("memory_bytes_per_ref", 0),
                                     ("disk_bytes_per_ref", 0))}
            lines.append(f"{size['stubs']:>9} {size['cold_lookup_us']:8.1f} "
                         f"{size['cold_lookup_loads']:5.1f} {size['warm_lookup_us']:8.2f} "
                         f"{pairs['scan_us_per_ref']:>13} {pairs['memory_bytes_per_ref']:>13} "
                         f"{pairs['disk_bytes_per_ref']:>11}")
        small, large = scale["compared"]
        lines.append(f"cold stub lookup at {large} / at {small} stubs: {scale['ratio']:.2f} "
                     f"(target <= {scale['target']}): {'met' if scale['met'] else 'MISSED'}")
    lines.append("all targets met" if results["met"] else "some targets MISSED")
    return "\n".join(lines)


def main(n: int | None = None, runs: int | None = None, *, quick: bool = False,
         full: bool = False, check: bool = False, json_path: Path | None = None,
         only: tuple[str, ...] = (), echo: Callable[[str], Any] = print) -> int:
    """What ``zfed bench`` and ``benchmarks/bench.py`` do; returns the exit status."""
    results = run(settings(n, runs, quick=quick, full=full), echo=echo, only=only)
    echo(report(results))
    if json_path is not None:
        Path(json_path).write_text(json.dumps(results, indent=2) + "\n")
    return 1 if check and not results["met"] else 0
