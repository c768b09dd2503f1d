"""The commit coordinator: one two-phase commit over every member of a manager.

A manager's jars (ZODB connections and foreign jars) never join a
``transaction`` themselves: they join the manager's :class:`Coordinator`,
which joins the transaction once, as its only resource manager, and drives
the members through the phases below (see ``docs/transactions.md``):

1. **collect** (``commit``): every jar serializes what changed into a
   buffer, without taking a lock.  Storing an object may give other members
   work (a stub, a uuid, an object placed by a rule, the Ref text of a
   foreign record); jars are asked again until no jar has anything new, and
   then the index entries are applied.  Nothing is late after this.
2. **plan**: the *participants* are the jars with writes.  A transaction
   with one participant is an ordinary one-phase commit: no journal, no
   extra record.  With several, a global id is issued and the commit
   journal entry prepared (:mod:`federation.journal`).
3. **vote** (``tpc_vote``): locks are taken in one global order (the
   members' lock keys), every participant writes its buffer and votes
   (``tpc_vote``, ``PREPARE TRANSACTION``); with a last resource (a member
   without two-phase commit), its local commit, which records the global
   id, comes after every other vote and is the decision.
4. **finish** (``tpc_finish``): without a last resource, the member that
   holds the journal entry finishes first: the entry and that member's
   changes become durable together, and that is the decision; the other
   members finish after it.  A member that fails to finish after the
   decision is redone by recovery, never rolled back.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from federation import journal, recovery
from federation.errors import FederationError
from federation.interfaces import OutcomeRecording

if TYPE_CHECKING:
    from federation.interfaces import Participant

log = logging.getLogger(__name__)


class Coordinator:
    """The single resource manager of a federation in each transaction.

    One per federation and transaction manager: every manager opened on the
    same transaction manager shares it, so their changes commit as one
    transaction.  See the module docstring; the jars it drives provide
    :class:`federation.interfaces.Participant`.
    """

    def __init__(self, federation: Any, transaction_manager: Any) -> None:
        self.federation = federation
        self.transaction_manager = transaction_manager
        self.managers: list[Any] = []  # the open managers on this transaction manager
        self._jars: list[Participant] = []
        self._ids: set[int] = set()
        self._joined = False
        self._txn: Any = None
        self._plan: _Plan | None = None
        self._savepoints: weakref.WeakSet[_Savepoint] = weakref.WeakSet()

    # -- joining ----------------------------------------------------------

    def join(self, jar: Participant) -> None:
        """Take part ``jar`` in the current transaction (called when it registers a change)."""
        if id(jar) in self._ids:
            return
        if not self._joined:
            self.transaction_manager.get().join(self)
            self._joined = True
        for savepoint in list(self._savepoints):
            savepoint.add(jar)  # rolled back to its state when it joined
        self._ids.add(id(jar))
        self._jars.append(jar)
        if self._txn is not None:
            jar.tpc_begin(self._txn)  # joined while others were being collected

    def jar_of(self, member: str) -> Participant:
        """A jar of ``member`` from one of the managers this coordinator serves."""
        for manager in self.managers:
            jar = manager.jars.get(member)
            if jar is not None:
                return jar
        return self.managers[0].jar(member)  # raises the reason (unavailable, closed...)

    @property
    def joined(self) -> list[Participant]:
        """The jars that joined the current transaction."""
        return list(self._jars)

    def _reset(self) -> None:
        self._jars = []
        self._ids = set()
        self._joined = False
        self._txn = None
        self._plan = None
        self._savepoints = weakref.WeakSet()

    # -- IDataManager -------------------------------------------------------

    def sortKey(self) -> str:
        return f"zodb-federation:{id(self)}"

    def abort(self, txn: Any) -> None:
        if self._txn is not None:
            return  # a failed commit: tpc_abort follows and rolls every branch back
        try:
            for jar in self._jars:
                jar.abort(txn)
        finally:
            self._reset()

    def tpc_begin(self, txn: Any) -> None:
        self._txn = txn
        for jar in list(self._jars):
            jar.tpc_begin(txn)

    def commit(self, txn: Any) -> None:
        _collect(self, txn)
        self._plan = _Plan.make(self, txn)

    def tpc_vote(self, txn: Any) -> None:
        assert self._plan is not None, "tpc_vote before commit"
        self._plan.vote(txn)

    def tpc_finish(self, txn: Any) -> None:
        assert self._plan is not None, "tpc_finish before tpc_vote"
        self._plan.finish(txn)  # if it raises, transaction calls tpc_abort
        self._reset()

    def tpc_abort(self, txn: Any) -> None:
        plan = self._plan
        jars = self._jars
        self._reset()
        if plan is not None and plan.may_have_decided():
            # Never roll back once the decision may have happened: recovery settles it.
            _each(jars, lambda jar: jar.tpc_abandon(txn), "give up")
            _quietly(recovery.resolve, plan.federation, plan.gid)
            return
        _each(jars, lambda jar: jar.tpc_abort(txn), "roll back")
        if plan is not None:
            plan.aborted()

    def savepoint(self) -> _Savepoint:
        savepoint = _Savepoint(self._jars)
        self._savepoints.add(savepoint)
        return savepoint


def _collect(coordinator: Coordinator, txn: Any) -> None:
    """Phase 1: serialize every jar's changes, and what they cause, until nothing is new."""
    while True:
        progress = False
        for jar in coordinator.joined:  # jars that join meanwhile are collected next round
            progress = jar.collect(txn) or progress
        if not progress:
            for jar in coordinator.joined:
                progress = jar.apply_index_ops(txn) or progress
        if not progress:
            return


