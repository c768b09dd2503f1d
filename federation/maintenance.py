"""Maintenance of a member's federation indexes: rebuilding and pruning them.

Both read records raw (:mod:`federation.records`: ``referencesf`` and the
stub state, never the application's classes) and change index *entries*,
never replace an index: a commit made meanwhile by another process adds or
removes other entries, and BTrees' conflict resolution merges both.  An
entry is removed only when the record it names no longer exists (or is not
what the entry says), never because a walk did not reach it, so a stub that
another process has just committed keeps its entries.

Packing is :mod:`federation.gc`'s job; it calls :func:`prune` afterwards.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import transaction
from BTrees.LLBTree import LLTreeSet
from ZODB.POSException import ConflictError, POSKeyError
from ZODB.serialize import referencesf
from ZODB.utils import u64, z64

from federation.adapters import relstorage
from federation.catalog import (
    CATALOG_ATTRIBUTE,
    Index,
    bump_generation,
    decode_entry,
    target_key,
)
from federation.records import is_stub, listed_records, record_class, record_uuid, stub_data

if TYPE_CHECKING:
    from federation.connection import FederatedConnection
    from federation.interfaces import JarManager

@dataclass
class ReindexReport:
    """What :func:`reindex` found in a member, and what it changed."""

    member: str
    stubs: int
    duplicate_stubs: int
    uuids: int
    added: int = 0  # index entries added or corrected
    removed: int = 0  # index entries whose record is gone
    duplicate_uuids: int = 0  # UUIDs that two objects keep (after an import): left as they are


def walk(jar: FederatedConnection) -> Iterator[tuple[bytes, bytes]]:
    """``(oid, record)`` for every record reachable from the member's root."""
    yield from walk_storage(jar._storage, [z64])


def walk_storage(storage: Any, roots: list[bytes]) -> Iterator[tuple[bytes, bytes]]:
    """``(oid, current record)`` for every record reachable from ``roots``."""
    seen = LLTreeSet(u64(oid) for oid in roots)
    todo = list(roots)
    while todo:
        oid = todo.pop()
        try:
            record, _ = storage.load(oid)
        except POSKeyError:
            continue
        yield oid, record
        for ref in referencesf(record):
            if seen.add(u64(ref)):
                todo.append(ref)


def all_records(storage: Any, roots: list[bytes]) -> Iterator[tuple[bytes, bytes]]:
    """Every current record (``record_iternext``), else those reachable from ``roots``."""
    iternext = getattr(storage, "record_iternext", None)
    if iternext is None:
        yield from walk_storage(storage, roots)
        return
    for oid, _tid, record in listed_records(iternext):
        yield oid, record


def _load(storage: Any, oid: bytes) -> bytes | None:
    try:
        return storage.load(oid)[0]
    except POSKeyError:
        return None


def _is_stub(storage: Any, oid: bytes) -> bool:
    record = _load(storage, oid)
    return record is not None and is_stub(record)


def reindex(manager: JarManager, member: str, hook: Callable[[str], None] | None = None,
            progress: Callable[[str, int, int | None], None] | None = None) -> ReindexReport:
    """Bring ``member``'s stub, stable-id and uuid indexes in line with its records.

    Every stub record and every object keeping a UUID is read (all current
    records where the storage can list them, else everything reachable
    from the root, the keep-alive set and the targets other members' stubs
    name), and the entries that are missing or wrong are set; entries whose
    record is gone are removed.  Use it after importing objects
    (``importFile`` gives them new oids).  The caller commits; ``hook``
    is called with ``"scanned"`` before any entry is changed (tests);
    ``progress("reindex", records read, records in the member)`` now and then.
    """
    jar = manager.jar(member)
    catalog = jar._require_catalog("rebuild its indexes")
    storage = jar._storage
    indexes = {name: _index(catalog, name)
               for name in ("stubs_by_oid", "stubs_by_target", "stable_ids", "uuids")}
    report = ReindexReport(member, 0, 0, 0)
    roots = [z64, *_named_by_others(manager, member)]
    records = all_records(storage, roots)
    if hook is not None:  # tests: everything is read before any entry changes
        records = iter(list(records))
        hook("scanned")
    total = len(storage) if hasattr(storage, "__len__") else None
    for done, (oid, record) in enumerate(records, start=1):
        if progress is not None and not done % 4096:
            progress("reindex", min(done, total or done), total)
        if is_stub(record):
            report.stubs += 1
            _index_stub(storage, indexes, oid, record, report)
        else:
            value = record_uuid(record)
            if value is not None:
                report.uuids += 1
                _index_uuid(storage, indexes["uuids"], oid, record, value, report)
    _drop_missing(storage, indexes, report)
    if report.added or report.removed:
        bump_generation(catalog)
    jar._zfed_forget()
    return report


