"""Recovery: every member brought to the decided outcome of journaled transactions.

:func:`recover` runs in :meth:`federation.Federation.__init__`, before any
manager is handed out, in whichever process opens the federation next.
The rules, in order (``docs/transactions.md`` explains them):

1. Every journal entry of every writable ZODB member is read
   (:mod:`federation.journal`).  Tombstones (``aborted``) are left alone.
2. A ``committed`` entry is decided: commit.  A ``prepared`` entry is
   decided by its last resource: commit if it recorded the global id as
   committed; otherwise recovery first *fences* it (records the id as
   aborted in the last resource, so that a coordinator still running cannot
   commit it afterwards) and rolls back.  A last resource that cannot
   record ids (LDAP) or cannot be reached leaves the entry in doubt.
3. Commit: each ZODB branch whose marker is missing is redone against the
   serials it read; each prepared branch still prepared is committed
   (``COMMIT PREPARED``); "already committed" is success.  Roll back: each
   prepared branch still prepared is rolled back; ZODB branches of an
   undecided transaction never finished, so there is nothing to undo.
4. When every branch is settled the entry is deleted.
5. A prepared transaction of a two-phase member whose global id names a
   member of this federation and no entry is presumed aborted: recovery
   writes a tombstone in that member's journal (so a coordinator still
   running elsewhere fails its decision on a conflict) and rolls it back.
   Prepared transactions of other ids are not ours and are left alone.
6. A branch that cannot be settled (a member unavailable, a conflict that
   the objects' conflict resolution cannot merge) leaves its entry in the
   journal, reported as :class:`InDoubt`; ``federation.open`` then raises
   :class:`federation.InDoubtTransactions` naming members, ids and objects,
   and ``zfed recover`` settles it on an operator's word.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import transaction
from ZODB.Connection import TransactionMetaData
from ZODB.POSException import ConflictError, POSKeyError
from ZODB.utils import u64, z64

from federation import journal
from federation.adapters import relstorage
from federation.catalog import CATALOG_ATTRIBUTE, journal_items, new_index
from federation.errors import FederationError, MemberUnavailable
from federation.interfaces import OutcomeRecording

if TYPE_CHECKING:
    from federation.interfaces import FederationView

log = logging.getLogger(__name__)

#: How often a journal write is retried after a conflict with another process's.
_ATTEMPTS = 5


@dataclass
class InDoubt:
    """A journaled transaction recovery could not settle without guessing."""

    gid: str
    members: list[str]
    reason: str
    objects: dict[str, list[str]] = field(default_factory=dict)

    def __str__(self) -> str:
        objects = "; ".join(f"{name}: {', '.join(oids[:5])}"
                            for name, oids in sorted(self.objects.items()))
        where = f" (objects {objects})" if objects else ""
        return (f"transaction {self.gid} over members {', '.join(self.members)}: "
                f"{self.reason}{where}")


@dataclass
class RecoveryReport:
    """What :func:`recover` did: global ids committed, rolled back, and left in doubt."""

    committed: list[str] = field(default_factory=list)
    rolled_back: list[str] = field(default_factory=list)
    in_doubt: list[InDoubt] = field(default_factory=list)
    #: ZODB members whose journal could not be read (unavailable at open).
    unread: list[str] = field(default_factory=list)
    #: Entries of transactions found finished everywhere, deleted (nothing to do).
    finished: list[str] = field(default_factory=list)


class _Unsettled(Exception):
    def __init__(self, member: str, reason: str, objects: list[str] | None = None) -> None:
        super().__init__(reason)
        self.member = member
        self.reason = reason
        self.objects = objects or []


class JournalQueue:
    """Entries of finished transactions, deleted by the next journal write in their member.

    Deleting an entry right after its transaction would cost every commit
    over several members one more storage transaction; instead the next
    journal write in the same member deletes it, and so does
    :meth:`federation.Federation.close`.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._done: dict[str, set[str]] = {}

    def take(self, member: str) -> list[str]:
        """The finished entries of ``member``, now the caller's journal write's to delete.

        Each is handed to one writer only, so that two commits never delete
        the same entry (their journal writes would conflict); a commit that
        fails gives them back (:meth:`give_back`).
        """
        with self._lock:
            return sorted(self._done.pop(member, ()))

    def give_back(self, member: str | None, gids: list[str]) -> None:
        """The journal write that was to delete ``gids`` did not happen."""
        if member is not None and gids:
            with self._lock:
                self._done.setdefault(member, set()).update(gids)

    def done(self, member: str | None, gid: str) -> None:
        """The transaction ``gid`` finished everywhere: its entry may go."""
        if member is not None:
            with self._lock:
                self._done.setdefault(member, set()).add(gid)

    def take_all(self) -> dict[str, list[str]]:
        """Every pending entry, now the caller's to delete."""
        with self._lock:
            done, self._done = self._done, {}
        return {member: sorted(gids) for member, gids in done.items()}


