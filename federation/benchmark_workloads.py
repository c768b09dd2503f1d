"""The workloads of :mod:`federation.benchmark` (see its docstring).

Each workload takes a folder and the :class:`Settings` and returns results
keyed by workload name; comparisons run ours and the baseline alternately.
"""

from __future__ import annotations

import gc
import math
import random
import statistics
import time
import tracemalloc
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import ZODB
from BTrees.OOBTree import OOBTree
from ZODB.FileStorage import FileStorage

from federation.benchmark_data import (
    Ours,
    Referrer,
    Target,
    batches,
    build_foreign,
    build_holders,
    build_index_baseline,
    build_keyed,
    build_pairs,
    foreign_store,
    key,
    open_store,
)
from federation.ref import Ref

#: ours/baseline ratios not to exceed (scale: lookup at the largest size / at the smallest).
TARGETS = {
    "cold_traversal": 1.15,
    "warm_traversal": 1.05,
    "commit_new_stubs": 1.30,
    "commit_new_stubs_random": 1.30,
    "commit_stub_reused": 1.30,
    "key_lookup_uuid": 1.00,
    "key_lookup_uuid_warm": 1.00,
    "key_lookup_uuid_lookup": 1.00,
    "scale": 1.50,
    "commit_one_member": 1.30,
    "commit_two_members": 2.00,
    "commit_three_members": 2.00,
}

TITLES = {
    "cold_traversal": "cold traversal (per reference)",
    "warm_traversal": "warm traversal (per reference)",
    "commit_new_stubs": "commit, new stubs (per reference)",
    "commit_new_stubs_random": "commit, new stubs, random order",
    "commit_stub_reused": "commit, stub reused (per reference)",
    "key_lookup_uuid": "key lookup uuid, cold: conn.get(Ref)",
    "key_lookup_uuid_warm": "key lookup uuid, warm: conn.get(Ref)",
    "key_lookup_uuid_lookup": "key lookup uuid, cold: conn.lookup(UUID)",
    "key_lookup_uid": "key lookup uid",
    "foreign_round_trips": "round trips for foreign loads",
    "commit_one_member": "commit touching 1 member (per commit)",
    "commit_two_members": "commit touching 2 members, journaled (per commit)",
    "commit_three_members": "commit touching 3 members, journaled (per commit)",
}

NOT_AVAILABLE = {
    "key_lookup_uid": "n/a: uid keys name directory entries; a cold lookup is two LDAP "
                      "searches (the DN, then the entry; counted in tests/test_adapter_ldap.py), "
                      "which no in-process zope.intid baseline compares with",
}


@dataclass
class Settings:
    """What to run; see :func:`settings` for the command-line presets."""

    n: int = 20_000
    runs: int = 5
    batch: int = 1_000
    scale_sizes: tuple[int, ...] = (10**4, 10**5)
    samples: int = 1_000  # cold single-stub lookups per scale size
    seed: int = 3

    @property
    def cache_size(self) -> int:
        """Connection cache size (objects), the same for both sides: room for everything."""
        return 4 * max(self.n, 10_000) + 10_000


def _timed(work: Callable[[], Any]) -> float:
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter()
        work()
        return time.perf_counter() - start
    finally:
        gc.enable()


class Measured(NamedTuple):
    """One timed run of one side."""

    seconds: float
    loads: int  # records loaded from storage
    written: int = 0  # bytes the storage files grew by


Runs = dict[str, dict[str, list[Measured]]]


def _alternate(runs: int, run: Callable[[str, int], dict[str, Measured]]) -> Runs:
    """``run(side, number)`` for ours and baseline in turn; name -> side -> [Measured]."""
    results: Runs = {}
    for number in range(runs):
        for side in ("ours", "baseline"):
            for name, measured in run(side, number).items():
                results.setdefault(name, {"ours": [], "baseline": []})[side].append(measured)
    return results


def _comparison(name: str, ops: int, sides: dict[str, list[Measured]],
                baseline: str) -> dict[str, Any]:
    ours, base = (statistics.median(m.seconds for m in sides[side])
                  for side in ("ours", "baseline"))
    ratio = ours / base
    result = {
        "kind": "comparison", "title": TITLES[name], "baseline_name": baseline, "ops": ops,
        "ours_us": ours / ops * 1e6, "baseline_us": base / ops * 1e6,
        "ratio": ratio, "target": TARGETS[name], "met": ratio <= TARGETS[name],
        "paired_ratios": [o.seconds / b.seconds
                          for o, b in zip(sides["ours"], sides["baseline"], strict=True)],
    }
    for side in ("ours", "baseline"):
        result[f"{side}_s"] = [m.seconds for m in sides[side]]
        result[f"{side}_loads"] = statistics.median(m.loads for m in sides[side])
        result[f"{side}_bytes_per_op"] = statistics.median(m.written for m in sides[side]) / ops
    return result