def _index(catalog: Any, name: str) -> Any:
    tree = getattr(catalog, name, None)
    if tree is None:
        tree = Index()
        setattr(catalog, name, tree)
    return tree


def _named_by_others(manager: JarManager, member: str) -> list[bytes]:
    """Oids of ``member`` that other members' stub indexes name (integer keys)."""
    member_id = manager.federation.member(member).member_id
    found = []
    for name, jar in manager.jars.items():
        if name == member:
            continue
        for _stub_oid, entry in jar.stub_entries():
            if entry[0] == member_id and entry[2] == "integer":
                found.append(entry[3])
    return found


def _index_stub(storage: Any, indexes: dict[str, Any], oid: bytes, record: bytes,
                report: ReindexReport) -> None:
    data, stable_id = stub_data(record)
    by_oid, by_target = indexes["stubs_by_oid"], indexes["stubs_by_target"]
    if by_oid.get(oid) != data:
        by_oid[oid] = data
        report.added += 1
    if stable_id is not None and indexes["stable_ids"].get(oid) != stable_id:
        indexes["stable_ids"][oid] = stable_id
    entry = decode_entry(data)
    tkey = target_key(entry[0], entry[2], entry[3])
    current = by_target.get(tkey)
    if current == oid:
        return
    other = _load(storage, current) if current is not None else None
    if other is not None and is_stub(other) and stub_data(other)[0] == data:
        report.duplicate_stubs += 1  # the index keeps the stub it has
        return
    by_target[tkey] = oid
    report.added += 1


def _index_uuid(storage: Any, uuids: Any, oid: bytes, record: bytes, value: bytes,
                report: ReindexReport) -> None:
    current = uuids.get(value)
    entry = oid + ".".join(record_class(record)).encode()
    if current == entry:
        return
    if current is not None and current[:8] != oid:
        other = _load(storage, current[:8])
        if other is not None and record_uuid(other) == value:
            report.duplicate_uuids += 1  # two objects keep this UUID: no guessing
            return
    uuids[value] = entry
    report.added += 1


def _drop_missing(storage: Any, indexes: dict[str, Any], report: ReindexReport) -> None:
    """Remove the entries that name records that are gone (or are not what they say)."""
    by_oid, stable_ids = indexes["stubs_by_oid"], indexes["stable_ids"]
    for oid in list(by_oid.keys()):
        if not _is_stub(storage, oid):
            del by_oid[oid]
            stable_ids.pop(oid, None)
            report.removed += 1
    for tkey, oid in list(indexes["stubs_by_target"].items()):
        if oid not in by_oid and not _is_stub(storage, oid):
            del indexes["stubs_by_target"][tkey]
            report.removed += 1
    for value, entry in list(indexes["uuids"].items()):
        record = _load(storage, entry[:8])
        if record is None or record_uuid(record) != value:
            del indexes["uuids"][value]
            report.removed += 1


def prune(db: Any) -> int:
    """Drop index entries of records a pack removed; the number of stubs left indexed.

    Only entries whose record is gone are removed (see the module docstring).
    """
    storage = db.storage
    tm = transaction.TransactionManager()
    conn = db.open(tm)
    try:
        for attempt in range(5):
            relstorage.refresh(storage)  # see what the pack removed, and what was added since
            try:
                catalog = getattr(conn.root(), CATALOG_ATTRIBUTE)
                by_oid = _index(catalog, "stubs_by_oid")
                removed = 0
                for oid in list(by_oid.keys()):
                    if _load(storage, oid) is None:
                        del by_oid[oid]
                        _index(catalog, "stable_ids").pop(oid, None)
                        removed += 1
                for name, position in (("stubs_by_target", None), ("uuids", 8)):
                    tree = _index(catalog, name)
                    for key, value in list(tree.items()):
                        if _load(storage, value[:position]) is None:
                            del tree[key]
                            removed += 1
                if removed:
                    bump_generation(catalog)
                keep_alive = _index(catalog, "keep_alive")
                for oid in list(keep_alive.keys()):
                    if _load(storage, oid) is None:
                        del keep_alive[oid]
                tm.get().note("zodb-federation: index entries of collected records")
                tm.commit()
                return len(by_oid)
            except ConflictError:
                tm.abort()
                if attempt == 4:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover
    finally:
        tm.abort()
        conn.close()
