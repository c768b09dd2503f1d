"""The federation's garbage collector: mark across members, keep alive, pack.

ZODB's pack keeps what a member's own root reaches.  In a federation an
object may be reachable only through a stub of another member or a
reference held by a foreign record; and garbage may form cycles across
members, which no single member's pack can see.  :func:`collect` (what
``Federation.pack`` and ``zfed pack`` run) works over the whole federation.
Each step below is a hook point (:data:`STEPS`; tests inject commits there):

1. ``open``: every member that is not explicitly excluded must be readable
   (ZODB members, and foreign members whose records hold references);
   otherwise :class:`federation.CollectionRefused` names the member and
   nothing is done.
2. ``marked``: :class:`federation.marking.Marker` marks, from every ZODB
   member's root (at a snapshot: its last transaction) and every foreign
   reference, across stubs.
3. ``scanned``: every record written since the snapshot is marked from, as
   a root, again and again until a scan finds no new transaction (at most
   :data:`MAX_ROUNDS` rounds).  The marks then hold everything reachable at
   any moment since the snapshot.
4. ``keep_alive``: each packable member's ``catalog.keep_alive`` is made to
   hold exactly the marked objects that marked stubs of other members, or
   foreign records, name (entries added and removed, never the index
   replaced), and the stubs of live targets that nothing references any
   more (:meth:`~federation.marking.Marker.keep_reusable_stubs`: a new
   reference to the target reuses the stub, without a path from any root,
   so such a stub dies only with its target).  Targets only garbage names
   are dropped, so cycles across members are released.  References keep
   the standard ``(oid, class)`` form even when the classes are not
   importable (:func:`records.importable`).
5. ``verified``: the tail is scanned once more (it holds the keep-alive
   commits, and whatever others committed meanwhile); if that names a new
   cross-member target, back to 4.
6. ``pack NAME`` / ``packed NAME``: each packable member is packed at the
   last transaction the final scan read (``L``), not later: there, its
   root and keep-alive set reach every object that is live anywhere in the
   federation.  A commit after ``L`` cannot lose anything: FileStorage keeps
   every record written after the pack time, and the objects such a commit
   references were reachable at ``L`` (a reference moved from one member to
   another was still in the first at ``L``).
7. ``pruned``: index entries of stubs and uuid objects that the packs
   removed are dropped (:func:`federation.maintenance.prune`).

With ``days``, a member is packed at ``days`` ago only if, at that time, its
root and keep-alive set reached every marked object that existed then;
otherwise it is not packed in this run (its report says why), because the
keep-alive set written now cannot protect objects at an earlier time.

What is not covered: as with ZODB's own pack, a transaction that began
before the snapshot and, committing after the run, stores a reference to an
object that was unreachable during the whole run; and a transaction whose
two-phase commit stalls between finishing in one member and finishing in
another for the whole final scan (its second half is then invisible while
its first half already removed the old reference).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import transaction
from BTrees.LLBTree import LLTreeSet, difference
from persistent.TimeStamp import TimeStamp
from ZODB.POSException import ConflictError, POSKeyError
from ZODB.serialize import referencesf
from ZODB.utils import p64, u64, z64

from federation import maintenance
from federation.adapters import relstorage
from federation.catalog import CATALOG_ATTRIBUTE, Index
from federation.errors import CollectionRefused
from federation.marking import Dangling, Marker, Progress, View
from federation.records import importable, record_class

#: The steps of :func:`collect`, in order (``pack``/``packed`` once per member).
STEPS = ("open", "marked", "scanned", "keep_alive", "verified", "pack", "packed", "pruned")

#: How many tail scans (and keep-alive rewrites) a run makes at most before going on.
MAX_ROUNDS = 20

Hook = Callable[[str], None]


@dataclass
class MemberCollection:
    """What :func:`collect` did in one member."""

    member: str
    marked: int = 0
    keep_alive: int = 0
    collectable: list[int] = field(default_factory=list)  # oids, as integers
    packed: bool = False
    note: str = ""
    stubs: int = 0  # stub index entries left after the run


class CollectionReport(dict[str, MemberCollection]):
    """Per member name, what :func:`collect` did; also the run's ``dangling`` references."""

    dry_run: bool = False
    excluded: tuple[str, ...] = ()
    rounds: int = 0
    dangling: list[Dangling]

    def summary(self) -> str:
        """One line per member, then a total: what a terminal shows at the end."""
        verb = "would collect" if self.dry_run else "collected"
        lines = []
        for name, result in sorted(self.items()):
            state = "packed" if result.packed else (result.note or "not packed")
            if self.dry_run:
                state = "dry run, nothing changed"
            elif result.packed:  # the stubs left are counted after packing
                state += f"; {result.stubs} live stubs"
            lines.append(f"{name}: {state}; {result.marked} live objects, {verb} "
                         f"{len(result.collectable)}, {result.keep_alive} kept alive for other "
                         "members")
        for name in sorted(self.excluded):
            lines.append(f"{name}: excluded (not read, not packed)")
        total = sum(len(result.collectable) for result in self.values())
        lines.append(f"{verb} {total} object(s) in {len(self)} member(s), "
                     f"{len(self.dangling)} dangling reference(s) seen")
        return "\n".join(lines)


