"""A ZODB member's branch of a federated commit, buffered until the locks are taken.

While the coordinator collects (:mod:`federation.coordinator`), a member
connection stores into a :class:`StoreBuffer` in place of its storage:
records are kept in memory, by oid (a record stored again replaces the
first, keeping the serial it was read at), together with the
``readCurrent`` checks.  Nothing reaches the storage, so no commit lock is
held while other members are still being serialized, and storing an
object a second time (an index bucket changed by late work) is harmless.
:meth:`StoreBuffer.replay` then writes it all inside the storage's own
``tpc_begin``, in the coordinator's global lock order.
"""

from __future__ import annotations

from typing import Any

from ZODB.POSException import ConflictError

from federation.errors import FederationError


class StoreBuffer:
    """Stands in for a connection's storage while its changes are collected."""

    def __init__(self, storage: Any, member: str) -> None:
        self.storage = storage
        self.member = member
        self.records: dict[bytes, tuple[bytes, bytes, str | None]] = {}
        self.checks: dict[bytes, bytes] = {}
        self.size = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.storage, name)  # loads, new_oid...: the real storage

    def store(self, oid: bytes, serial: bytes, data: bytes, version: str, txn: Any) -> None:
        self._keep(oid, serial, data, None)

    def storeBlob(self, oid: bytes, serial: bytes, data: bytes, blobfilename: str,
                  version: str, txn: Any) -> None:
        self._keep(oid, serial, data, blobfilename)

    def checkCurrentSerialInTransaction(self, oid: bytes, serial: bytes,
                                        txn: Any) -> None:
        self.checks[oid] = serial

    def _keep(self, oid: bytes, serial: bytes, data: bytes, blob: str | None) -> None:
        previous = self.records.get(oid)
        if previous is not None:
            serial = previous[0]
            self.size -= len(previous[1])
        self.records[oid] = (serial, data, blob)
        self.size += len(data)

    def redo_records(self) -> list[tuple[bytes, bytes, bytes]]:
        """``(oid, serial, data)`` of every record, for the commit journal."""
        if any(blob is not None for _serial, _data, blob in self.records.values()):
            raise FederationError(
                f"Member {self.member!r} stores blobs in a transaction that changes several "
                "members; the commit journal cannot keep blobs. Commit them separately."
            )
        return [(oid, serial, data) for oid, (serial, data, _blob) in self.records.items()]

    def replay(self, meta: Any, invalidate: Any) -> None:
        """Write everything into the real storage, inside its ``tpc_begin``."""
        storage = self.storage
        for oid, (serial, data, blob) in self.records.items():
            if blob is None:
                storage.store(oid, serial, data, "", meta)
            else:
                storage.storeBlob(oid, serial, data, blob, "", meta)
        for oid, serial in self.checks.items():
            if oid in self.records:
                continue  # written, so checked by the store
            try:
                storage.checkCurrentSerialInTransaction(oid, serial, meta)
            except ConflictError:
                invalidate(oid)
                raise