def _touch_targets(referrers: list[Any]) -> None:
    for referrer in referrers:
        _ = referrer.target.title


# -- workloads 1 and 2: traversal ---------------------------------------------------

def traversal(base: Path, cfg: Settings) -> dict[str, dict[str, Any]]:
    paths = {side: {m: base / side / f"{m}.fs" for m in "ab"} for side in ("ours", "baseline")}
    for side, files in paths.items():
        (base / side).mkdir(parents=True, exist_ok=True)
        with open_store(side, files, cfg.cache_size) as store:
            build_pairs(store, cfg.n)

    def run(side: str, _number: int) -> dict[str, Measured]:
        with open_store(side, paths[side], cfg.cache_size) as store:
            referrers = list(store.root("b")["referrers"].values())  # ghosts, not loaded
            before = store.loads()
            cold = _timed(lambda: _touch_targets(referrers))
            cold_loads = store.loads() - before
            store.tm.abort()  # a new transaction; the caches are large enough to keep all
            before = store.loads()
            warm = min(_timed(lambda: _touch_targets(referrers)) for _ in range(3))
            return {"cold_traversal": Measured(cold, cold_loads),
                    "warm_traversal": Measured(warm, store.loads() - before)}

    return {name: _comparison(name, cfg.n, sides, "ZODB multi-database")
            for name, sides in _alternate(cfg.runs, run).items()}


# -- workload 3: commit -------------------------------------------------------------

def commit(base: Path, cfg: Settings) -> dict[str, dict[str, Any]]:
    """New references to targets of ``a``; run after :func:`traversal` (its files)."""

    order = list(range(cfg.n))
    random.Random(cfg.seed).shuffle(order)

    def run(side: str, number: int) -> dict[str, Measured]:
        folder = base / side
        fresh = {"a": folder / "a.fs", "c": folder / f"c{number}.fs"}
        shuffled = {"a": folder / "a.fs", "c": folder / f"r{number}.fs"}
        known = {"a": folder / "a.fs", "b": folder / "b.fs"}
        return {"commit_new_stubs": _commit_run(side, fresh, "c", "new", cfg),
                "commit_new_stubs_random": _commit_run(side, shuffled, "c", "new", cfg, order),
                "commit_stub_reused": _commit_run(side, known, "b", f"run{number}", cfg)}

    return {name: _comparison(name, cfg.n, sides, "ZODB multi-database")
            for name, sides in _alternate(cfg.runs, run).items()}


def _commit_run(side: str, paths: dict[str, Path], member: str, name: str, cfg: Settings,
                order: list[int] | None = None) -> Measured:
    with open_store(side, paths, cfg.cache_size) as store:
        targets = list(store.root("a")["targets"].values())  # ghosts of committed targets
        if order is not None:
            targets = [targets[i] for i in order]
        container = store.root(member)[name] = OOBTree()
        store.tm.commit()
        before, size = store.loads(), paths[member].stat().st_size

        def work() -> None:
            for chunk in batches(cfg.n, cfg.batch):
                for i in chunk:
                    container[key(i)] = Referrer(targets[i])
                store.tm.commit()

        seconds = _timed(work)
        return Measured(seconds, store.loads() - before, paths[member].stat().st_size - size)


# -- workload 4: key lookup ---------------------------------------------------------

def key_lookup(base: Path, cfg: Settings) -> dict[str, dict[str, Any]]:
    path = base / "keys" / "u.fs"
    path.parent.mkdir(parents=True, exist_ok=True)
    uuids = build_keyed(path, cfg.n, cfg.cache_size)
    baseline_name, ids = build_index_baseline(path, cfg.cache_size, uuids)
    order = list(range(cfg.n))
    random.Random(cfg.seed).shuffle(order)  # the same objects, in the same order, both sides
    uuids = [uuids[i] for i in order]
    ids = [ids[i] for i in order]

    def ours(via: str) -> dict[str, Measured]:
        with Ours({"u": path}, cfg.cache_size, kinds={"u": "uuid"}) as store:
            conn, jar = store.conn, store.jar("u")
            refs = [Ref("u", "uuid", value) for value in uuids]

            def by_get() -> None:
                for ref in refs:
                    _ = conn.get(ref).title

            def by_lookup() -> None:
                for value in uuids:
                    _ = conn.lookup(value).title

            if via == "lookup":
                return {"key_lookup_uuid_lookup": _measure(by_lookup, jar)}
            cold = _measure(by_get, jar)
            store.tm.abort()
            return {"key_lookup_uuid": cold, "key_lookup_uuid_warm": _measure(by_get, jar)}

    def baseline(via: str) -> dict[str, Measured]:
        db = ZODB.DB(FileStorage(str(path)), cache_size=cfg.cache_size)
        try:
            with db.transaction() as conn:
                root = conn.root()
                if "intids" in root:
                    get = root["intids"].getObject
                else:
                    get = root["uuid_index"].__getitem__

                def lookups() -> None:
                    for value in ids:
                        _ = get(value).title

                if via == "lookup":
                    return {"key_lookup_uuid_lookup": _measure(lookups, conn)}
                cold = _measure(lookups, conn)
                conn.transaction_manager.abort()
                return {"key_lookup_uuid": cold, "key_lookup_uuid_warm": _measure(lookups, conn)}
        finally:
            db.close()

    def run(side: str, _number: int) -> dict[str, Measured]:
        work = ours if side == "ours" else baseline
        return {**work("get"), **work("lookup")}

    return {name: _comparison(name, cfg.n, sides, baseline_name)
            for name, sides in _alternate(cfg.runs, run).items()}