def _refuse_outsiders(federation: Any, marker: Marker, exclude: Iterable[str]) -> None:
    """Refuse when live stubs name a database the federation does not have.

    That database takes part in the graph (it may hold references to
    objects of the members), and it cannot be read.  Excluding it by name
    accepts the risk, as for a member that is down.
    """
    excluded = set(exclude)
    missing = {name: member_id for name, member_id in marker.outsiders.items()
               if name not in excluded}
    if missing:
        [(name, member_id), *_] = sorted(missing.items())
        what = (f"Live stubs name member {name!r} (id {member_id})" if member_id else
                f"Live native multi-database references name database {name!r}")
        raise CollectionRefused(
            f"{what}, which is not part of this "
            "federation; it may hold references to the members' objects, so nothing was "
            f"collected. Add it to the configuration, or exclude it explicitly (--exclude "
            f"{name}) only if it holds none."
        )
    stray = sorted(excluded - set(federation.members) - set(marker.outsiders))
    if stray:
        raise CollectionRefused(
            f"Cannot exclude {', '.join(map(repr, stray))}: the federation has no such "
            "member, and no stub names one."
        )


def collect(federation: Any, *, days: float = 0.0, exclude: tuple[str, ...] | list[str] = (),
            dry_run: bool = False, progress: Progress | None = None,
            hook: Hook | None = None) -> CollectionReport:
    """Collect the federation's garbage (see the module docstring for the protocol)."""
    step = hook if hook is not None else _no_hook
    marker = Marker(federation, frozenset(exclude), progress)
    report = CollectionReport()
    report.dry_run, report.excluded, report.dangling = dry_run, tuple(exclude), marker.dangling
    try:
        marker.open()
        step("open")
        marker.mark_roots()
        step("marked")
        report.rounds = _settle(marker)
        _refuse_outsiders(federation, marker, exclude)
        marker.keep_reusable_stubs()
        step("scanned")
        packable = [view for view in marker.views.values() if _packable(view)]
        written: dict[str, LLTreeSet] = {}  # member -> the keep-alive set last written
        if not dry_run:
            for _ in range(MAX_ROUNDS):
                for view in packable:
                    if _changed(marker.cross[view.name], written.get(view.name)):
                        _write_keep_alive(view, marker.cross[view.name])
                        written[view.name] = LLTreeSet(marker.cross[view.name])
                step("keep_alive")
                marker.scan_tail()
                marker.mark_foreign()
                marker.keep_reusable_stubs()
                step("verified")
                if not any(_changed(marker.cross[v.name], written.get(v.name)) for v in packable):
                    break
            else:
                raise CollectionRefused(
                    f"Commits kept adding cross-member references during {MAX_ROUNDS} rounds "
                    "of the keep-alive step, so no pack time is safe yet; nothing was packed. "
                    "Run the pack again when the federation is less busy."
                )
        for view in marker.views.values():
            result = report[view.name] = MemberCollection(view.name, marker.marked(view.name))
            result.keep_alive = len(marker.cross[view.name])
            if view in packable:
                result.collectable = [u64(oid) for oid, _tid in marker.unmarked(view.name)]
            else:
                result.note = "not packed: read-only or without a federation catalog"
        if dry_run:
            return report
        for view in packable:
            _pack(marker, view, report[view.name], days, step, written)
        for view in packable:
            if report[view.name].packed:
                report[view.name].stubs = maintenance.prune(view.member.db)
        step("pruned")
        return report
    finally:
        marker.close()


