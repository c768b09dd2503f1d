"""The in-memory reference adapter: the adapter contract in its plainest form.

Records live in a :class:`MemoryDatabase`, shared by every session made
from it, so two managers see each other's commits.  It exists to document
and test the contract (``tests/conformance.py`` runs against it first) and
as a starting point for new adapters; it keeps nothing across processes.
"""

from __future__ import annotations

import copy
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from federation import resolvers
from federation.errors import CommitFenced, FederationError, KeyNotFound

Validator = Callable[[dict[str, Any]], str | None]


class MemoryDatabase:
    """Records of one class, by key; call it to open an adapter session.

    ``validate(record)`` returns an error text for a record the "database"
    rejects (like a column constraint), or None.
    """

    def __init__(self, name: str, klass: type, *, kind: str = "integer",
                 ref_attributes: Iterable[str] = (), two_phase: bool = True,
                 batch_size: int = 50, key_attribute: str | None = None,
                 validate: Validator | None = None, can_rename: bool = False) -> None:
        self.name = name
        self.klass = klass
        self.kind = kind
        self.ref_attributes = frozenset(ref_attributes)
        self.two_phase = two_phase
        self.batch_size = batch_size
        self.key_attribute = key_attribute
        self.validate = validate
        self.can_rename = can_rename
        self.records: dict[Any, dict[str, Any]] = {}
        self.stable_ids: dict[Any, str] = {}  # key -> stable id, kept through renames
        self.prepared: dict[str, list[tuple[str, Any, dict[str, Any] | None]]] = {}
        self.prepared_at: dict[str, float] = {}
        self.outcomes: dict[str, bool] = {}  # global transaction id -> committed (last resource)
        self.round_trips = 0
        self.lock = threading.Lock()
        self._last_integer = 0

    def __call__(self) -> MemoryAdapter:
        return MemoryAdapter(self)

    def insert(self, key: Any, record: dict[str, Any]) -> None:
        """Put a record in directly, as another program would."""
        with self.lock:
            self.records[key] = copy.deepcopy(record)
            self.stable_ids.setdefault(key, uuid.uuid4().hex)
            if isinstance(key, int):
                self._last_integer = max(self._last_integer, key)

    def remove(self, key: Any) -> None:
        """Delete a record directly, as another program would."""
        with self.lock:
            del self.records[key]
            del self.stable_ids[key]

    def rename(self, old: Any, new: Any) -> None:
        """Give the record ``old`` the key ``new``, as another program would; it keeps its
        stable id."""
        with self.lock:
            if new in self.records:
                raise FederationError(f"Member {self.name!r} already has a record {new!s}.")
            self.records[new] = self.records.pop(old)
            self.stable_ids[new] = self.stable_ids.pop(old)

    def issue_integer(self) -> int:
        with self.lock:
            self._last_integer += 1
            return self._last_integer


