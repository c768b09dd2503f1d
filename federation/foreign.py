"""Foreign members: the generic jar that drives an adapter.

A :class:`ForeignJar` is the ``_p_jar`` of the objects of a non-ZODB member
(SQL rows, directory entries).  It keeps a pickle cache (one object per key,
``_p_oid`` is the key's byte encoding), loads ghosts through the adapter,
and takes part in the two-phase commit:

- ghosts are loaded in batches: activating one ghost loads it and up to
  ``batch_size - 1`` other ghosts of the member not yet loaded, in one
  ``load_many`` round trip;
- it takes part in commits through the manager's coordinator
  (:mod:`federation.coordinator`): while collecting, it turns new, changed
  (only the changed attributes) and deleted objects into record writes
  (``_changes``), including what other members' commits placed in it;
  the writes reach the adapter only in ``begin_branch``, in the global
  lock order, after every member was collected;
- an adapter with ``two_phase`` prepares (``PREPARE TRANSACTION``) when the
  transaction changes several members, and commits in ``tpc_finish``;
  recovery settles a prepared transaction left by a crash
  (:mod:`federation.recovery`);
- an adapter without takes part as the *last resource*: it commits after
  every other member voted, recording the global transaction id in the same
  local transaction (:class:`federation.interfaces.OutcomeRecording`); a
  transaction that would change two such members fails before anything is
  written;
- foreign data has no invalidation feed: at each transaction boundary the
  jar turns its objects back into ghosts, so a transaction sees what others
  committed before it began;
- records of an adapter that ``can_rename`` (an LDAP entry moved or renamed
  changes its DN, its key) are followed by their stable id: when a batch
  misses keys, one more round trip (``adapter.follow``) finds the records by
  the stable ids the jar saw or the stubs recorded, the objects move to
  their new keys (the same Python objects), and the stubs naming them are
  rewritten (:meth:`federation.connection.FederatedConnection.retarget_stub`).
"""

from __future__ import annotations

import copy
import itertools
import weakref
from typing import TYPE_CHECKING, Any

from persistent import PickleCache
from ZODB.POSException import ReadConflictError

from federation import resolvers
from federation.catalog import Catalog, target_key
from federation.connection import ObjectMissing, Unreachable
from federation.errors import (
    ConfigurationError,
    CorruptRecord,
    DanglingStub,
    FederationError,
    InvalidKey,
    KeyNotFound,
    MemberUnavailable,
    ReadOnlyMember,
    UnknownKind,
    UnknownMember,
    shorten,
)
from federation.interfaces import Adapter, MemberRecord, OutcomeRecording
from federation.ref import MEMBER_ID, parse_ref_text, ref_text

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from federation.interfaces import JarManager

#: How many stub index entries per wanted record a prefetch reads at most.
_HINT_SCAN = 64