def _no_hook(step: str) -> None:
    """No test is watching."""


def _settle(marker: Marker) -> int:
    """Scan the tail until a scan finds no new transaction; the number of scans."""
    for rounds in range(1, MAX_ROUNDS + 1):
        new = marker.scan_tail()
        marker.mark_foreign()
        if not new:
            return rounds
    return MAX_ROUNDS


def _packable(view: View) -> bool:
    member = view.member
    if member.read_only or view.storage.isReadOnly():
        return False
    with member.db.transaction() as conn:
        return getattr(conn.root(), CATALOG_ATTRIBUTE, None) is not None


def _changed(wanted: LLTreeSet, written: LLTreeSet | None) -> bool:
    if written is None:
        return True
    return bool(len(difference(wanted, written)))


def _write_keep_alive(view: View, wanted: LLTreeSet) -> None:
    """Make ``catalog.keep_alive`` hold exactly ``wanted`` (changing entries only)."""
    tm = transaction.TransactionManager()
    conn = view.member.db.open(tm)
    try:
        for attempt in range(5):
            try:
                tree, classes = _diff_keep_alive(view, conn, wanted)
                factory = conn.db().classFactory
                found = {pair: factory(conn, *pair) for pair in set(classes.values())}
                with importable(found) as usable:  # pickled at commit: inside the block
                    for oid, pair in classes.items():
                        tree[oid] = conn.ghost(oid, usable[pair])
                    tm.get().note("zodb-federation: keep-alive set")
                    tm.commit()
                return
            except ConflictError:
                tm.abort()
                if attempt == 4:
                    raise
    finally:
        tm.abort()
        conn.cacheMinimize()
        conn.close()


def _diff_keep_alive(view: View, conn: Any,
                     wanted: LLTreeSet) -> tuple[Any, dict[bytes, tuple[str, str]]]:
    """Delete the entries not ``wanted``; the tree and the classes of the entries to add."""
    catalog = getattr(conn.root(), CATALOG_ATTRIBUTE)
    tree = getattr(catalog, "keep_alive", None)
    if tree is None:
        tree = catalog.keep_alive = Index()
    current = LLTreeSet(u64(oid) for oid in tree)
    for oid in difference(current, wanted):
        del tree[p64(oid)]
    classes: dict[bytes, tuple[str, str]] = {}
    for oid in difference(wanted, current):
        try:
            record = view.storage.load(p64(oid))[0]
        except POSKeyError:
            continue  # dangling: nothing to keep
        classes[p64(oid)] = record_class(record)
    return tree, classes


def _pack(marker: Marker, view: View, result: MemberCollection, days: float,
          step: Hook, written: dict[str, LLTreeSet]) -> None:
    """Pack one member at the last scanned transaction (or ``days`` ago, if that is safe)."""
    if view.scanned == z64:
        result.note = "not packed: empty"
        return
    stop = view.scanned
    history_free = relstorage.history_free(view.storage)
    if days > 0:
        earlier = _as_tid(time.time() - days * 86400)
        if history_free:
            stop = min(stop, earlier)  # no history: only a grace period for young garbage
        elif earlier < stop:
            risky = _unprotected_at(marker, view, earlier)
            if risky:
                result.note = (f"not packed: {risky} object(s) that other members reference now "
                               f"were not kept alive {days:g} days ago; pack with days=0, or "
                               "again once the keep-alive set is that old")
                result.collectable = []
                return
            stop = earlier
    step(f"pack {view.name}")
    if history_free:
        result.packed = _pack_history_free(marker, view, stop, written)
        if not result.packed:
            result.note = "not packed: no record is older than the pack point"
            result.collectable = []
    else:
        view.storage.pack(_pack_time(view.storage, stop), referencesf)
        result.packed = True
    step(f"packed {view.name}")


