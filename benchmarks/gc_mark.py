"""Time and peak memory of the federation-wide mark (``federation.marking``).

Builds two FileStorage members with N objects each (items in an OOBTree
under the root; every tenth item of ``a`` references an item of ``b``
through a stub, and a tenth of ``b``'s items are reachable only that way),
then marks them in a fresh process and reports the time and the process's
peak resident memory before and after marking::

    python benchmarks/gc_mark.py --objects 100000 DIRECTORY

The build is kept in DIRECTORY and reused by later runs with the same N.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import transaction
from BTrees.OOBTree import OOBTree
from persistent import Persistent

BATCH = 20_000


class Item(Persistent):
    """A benchmark object: a number and an optional reference."""

    def __init__(self, number: int, link: object = None) -> None:
        self.number = number
        self.link = link


def _members(directory: Path) -> dict[str, str]:
    return {name: (directory / f"{name}.fs").as_uri() for name in ("a", "b")}


def build(directory: Path, objects: int) -> None:
    """Create the two members with ``objects`` items each (skipped if already built)."""
    import federation

    stamp = directory / "built.json"
    if stamp.exists() and json.loads(stamp.read_text())["objects"] == objects:
        return
    for path in directory.glob("*.fs*"):
        path.unlink()
    with federation.open(_members(directory)) as fed, fed.open() as conn:
        trees = {name: conn.root(name).setdefault("items", OOBTree()) for name in ("a", "b")}
        transaction.commit()
        only_from_a = []
        for start in range(0, objects, BATCH):
            for number in range(start, min(start + BATCH, objects)):
                item = Item(number)
                if number % 10 == 0:
                    conn.add(item, "b")  # reachable only through a's stub
                    only_from_a.append(item)
                else:
                    trees["b"][number] = item
            transaction.commit()
        for start in range(0, objects, BATCH):
            for number in range(start, min(start + BATCH, objects)):
                link = only_from_a[number // 10] if number % 10 == 0 else None
                trees["a"][number] = Item(number, link)
            transaction.commit()
    stamp.write_text(json.dumps({"objects": objects}))


def mark(directory: Path, traced: bool) -> dict[str, float]:
    """Mark the members (in this process); time, peak RSS and counts.

    ``traced``: also the peak of Python allocations made while marking
    (tracemalloc, which slows the mark down; its time is not reported).
    """
    import tracemalloc

    import federation
    from federation.marking import Marker

    with federation.open(_members(directory)) as fed:
        marker = Marker(fed)
        marker.open()
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        if traced:
            tracemalloc.start()
        started = time.perf_counter()
        marker.mark_roots()
        marker.scan_tail()
        seconds = time.perf_counter() - started
        if traced:
            _current, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            marker.close()
            return {"mark_python_peak_mb": round(peak / 2**20, 1)}
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        result = {"mark_seconds": round(seconds, 2), "rss_after_open_mb": round(before, 1),
                  "rss_peak_mb": round(after, 1), "marked_a": marker.marked("a"),
                  "marked_b": marker.marked("b"), "cross_b": len(marker.cross["b"])}
        marker.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--objects", type=int, default=100_000)
    parser.add_argument("--mark-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--traced", action="store_true", help=argparse.SUPPRESS)
    options = parser.parse_args()
    options.directory.mkdir(parents=True, exist_ok=True)
    if options.mark_only:
        print(json.dumps(mark(options.directory, options.traced)))
        return
    started = time.perf_counter()
    build(options.directory, options.objects)
    built = time.perf_counter() - started
    result: dict[str, object] = {}
    for extra in ([], ["--traced"]):
        child = subprocess.run([sys.executable, __file__, "--mark-only", *extra,
                                str(options.directory)], check=True, capture_output=True,
                               text=True)
        result.update(json.loads(child.stdout))
    result.update(objects_per_member=options.objects, build_seconds=round(built, 1))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