class ForeignMember:
    """A member whose records an adapter reads and writes.

    ``factory()`` returns a new :class:`~federation.interfaces.Adapter`
    (one per jar, so that concurrent managers use separate connections).
    """

    def __init__(self, name: str, factory: Callable[[], Adapter], *,
                 read_only: bool = False, member_id: str | None = None,
                 former_names: tuple[str, ...] = ()) -> None:
        self.name = name
        self.factory = factory
        self.read_only = read_only
        self.member_id = f"name:{name}"
        #: Names the member had (its store's record, and the setting ``former_names``).
        self.former_names = tuple(former_names)
        #: The federation's ``members_by_id``, kept current when the id is stored.
        self.federation_ids: dict[str, Any] | None = None
        self.error: BaseException | None = None
        self.db = None
        self._jars: list[ForeignJar] = []
        self._recorded = True  # nothing to store (see store_member_id)
        probe = factory()
        try:
            if not isinstance(probe, Adapter):
                raise FederationError(f"Member {name!r}: {probe!r} is not an adapter.")
            self.kind = probe.kind
            self.two_phase = bool(probe.two_phase)
            self.lookup_kinds = frozenset(getattr(probe, "lookup_kinds", ()))
            resolvers.get(self.kind)
            self._read_member_record(probe, member_id)
        finally:
            probe.close()

    def _read_member_record(self, probe: Adapter, configured: str | None) -> None:
        """Take the member id and former names the store keeps (reading only)."""
        stored: str | None = None
        self._keeps_record = isinstance(probe, MemberRecord)
        if self._keeps_record:
            stored, names = probe.member_record()
            self._check_stored_id(stored)
            self._add_former_names(names)
            self._recorded = self.read_only or self.name in names
        if configured is not None and stored is not None and configured != stored:
            raise ConfigurationError(
                f"Member {self.name!r}: the setting 'member_id' says {configured!r}, but its "
                f"store keeps the id {stored!r}; remove the setting."
            )
        chosen = configured or stored
        if chosen is not None:
            self.member_id = chosen

    def _check_stored_id(self, stored: str | None) -> None:
        """Refuse an id the store keeps that reference text cannot carry (edited by hand).

        Written into ``member@id:kind:key`` text, such an id would make every
        new reference to the member unreadable.
        """
        if stored is not None and not (isinstance(stored, str) and MEMBER_ID.fullmatch(stored)):
            raise CorruptRecord(
                f"Member {self.name!r}: its store keeps the member id {shorten(stored)} "
                "(a SQL member's table zfed_members), which is not 1 to 64 letters, digits, "
                "'_', '.' or '-' (other software changed it): restore the id it had, or remove "
                "the row to give the member a new one (references by the old id then dangle).",
                member=self.name,
            )

    @property
    def former_ids(self) -> tuple[str, ...]:
        """The ids stubs made before the member kept a stable id name it by."""
        if self.member_id.startswith("name:"):
            return ()
        return tuple(f"name:{name}" for name in (self.name, *self.former_names))

    def store_member_id(self, adapter: Adapter) -> str:
        """The member's id, stored first (with its name) if the store does not keep it yet.

        Called before anything naming the member by its id is written (a stub,
        reference text): from then on the id must not change.  A store that
        cannot keep it (read-only, or an adapter without
        :class:`~federation.interfaces.MemberRecord`) keeps ``name:<name>``, or
        the setting ``member_id``.
        """
        if self._recorded or not isinstance(adapter, MemberRecord):
            return self.member_id
        candidate = self.member_id
        if candidate.startswith("name:"):
            candidate = Catalog.new_member_id()
        stored, durable = adapter.record_member(self.name, candidate)
        self._check_stored_id(stored)
        self._adopt(stored)
        self._recorded = durable
        return stored

    def learn_member_id(self) -> bool:
        """Take the id another process stored since the federation opened; True if taken.

        A stub or reference that names this member by an id the federation
        does not know may have been written by a process that stored the
        member's first id after this one opened.  Reads only.
        """
        if not (self._keeps_record and self.member_id.startswith("name:")):
            return False  # an id kept already, or a store that keeps none (LDAP)
        probe = self.factory()
        try:
            if not isinstance(probe, MemberRecord):
                return False
            stored, names = probe.member_record()
        finally:
            probe.close()
        self._check_stored_id(stored)
        if stored is None:
            return False
        self._add_former_names(names)
        self._adopt(stored)
        return True

    def _add_former_names(self, names: Iterable[str]) -> None:
        """Add the names the store recorded (other than the current one) to ``former_names``."""
        self.former_names += tuple(name for name in names
                                   if name != self.name and name not in self.former_names)

    def _adopt(self, stored: str) -> None:
        """Use ``stored`` as the member id, in the federation's index of members too."""
        if stored == self.member_id:
            return
        ids = self.federation_ids
        other = ids.get(stored) if ids is not None else None
        if other is not None and other is not self:
            raise ConfigurationError(f"Members {other.name!r} and {self.name!r} are the same "
                                     "database.")  # as federation.open says once ids are kept
        if ids is not None:
            ids.pop(self.member_id, None)
            ids[stored] = self
            ids.setdefault(f"name:{self.name}", self)
        self.member_id = stored

    available = True

    def open_jar(self, transaction_manager: Any) -> ForeignJar:
        """A new jar on a new adapter session, joined to ``transaction_manager``."""
        jar = ForeignJar(self, self.factory())
        jar.open(transaction_manager)
        self._jars.append(jar)
        return jar

    def close(self) -> None:
        """Close every adapter session of this member."""
        for jar in self._jars:
            jar.adapter.close()
        self._jars.clear()


