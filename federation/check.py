"""``zfed check``: read every member and report what is inconsistent.

:func:`check` marks the federation as the collector does
(:mod:`federation.marking`) and reads every current record of each ZODB
member, then reports, per member, findings of these kinds (:data:`KINDS`):

``dangling``
    A reference whose target does not exist: a record naming a missing
    record, a stub or a native multi-database reference
    (:mod:`federation.native`) naming a missing object (removed by a pack
    that did not know the federation), or a member or database that is not
    in the federation.
``foreign-ref``
    A foreign record whose ``Ref`` text names nothing (bad text, an unknown
    member, a missing object).
``unreferenced-stub``
    A stub record that no live object references and whose target is dead:
    the next pack removes it.  (A stub of a live target is kept, so that
    new references reuse it, and is not reported.)
``index-without-stub``
    A ``stubs_by_oid``/``stubs_by_target`` entry whose stub record is gone.
``stub-not-indexed``
    A stub record missing from the stub indexes, or indexed with another
    entry (an unreferenced stub missing from ``stubs_by_oid`` is not: it is
    only garbage).
``duplicate-stub``
    Two stub records for one target (after an import into the member).
``uuid-mismatch``
    A ``uuids`` entry that names an object without that UUID, an object
    whose UUID is not indexed, or two objects keeping one UUID.

With ``repair``, members with index findings are reindexed
(:func:`federation.maintenance.reindex`: entries only, nothing guessed) and
the report says what changed.  Dangling references and duplicates are left
for a person: they need a decision.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import transaction
from ZODB.POSException import POSKeyError
from ZODB.utils import u64, z64

from federation import maintenance
from federation.catalog import CATALOG_ATTRIBUTE, decode_entry, target_key
from federation.errors import CollectionRefused, FederationError, KeyNotFound, MemberUnavailable
from federation.marking import ForeignTarget, Marker, Progress, View
from federation.records import is_stub, record_uuid, stub_data

KINDS = ("dangling", "foreign-ref", "unreferenced-stub", "index-without-stub",
         "stub-not-indexed", "duplicate-stub", "uuid-mismatch")

#: Findings that reindexing repairs.
INDEX_KINDS = frozenset({"index-without-stub", "stub-not-indexed", "uuid-mismatch"})


@dataclass
class Finding:
    """One inconsistency: its kind, the member, and a sentence about it."""

    member: str
    kind: str
    message: str


@dataclass
class CheckReport:
    """What :func:`check` found, and (with ``repair``) what it changed."""

    members: list[str]
    excluded: list[str]
    findings: list[Finding] = field(default_factory=list)
    repairs: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when nothing was found."""
        return not self.findings

    def counts(self, member: str) -> dict[str, int]:
        """``{kind: number of findings}`` for one member."""
        counts = dict.fromkeys(KINDS, 0)
        for finding in self.findings:
            if finding.member == member:
                counts[finding.kind] += 1
        return counts

    def to_json(self) -> str:
        """The report as JSON text."""
        return json.dumps({"ok": self.ok, "members": self.members, "excluded": self.excluded,
                           "findings": [asdict(f) for f in self.findings],
                           "repairs": self.repairs}, indent=2)

    def lines(self) -> list[str]:
        """Human-readable lines: every finding, then a summary per member."""
        out = [f"{f.member}: {f.kind}: {f.message}" for f in self.findings]
        for member in self.members:
            found = {k: n for k, n in self.counts(member).items() if n}
            text = ", ".join(f"{n} {k}" for k, n in found.items()) or "no problems"
            out.append(f"{member}: {text}")
        out.extend(f"{member}: repaired: {text}" for member, text in self.repairs.items())
        out.extend(f"{member}: excluded, not checked" for member in self.excluded)
        return out


def check(federation: Any, *, exclude: Iterable[str] = (), repair: bool = False,
          progress: Progress | None = None) -> CheckReport:
    """Check every member of ``federation`` (see the module docstring)."""
    unknown = sorted(set(exclude) - set(federation.members))
    if unknown:
        raise CollectionRefused(
            f"Cannot exclude {', '.join(map(repr, unknown))}: the federation has no such member."
        )
    marker = Marker(federation, frozenset(exclude), progress)
    marker.stubs = {}
    report = CheckReport(members=[n for n in federation.members if n not in marker.exclude],
                         excluded=sorted(marker.exclude))
    try:
        marker.open()
        marker.mark_roots()
        marker.scan_tail()
        marker.keep_reusable_stubs()
        for dangling in marker.dangling:
            kind = "foreign-ref" if dangling.member in marker.holders else "dangling"
            report.findings.append(Finding(
                dangling.member, kind,
                f"{dangling.holder} references {dangling.target}: {dangling.reason}."))
        _check_foreign_targets(federation, marker.foreign_targets, marker.holders, report)
        for view in marker.views.values():
            _check_member(marker, view, report)
    finally:
        marker.close()
    if repair:
        _repair(federation, report)
    return report


def _check_foreign_targets(federation: Any, targets: list[ForeignTarget],
                           holders: dict[str, Any], report: CheckReport) -> None:
    """Report references to foreign records that do not exist."""
    by_member: dict[str, list[ForeignTarget]] = {}
    for target in targets:
        by_member.setdefault(target.target, []).append(target)
    for name, wanted in by_member.items():
        member = federation.members[name]
        adapter = None
        try:
            adapter = member.factory()
            own = [t for t in wanted if t.kind == member.kind]
            found: set[Any] = set()
            size = adapter.batch_size
            for start in range(0, len(own), size):
                found.update(adapter.load_many([t.key for t in own[start:start + size]]))
            for target in wanted:
                if target.kind == member.kind:
                    exists = target.key in found
                else:
                    exists = _resolves(adapter, target)
                if not exists:
                    kind = "foreign-ref" if target.member in holders else "dangling"
                    report.findings.append(Finding(
                        target.member, kind,
                        f"{target.holder} references {name}:{target.kind}:{target.key}: "
                        f"member {name!r} has no such record."))
        except MemberUnavailable as error:
            report.findings.append(Finding(name, "dangling", f"{error} Its records named by "
                                           "other members could not be checked."))
        finally:
            if adapter is not None:
                adapter.close()