def _each(jars: Iterable[Participant], action: Any, what: str) -> None:
    """Run ``action`` on every jar; log failures and raise the first one at the end."""
    first: BaseException | None = None
    for jar in jars:
        try:
            action(jar)
        except Exception as error:
            log.exception("Could not %s member %r.", what, jar.member_name)
            first = first or error
    if first is not None:
        raise first


class _Plan:
    """How one transaction commits: its participants, global id and journal."""

    def __init__(self, coordinator: Coordinator, participants: list[Participant],
                 idle: list[Participant]) -> None:
        self.coordinator = coordinator
        self.federation = coordinator.federation
        self.participants = sorted(participants, key=_lock_key)
        self.idle = idle  # joined, nothing to write: finished with the others, no lock taken
        self.gid = ""
        self.decider: Participant | None = None  # holds the entry, finishes first
        self.last: Participant | None = None  # the last resource, if any
        self.journal_member: str | None = None
        self.prepared_entry: bytes | None = None  # written before any lock (last resource)
        self.cleanup: list[str] = []  # finished entries this commit's journal write deletes
        self.entry_written = False
        self.deciding = False

    @classmethod
    def make(cls, coordinator: Coordinator, txn: Any) -> _Plan:
        joined = coordinator.joined
        participants = [jar for jar in joined if jar.has_writes()]
        idle = [jar for jar in joined if jar not in participants]
        _refuse_shared_locks(participants)
        plan = cls(coordinator, participants, idle)
        last = [jar for jar in participants if jar.commit_style == "last_resource"]
        if len(last) > 1:
            names = ", ".join(repr(jar.member_name) for jar in last)
            raise FederationError(
                f"Members {names} lack two-phase commit; one transaction can change only one "
                "such member. Nothing was written."
            )
        if any(jar.commit_style == "zodb" for jar in participants):
            plan.federation.check_journals()
        if len(participants) > 1:
            plan.last = last[0] if last else None
            plan._journal(txn)
        return plan

    # -- planning -----------------------------------------------------------

    def _journal(self, txn: Any) -> None:
        """Issue the global id, place the markers and the journal entry."""
        if self.last is None:
            zodb = [jar for jar in self.participants if jar.commit_style == "zodb"]
            if not zodb:  # foreign members only: a ZODB member joins to keep the entry
                jar = self.coordinator.jar_of(self._journal_holder().name)
                self.coordinator.join(jar)
                jar.collect(txn)  # installs its buffer (a savepoint may hold its changes)
                if jar in self.idle:
                    self.idle.remove(jar)
                self.participants = sorted([*self.participants, jar], key=_lock_key)
                zodb = [jar]
            self.decider = max(zodb, key=lambda jar: jar.branch_size())
            holder = self.decider.member
        else:
            holder = self._journal_holder()
        self.journal_member = holder.name
        self.gid = journal.new_gid(holder.member_id)
        branches = [jar.journal_branch(txn, self.gid, f"{self.gid}.{index}")
                    for index, jar in enumerate(self.participants)
                    if jar is not self.decider and jar is not self.last]
        if self.last is not None:
            lr = self.last.member
            self.prepared_entry = journal.encode(
                self.gid, "prepared", branches, {"member_id": lr.member_id, "name": lr.name})
            return
        decider = self.decider
        assert decider is not None
        entry = journal.encode(self.gid, "committed", branches)
        self.cleanup = self.federation.journal_queue.take(holder.name)
        for gid in self.cleanup:
            decider.index_later("journal", gid, None)
        decider.index_later("journal", self.gid, entry)
        decider.apply_index_ops(txn)

    def _journal_holder(self) -> Any:
        """The member that keeps the journal entry when no participant can decide.

        Not, if another can, a participant that stores its first catalog in
        this transaction: the entry, written first in a transaction of its
        own, would store another catalog, and the participant's would conflict.
        """
        member = self.federation.journal_member(avoid=[
            jar.member_name for jar in self.participants
            if jar.commit_style == "zodb" and jar.creates_catalog()])
        if member is None:
            raise FederationError(
                "A transaction over several members needs a writable, available ZODB member "
                "to keep its commit journal, and this federation has none. Nothing was written."
            )
        return member

    # -- voting and finishing ---------------------------------------------------

    def vote(self, txn: Any) -> None:
        if not self.participants:
            return
        if not self.gid:
            [jar] = self.participants
            jar.begin_branch(txn, journal.single_xid())
            jar.vote_one_phase(txn)
            return
        if self.prepared_entry is not None:
            recovery.write_prepared(
                self.federation, self.journal_member, self.gid, self.prepared_entry)
            self.entry_written = True
        for index, jar in enumerate(self.participants):
            jar.begin_branch(txn, f"{self.gid}.{index}")
        for jar in self.participants:
            if jar is not self.last:
                jar.prepare(txn)

    def may_have_decided(self) -> bool:
        """Whether the decision step started and its outcome is not known to be "no".

        A last resource that records no outcome (LDAP) undoes its writes
        when its commit fails: then the decision is known to be "no".
        """
        if not self.deciding:
            return False
        return self.last is None or isinstance(self.last.adapter, OutcomeRecording)

    def finish(self, txn: Any) -> None:
        if not self.gid:
            for jar in [*self.participants, *self.idle]:
                jar.tpc_finish(txn)
            return
        self.deciding = True
        if self.last is not None:
            self.last.commit_last(txn, self.gid)  # the decision
        elif self.decider is not None:
            self.decider.tpc_finish(txn)  # the decision: the entry is durable
        failed = False
        for jar in self.participants:
            if jar is self.decider or jar is self.last:
                continue
            try:
                jar.tpc_finish(txn)
            except Exception:
                # Decided: never rolled back.  The journal has what recovery redoes.
                log.exception("Member %r did not finish transaction %s after the decision; "
                              "recovery will finish it.", jar.member_name, self.gid)
                failed = True
                _quietly(jar.tpc_abandon, txn)
        for jar in [*([self.last] if self.last is not None else []), *self.idle]:
            jar.tpc_finish(txn)  # cleans up (the last resource committed already)
        queue = self.federation.journal_queue
        if failed:  # the entry stays: recovery redoes what did not finish, then deletes it
            _quietly(recovery.resolve, self.federation, self.gid)
        else:
            queue.done(self.journal_member, self.gid)

    def aborted(self) -> None:
        """After ``tpc_abort`` before any decision: settle the entry written, give back cleanup.

        A last resource that records outcomes is asked (its commit may have
        failed after it happened); one that does not raised before it
        committed, so the entry is simply deleted.
        """
        if self.decider is not None:  # its journal write, with the deletions, never happened
            self.federation.journal_queue.give_back(self.journal_member, self.cleanup)
        if not self.entry_written:
            return
        assert self.last is not None
        if isinstance(self.last.adapter, OutcomeRecording):
            _quietly(recovery.resolve, self.federation, self.gid)
        else:
            _quietly(recovery.forget, self.federation, self.journal_member, self.gid)