class ForeignJar:
    """The jar of a foreign member's objects (see the module docstring)."""

    _zfed_manager: JarManager | None = None

    def __init__(self, member: ForeignMember, adapter: Adapter, cache_size: int = 10000) -> None:
        self._zfed_member = member
        self.adapter = adapter
        self._kind = resolvers.get(member.kind)
        self._cache = PickleCache(self, cache_size)
        self.transaction_manager: Any = None
        self.opened: bool | None = None
        self._needs_to_join = True
        # Ghosts not loaded yet: batch candidates (held weakly, as the cache holds ghosts).
        self._unloaded: weakref.WeakValueDictionary[bytes, Any] = weakref.WeakValueDictionary()
        # The stub that named the latest ghost: its neighbours in the referrer's stub
        # index are the likely next targets (see _hinted).
        self._hint: tuple[Any, bytes] | None = None
        self._renamed: dict[bytes, bytes] = {}  # old oid -> new oid, followed this transaction
        self._prefetched: dict[bytes, dict[str, Any]] = {}
        self._loaded: dict[bytes, dict[str, Any]] = {}  # record as loaded, to diff on store
        self._reset_transaction()
        self.load_count = 0

    def _reset_transaction(self) -> None:
        self._registered: list[Any] = []
        self._added: dict[bytes, Any] = {}
        self._deleted: dict[bytes, Any] = {}
        self._ops: list[tuple[str, Any, dict[str, Any] | None]] = []  # record writes, in order
        self._begun = False  # the adapter's write transaction is open
        self._committed = False
        self._written = 0  # registered objects turned into record writes

    # -- life cycle ---------------------------------------------------------

    def attach(self, manager: JarManager | None) -> None:
        """Serve ``manager`` (None: no manager; the jar cannot change records then)."""
        self._zfed_manager = manager

    def forget_resolutions(self) -> None:
        """Nothing to forget: a foreign member resolves no stubs (see ``Participant``)."""

    def read_member_id(self) -> None:
        """See ``Participant``: the id another process stored since the federation opened."""
        self._zfed_member.learn_member_id()

    def reload_referrers(self) -> None:
        """Nothing to do: every object is a ghost again at each transaction boundary."""

    def open(self, transaction_manager: Any, delegate: bool = False) -> None:
        self.transaction_manager = transaction_manager
        self.opened = True
        transaction_manager.registerSynch(self)
        self._refresh()

    def close(self, primary: bool = False) -> None:
        if self.transaction_manager is not None:
            self.transaction_manager.unregisterSynch(self)
        self.transaction_manager = None
        self.opened = None

    def root(self) -> Any:
        raise FederationError(
            f"Member {self._zfed_member.name!r} is a foreign member and has no root mapping; "
            "use conn.get(), conn.lookup() or conn.jar(member).find()."
        )

    def sortKey(self) -> str:
        # Two-phase foreign members finish first; the last resource votes last.
        order = "\x00" if self.adapter.two_phase else "\uffff"
        return f"{order}{self._zfed_member.name}:{id(self)}"

    # -- objects and keys -----------------------------------------------------

    def key_of(self, oid: bytes) -> Any:
        """The key of the object with ``oid``."""
        return self._kind.decode(oid)

    def key_of_object(self, obj: Any) -> Any:
        """The key other members name ``obj`` by: its record's key."""
        return self._kind.decode(obj._p_oid)

    def object_for_key(self, key: Any) -> Any:
        """The object of the record with ``key``, loaded (``ObjectMissing`` if there is none)."""
        return self.get(self._kind.encode(key))

    def index_get(self, index: str, key: bytes) -> None:
        """Foreign members keep no index (references are Ref text in their records)."""
        return None

    def retarget_stub(self, old: bytes, new: bytes, new_key: bytes) -> None:
        """Foreign members keep no stubs: nothing to rewrite."""

    def oid_for(self, kind: str, key: bytes) -> bytes:
        """The oid of the object an encoded key of ``kind`` names."""
        return key

    def ghost(self, oid: bytes, klass: type | None = None) -> Any:
        """The object with ``oid``, a ghost if not loaded; nothing is read."""
        oid = self._renamed.get(oid, oid)
        obj = self._cache.get(oid)
        if obj is None:
            cls = self.adapter.klass
            obj = cls.__new__(cls)
            self._cache.new_ghost(oid, obj)
            self._unloaded[oid] = obj
        return obj

    def ghost_for_stub(self, oid: bytes, klass: type | None, conn: Any, stub_oid: bytes) -> Any:
        """:meth:`ghost`, for the target of the stub ``stub_oid`` of ZODB member ``conn``."""
        obj = self.ghost(oid)
        if obj._p_changed is None:
            self._hint = (conn, stub_oid)
        return obj

    def get(self, oid: bytes) -> Any:
        """The object with ``oid``, loaded (``ObjectMissing`` if there is none)."""
        obj = self.ghost(oid)
        obj._p_activate()
        return obj

    def resolve(self, kind: str, value: Any) -> bytes:
        """The oid of the record a key of another kind names (a ``uid``, by a search)."""
        if kind not in self._zfed_member.lookup_kinds:
            raise InvalidKey(kind, str(value), f"member {self._zfed_member.name!r} names its "
                             f"records by {self._zfed_member.kind} keys")
        return self._kind.encode(self._kind.coerce(self.adapter.resolve(kind, value)))

    def stable_id(self, obj: Any) -> str | None:
        """The stable id of ``obj``'s record (None unless the adapter ``can_rename``)."""
        if not self.adapter.can_rename:
            return None
        return self.adapter.stable_id(self._kind.decode(obj._p_oid))

    def find(self, attribute: str, value: Any) -> list[Any]:
        """The objects whose ``attribute`` equals ``value`` (ghosts, loaded in batches)."""
        return [self.ghost(self._kind.encode(key)) for key in self.adapter.find(attribute, value)]

    def add(self, obj: Any) -> None:
        """Make the new object ``obj`` a record of this member, issuing its key."""
        if obj._p_jar is self:
            return
        if obj._p_jar is not None:
            raise FederationError(f"{obj!r} already belongs to another member.")
        key = self._kind.coerce(self.adapter.new_key(self._record(obj)))
        oid = self._kind.encode(key)
        if self._cache.get(oid) is not None:
            raise FederationError(
                f"Member {self._zfed_member.name!r} already has a record with key {key!s}."
            )
        self.register(None)  # joins first: a savepoint taken on joining is from before the add
        obj._p_oid = oid
        obj._p_jar = self
        self._cache[oid] = obj
        self._added[oid] = obj
        self._registered.append(obj)

    def delete(self, obj: Any) -> None:
        """Delete the record of ``obj`` when the transaction commits."""
        if obj._p_jar is not self:
            raise FederationError(f"{obj!r} is not a record of member {self._zfed_member.name!r}.")
        self.register(None)  # joins first, as in add()
        self._deleted[obj._p_oid] = obj
        self._registered.append(obj)

    def _target_entry(self, obj: Any) -> tuple[bytes, tuple[str, str, str, bytes, str, str]]:
        member = self._zfed_member
        klass = type(obj)
        entry = (member.member_id, member.name, member.kind, obj._p_oid,
                 klass.__module__, klass.__name__)
        return target_key(member.member_id, member.kind, obj._p_oid), entry

    def stable_member_id(self) -> str:
        """The member id that stubs and reference text naming this member's objects keep.

        Stored in the member's store first if it keeps none yet (see
        :meth:`ForeignMember.store_member_id`): called only where such a
        reference is about to be written, never on a read.
        """
        return self._zfed_member.store_member_id(self.adapter)

    def _implicitlyAdding(self, oid: bytes) -> bool:
        return False

    def stub_entries(self) -> list[Any]:
        return []  # foreign members keep references as Ref values, not stubs

    def _catalog(self) -> None:
        return None

    # -- IPersistentDataManager --------------------------------------------------

    def setstate(self, obj: Any) -> None:
        oid = obj._p_oid
        state = self._prefetched.pop(oid, None)
        if state is None:
            self._prefetch(oid)
            oid = obj._p_oid  # a renamed record's object moved to its new key
            state = self._prefetched.pop(oid, None)
        self._unloaded.pop(oid, None)
        if state is None:
            raise ObjectMissing(self._zfed_member.name, oid, self._kind.decode(oid))
        self._loaded[oid] = _snapshot(state)
        obj.__setstate__(self._objects(state))

    def _prefetch(self, oid: bytes) -> None:
        """Load ``oid`` and up to ``batch_size - 1`` likely next records in one round trip.

        Candidates are, in order: ghosts of this member not loaded yet, then
        the targets of the stubs near, in the referrer's stub index, the stub
        that named the latest ghost (a traversal of referrers reaches them
        next, before their ghosts exist).
        """
        size = self.adapter.batch_size
        batch = [oid]
        for other, ghost in self._unloaded.items():
            if len(batch) >= size:
                break
            if other != oid and ghost._p_changed is None and other not in self._prefetched:
                batch.append(other)
        if len(batch) < size and self._hint is not None:
            batch.extend(self._hinted(set(batch), size - len(batch)))
        self.load_count += 1
        states = self.adapter.load_many([self._kind.decode(o) for o in batch])
        for key, state in states.items():
            self._prefetched[self._kind.encode(key)] = state
        if self.adapter.can_rename and len(states) < len(batch):
            self._follow([o for o in batch if o not in self._prefetched])

    def _hinted(self, taken: set[bytes], count: int) -> list[bytes]:
        """Up to ``count`` oids of records that stubs near the hint stub name."""
        conn, stub_oid = self._hint
        member = self._zfed_member
        found: list[bytes] = []
        near = conn.stub_targets_near(stub_oid, member.member_id, member.kind, count * 4)
        for key in itertools.islice(near, count * _HINT_SCAN):
            oid = self._renamed.get(key, key)
            if oid in taken or oid in self._prefetched:
                continue
            cached = self._cache.get(oid)
            if cached is not None and cached._p_changed is not None:
                continue  # loaded already
            taken.add(oid)
            found.append(oid)
            if len(found) >= count:
                break
        return found

    def _follow(self, missing: list[bytes]) -> None:
        """Find records whose keys vanished by their stable ids; move their objects."""
        manager = self._zfed_manager
        member = self._zfed_member
        old_of: dict[str, bytes] = {}
        for oid in missing:
            stable_id = self.adapter.stable_id(self._kind.decode(oid))
            if stable_id is None and manager is not None:
                stable_id = manager.stable_id_of_target(member, oid)
            if stable_id is not None:
                old_of[stable_id] = oid
        if not old_of:
            return
        self.load_count += 1
        for stable_id, (key, state) in self.adapter.follow(list(old_of)).items():
            old, new = old_of[stable_id], self._kind.encode(self._kind.coerce(key))
            if new == old:
                continue
            self._move(old, new)
            self._renamed[old] = new
            self._prefetched[new] = state
            if manager is not None:
                manager.retarget_stubs(member, old, new)

    def _move(self, old: bytes, new: bytes) -> None:
        """Keep the object of the record renamed from key ``old`` under key ``new``."""
        obj = self._cache.get(old)
        if obj is None:
            return
        current = self._cache.get(new)
        if current is not None:
            # Another object already stands for the new key: the renamed one
            # takes its place; the other still loads on access, uncached.
            self._unloaded.pop(new, None)
            del self._cache[new]
        del self._cache[old]
        obj._p_oid = new
        self._cache[new] = obj
        if self._unloaded.pop(old, None) is not None:
            self._unloaded[new] = obj
        for table in (self._added, self._deleted):
            if old in table:
                table[new] = table.pop(old)

    def register(self, obj: Any) -> None:
        if self._needs_to_join:
            manager = self._zfed_manager
            if manager is None:
                raise FederationError(
                    f"Member {self._zfed_member.name!r}: its objects change only through an "
                    "open federation manager."
                )
            manager.coordinator.join(self)  # before the change: joining may take a savepoint
            self._needs_to_join = False
        if obj is not None:
            self._registered.append(obj)

    def readCurrent(self, obj: Any) -> None:
        """No-op: foreign records have no serials to check."""

    def oldstate(self, obj: Any, tid: bytes) -> Any:
        raise FederationError(f"Member {self._zfed_member.name!r} keeps no history.")

    # -- record <-> object state -----------------------------------------------

    def _objects(self, record: dict[str, Any]) -> dict[str, Any]:
        state = dict(record)
        for name in self.adapter.ref_attributes:
            text = state.get(name)
            if text is not None:
                state[name] = self._target_of(text)
        return state

    def _target_of(self, text: str) -> Any:
        """The object reference text names: a ghost, or an :class:`UnreachableRef`."""
        manager = self._zfed_manager
        try:
            ref, member_id = parse_ref_text(text)
            if member_id is not None and member_id not in manager.federation.members_by_id:
                manager.member_of_id(member_id, ref.member)  # given since we opened?
            return manager.get(manager.federation.ref_of_text(text))
        except UNREACHABLE_REFERENCE as error:
            return UnreachableRef(text, error)

    def _record(self, obj: Any) -> dict[str, Any]:
        state = obj.__getstate__()
        if not isinstance(state, dict):
            raise FederationError(
                f"{type(obj).__qualname__} objects keep no attribute dict; member "
                f"{self._zfed_member.name!r} cannot store them."
            )
        record = dict(state)
        for name in self.adapter.ref_attributes:
            value = record.get(name)
            if value is not None:
                record[name] = self._text_of(value)
        return record

    def _same_target(self, old: Any, new: str) -> bool:
        """True if the texts name one object (written before and after a rename, say).

        A record keeps the text it was loaded with unless the reference
        changed: only changed attributes are written, so that a concurrent
        change of another attribute is not overwritten.
        """
        if not isinstance(old, str):
            return False
        federation = self._zfed_manager.federation
        try:
            return federation.ref_of_text(old) == federation.ref_of_text(new)
        except FederationError:
            return False

    def _text_of(self, value: Any) -> str:
        """The reference text naming ``value`` (see :func:`federation.ref.ref_text`)."""
        if isinstance(value, UnreachableRef):
            return value.text  # kept as it was read
        ref = self._zfed_manager.ref(value)
        jar = value._p_jar
        stable = getattr(jar, "stable_member_id", None)
        return ref_text(ref, stable() if stable is not None else jar.member.member_id)

    # -- taking part in a federated commit (see interfaces.Participant) --------

    @property
    def member(self) -> ForeignMember:
        return self._zfed_member

    @property
    def member_name(self) -> str:
        return self._zfed_member.name

    @property
    def commit_style(self) -> str:
        return "two_phase" if self.adapter.two_phase else "last_resource"

    def lock_key(self) -> str:
        return f"foreign:{self._zfed_member.member_id}"

    def _check_writable(self) -> None:
        if self._zfed_member.read_only and (self._registered or self._added or self._deleted):
            raise ReadOnlyMember(
                f"Member {self._zfed_member.name!r} is read-only, but its records were changed: "
                f"{', '.join(repr(obj) for obj in self._registered[:3])}."
            )

    def tpc_begin(self, txn: Any) -> None:
        self._ops = []
        self._written = 0

    def collect(self, txn: Any) -> bool:
        if self._written >= len(self._registered):
            return False
        self._check_writable()
        self._changes(self._written)
        return True

    def _changes(self, start: int) -> None:
        """Turn the registered objects from position ``start`` on into record writes."""
        seen = {obj._p_oid for obj in self._registered[:start]}
        for obj in self._registered[start:]:
            oid = obj._p_oid
            if oid in seen:
                continue
            seen.add(oid)
            key = self._kind.decode(oid)
            if oid in self._deleted:
                if oid not in self._added:
                    self._ops.append(("delete", key, None))
            elif oid in self._added:
                self._ops.append(("create", key, self._record(obj)))
            elif obj._p_changed:
                record = self._record(obj)
                loaded = self._loaded.get(oid, {})
                refs = self.adapter.ref_attributes
                changed = {k: v for k, v in record.items() if loaded.get(k, _MISSING) != v
                           and not (k in refs and self._same_target(loaded.get(k), v))}
                changed.update({k: None for k in loaded.keys() - record.keys()})
                if changed:
                    self._ops.append(("store", key, changed))
        self._written = len(self._registered)

    def apply_index_ops(self, txn: Any) -> bool:
        return False  # foreign members keep no index entries

    def has_writes(self) -> bool:
        return bool(self._ops)

    def branch_size(self) -> int:
        return 0

    def journal_branch(self, txn: Any, gid: str, xid: str) -> dict[str, Any]:
        member = self._zfed_member
        return {"kind": "prepared", "member_id": member.member_id, "name": member.name,
                "xid": xid}

    def begin_branch(self, txn: Any, xid: str) -> None:
        self.adapter.begin(xid)
        self._begun = True
        for op, key, record in self._ops:
            if op == "delete":
                self.adapter.delete(key)
            elif op == "create":
                self.adapter.create(key, record)
            else:
                self.adapter.store(key, record)

    def vote_one_phase(self, txn: Any) -> None:
        """Nothing: the only member commits in ``tpc_finish``, after any other resource voted."""

    def prepare(self, txn: Any) -> None:
        self.adapter.prepare()

    def commit_last(self, txn: Any, gid: str) -> None:
        if isinstance(self.adapter, OutcomeRecording):
            self.adapter.record_outcome(gid)
        self.adapter.commit()
        self._committed = True

    def tpc_finish(self, txn: Any) -> None:
        if self._begun and not self._committed:
            self.adapter.commit()
        for obj in self._registered:
            if obj._p_oid in self._deleted:
                self._cache.invalidate(obj._p_oid)
            elif obj._p_changed:
                obj._p_changed = False
            self._loaded.pop(obj._p_oid, None)
        self._end()

    def tpc_abort(self, txn: Any) -> None:
        try:
            if self._begun and not self._committed:
                self.adapter.abort()
        finally:
            self.abort(txn)

    def tpc_abandon(self, txn: Any) -> None:
        """Give up this branch without undoing it: recovery settles it (see ``Participant``)."""
        try:
            if self._begun and not self._committed:
                self.adapter.release()
        finally:
            self.abort(txn)

    def abort(self, txn: Any) -> None:
        try:
            added = self._added
            kept = {obj._p_oid for obj in self._registered} - added.keys() - {None}
            for oid, obj in added.items():
                if self._cache.get(oid) is obj:
                    del self._cache[oid]
                obj._p_changed = False
                del obj._p_jar
                del obj._p_oid
            self._cache.invalidate(list(kept))
        finally:
            self._end()

    def _end(self) -> None:
        self._reset_transaction()
        self._needs_to_join = True

    def savepoint(self) -> _Savepoint:
        return _Savepoint(self)

    # -- synchronizer ----------------------------------------------------------

    def beforeCompletion(self, txn: Any) -> None:
        pass

    def afterCompletion(self, txn: Any) -> None:
        self._refresh()

    def newTransaction(self, txn: Any, sync: bool = True) -> None:
        self._refresh()

    def _refresh(self) -> None:
        """Forget what was read: the next transaction reads current records.

        Every object becomes a ghost again, and a batch candidate.
        """
        self._prefetched.clear()
        self._loaded.clear()
        self._renamed.clear()
        self._hint = None
        self._cache.invalidate(list(self._cache.cache_data))
        self._unloaded.update(self._cache.items())


