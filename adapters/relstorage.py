"""RelStorage members: what the federation does differently for a RelStorage storage.

RelStorage (``postgres://`` zodburi URIs) is a ZODB storage like any other
for the federation, with four differences handled here:

- **Lock order.**  The coordinator takes the members' locks in the order of
  their storages' ``sortKey()``, in every process.  RelStorage's default
  storage name (its ``sortKey``) holds the address of an object of the
  process, so two processes could order the same two members differently;
  :func:`give_stable_name` names such a storage after its database instead.
- **Current reads.**  RelStorage is an MVCC storage: each ZODB connection
  reads through its own instance, and the instance the ``ZODB.DB`` holds
  keeps reading the snapshot of its first read until it is told to move
  on.  The federation's own readers (the collector's mark, index pruning,
  recovery) call :func:`refresh` before they read.
- **Redo without history.**  Recovery redoes a lost branch against the
  revisions it read, merging by the objects' conflict resolution when
  another writer changed them since; a history-free RelStorage no longer
  has those revisions, so its branches keep them in the journal
  (:func:`with_old_states`, :func:`resolve`).
- **Pack without history.**  A history-free RelStorage keeps only current
  records, and its pack collects what the current records (and everything
  written after the pack point) do not reach; see :func:`history_free` and
  :mod:`federation.gc`, which verifies the pack's analysis before anything
  is deleted.
- **Unreachable server.**  A PostgreSQL server that cannot be reached (its
  driver's errors, :data:`DISCONNECTED`) is a member that is unavailable,
  not a configuration error; a server that refuses the login or the
  database is one (:func:`refused`).
"""

from __future__ import annotations

import re
from typing import Any

from ZODB.ConflictResolution import tryToResolveConflict
from ZODB.POSException import POSKeyError
from ZODB.utils import u64, z64

from federation.redact import redact

try:
    from relstorage.storage import RelStorage
except ImportError:  # the optional dependency (the ``relstorage`` extra) is not installed
    RelStorage = None

try:
    from psycopg2 import InterfaceError as _DriverInterfaceError
    from psycopg2 import OperationalError as _DriverOperationalError
except ImportError:  # RelStorage's PostgreSQL driver is not installed
    _DriverInterfaceError = _DriverOperationalError = None

#: What RelStorage's PostgreSQL driver raises when its server went away (RelStorage reads
#: the same errors as disconnections).
DISCONNECTED: tuple[type[BaseException], ...] = tuple(
    error for error in (_DriverOperationalError, _DriverInterfaceError) if error is not None)

try:
    from relstorage.cache.interfaces import CacheConsistencyError
except ImportError:
    CacheConsistencyError = None

#: What RelStorage's vote raises when a store names as its previous serial one that is not
#: the object's revision in the storage's snapshot: for recovery redoing a branch, another
#: writer changed the object since the branch read it (RelStorage then cannot load the
#: revision the branch read, which conflict resolution needs).
STALE_SERIAL: tuple[type[BaseException], ...] = (
    (CacheConsistencyError,) if CacheConsistencyError is not None else ())

#: What RelStorage's default storage name starts with (followed by its adapter's repr).
_DEFAULT_NAME_PREFIX = "RelStorage: <"

#: One ``key=value`` setting of a libpq connection string, the value quoted or not.
_DSN_SETTING = re.compile(r"(\w+)\s*=\s*('(?:[^'\\]|\\.)*'|[^\s']+)")


def is_relstorage(storage: Any) -> bool:
    """Whether ``storage`` is a RelStorage storage."""
    return RelStorage is not None and isinstance(storage, RelStorage)


def history_free(storage: Any) -> bool:
    """Whether ``storage`` is a history-free RelStorage (no old revisions, no undo)."""
    return is_relstorage(storage) and not storage.keep_history


def give_stable_name(storage: Any) -> None:
    """Name a RelStorage that has RelStorage's default name after its database.

    The name (``RelStorage: dbname=... user=... host=... port=...``, never a
    password) is the storage's ``sortKey()``, the same in every process
    that opens the database with the same settings.  A storage given a
    ``name`` (the URI's ``?name=``, or ``RelStorage(name=...)``) keeps it.
    Connections' storage instances copy the name of the storage they are
    made from, so this is done before the ``ZODB.DB`` opens.
    """
    if not is_relstorage(storage) or not str(storage.__name__).startswith(_DEFAULT_NAME_PREFIX):
        return
    dsn = getattr(storage._adapter, "_dsn", None)
    if isinstance(dsn, str):  # PostgreSQL; other databases keep the name RelStorage gives
        storage.__name__ = stable_name(dsn, keep_history=storage.keep_history)