# -- reading and writing journals ----------------------------------------------


@contextmanager
def _connection(member: Any) -> Iterator[tuple[Any, Any, Any]]:
    """A connection of its own transaction manager to a ZODB member, and its catalog."""
    tm = transaction.TransactionManager()
    conn = member.db.open(tm)
    try:
        catalog = getattr(conn.root(), CATALOG_ATTRIBUTE, None)
        yield tm, conn, catalog
    finally:
        tm.abort()
        conn.close()


def _entries(member: Any) -> list[tuple[str, dict[str, Any]]]:
    with _connection(member) as (_tm, _conn, catalog):
        tree = getattr(catalog, "journal", None)
        return [(gid, journal.decode(entry)) for gid, entry in journal_items(tree)]


def _entry(member: Any, gid: str) -> dict[str, Any] | None:
    with _connection(member) as (_tm, _conn, catalog):
        tree = getattr(catalog, "journal", None)
        entry = tree.get(gid) if tree is not None else None
        return journal.decode(entry) if entry is not None else None


def _write(member: Any, change: Any) -> Any:
    """Run ``change(journal index)`` in a transaction of its own on ``member``; retry conflicts."""
    for attempt in range(_ATTEMPTS):
        with _connection(member) as (tm, conn, catalog):
            if catalog is None:
                catalog = conn.ensure_catalog()  # an existing database's first write
            if catalog is None:
                raise _Unsettled(member.name, "the member has no federation catalog")
            tree = getattr(catalog, "journal", None)
            if tree is None:
                tree = catalog.journal = new_index("journal")
            result = change(tree)
            try:
                tm.commit()
            except ConflictError:
                if attempt == _ATTEMPTS - 1:
                    raise
                continue
            return result
    return None


def write_prepared(federation: FederationView, member: str | None, gid: str,
                   data: bytes) -> None:
    """Write the ``prepared`` entry of ``gid`` in ``member`` before any lock is taken.

    The finished entries queued for that member are deleted by the same write.
    """
    assert member is not None
    deleted = federation.journal_queue.take(member)

    def change(tree: Any) -> None:
        for old in deleted:
            tree.pop(old, None)
        tree[gid] = data

    try:
        _write(federation.member(member), change)
    except BaseException:
        federation.journal_queue.give_back(member, deleted)
        raise


def forget(federation: FederationView, member: str | None, gid: str) -> None:
    """Delete the entry of ``gid`` from ``member``'s journal (its transaction was aborted)."""
    assert member is not None
    _write(federation.member(member), lambda tree: tree.pop(gid, None))


def delete_finished(federation: FederationView) -> None:
    """Delete the entries of finished transactions (on close)."""
    for name, gids in federation.journal_queue.take_all().items():
        member = federation.members.get(name)
        if member is None or not member.available:
            continue
        try:
            _write(member, lambda tree, gids=gids: [tree.pop(gid, None) for gid in gids])
        except Exception:
            log.exception("Could not delete finished journal entries of member %r; "
                          "recovery deletes them later.", name)


def status(federation: FederationView) -> dict[str, Any]:
    """The commit journal at a glance: the members that keep it and its entries.

    ``pending`` counts entries of transactions not settled yet (or settled
    and not yet deleted), ``tombstones`` the ``aborted`` ones recovery keeps.
    """
    pending = tombstones = 0
    members = _journal_members(federation)
    for member in members:
        for _gid, entry in _entries(member):
            if entry["state"] == "aborted":
                tombstones += 1
            else:
                pending += 1
    return {"members": [member.name for member in members], "pending": pending,
            "tombstones": tombstones}


# -- recovery -------------------------------------------------------------------


def _journal_members(federation: FederationView) -> list[Any]:
    """The available ZODB members: each may keep journal entries (read-only ones too)."""
    return [member for member in federation.members.values() if member.db is not None]


def _writable(member: Any) -> bool:
    return not member.read_only and not member.db.storage.isReadOnly()


def _unavailable_zodb_members(federation: FederationView) -> list[str]:
    return [name for name, member in federation.members.items()
            if not member.available]  # a foreign member is always available: its adapter says


def recover(federation: FederationView, *, decisions: Mapping[str, bool] | None = None,
            dry_run: bool = False) -> RecoveryReport:
    """Bring every member to the decided outcome (see the module docstring).

    ``decisions`` maps global ids to an operator's outcome (True: commit,
    False: roll back) for transactions left in doubt; ``dry_run`` reports
    what would be done and changes nothing.
    """
    report = RecoveryReport(unread=_unavailable_zodb_members(federation))
    seen: set[str] = set()
    for member in _journal_members(federation):
        for gid, entry in _entries(member):
            if entry["state"] != "aborted":  # a tombstone's prepared branch is rule 5's
                seen.add(gid)
            _settle(federation, member, gid, entry, report, decisions or {}, dry_run)
    for member in _two_phase_members(federation):
        _orphans(federation, member, seen, report, decisions or {}, dry_run)
    return report