def _measure(work: Callable[[], Any], jar: Any) -> Measured:
    before = jar._load_count
    seconds = _timed(work)
    return Measured(seconds, jar._load_count - before)


# -- workload 5: scale --------------------------------------------------------------

def scale(base: Path, cfg: Settings) -> dict[str, dict[str, Any]]:
    sizes = [_scale_size(base / f"scale-{n}", n) for n in cfg.scale_sizes]
    # Single-stub lookups of all sizes are interleaved, so that a machine that gets
    # slower or faster during the run does not tilt the comparison between sizes.
    with ExitStack() as stack:
        stores = [stack.enter_context(Ours({m: base / f"scale-{n}" / "ours" / f"{m}.fs"
                                            for m in "ab"}, 10_000))
                  for n in cfg.scale_sizes]
        for size, lookups in zip(sizes, _stub_lookups(stores, cfg), strict=True):
            size.update(lookups)
    small, large = sizes[0], sizes[-1]
    ratio = large["cold_lookup_us"] / small["cold_lookup_us"]
    return {"scale": {"kind": "scale", "title": "stub lookup at scale", "sizes": sizes,
                      "compared": [small["stubs"], large["stubs"]], "ratio": ratio,
                      "target": TARGETS["scale"], "met": ratio <= TARGETS["scale"]}}


def _scale_size(folder: Path, n: int) -> dict[str, Any]:
    cache = 10_000
    result: dict[str, Any] = {"stubs": n}
    for side in ("ours", "baseline"):
        files = {m: folder / side / f"{m}.fs" for m in "ab"}
        files["a"].parent.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        with open_store(side, files, cache) as store:
            build_holders(store, n)
        result[f"{side}_build_s"] = time.perf_counter() - start
        result[f"{side}_disk_bytes_per_ref"] = files["b"].stat().st_size / n
        # Amortized resolution in a cold traversal: activate every holder (100 refs each).
        for measure in ("scan", "memory"):
            with open_store(side, files, cache) as store:
                holders = list(store.root("b")["holders"].values())
                if measure == "scan":
                    seconds = _timed(lambda holders=holders: _activate(holders))
                    result[f"{side}_scan_us_per_ref"] = seconds / n * 1e6
                else:
                    tracemalloc.start()
                    try:
                        _activate(holders)
                        used = tracemalloc.get_traced_memory()[0]
                    finally:
                        tracemalloc.stop()
                    result[f"{side}_memory_bytes_per_ref"] = used / n
    return result


def _activate(holders: list[Any]) -> None:
    for holder in holders:
        holder._p_activate()