def _resolves(adapter: Any, target: ForeignTarget) -> bool:
    try:
        adapter.resolve(target.kind, target.key)
    except (KeyNotFound, AttributeError):
        return False
    except FederationError:
        return True  # several records: it names something
    return True


def _load(storage: Any, oid: bytes) -> bytes | None:
    try:
        return storage.load(oid)[0]
    except POSKeyError:
        return None


def _check_member(marker: Marker, view: View, report: CheckReport) -> None:
    """Compare one member's stub and uuid records with its indexes."""
    storage = view.storage
    with view.member.db.transaction() as conn:
        catalog = getattr(conn.root(), CATALOG_ATTRIBUTE, None)
        if catalog is None:
            return
        indexes = {name: getattr(catalog, name, None) or {}
                   for name in ("stubs_by_oid", "stubs_by_target", "uuids")}
        marks = marker.marks[view.name]
        add = report.findings.append
        name = view.name
        for oid, record in maintenance.all_records(storage, [z64]):
            if is_stub(record):
                _check_stub(storage, indexes, name, oid, record, u64(oid) in marks, add)
            else:
                value = record_uuid(record)
                if value is not None:
                    _check_uuid(storage, indexes["uuids"], name, oid, value, add)
        for oid in indexes["stubs_by_oid"]:
            if not _is_stub(storage, oid):
                add(Finding(name, "index-without-stub",
                            f"stubs_by_oid names stub oid {u64(oid)}, which does not exist."))
        for tkey, oid in indexes["stubs_by_target"].items():
            if not _is_stub(storage, oid):
                add(Finding(name, "index-without-stub",
                            f"stubs_by_target names stub oid {u64(oid)} for target "
                            f"{_target_text(tkey)}, but that stub does not exist."))
        for value, entry in indexes["uuids"].items():
            held = _load(storage, entry[:8])
            if held is None or record_uuid(held) != value:
                add(Finding(name, "uuid-mismatch",
                            f"uuids names oid {u64(entry[:8])} for UUID {value.hex()}, but that "
                            "object does not keep that UUID."))


def _is_stub(storage: Any, oid: bytes) -> bool:
    record = _load(storage, oid)
    return record is not None and is_stub(record)


def _target_text(tkey: bytes) -> str:
    member_id, kind, key = tkey.split(b"\0", 2)
    return f"{kind.decode()} key {key.hex()} of member id {member_id.decode()}"


def _check_stub(storage: Any, indexes: dict[str, Any], name: str, oid: bytes, record: bytes,
                live: bool, add: Any) -> None:
    data, _stable_id = stub_data(record)
    entry = decode_entry(data)
    where = f"stub oid {u64(oid)} (naming {entry[2]} key {entry[3].hex()} of {entry[1]!r})"
    indexed = indexes["stubs_by_oid"].get(oid)
    if not live:
        add(Finding(name, "unreferenced-stub",
                    f"{where} is referenced by no live object; the next pack removes it."))
        if indexed is None:
            return  # unindexed, as zfed migrate --to-native leaves the stubs it replaced
    if indexed != data:
        add(Finding(name, "stub-not-indexed", f"{where} is missing from stubs_by_oid."))
    current = indexes["stubs_by_target"].get(target_key(entry[0], entry[2], entry[3]))
    if current == oid:
        return
    other = _load(storage, current) if current is not None else None
    if other is not None and is_stub(other) and stub_data(other)[0] == data:
        add(Finding(name, "duplicate-stub",
                    f"{where} and stub oid {u64(current)} name the same target."))
    else:
        add(Finding(name, "stub-not-indexed", f"{where} is missing from stubs_by_target."))


def _check_uuid(storage: Any, uuids: Any, name: str, oid: bytes, value: bytes,
                add: Any) -> None:
    entry = uuids.get(value)
    if entry is not None and entry[:8] == oid:
        return
    if entry is None:
        add(Finding(name, "uuid-mismatch",
                    f"oid {u64(oid)} keeps UUID {value.hex()}, which is not indexed."))
        return
    other = _load(storage, entry[:8])
    if other is not None and record_uuid(other) == value:
        add(Finding(name, "uuid-mismatch",
                    f"oids {u64(entry[:8])} and {u64(oid)} both keep UUID {value.hex()} "
                    "(an import into the same member?); references by that UUID reach the "
                    "first."))
    else:
        add(Finding(name, "uuid-mismatch",
                    f"oid {u64(oid)} keeps UUID {value.hex()}, but uuids names oid "
                    f"{u64(entry[:8])}."))


def _repair(federation: Any, report: CheckReport) -> None:
    """Reindex the members with index findings; record what changed."""
    wanted = sorted({f.member for f in report.findings if f.kind in INDEX_KINDS})
    if not wanted:
        return
    tm = transaction.TransactionManager()
    manager = federation.open(tm)
    try:
        for member in wanted:
            result = maintenance.reindex(manager, member)
            report.repairs[member] = (
                f"reindexed: {result.added} index entries added or corrected, {result.removed} "
                f"removed; {result.duplicate_stubs} duplicate stubs and {result.duplicate_uuids} "
                "shared UUIDs left as they are"
            )
        tm.commit()
    finally:
        tm.abort()
        manager.close()
