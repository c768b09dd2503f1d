"""``zfed migrate``: native multi-database references into stubs, and back.

A federation reads ZODB's native multi-database references as its own
(:mod:`federation.native`), so migrating is optional; it makes every member
hold stubs only, as the federation writes them, so that members can be
renamed, exported and imported and packed alone.  :func:`migrate` works
member by member:

1. it reads every current record of the member (``record_iternext``, else
   what its root reaches) and picks the records to rewrite: those holding
   ``['m', ...]``/``['n', ...]`` references to members of the federation
   (with ``to_native``: those holding stub references to objects of ZODB
   members);
2. it rewrites them in transactions of at most ``batch`` records, each one
   committed by the federation's manager (journaled, like any commit): a
   reference becomes a reference to the stub of its target (made or found in
   the member's stub index), or, with ``to_native``, the native reference
   ``['m', (database name, oid, class)]``.  Records are rewritten without
   the application's classes (:mod:`federation.repickle`); a record changed
   by someone else meanwhile is read again (``transaction.attempts``).

Nothing else in a record changes.  An interrupted run leaves every
committed batch done and the rest as it was; running it again picks up the
records still to rewrite.  References that stay are counted, by reason:
weak references (``['w', ...]``, kept native as ZODB keeps them), references
to a database that no member's database name is, to an unavailable member,
to a missing object, and (``to_native``) stubs whose target is a foreign
member's record or cannot be resolved.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import transaction
from ZODB.broken import Broken, find_global
from ZODB.POSException import POSKeyError
from ZODB.utils import u64, z64

from federation import maintenance, native, repickle
from federation.catalog import bump_generation, decode_entry, target_key
from federation.errors import (
    DanglingStub,
    MemberUnavailable,
    MigrationError,
    UnknownMember,
    describe,
)
from federation.records import STUB_CLASS, is_stub, record_class, record_uuid, stub_data

#: How many records one transaction rewrites by default.
BATCH = 500

#: ``progress(phase, done, total)``, as ``zfed pack`` shows it.
Progress = Callable[[str, int, "int | None"], None]

#: ``hook(step)``: ``"rewrite"`` before each record is rewritten in a commit,
#: ``"committed"`` after each batch (tests stop the process there).
Hook = Callable[[str], None]


@dataclass
class MemberMigration:
    """What :func:`migrate` did (or, dry, would do) in one member."""

    member: str
    records: int = 0  # records rewritten
    references: int = 0  # references rewritten
    transactions: int = 0
    classes: Counter[str] = field(default_factory=Counter)  # referrer class -> records
    left: Counter[str] = field(default_factory=Counter)  # why references stay -> count


class MigrationReport(dict[str, MemberMigration]):
    """Per member name, a :class:`MemberMigration`."""

    dry_run: bool = False
    to_native: bool = False

    def lines(self) -> list[str]:
        """What ``zfed migrate`` prints: per member, counts, classes, what stays."""
        verb = "would rewrite" if self.dry_run else "rewrote"
        what = "stub reference(s) into native ones" if self.to_native else (
            "native reference(s) into stubs")
        out = []
        for name, result in self.items():
            done = "" if self.dry_run else f", {result.transactions} transaction(s)"
            out.append(f"{name}: {verb} {result.references} {what} in {result.records} "
                       f"record(s){done}")
            out.extend(f"{name}:   {count} {klass}" for klass, count in
                       sorted(result.classes.items()))
            out.extend(f"{name}:   {count} left: {why}" for why, count in
                       sorted(result.left.items()))
        return out


def migrate(federation: Any, *, to_native: bool = False, batch: int = BATCH,
            dry_run: bool = False, members: Iterable[str] | None = None,
            progress: Progress | None = None, hook: Hook | None = None) -> MigrationReport:
    """Rewrite native references into stubs, or (``to_native``) back; see the module docstring.

    ``members`` limits the run to those members (all writable ZODB members
    by default).
    """
    if not isinstance(batch, int) or batch < 1:
        raise MigrationError(f"The batch size must be a positive number of records, not "
                             f"{batch!r}.")
    if members is None:  # foreign members hold no ZODB records
        names = [name for name, member in federation.members.items()
                 if getattr(member, "database_name", None) is not None]
    else:
        names = list(members)
        for name in names:
            if getattr(federation.member(name), "database_name", None) is None:  # UnknownMember
                raise MigrationError(f"Member {name!r} is a foreign member: it holds no ZODB "
                                     "records to migrate.")
    for name in names:
        member = federation.members[name]
        if not member.available:  # before anything is written
            raise MemberUnavailable(name, cause=member.error)
    step = hook if hook is not None else _no_hook
    results = {}
    # Read-only members first: one with references to rewrite is refused before any
    # other member is written.
    for name in sorted(names, key=lambda name: not federation.members[name].read_only):
        results[name] = _migrate_member(federation, name, to_native, batch, dry_run,
                                        progress, step)
    report = MigrationReport((name, results[name]) for name in names)
    report.dry_run, report.to_native = dry_run, to_native
    return report


def _unindex(jar: Any, entries: list[tuple[str, bytes]]) -> None:
    """Drop the index entries ``(index, key)`` in this transaction (see
    :meth:`_Plan.unreferenced_stubs`)."""
    if entries:
        for index, key in entries:
            jar.index_later(index, key, None)
        bump_generation(jar.ensure_catalog())  # other connections drop what they cached
        jar._zfed_forget()  # and so does this one (as maintenance.reindex)


def _no_hook(step: str) -> None:
    """No test is watching."""


def _migrate_member(federation: Any, name: str, to_native: bool, batch: int, dry_run: bool,
                    progress: Progress | None, step: Hook) -> MemberMigration:
    result = MemberMigration(name)
    tm = transaction.TransactionManager()
    with federation.open(tm) as conn:
        plan = _Plan(federation, conn, name, to_native)
        todo = plan.scan(result, progress)
        jar = conn.jar(name)
        if jar.member.read_only and todo and not dry_run:
            raise MigrationError(f"Member {name!r} is read-only; its {len(todo)} record(s) "
                                 "with references to migrate cannot be rewritten.")
        unreferenced = [] if dry_run or jar.member.read_only else plan.unreferenced_stubs()
        if dry_run or not (todo or unreferenced):
            tm.abort()
            return result
        for start in range(0, max(len(todo), 1), batch):
            chunk = todo[start:start + batch]
            for attempt in tm.attempts():
                with attempt:
                    for oid in chunk:
                        jar.rewrite_record(oid, plan.rewriter(oid, step))
                    if start + batch >= len(todo):  # the last batch
                        _unindex(jar, unreferenced)
                    tm.get().note(f"zfed migrate: {len(chunk)} record(s) of member {name}")
            result.transactions += 1
            step("committed")
            if progress is not None:
                progress(f"rewrite {name}", start + len(chunk), len(todo))
    return result


class _Plan:
    """Which references of one member's records change, and into what."""

    def __init__(self, federation: Any, conn: Any, name: str, to_native: bool) -> None:
        self.federation = federation
        self.conn = conn
        self.name = name
        self.to_native = to_native
        self.jar = conn.jar(name)
        self.stubs: dict[bytes, bytes] = {}  # stub oid -> encoded entry (to_native)
        self._targets: dict[bytes, Any] = {}  # stub oid -> native pid, or why it stays

    # -- scanning -------------------------------------------------------------

    def scan(self, result: MemberMigration, progress: Progress | None) -> list[bytes]:
        """The oids of the records to rewrite; ``result`` gets the counts."""
        storage = self.jar.member.db.storage
        if self.to_native:  # a first pass: the stub records
            self.stubs = {oid: stub_data(record)[0] for oid, record
                          in maintenance.all_records(storage, [z64]) if is_stub(record)}
        try:
            total: int | None = len(storage)
        except TypeError:  # a storage that cannot count its records
            total = None
        todo = []
        done = 0
        for oid, record in maintenance.all_records(storage, [z64]):
            done += 1
            if progress is not None and not done % 1024:
                progress(f"scan {self.name}", done, total)
            if record_class(record) == STUB_CLASS:
                continue
            count = self._count(record, result.left)
            if count:
                todo.append(oid)
                result.records += 1
                result.references += count
                module, klass = record_class(record)
                result.classes[f"{module}.{klass}"] += 1
        if progress is not None:
            progress(f"scan {self.name}", done, done)
        return todo

    def unreferenced_stubs(self) -> list[tuple[str, bytes]]:
        """``to_native``: the index entries of the stubs no record references once the
        run is done, as ``(index, key)``; else none.

        Their records are then garbage for any pack, ZODB's own included.
        Kept in the indexes, the next reference to one of their targets would
        reuse a stub that such a pack removed, and name nothing; it gets a new
        stub instead.
        """
        entries = []
        for oid, entry in self.stubs.items():
            if isinstance(self._targets.get(oid), str):
                continue  # references to it stay
            member_id, _member_name, kind, key, _module, _name = decode_entry(entry)
            tkey = target_key(member_id, kind, key)
            if self.jar.index_get("stubs_by_target", tkey) == oid:  # not another stub's
                entries.append(("stubs_by_target", tkey))
            entries.extend((index, oid) for index in ("stubs_by_oid", "stable_ids")
                           if self.jar.index_get(index, oid) is not None)
        return entries

    def _count(self, record: bytes, left: Counter[str]) -> int:
        """How many references of ``record`` change; those that stay go to ``left``."""
        oids, natives = native.references(record)
        count = 0
        if self.to_native:
            for oid in oids:
                if oid in self.stubs:
                    target = self._native_pid(oid)
                    if isinstance(target, str):
                        left[target] += 1
                    else:
                        count += 1
            return count
        for ref in natives:
            why = self._stays(ref)
            if why is None:
                count += 1
            else:
                left[why] += 1
        return count

    def _stays(self, ref: native.NativeRef) -> str | None:
        """Why the native reference ``ref`` stays native, or None: it becomes a stub."""
        if ref.form == "w":
            return "weak references (kept native, as ZODB keeps them)"
        member_name = self.federation.native_names.get(ref.database_name)
        if member_name is None:
            return f"references to database {ref.database_name!r}, which is no member"
        try:
            jar = self.conn.jar(member_name)
        except MemberUnavailable:
            return f"references to member {member_name!r}, which is unavailable"
        try:
            record = jar.member.db.storage.load(ref.oid)[0]
        except POSKeyError:
            return f"references to objects missing from member {member_name!r}"
        if jar.member.kind == "uuid" and record_uuid(record) is None:
            module, name = record_class(record)
            if issubclass(find_global(module, name), Broken):
                raise MigrationError(
                    f"Member {member_name!r}: the object with oid {u64(ref.oid)}, which "
                    f"member {self.name!r} references, needs a UUID, and its class "
                    f"{module}.{name} cannot be imported here to write one; run zfed migrate "
                    f"where the application's classes are importable; nothing of member "
                    f"{self.name!r} was rewritten."
                )
        return None

    def _native_pid(self, stub_oid: bytes) -> Any:
        """The native reference replacing a reference to ``stub_oid``, or why there is none."""
        found = self._targets.get(stub_oid)
        if found is None:
            found = self._targets[stub_oid] = self._resolve(stub_oid)
        return found

    def _resolve(self, stub_oid: bytes) -> Any:
        member_id, member_name, kind, key, module, name = decode_entry(self.stubs[stub_oid])
        try:
            jar, oid, _klass = self.conn.resolve_entry(member_id, member_name, kind, key,
                                                       module, name)
        except MemberUnavailable:
            return f"stubs naming member {member_name!r}, which is unavailable (they stay)"
        except (DanglingStub, UnknownMember):
            return "stubs whose target cannot be found (they stay)"
        database_name = getattr(jar.member, "database_name", None)
        if database_name is None:
            return f"stubs naming records of foreign member {jar.member_name!r} (they stay)"
        return ["m", (database_name, oid, repickle.stand_in(module, name))]

    # -- rewriting ------------------------------------------------------------

    def rewriter(self, oid: bytes, step: Hook) -> Callable[[bytes], bytes | None]:
        """The function that rewrites record ``oid`` at commit (see ``rewrite_record``)."""
        def rewrite(record: bytes) -> bytes | None:
            step("rewrite")
            try:
                return repickle.rewrite(record, self._replace)
            except repickle.RewriteError as error:
                raise MigrationError(
                    f"Member {self.name!r}: the record with oid {u64(oid)} cannot be rewritten: "
                    f"{describe(error)}; nothing of this batch was written."
                ) from error
        return rewrite

    def _replace(self, pid: Any) -> Any:
        if self.to_native:  # as _count: any reference to a stub record, bare oids included
            oid = native.local_oid(pid)
            if oid in self.stubs:
                target = self._native_pid(oid)
                if not isinstance(target, str):
                    return target
            return pid
        ref = native.as_native(pid)
        if ref is None or self._stays(ref) is not None:
            return pid
        jar = self.conn.jar(self.federation.native_names[ref.database_name])
        if jar is self.jar:
            return ref.oid if ref.form == "n" else (ref.oid, pid[1][2])
        return self.jar.stub_reference(jar.get(ref.oid))

