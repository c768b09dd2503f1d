"""Maintenance of the federation records: rebuilding indexes, packing safely.

Both operations walk a member's records from its root the way pack does:
raw records and ``referencesf``, without unpickling objects that need no
look.  Index values are oids as bytes, not references, so the walk reaches a
stub only through a referrer, exactly like pack.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import transaction
from ZODB.POSException import POSKeyError
from ZODB.serialize import referencesf
from ZODB.utils import z64

from federation.catalog import UUID_ATTRIBUTE, Index, decode_entry, stub_state, target_key
from federation.errors import DanglingStub, MemberUnavailable

if TYPE_CHECKING:
    from federation.connection import FederatedConnection
    from federation.federation import Federation
    from federation.manager import Manager

STUB_CLASS = "federation.catalog.Stub"


@dataclass
class ReindexReport:
    """What :func:`reindex` found in a member."""

    member: str
    stubs: int
    duplicate_stubs: int
    uuids: int


def walk(jar: FederatedConnection) -> Iterator[tuple[bytes, bytes]]:
    """``(oid, record)`` for every record reachable from the member's root."""
    storage = jar._storage
    seen = {z64}
    todo = [z64]
    while todo:
        oid = todo.pop()
        try:
            record, _ = storage.load(oid)
        except POSKeyError:
            continue
        yield oid, record
        for ref in referencesf(record):
            if ref not in seen:
                seen.add(ref)
                todo.append(ref)


def reindex(manager: Manager, member: str) -> ReindexReport:
    """Rebuild ``member``'s stub, stable-id and uuid indexes from its reachable records.

    Use it after importing objects (``importFile``), which gives them new
    oids, or after a pack to drop entries of collected stubs.  The caller
    commits.
    """
    jar = manager.jar(member)
    catalog = jar._require_catalog("rebuild its indexes")
    reader = jar._reader
    by_target, by_oid, uuids, stable_ids = Index(), Index(), Index(), Index()
    duplicates = 0
    for oid, record in walk(jar):
        if reader.getClassName(record) == STUB_CLASS:
            data, stable_id = stub_state(reader.getState(record))
            entry = decode_entry(data)
            by_oid[oid] = data
            if stable_id is not None:
                stable_ids[oid] = stable_id
            tkey = target_key(entry[0], entry[2], entry[3])
            if tkey in by_target:
                duplicates += 1
            else:
                by_target[tkey] = oid
        elif UUID_ATTRIBUTE.encode() in record:
            state = reader.getState(record)
            value = state.get(UUID_ATTRIBUTE) if isinstance(state, dict) else None
            if value is not None:
                uuids[value] = oid + reader.getClassName(record).encode()
    catalog.stubs_by_target, catalog.stubs_by_oid, catalog.uuids = by_target, by_oid, uuids
    catalog.stable_ids = stable_ids
    jar._zfed_forget()
    return ReindexReport(member, len(by_oid), duplicates, len(uuids))


def _keep_alive(manager: Manager) -> None:
    """Make every member keep the objects that other members' stubs name."""
    wanted: dict[str, dict[bytes, object]] = {name: {} for name in manager._jars}
    for jar in manager._jars.values():
        for _stub_oid, entry in jar.stub_entries():
            try:
                target_jar, oid, klass = manager._resolve_entry(*entry)
            except (MemberUnavailable, DanglingStub):
                continue  # nothing to keep alive where the target is gone or unreachable
            if target_jar is not jar:
                wanted[target_jar._zfed_member.name][oid] = target_jar.ghost(oid, klass)
    for name, targets in wanted.items():
        catalog = manager._jars[name]._catalog()
        if catalog is None or manager._jars[name]._zfed_member.read_only:
            continue
        current = getattr(catalog, "keep_alive", None)
        if current is None or set(current.keys()) != set(targets):
            catalog.keep_alive = Index(targets)


def pack(federation: Federation, days: float = 0.0) -> dict[str, ReindexReport]:
    """Pack every writable member without losing objects other members reference.

    ZODB's pack keeps what a member's root reaches; an object that only
    another member references (through a stub) would be lost.  So:

    1. every member records, in ``catalog.keep_alive``, real references to
       its objects that any stub of any member names;
    2. every member is packed (``days`` as in ``DB.pack``), which also
       collects stubs whose referrers are gone;
    3. every member's indexes are rebuilt from what survived, and the
       keep-alive sets are refreshed, so targets that only collected stubs
       named are released at the next pack.
    """
    tm = transaction.TransactionManager()
    manager = federation.open(tm)
    try:
        writable = [
            name for name, jar in manager._jars.items()
            if not jar._zfed_member.read_only
            and (jar._catalog() is not None or getattr(jar._zfed_member, "writable", False))
        ]
        _keep_alive(manager)
        tm.commit()
        for name in writable:
            federation.member(name).db.pack(days=days)
        tm.begin()
        reports = {name: reindex(manager, name) for name in writable}
        _keep_alive(manager)
        tm.commit()
        return reports
    finally:
        tm.abort()
        manager.close()