_MISSING = object()

#: Why reference text names nothing loadable now: the record still loads, with a placeholder.
#: (A ``ReadConflictError``: the text names a ZODB object newer than the manager's snapshot,
#: as foreign records are read as they are now; the placeholder raises it, and a retry reads
#: it in a newer snapshot.)
UNREACHABLE_REFERENCE = (MemberUnavailable, UnknownMember, DanglingStub, KeyNotFound, InvalidKey,
                         UnknownKind, ReadConflictError)


class UnreachableRef(Unreachable):
    """The :class:`~federation.connection.Unreachable` placeholder of a foreign record's reference.

    Touching it raises the error; writing the record back keeps ``text``,
    the reference text as it was read.
    """

    __slots__ = ("text",)

    def __init__(self, text: str, error: FederationError) -> None:
        super().__init__(None, error)
        self.text = text


def _snapshot(state: dict[str, Any]) -> dict[str, Any]:
    """A copy of a loaded record that shares no mutable value with the object's state.

    Changes are found by comparing the object with this copy at commit: a
    list changed in place (and ``_p_changed`` set) must not compare equal
    because both hold the same list.
    """
    return {name: copy.deepcopy(value) if isinstance(value, _MUTABLE) else value
            for name, value in state.items()}


_MUTABLE = (list, dict, set, bytearray)


class _Savepoint:
    """Restores the registered objects' states and the pending adds and deletes."""

    def __init__(self, jar: ForeignJar) -> None:
        self.jar = jar
        self.registered = list(jar._registered)
        self.added = dict(jar._added)
        self.deleted = dict(jar._deleted)
        self.states = {id(obj): (obj, _snapshot(obj.__getstate__())) for obj in jar._registered}

    def rollback(self) -> None:
        jar = self.jar
        seen: set[int] = set()
        for obj in jar._registered:
            if id(obj) in seen or obj._p_jar is not jar:
                continue  # registered twice, or an addition already undone
            seen.add(id(obj))
            if id(obj) not in self.states:
                if obj._p_oid in jar._added and obj._p_oid not in self.added:
                    del jar._cache[obj._p_oid]
                    obj._p_changed = False
                    del obj._p_jar
                    del obj._p_oid
                else:
                    jar._cache.invalidate(obj._p_oid)
        for obj, state in self.states.values():
            obj.__setstate__(_snapshot(state))
            obj._p_changed = True
        jar._registered = list(self.registered)
        jar._added = dict(self.added)
        jar._deleted = dict(self.deleted)