class MemoryAdapter:
    """One session on a :class:`MemoryDatabase`. See ``federation.interfaces.Adapter``."""

    can_range = False

    def __init__(self, database: MemoryDatabase) -> None:
        self.db = database
        self.can_rename = database.can_rename
        self.kind = database.kind
        self.klass = database.klass
        self.ref_attributes = database.ref_attributes
        self.batch_size = database.batch_size
        self.two_phase = database.two_phase
        self._xid: str | None = None
        self._ops: list[tuple[str, Any, dict[str, Any] | None]] = []

    def load(self, key: Any) -> dict[str, Any]:
        found = self.load_many([key])
        if key not in found:
            raise KeyNotFound(self.db.name, self.kind, key)
        return found[key]

    def load_many(self, keys: list[Any]) -> dict[Any, dict[str, Any]]:
        with self.db.lock:
            self.db.round_trips += 1
            return {k: copy.deepcopy(self.db.records[k]) for k in keys if k in self.db.records}

    def stable_id(self, key: Any) -> str | None:
        return self.db.stable_ids.get(key)

    def follow(self, stable_ids: list[str]) -> dict[str, tuple[Any, dict[str, Any]]]:
        wanted = set(stable_ids)
        with self.db.lock:
            self.db.round_trips += 1
            return {sid: (key, copy.deepcopy(self.db.records[key]))
                    for key, sid in self.db.stable_ids.items()
                    if sid in wanted and key in self.db.records}

    def references(self) -> Iterator[tuple[Any, str]]:
        """See ``federation.interfaces.ReferenceHolder``."""
        with self.db.lock:
            self.db.round_trips += 1
            held = [(key, record.get(name)) for key, record in self.db.records.items()
                    for name in sorted(self.ref_attributes)]
        return iter([(key, text) for key, text in held if text])

    def find(self, attribute: str, value: Any) -> list[Any]:
        with self.db.lock:
            self.db.round_trips += 1
            return sorted(k for k, r in self.db.records.items() if r.get(attribute) == value)

    def new_key(self, state: dict[str, Any]) -> Any:
        if self.db.key_attribute is not None:
            return resolvers.get(self.kind).coerce(state.get(self.db.key_attribute))
        if self.kind == "integer":
            return self.db.issue_integer()
        return resolvers.get(self.kind).issue()

    def begin(self, xid: str) -> None:
        self._xid = xid
        self._ops = []

    def _check(self, key: Any, record: dict[str, Any]) -> None:
        problem = self.db.validate(record) if self.db.validate is not None else None
        if problem:
            raise FederationError(
                f"Member {self.db.name!r} rejects the record with key {key!s}: {problem}."
            )

    def create(self, key: Any, state: dict[str, Any]) -> None:
        self._check(key, state)
        if key in self.db.records:
            raise FederationError(f"Member {self.db.name!r} already has a record {key!s}.")
        self._ops.append(("create", key, copy.deepcopy(state)))

    def store(self, key: Any, state: dict[str, Any]) -> None:
        current = self.db.records.get(key)
        if current is None:
            raise KeyNotFound(self.db.name, self.kind, key)
        self._check(key, {**current, **state})
        self._ops.append(("store", key, copy.deepcopy(state)))

    def delete(self, key: Any) -> None:
        if key not in self.db.records:
            raise KeyNotFound(self.db.name, self.kind, key)
        self._ops.append(("delete", key, None))

    def prepare(self) -> None:
        with self.db.lock:
            self.db.prepared[self._xid] = self._ops
            self.db.prepared_at[self._xid] = time.monotonic()
        self._ops = []

    def commit(self) -> None:
        with self.db.lock:
            prepared = self.db.prepared.pop(self._xid, None) if self.two_phase else None
            ops = prepared if prepared is not None else self._ops  # else one-phase
            self._apply(ops)
        self._ops = []

    def _apply(self, ops: list[tuple[str, Any, dict[str, Any] | None]]) -> None:
        for op, key, state in ops:
            if op == "outcome":
                if key in self.db.outcomes:
                    raise CommitFenced(f"Member {self.db.name!r}: transaction {key} was settled "
                                       "by recovery before it could commit.")
                self.db.outcomes[key] = True
            elif op == "delete":
                self.db.records.pop(key, None)
                self.db.stable_ids.pop(key, None)
            elif op == "create":
                self.db.records[key] = dict(state)
                self.db.stable_ids[key] = uuid.uuid4().hex
            else:
                self.db.records[key] = {**self.db.records[key], **state}

    def abort(self) -> None:
        with self.db.lock:
            if self._xid is not None:
                self.db.prepared.pop(self._xid, None)
        self._ops = []

    def release(self) -> None:
        self._ops = []  # a prepared transaction stays prepared, for recovery

    def recover(self, older_than: float = 0.0) -> list[str]:
        now = time.monotonic()
        with self.db.lock:
            return sorted(x for x in self.db.prepared if now - self.db.prepared_at[x] >= older_than)

    def finish_prepared(self, xid: str, commit: bool) -> None:
        with self.db.lock:
            ops = self.db.prepared.pop(xid)
            if commit:
                self._apply(ops)

    def record_outcome(self, gid: str) -> None:
        with self.db.lock:
            if gid in self.db.outcomes:
                raise CommitFenced(f"Member {self.db.name!r}: transaction {gid} was settled by "
                                   "recovery before it could commit; nothing was written.")
        self._ops.append(("outcome", gid, None))

    def outcome(self, gid: str) -> bool | None:
        with self.db.lock:
            return self.db.outcomes.get(gid)

    def fence(self, gid: str) -> bool:
        with self.db.lock:
            return self.db.outcomes.setdefault(gid, False)

    def close(self) -> None:
        self._ops = []