def _two_phase_members(federation: FederationView) -> list[Any]:
    return [member for member in federation.members.values()
            if member.db is None and getattr(member, "two_phase", False)
            and not member.read_only]


def resolve(federation: FederationView, gid: str) -> RecoveryReport:
    """Settle one transaction now (after a failure in this process)."""
    report = RecoveryReport()
    holder = federation.members_by_id.get(journal.decider_of(gid) or "")
    if holder is not None and holder.db is not None:
        entry = _entry(holder, gid)
        if entry is not None:
            _settle(federation, holder, gid, entry, report, {}, False, logging.INFO)
            return report
    for member in _two_phase_members(federation):
        _orphans(federation, member, set(), report, {}, False, only=gid)
    return report


def _settle(federation: FederationView, holder: Any, gid: str, entry: dict[str, Any],
            report: RecoveryReport, decisions: Mapping[str, bool], dry_run: bool,
            level: int = logging.WARNING) -> None:
    state = entry["state"]
    if state == "aborted":
        return  # a tombstone: it keeps a late coordinator from deciding
    last = entry.get("last_resource")
    members = sorted({holder.name, *(b["name"] for b in entry["branches"]),
                      *([last["name"]] if last else [])})
    outcome = decisions.get(gid)
    if outcome is None:
        outcome = True if state == "committed" else _last_resource(federation, gid, last, dry_run)
    if outcome is None:
        reason = (f"its last resource {last['name']!r} cannot say whether it committed"
                  if last else "no outcome is recorded")
        report.in_doubt.append(InDoubt(gid, members, reason))
        return
    if dry_run:
        (report.committed if outcome else report.rolled_back).append(gid)
        return
    force = gid in decisions
    problems: list[_Unsettled] = []
    acted = not outcome  # deciding to roll back is news; finding a commit finished is not
    for branch in entry["branches"]:
        try:
            acted = _drive(federation, gid, branch, outcome, force) or acted
        except _Unsettled as problem:
            problems.append(problem)
    if problems:
        report.in_doubt.append(InDoubt(
            gid, members, "; ".join(f"member {p.member!r}: {p.reason}" for p in problems),
            {p.member: p.objects for p in problems if p.objects}))
        return
    if _writable(holder):  # else the next writable open deletes it (settling is idempotent)
        _write(holder, lambda tree: tree.pop(gid, None))
    if not acted:  # its own process finished it and had not deleted the entry yet
        report.finished.append(gid)
        return
    (report.committed if outcome else report.rolled_back).append(gid)
    log.log(level, "Recovery %s transaction %s over members %s.",
            "committed" if outcome else "rolled back", gid, ", ".join(members))


def _last_resource(federation: FederationView, gid: str, last: dict[str, str] | None,
                   dry_run: bool) -> bool | None:
    """Whether the last resource committed ``gid``; fenced to "no" if it did not say."""
    if last is None:
        return None
    member = federation.members_by_id.get(last["member_id"])
    if member is None or not member.available:
        return None
    adapter = member.factory()
    try:
        if not isinstance(adapter, OutcomeRecording):
            return None
        outcome = adapter.outcome(gid)
        if outcome is None:
            outcome = False if dry_run else adapter.fence(gid)
        return outcome
    finally:
        adapter.close()


def _drive(federation: FederationView, gid: str, branch: dict[str, Any], outcome: bool,
           force: bool) -> bool:
    """Bring one branch to ``outcome``; whether there was anything to do."""
    member = federation.members_by_id.get(branch["member_id"])
    if member is None or not member.available:
        raise _Unsettled(branch["name"], "the member is not available")
    if branch["kind"] == "zodb":
        return outcome and _redo(member, gid, branch, force)
    adapter = member.factory()
    try:
        if branch["xid"] not in adapter.recover(0.0):
            return False
        _finish_prepared(adapter, branch["xid"], commit=outcome)
        return True
    finally:
        adapter.close()


def _finish_prepared(adapter: Any, xid: str, *, commit: bool) -> None:
    """Commit or roll back a prepared branch; one finished meanwhile elsewhere is success."""
    try:
        adapter.finish_prepared(xid, commit=commit)
    except FederationError:
        if xid in adapter.recover(0.0):
            raise  # still prepared: a real failure