def _refuse_shared_locks(participants: list[Participant]) -> None:
    """Refuse two participants of one member (two managers on one transaction manager):
    the second ZODB branch would wait forever for the commit lock of its storage, which
    the first holds, and a SQL branch for the locks the first one's rows hold."""
    seen: set[int] = set()
    for jar in participants:
        if id(jar.member) in seen:
            raise FederationError(
                f"Member {jar.member_name!r} was changed through two of its connections in "
                "this transaction (two federation managers on one transaction manager, say "
                "Federation.open() and db.open()), which cannot commit together; make the "
                "changes through one manager. Nothing was written."
            )
        seen.add(id(jar.member))


def _lock_key(jar: Participant) -> str:
    return jar.lock_key()


def _quietly(function: Any, *args: Any) -> None:
    try:
        function(*args)
    except Exception:
        log.exception("Recovery step %s failed; the next federation.open() retries it.",
                      getattr(function, "__name__", function))


class _Savepoint:
    """A savepoint of every joined jar; jars that join later are rolled back to their join."""

    def __init__(self, jars: list[Participant]) -> None:
        self._lock = threading.Lock()
        self._savepoints = [(jar, jar.savepoint()) for jar in jars]

    def add(self, jar: Participant) -> None:
        with self._lock:
            self._savepoints.append((jar, jar.savepoint()))

    def rollback(self) -> None:
        for _jar, savepoint in self._savepoints:
            savepoint.rollback()