def _pack_history_free(marker: Marker, view: View, stop: bytes,
                       written: dict[str, LLTreeSet]) -> bool:
    """Pack a history-free RelStorage at ``stop``, once its analysis is known to be safe.

    Such a storage keeps no old revisions: its collector keeps the root, the
    records written after ``stop`` and what they reach *now*, not what was
    reachable at ``stop``.  An object that a commit after the last scan moved
    from this member into another one is reached only by the new stub, which
    the keep-alive set does not name yet.  So the analysis (RelStorage's
    pre-pack) runs first, then every member's tail is scanned again: if a
    new cross-member reference into this member appeared, the keep-alive
    set is rewritten and the analysis run again; else, what the analysis
    condemned was unreachable from every member when it ran, which stays
    true, and RelStorage deletes it.  False when no record is as old as
    ``stop`` (nothing to pack).
    """
    storage, name = view.storage, view.name
    point = relstorage.pack_point(storage, stop)
    if not relstorage.has_records_before(storage, point):
        return False
    for _ in range(MAX_ROUNDS):
        storage.pack(point, referencesf, prepack_only=True)
        marker.scan_tail()
        marker.mark_foreign()
        marker.keep_reusable_stubs()
        if not _changed(marker.cross[name], written.get(name)):
            storage.pack(point, referencesf, skip_prepack=True)
            return True
        _write_keep_alive(view, marker.cross[name])
        written[name] = LLTreeSet(marker.cross[name])
    raise CollectionRefused(
        f"Member {name!r}: commits kept adding references into it from other members during "
        f"{MAX_ROUNDS} analyses of its pack, so no pack is safe yet; it was not packed. Run "
        "the pack again when the federation is less busy."
    )


def _pack_time(storage: Any, tid: bytes) -> float | int:
    """What to give ``storage.pack`` to pack at ``tid``.

    A time that the storage turns back into ``tid`` or the next possible tid;
    RelStorage takes the transaction id itself.
    """
    if relstorage.is_relstorage(storage):
        return relstorage.pack_point(storage, tid)
    t = TimeStamp(tid).timeTime()
    while _as_tid(t) < tid:
        t = math.nextafter(t, math.inf)
    return t


def _as_tid(t: float) -> bytes:
    """What FileStorage (and ZEO's server) makes of a pack time."""
    return TimeStamp(*time.gmtime(t)[:5], t % 60).raw()


def _unprotected_at(marker: Marker, view: View, tid: bytes) -> int:
    """How many marked objects existed at ``tid`` but were not locally reachable then."""
    storage, before = view.storage, p64(u64(tid) + 1)
    reached = LLTreeSet()
    todo = [z64]
    while todo:
        oid = todo.pop()
        if not reached.add(u64(oid)):
            continue
        found = _load_before(storage, oid, before)
        if found is not None:
            todo.extend(ref for ref in referencesf(found) if u64(ref) not in reached)
    return sum(1 for oid in difference(marker.marks[view.name], reached)
               if _load_before(storage, p64(oid), before) is not None)


def _load_before(storage: Any, oid: bytes, before: bytes) -> bytes | None:
    try:
        found = storage.loadBefore(oid, before)
    except POSKeyError:
        return None
    return found[0] if found is not None else None


def iter_collectable(report: CollectionReport) -> Iterator[tuple[str, int]]:
    """``(member, oid)`` for every object the run collected (or would collect)."""
    for name, result in report.items():
        for oid in result.collectable:
            yield name, oid