def _redo(member: Any, gid: str, branch: dict[str, Any], force: bool) -> bool:
    """Apply a ZODB branch whose marker is missing, against the serials it read.

    Returns False when the branch was applied already.
    """
    storage = member.db.storage
    relstorage.refresh(storage)  # the storage of a ZODB.DB may read an old snapshot
    if _applied(storage, gid, branch["marker"]):
        return False
    meta = TransactionMetaData("", f"zodb-federation: recovery of {gid}")
    storage.tpc_begin(meta)
    try:
        for oid, serial, data, *old in branch["records"]:
            if force:
                serial = _current_serial(storage, oid)
            elif relstorage.is_relstorage(storage):
                serial, data = _resolved_ahead(storage, oid, serial, data, *old)
            storage.store(oid, serial, data, "", meta)
        storage.tpc_vote(meta)
    except (ConflictError, *relstorage.STALE_SERIAL) as error:
        storage.tpc_abort(meta)
        if _applied(storage, gid, branch["marker"], sync=True):
            return False  # its coordinator, or another recovery, finished it meanwhile
        oid = getattr(error, "oid", None)
        objects = [f"oid {u64(oid)}"] if oid else []
        raise _Unsettled(member.name, "another writer changed the same objects and conflict "
                         "resolution cannot merge", objects) from error
    except BaseException:
        storage.tpc_abort(meta)
        raise
    tid = storage.tpc_finish(meta)
    # Tell the database's connections, as ZODB's own commits do (the storage was
    # written directly, so its MVCC adapter heard nothing).  RelStorage, an MVCC storage
    # itself, has no such adapter: its connections poll the database at each transaction.
    invalidate = getattr(getattr(member.db, "_mvcc_storage", None), "invalidate", None)
    if invalidate is not None:
        invalidate(tid, [oid for oid, *_record in branch["records"]])
    return True


def _applied(storage: Any, gid: str, marker: bytes, *, sync: bool = False) -> bool:
    """Whether the branch whose marker is at ``marker`` was applied (see the journal format)."""
    if sync and relstorage.is_relstorage(storage):
        relstorage.refresh(storage)  # see the other processes' commits first
    elif sync and hasattr(storage, "sync"):
        storage.sync()  # a ZEO client: see the other clients' commits first
    try:
        return journal.is_marker_of(storage.load(marker)[0], gid)
    except POSKeyError:
        return False


def _resolved_ahead(storage: Any, oid: bytes, serial: bytes, data: bytes,
                    old: bytes | None = None) -> tuple[bytes, bytes]:
    """A redo record of a RelStorage whose object another writer changed, resolved now.

    RelStorage resolves conflicts in its vote against the revision its
    snapshot shows, which is the one the branch read only if nobody wrote
    since; so the object's own conflict resolution runs here, as FileStorage
    runs it in ``store``, against the revision the branch read (``old``: a
    history-free storage no longer has it, its redo records keep it).
    """
    current = _current_serial(storage, oid)
    if current == serial:
        return serial, data
    return current, relstorage.resolve(storage, oid, current, serial, data, old)


def _current_serial(storage: Any, oid: bytes) -> bytes:
    try:
        return storage.load(oid)[1]
    except POSKeyError:
        return z64


def _orphans(federation: FederationView, member: Any, seen: set[str], report: RecoveryReport,
             decisions: Mapping[str, bool], dry_run: bool, only: str | None = None) -> None:
    """Prepared transactions of a two-phase member that no entry settled (rule 5)."""
    try:
        adapter = member.factory()
    except MemberUnavailable as error:
        log.warning("Recovery cannot read the prepared transactions of member %r (%s); "
                    "the next federation.open() tries again.", member.name, error)
        return
    try:
        for xid in adapter.recover(0.0):
            gid = journal.gid_of_xid(xid)
            holder = federation.members_by_id.get(journal.decider_of(gid) or "")
            if gid in seen or (only is not None and gid != only):
                continue
            if holder is None or holder.db is None or not _writable(holder):
                continue  # not ours, or its journal cannot be read or written: left alone
            entry = None if dry_run else _tombstone(holder, gid)
            if entry is not None and entry["state"] != "aborted":  # decided meanwhile
                seen.add(gid)
                _settle(federation, holder, gid, entry, report, decisions, dry_run)
                continue
            if not dry_run:
                _finish_prepared(adapter, xid, commit=False)
            report.rolled_back.append(gid)
    finally:
        adapter.close()


def _tombstone(holder: Any, gid: str) -> dict[str, Any] | None:
    """Record ``gid`` as aborted in its decider's journal, unless an entry decided it."""
    def change(tree: Any) -> dict[str, Any] | None:
        entry = tree.get(gid)
        if entry is not None:
            return journal.decode(entry)
        tree[gid] = journal.encode(gid, "aborted", [])
        return None

    return _write(holder, change)