def _stub_lookups(stores: list[Ours], cfg: Settings) -> list[dict[str, float]]:
    """Median cold and best warm single-stub resolution through ``b``'s stub index."""
    probes = []
    for store in stores:
        jar, other = store.jar("b"), store.jar("a")
        stub_oids = list(jar._catalog().stubs_by_oid.keys())
        sample = random.Random(cfg.seed).sample(stub_oids, min(cfg.samples, len(stub_oids)))
        probes.append((jar, other, stub_oids, sample))
    cold: list[list[float]] = [[] for _ in probes]
    loads = [0] * len(probes)
    warm = [math.inf] * len(probes)
    gc.collect()
    gc.disable()
    try:
        for i in range(max(len(sample) for *_, sample in probes)):
            for k, (jar, other, _, sample) in enumerate(probes):
                if i >= len(sample):
                    continue
                jar._zfed_forget()  # the federation's resolution caches...
                jar.cacheMinimize()  # ...and the index records: loaded again from storage
                other.cacheMinimize()
                before = jar._load_count + other._load_count
                start = time.perf_counter()
                jar._resolve_stub(sample[i])
                cold[k].append(time.perf_counter() - start)
                loads[k] += jar._load_count + other._load_count - before
        for jar, _, stub_oids, _ in probes:
            index = jar._catalog().stubs_by_oid
            for oid in stub_oids:
                index.get(oid)  # every index record in memory
        for _ in range(3):
            for k, (jar, _, _, sample) in enumerate(probes):
                jar._zfed_forget()
                start = time.perf_counter()
                for oid in sample:
                    jar._resolve_stub(oid)
                warm[k] = min(warm[k], (time.perf_counter() - start) / len(sample))
    finally:
        gc.enable()
    return [{"cold_lookup_us": statistics.median(times) * 1e6, "warm_lookup_us": best * 1e6,
             "cold_lookup_loads": count / len(times)}
            for times, best, count in zip(cold, warm, loads, strict=True)]


# -- workload 6: round trips for foreign loads -------------------------------------

def foreign(base: Path, cfg: Settings) -> dict[str, dict[str, Any]]:
    """Adapter round trips for references into a SQLite member, and their time."""
    folder = base / "foreign"
    folder.mkdir()
    build_foreign(folder, cfg.n, cfg.cache_size)
    result: dict[str, Any] = {"kind": "round_trips", "title": TITLES["foreign_round_trips"],
                              "refs": cfg.n}
    for shape in ("referrers", "holders"):
        trips, seconds = [], []
        for _ in range(cfg.runs):
            with foreign_store(folder, cfg.cache_size) as store:
                jar = store.jar("rows")
                items = list(store.root("b")[shape].values())
                before = jar.load_count
                seconds.append(_timed(lambda items=items, shape=shape: _follow(items, shape)))
                trips.append(jar.load_count - before)
                result["batch_size"] = jar.adapter.batch_size
        result[f"{shape}_round_trips"] = statistics.median(trips)
        result[f"{shape}_us"] = statistics.median(seconds) / cfg.n * 1e6
    result["target"] = math.ceil(cfg.n / result["batch_size"])
    result["met"] = max(result["referrers_round_trips"],
                        result["holders_round_trips"]) <= result["target"]
    return {"foreign_round_trips": result}


def _follow(items: list[Any], shape: str) -> None:
    if shape == "referrers":
        _touch_targets(items)
        return
    for holder in items:
        for target in holder.targets:
            _ = target.title


# -- workload 7: commits over several members ------------------------------------------

#: Objects changed per member in each commit of :func:`members`.
PER_MEMBER = 10


def members(base: Path, cfg: Settings) -> dict[str, dict[str, Any]]:
    """Commits that change objects in one, two and three members.

    Ours journals the commits over several members (:mod:`federation.coordinator`):
    the decider member's branch also keeps the redo records of the others,
    and each other member stores a marker.  The baseline is a ZODB
    multi-database committing the same objects, with no journal.
    """
    commits = max(cfg.n // 40, 50)
    names = ("m1", "m2", "m3")
    paths = {side: {m: base / "members" / side / f"{m}.fs" for m in names}
             for side in ("ours", "baseline")}
    for side, files in paths.items():
        files["m1"].parent.mkdir(parents=True, exist_ok=True)
        with open_store(side, files, cfg.cache_size) as store:
            for name in names:
                store.root(name)["items"] = [Target(f"{name}-{i}") for i in range(PER_MEMBER)]
            store.tm.commit()

    def run(side: str, number: int) -> dict[str, Measured]:
        with open_store(side, paths[side], cfg.cache_size) as store:
            items = {name: store.root(name)["items"] for name in names}
            for objects in items.values():
                for obj in objects:
                    obj._p_activate()  # loaded before the clock starts
            measured = {}
            for count, label in ((1, "one"), (2, "two"), (3, "three")):
                touched = names[:count]

                def work(touched: tuple[str, ...] = touched) -> None:
                    for c in range(commits):
                        for name in touched:
                            for obj in items[name]:
                                obj.title = f"{number}-{c}"
                        store.tm.commit()

                measured[f"commit_{label}_member{'s' if count > 1 else ''}"] = Measured(
                    _timed(work), 0)
            return measured

    return {name: _comparison(name, commits, sides, "ZODB multi-database")
            for name, sides in _alternate(cfg.runs, run).items()}


#: The workloads, in order; ``commit`` uses the files ``traversal`` builds.
WORKLOADS = {"traversal": traversal, "commit": commit, "keys": key_lookup, "scale": scale,
             "foreign": foreign, "members": members}