def stable_name(dsn: str, *, keep_history: bool) -> str:
    """The storage name of a PostgreSQL RelStorage: its libpq settings but the password.

    ``dsn`` is a libpq connection string (``key=value`` or ``key='quoted value'``).
    """
    settings = sorted(f"{key}={value}" for key, value in _DSN_SETTING.findall(dsn)
                      if key != "password")
    kind = "history-preserving" if keep_history else "history-free"
    return redact(f"RelStorage ({kind}): {' '.join(settings)}")


def pack_point(storage: Any, tid: bytes) -> int:
    """What RelStorage's ``pack(t, ...)`` takes to pack at exactly the transaction ``tid``.

    RelStorage reads a ``t`` larger than any time as a transaction id (as an
    integer); a time would be rounded, and one at or after the current time
    means "the last transaction".
    """
    return u64(tid)


def has_records_before(storage: Any, point: int) -> bool:
    """Whether a history-free RelStorage holds a record written at or before ``point``.

    Without one, its pre-pack analyses nothing and leaves the analysis of
    an earlier pack in place: a pack then must not run its second phase.
    """
    packundo = storage._adapter.packundo
    return packundo.choose_pack_transaction(point) is not None


def refresh(storage: Any) -> None:
    """Make a RelStorage read the database as it is now (other storages need nothing).

    Ends the snapshot the storage's load connection reads: the next read
    (``lastTransaction``, ``load``, ``iterator``...) sees every transaction
    committed before it.
    """
    if is_relstorage(storage):
        storage.sync()  # a new snapshot for the next read...
        storage.poll_invalidations()  # ...and lastTransaction() up to date with it


def refused(error: BaseException) -> bool:
    """Whether ``error``, raised opening a RelStorage, is its server refusing the login or the
    database (a configuration error), not a server that cannot be reached.

    The driver raises ``OperationalError`` for both; the server's refusals
    carry its ``FATAL:`` message, except while it starts or stops.
    """
    if not DISCONNECTED or not isinstance(error, DISCONNECTED):
        return False
    text = str(error)
    return "FATAL:" in text and "the database system is" not in text


def with_old_states(storage: Any, records: list[tuple[bytes, bytes, bytes]]) -> list[tuple]:
    """Redo records of a history-free RelStorage, each with the revision it replaces.

    ``(oid, serial, data)`` becomes ``(oid, serial, data, old)``: ``old`` is
    the record at ``serial`` as ``storage`` (a connection's, reading the
    snapshot the transaction read) loads it, None for a new object.
    Recovery merges a conflicting redo against it (:func:`resolve`).
    """
    found = []
    for oid, serial, data in records:
        old = None
        if serial != z64:
            try:
                old = storage.loadSerial(oid, serial)
            except POSKeyError:
                old = None  # gone already: a redo that meets a change cannot merge
        found.append((oid, serial, data, old))
    return found


def resolve(storage: Any, oid: bytes, current: bytes, serial: bytes, data: bytes,
            old: bytes | None) -> bytes:
    """``data``, written over revision ``serial`` (whose record is ``old``, if known), merged
    with the revision ``current`` by the object's conflict resolution.

    Raises ``ConflictError`` when it cannot merge.
    """
    return tryToResolveConflict(_Revisions(storage, oid, serial, old), oid, current, serial,
                                data)


class _Revisions:
    """``storage`` for ZODB's conflict resolution, which also knows one old revision."""

    def __init__(self, storage: Any, oid: bytes, serial: bytes, old: bytes | None) -> None:
        self._storage, self._oid, self._serial, self._old = storage, oid, serial, old

    def loadSerial(self, oid: bytes, serial: bytes) -> bytes:
        if (oid, serial) == (self._oid, self._serial) and self._old is not None:
            return self._old
        return self._storage.loadSerial(oid, serial)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._storage, name)
