"""The ZODB connection of a federation member.

:class:`FederatedConnection` is an ordinary ``ZODB.Connection`` whose
reader and writer know the other members:

- the writer turns a reference to an object of another member into a plain
  ``(stub oid, Stub)`` reference to a stub record in this member, creating
  the stub the first time (see :mod:`federation.catalog`);
- the reader turns such a reference back into the target object, resolving
  the stub from the catalog's index buckets and caching the answer, so that
  reading a referrer costs no extra round trip per target.

In a federation the connection does not join transactions itself: it joins
its manager's commit coordinator (:mod:`federation.coordinator`), which
drives it through the phases of :class:`federation.interfaces.Participant`.
While the coordinator collects, stores go to a buffer
(:mod:`federation.branch`), so no commit lock is held until every member's
late work is known.  Index updates are never applied while objects are
being serialized (a bucket written earlier in the same commit would lose
them): they are kept as pending entries and applied after the objects
(``apply_index_ops``), and the records they touched are stored then.  A
connection without a manager (``DB.open()``) commits as plain ZODB does.
"""

from __future__ import annotations

import itertools
import logging
import uuid as _uuid
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import BTrees
from BTrees.Length import Length
from persistent import Persistent
from persistent.wref import WeakRef
from transaction.interfaces import TransientError
from ZEO.Exceptions import ClientDisconnected
from ZODB.broken import Broken
from ZODB.Connection import Connection, TransactionMetaData
from ZODB.POSException import (
    ConflictError,
    POSError,
    POSKeyError,
    ReadOnlyHistoryError,
    StateLoadError,
)
from ZODB.serialize import ObjectReader, ObjectWriter
from ZODB.utils import p64, u64, z64
from zodbpickle import binary

from federation import journal
from federation.adapters import relstorage
from federation.branch import StoreBuffer
from federation.catalog import (
    CATALOG_ATTRIBUTE,
    UUID_ATTRIBUTE,
    Catalog,
    Names,
    Stub,
    bump_generation,
    decode_entry,
    decode_uuid_entry,
    encode_entry,
    new_index,
    stub_record,
    target_key,
    uuid_entry,
)
from federation.errors import (
    AmbiguousPlacement,
    CorruptRecord,
    DanglingStub,
    FederationError,
    MemberUnavailable,
    ReadOnlyMember,
    describe,
    shorten,
)
from federation.records import is_stub, stub_data

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from federation.interfaces import JarManager

#: Storage errors that mean "the member went away", not "the data is bad" (RelStorage's
#: database driver's among them).
UNREACHABLE_ERRORS = (ClientDisconnected, ConnectionError, TimeoutError, *relstorage.DISCONNECTED)

log = logging.getLogger(__name__)

#: What reading a damaged stub entry or record raises (besides federation errors).
_DAMAGED = (ValueError, TypeError, AttributeError, LookupError, StateLoadError, FederationError)

#: The fewest entries a connection's resolution caches keep (see ``_zfed_trim``).
RESOLUTION_CACHE_MIN = 1000


def _newest(cache: dict[Any, Any], count: int) -> dict[Any, Any]:
    """The ``count`` entries of ``cache`` added last."""
    return dict(itertools.islice(cache.items(), len(cache) - count, None))


class ObjectMissing(DanglingStub, POSKeyError):
    """An object that a reference names is not in its member's database."""

    def __init__(self, member: str, oid: bytes, key: Any = None) -> None:
        self.member = member
        self.oid = oid
        what = f"key {key!s}" if key is not None else f"oid {u64(oid)} (0x{u64(oid):x})"
        super().__init__(
            f"Member {member!r} has no object with {what}; the reference to it is dangling."
        )


class Unreachable:
    """Stands in for an object whose member cannot be reached or is gone.

    Referrers still load; touching the placeholder raises the error that
    explains why (``MemberUnavailable`` or ``DanglingStub``).  Saving a
    referrer keeps the original stub reference (or native reference).
    """

    __slots__ = ("error", "reference", "stub_oid")

    def __init__(self, stub_oid: bytes, error: FederationError, reference: Any = None) -> None:
        self.stub_oid = stub_oid
        self.error = error
        self.reference = reference  # a native reference: written back as it was read

    def __getattr__(self, name: str) -> Any:
        raise self.error

    def __repr__(self) -> str:
        return f"<Unreachable: {self.error}>"


class FederatedReader(ObjectReader):
    """An ``ObjectReader`` that substitutes the targets of stub references."""

    def load_persistent(self, oid: bytes, klass: Any) -> Any:
        if klass is Stub:
            return self._conn._resolve_stub(oid)
        return super().load_persistent(oid, klass)

    def load_oid(self, oid: bytes) -> Any:
        """A reference without its class: the target when it names a stub.

        ZODB writes a reference to an object whose class it cannot import as
        a bare oid, so a process without ``federation`` importable that
        rewrites a referrer leaves its stub references in that form.
        """
        obj = super().load_oid(oid)
        if isinstance(obj, Stub):
            return self._conn._resolve_stub(obj._p_oid)
        return obj

    # ZODB's native multi-database references (see federation.native): through the
    # manager, to the member of that database name; ZODB's own way without a manager.

    def load_multi_persistent(self, database_name: str, oid: bytes, klass: Any) -> Any:
        return self._conn._native_target(["m", (database_name, oid, klass)])

    def load_multi_oid(self, database_name: str, oid: bytes) -> Any:
        return self._conn._native_target(["n", (database_name, oid)])

    loaders = {**ObjectReader.loaders, "m": load_multi_persistent, "n": load_multi_oid}

    def load_persistent_weakref(self, oid: bytes, database_name: str | None = None) -> Any:
        if database_name is None:
            return super().load_persistent_weakref(oid)
        if self._conn._zfed_manager is None:
            self._conn._zfed_placeholders = True  # read again when a manager attaches
            return super().load_persistent_weakref(oid, database_name)
        ref = WeakRef.__new__(WeakRef)
        ref.oid = oid.encode("ascii") if isinstance(oid, str) else oid
        ref.database_name = database_name
        jar = self._conn._native_jar(database_name)
        if not isinstance(jar, Unreachable):
            ref.dm = jar  # else, as ZODB does for an unknown database: the target is gone
        return ref

    loaders["w"] = load_persistent_weakref

    def setGhostState(self, obj: Any, pickle: bytes) -> None:
        """``ObjectReader.setGhostState``, checking the ghost's class against the record's.

        A ghost's class comes from the reference that named it: for the target
        of a stub, the class the stub entry recorded.  An outdated or damaged
        entry names another class; the object then takes its record's class
        (so that it is never written back with the wrong one), or, when
        Python cannot change its class, :class:`CorruptRecord` is raised and
        it stays a ghost.
        """
        unpickler = self._get_unpickler(pickle)
        conn = self._conn
        resolved = conn._zfed_stub_reads
        try:
            meta = unpickler.load()
            state = unpickler.load()
        except (POSError, TransientError):
            raise
        except Exception as error:
            raise StateLoadError() from error
        if conn._zfed_stub_reads != resolved:
            conn._zfed_referrers[obj._p_oid] = None  # its state holds resolved targets
        klass = meta[0] if type(meta) is tuple else meta
        if klass is not type(obj) and isinstance(klass, type):
            self._conn._wrong_class(obj, klass)
        try:
            obj.__setstate__(state)
        except (POSError, TransientError):
            raise
        except Exception as error:
            raise StateLoadError() from error


_BTREES_MODULES = [module for family in (BTrees.family32, BTrees.family64)
                   for module in (family.OO, family.OI, family.IO, family.II, family.IF)]

#: BTrees' bucket and set classes: their state is ``(items,)`` or ``(items, next bucket)``.
_BUCKETS = frozenset(cls for module in _BTREES_MODULES for cls in (module.Bucket, module.Set))

#: BTrees' persistent classes: their state is their items, never their ``__dict__``.
_BTREES_TYPES = tuple({cls for module in _BTREES_MODULES
                       for cls in (module.BTree, module.Bucket, module.Set, module.TreeSet)})

#: Types that pickle without any persistent reference inside.
_PLAIN = frozenset({bytes, str, int, float, bool, type(None)})


class FederatedWriter(ObjectWriter):
    """An ``ObjectWriter`` that writes references to other members as stubs."""

    def persistent_id(self, obj: Any) -> Any:
        if not isinstance(obj, (Persistent, type, WeakRef, Unreachable)):
            return None  # most of a pickle: plain data, as in ZODB's own first test
        if isinstance(obj, Persistent):
            jar = obj._p_jar
            own = self._jar
            if jar is None:
                jar = own._place_new(obj)
            elif jar is not own and getattr(jar, "_zfed_manager", None) is not own._zfed_manager:
                jar = None  # not of this manager: ZODB raises InvalidObjectReference
            if jar is not None and jar is not own:
                if jar._implicitlyAdding(obj._p_oid):
                    raise AmbiguousPlacement(
                        f"A new {type(obj).__qualname__} object is referenced from member "
                        f"{own._zfed_member.name!r} and from member {jar._zfed_member.name!r}; "
                        "add it to one of them with conn.add(obj, member) or give its class "
                        "a placement rule."
                    )
                return self._stub_reference(obj, jar)
        elif isinstance(obj, WeakRef) and not hasattr(obj, "dm"):
            # A weak reference to a database that is no member, read and written back.
            return ["w", (binary(obj.oid), obj.database_name)]
        elif isinstance(obj, Unreachable):
            if obj.reference is not None:
                return obj.reference
            if obj.stub_oid is None:  # a foreign record's reference: no stub to keep
                raise obj.error
            return binary(obj.stub_oid), Stub
        return super().persistent_id(obj)

    def _stub_reference(self, obj: Persistent, jar: FederatedConnection) -> tuple[Any, type]:
        own = self._jar
        if jar.commit_style != "zodb":
            jar.stable_member_id()  # a foreign member's id is stored before a stub names it
        tkey, entry = jar._target_entry(obj)
        stub_oid = own._find_stub(tkey)
        if stub_oid is None:
            stub_oid = self._stub_by_former_id(jar.member, tkey)
        if stub_oid is None:
            stable_id = jar.stable_id(obj)
            data = encode_entry(entry)
            stub_oid = own.new_oid()
            own._store_stub(stub_oid, data if stable_id is None else (data, stable_id))
            # Committing, so joined, and _find_stub checked the catalog: no index_later().
            ops = own._zfed_index_ops
            ops["stubs_by_target", tkey] = stub_oid
            ops["stubs_by_oid", stub_oid] = data
            if stable_id is not None:
                ops["stable_ids", stub_oid] = stable_id
            own._zfed_ops_version += 1
        return binary(stub_oid), Stub

    def _stub_by_former_id(self, member: Any, tkey: bytes) -> bytes | None:
        """The stub naming the target of ``tkey`` by one of ``member``'s former ids, or None.

        A foreign member named ``name:<name>`` before it kept a stable id;
        the stubs made then still name the target: one stub per target.
        """
        rest = tkey.partition(b"\0")[2]
        for former in getattr(member, "former_ids", ()):
            stub_oid = self._jar._find_stub(former.encode() + b"\0" + rest)
            if stub_oid is not None:
                return stub_oid
        return None

    def serialize(self, obj: Any) -> bytes:
        if type(obj) in _BUCKETS:
            return self._serialize_bucket(obj)
        jar = self._jar
        # In uuid members every stored object gets its uuid before it is written;
        # not the root, nor our own records (a Length keeps only its value: the
        # catalog's generation), nor anything before the catalog exists.
        if (jar._zfed_member.kind == "uuid" and obj._p_oid != z64
                and not isinstance(obj, (Catalog, Names, Stub, Length))
                and jar._catalog() is not None):
            jar._ensure_uuid(obj, on_store=True)
        return super().serialize(obj)

    def _serialize_bucket(self, bucket: Any) -> bytes:
        """The record of a BTrees bucket, the same bytes ``ObjectWriter`` writes.

        The pickler asks :meth:`persistent_id` about every object it
        pickles, so a bucket costs a Python call per key and per value.
        When they are all plain data (as in the stub and uuid indexes),
        the only reference is the next bucket, and a dictionary lookup
        answers instead: rewriting an index bucket then costs C speed.
        """
        state = bucket.__getstate__()
        if not state or not _PLAIN.issuperset(map(type, state[0])):
            return self._dump(type(bucket), state)
        refs = {bucket_ref: self.persistent_id(bucket_ref) for bucket_ref in state[1:]}
        pickler = self._p
        pickler.persistent_id = refs.get
        try:
            return self._dump(type(bucket), state)
        finally:
            pickler.persistent_id = self.persistent_id


class FederatedConnection(Connection):
    """A ZODB connection that takes part in a federation (see the module docstring)."""

    _zfed_manager: JarManager | None = None
    _zfed_storing: Any = None  # the transaction whose objects are being stored
    _zfed_placeholders = False  # objects in the cache hold Unreachable placeholders

    def __init__(self, db: Any, cache_size: int = 400, before: Any = None,
                 cache_size_bytes: int = 0) -> None:
        super().__init__(db, cache_size, before, cache_size_bytes)
        self._reader = FederatedReader(self, self._cache, self._db.classFactory)
        self._zfed_member = db.federation_member
        # Committed knowledge, kept across transactions while the records it came
        # from are current (see newTransaction), and bounded (see _zfed_trim).
        self._zfed_stub_of_target: dict[bytes, bytes] = {}
        self._zfed_uuid_targets: dict[bytes, tuple[bytes, type | None]] = {}
        self._zfed_uuid_checked: dict[int, bytes] = {}  # UUID as int -> oid of its object
        self._zfed_classes: dict[bytes, type] = {}
        self._zfed_catalog_obj: Catalog | None = None
        # Oids whose invalidation means existing index entries changed: the catalog's
        # and its generation counter's (None: not known yet).
        self._zfed_watch: frozenset[bytes] | None = None
        self._zfed_forgot = False  # the caches were dropped in this transaction
        # Stub oid -> (connection, oid, class), valid while one manager holds this connection.
        self._zfed_resolved: dict[bytes, tuple[Any, bytes, type]] = {}
        # Objects loaded with stub references resolved (oids, in load order), and how
        # many stub references were resolved: see reload_referrers.
        self._zfed_referrers: dict[bytes, None] = {}
        self._zfed_stub_reads = 0
        # Stub oid -> (old target key, new target key, new key): renames to write on commit.
        self._zfed_retargets: dict[bytes, tuple[bytes, bytes, bytes]] = {}
        self._zfed_rewritten: list[bytes] = []  # records rewrite_record stored
        self._zfed_reset_pending()

    # -- pending work of the current transaction ----------------------------

    def _zfed_forget(self) -> None:
        """Drop what this connection learned from the indexes (they are being rebuilt).

        Other members' connections of the same manager drop their stub
        resolutions too (those into a ``uuid`` member came from its index);
        and again if the transaction is aborted.
        """
        self._zfed_drop_caches()
        self._zfed_forgot = True
        manager = self._zfed_manager
        if manager is not None:
            manager.forget_resolutions()

    def forget_resolutions(self) -> None:
        """Drop the stub resolutions (see ``Participant``): a member's indexes changed."""
        self._zfed_resolved.clear()

    def _zfed_drop_caches(self) -> None:
        self._zfed_stub_of_target.clear()
        self._zfed_uuid_targets.clear()
        self._zfed_uuid_checked.clear()
        self._zfed_resolved.clear()

    def newTransaction(self, transaction: Any, sync: bool = True) -> None:
        """``Connection.newTransaction``; the invalidations also reach our caches.

        What this connection caches (stub resolutions, the stubs of targets,
        uuid resolutions) was read from the catalog's indexes and from stub
        records, and new index entries never change an existing one.  So an
        entry stays valid until its stub record changes (dropped here, by
        oid) or existing index entries change, which bumps the catalog's
        ``generation`` (reindex, prune after a pack, a stub rewritten after a
        rename; see :mod:`federation.catalog`): then everything is dropped,
        here and in the manager's other connections.  The check costs one
        pass over the invalidated oids, as ZODB's own.
        """
        self._readCurrent.clear()
        try:
            self._storage.sync(sync)
            invalidated = self._storage.poll_invalidations()
        except UNREACHABLE_ERRORS as error:
            # A storage that asks its server at each transaction start (RelStorage) and cannot
            # reach it: what this connection holds may be stale, so it is all dropped; its
            # objects raise MemberUnavailable when touched, the other members work.
            log.warning("Member %r cannot be reached to start a transaction: %s",
                        self._zfed_member.name, describe(error))
            invalidated = None
        if invalidated is None:
            # special value: the transaction is so old that the whole cache goes
            invalidated = self._cache.cache_data.copy()
            self._zfed_generation_changed()
        elif invalidated:
            self._zfed_invalidated(invalidated)
        self._cache.invalidate(invalidated)
        self._zfed_trim()

    def _zfed_invalidated(self, oids: Any) -> None:
        """Drop what the records ``oids`` (changed by another connection) told us."""
        watch = self._zfed_watch
        if watch is None:
            catalog = self._zfed_catalog_obj
            if catalog is None or catalog._p_oid is None:
                return  # no catalog read yet: nothing learned from one
            try:
                self._zfed_watch_catalog(catalog)  # the catalog this connection created
            except (POSError, *UNREACHABLE_ERRORS):
                self._zfed_generation_changed()  # unknown: start over
                return
            watch = self._zfed_watch
        if not watch.isdisjoint(oids):
            self._zfed_generation_changed()
            return
        # What a changed record told us, by the oid it names.  A stub or an
        # object can change without a generation bump when another process
        # undoes the transaction that made it: its index entries are gone too.
        oids = oids if isinstance(oids, (set, frozenset)) else set(oids)
        resolved = self._zfed_resolved
        rewritten = oids.intersection(resolved) if resolved else ()
        for oid in rewritten:
            del resolved[oid]  # a stub we resolved was rewritten (or undone)
        stubs = self._zfed_stub_of_target
        if stubs and not oids.isdisjoint(stubs.values()):
            stubs.clear()  # a stub we name was rewritten (or undone)
        targets = self._zfed_uuid_targets
        for uuid in [uuid for uuid, (oid, _) in targets.items() if oid in oids]:
            del targets[uuid]
        checked = self._zfed_uuid_checked
        for number in [number for number, oid in checked.items() if oid in oids]:
            del checked[number]
        if rewritten:
            self.reload_referrers()  # their loaded referrers read the stubs again

    def _zfed_generation_changed(self) -> None:
        """Existing index entries changed (or may have): drop everything derived from them.

        Called at a transaction boundary (``newTransaction``): the objects
        every connection of the manager loaded with stub references resolved
        through the old entries are turned into ghosts too.
        """
        self._zfed_drop_caches()
        self._zfed_catalog_obj = None  # found again, and its watched oids with it
        self._zfed_watch = None
        manager = self._zfed_manager
        if manager is not None:
            manager.forget_resolutions()
            for jar in manager.jars.values():
                jar.reload_referrers()
        else:
            self.reload_referrers()

    def reload_referrers(self) -> None:
        """Make the unchanged objects loaded with stub references ghosts (see ``Participant``).

        ZODB invalidates an object when its record changes; the targets of
        its stub references also depend on index entries (``stubs_by_oid``,
        a ``uuid`` member's ``uuids``) that another process may rewrite
        (reindex, the prune after a pack, a stub rewritten after a rename),
        and on stub records.  Called at a transaction boundary when those
        changed, so that loaded objects read their targets again.
        """
        referrers, self._zfed_referrers = self._zfed_referrers, {}
        cache = self._cache
        gone = []
        for oid in referrers:
            obj = cache.get(oid)
            if obj is None:
                continue
            if obj._p_changed:
                self._zfed_referrers[oid] = None  # changed in this transaction: kept
            else:
                gone.append(oid)
        cache.invalidate(gone)

    def _zfed_watch_catalog(self, catalog: Catalog) -> None:
        """Remember the oids whose invalidation means ``catalog``'s entries changed."""
        generation = getattr(catalog, "generation", None)
        oids = {catalog._p_oid}
        if getattr(generation, "_p_oid", None) is not None:
            oids.add(generation._p_oid)
        self._zfed_watch = frozenset(oids)

    def _zfed_trim(self) -> None:
        """Bound the caches like the pickle cache: keep the newest entries when too many.

        Each keeps at most ``max(RESOLUTION_CACHE_MIN, 2 * cache size)``
        entries at a transaction boundary; a dropped entry is read again
        from the index buckets (which the pickle cache keeps) when needed.
        """
        limit = max(RESOLUTION_CACHE_MIN, 2 * self._cache.cache_size)
        if len(self._zfed_resolved) > limit:
            self._zfed_resolved = _newest(self._zfed_resolved, limit // 2)
        if len(self._zfed_stub_of_target) > limit:
            self._zfed_stub_of_target = _newest(self._zfed_stub_of_target, limit // 2)
        if len(self._zfed_uuid_targets) > limit:
            self._zfed_uuid_targets = _newest(self._zfed_uuid_targets, limit // 2)
        if len(self._zfed_uuid_checked) > limit:
            self._zfed_uuid_checked = _newest(self._zfed_uuid_checked, limit // 2)
        if len(self._zfed_classes) > limit:
            self._zfed_classes = {}
        if len(self._zfed_referrers) > limit:  # oids of objects the pickle cache dropped
            cache = self._cache
            self._zfed_referrers = dict.fromkeys(
                oid for oid in self._zfed_referrers if cache.get(oid) is not None)

    def _zfed_reset_pending(self) -> None:
        # The index writes of this transaction, applied at vote (stubs, uuids,
        # splits...): (catalog index name, key) -> value, or None to delete.
        self._zfed_index_ops: dict[tuple[str, bytes], Any] = {}
        # The renamed stubs this transaction rewrites (see _write_retargets).
        self._zfed_writing: dict[bytes, tuple[bytes, bytes, bytes]] = {}
        self._zfed_begun = False
        self._zfed_buffer: StoreBuffer | None = None
        self._zfed_collected = False
        self._zfed_mark = 0  # registered objects stored so far
        self._zfed_ops_version = 0  # bumped by index_later
        self._zfed_applied = 0  # the version apply_index_ops wrote
        self._zfed_reapply = False  # True once it wrote in this commit
        # Records to rewrite at commit (rewrite_record): oid -> (record, serial, rewrite).
        self._zfed_rewrites: dict[bytes, tuple[bytes, bytes, Callable[[bytes], Any]]] = {}

    def _catalog(self) -> Catalog | None:
        catalog = self._zfed_catalog_obj
        if catalog is None or catalog._p_oid is None:  # none yet, or made by this transaction
            try:
                root = self.get(z64)
            except POSKeyError:
                return None  # the root is being created (ZODB.DB.__init__)
            catalog = getattr(root, CATALOG_ATTRIBUTE, None)
            if catalog is not None:
                self._zfed_member.catalog_found(catalog)
                if catalog._p_oid is not None:
                    self._zfed_watch_catalog(catalog)
            self._zfed_catalog_obj = catalog
        return catalog

    def read_member_id(self) -> None:
        """Read the catalog if this connection has seen none: another process may have
        stored the member's first catalog, and its id, since the federation opened."""
        self._catalog()

    def creates_catalog(self) -> bool:
        """True if this transaction stores the member's first catalog (see ensure_catalog)."""
        catalog = self._zfed_catalog_obj
        return catalog is not None and catalog._p_serial == z64  # never committed

    def ensure_catalog(self) -> Catalog | None:
        """The catalog; a writable member that has none gets one, in this transaction.

        Opening a member never writes to it (see ``ZodbMember``): its catalog
        is made by the first transaction that changes it or, as other members
        may then store references naming its id, that changes any member.
        """
        catalog = self._catalog()
        if catalog is None and self._zfed_member.writable:
            catalog = Catalog()
            catalog.member_id = self._zfed_member.member_id
            catalog.names[self._zfed_member.name] = b""  # before it is stored: see _record_name
            self._zfed_catalog_obj = catalog
            root = self.get(z64)
            root._p_activate()
            root.__dict__[CATALOG_ATTRIBUTE] = catalog  # set before registering: see register
            root._p_changed = True
        return catalog

    def register(self, obj: Any) -> None:
        catalog = self._zfed_catalog_obj
        member = self._zfed_member
        if member.writable:
            if catalog is None or catalog._p_oid is None:
                self.ensure_catalog()  # before anything of this member is serialized
            if not member.name_recorded:
                self._record_name()
        if obj is not None and obj._p_oid in self._zfed_referrers:
            self._zfed_read_generation()
        super().register(obj)

    def _zfed_read_generation(self) -> None:
        """Check, at commit, that no reindex changed the stub entries this transaction read.

        A changed object is written with the targets it was loaded with; if
        another process rewrote the entries they came from (a reindex bumps
        the catalog's ``generation``) since this transaction began, the
        commit raises a ``ConflictError`` (``readCurrent``), and the retry
        reads the corrected targets.
        """
        catalog = self._catalog()
        generation = getattr(catalog, "generation", None)
        oid = getattr(generation, "_p_oid", None)
        if oid is None or oid in self._readCurrent:
            return
        generation._p_activate()
        self.readCurrent(generation)

    def _record_name(self) -> None:
        """Add the member's name to the catalog's ``names`` when this transaction votes.

        References written under a name (reference text in foreign records,
        stubs of a member without a catalog) still find the member after a
        rename through this record.
        """
        name = self._zfed_member.name
        if ("names", name) in self._zfed_index_ops:
            return
        if self.index_get("names", name) is not None:
            self._zfed_member.name_recorded = True
            return
        self._zfed_index_ops["names", name] = b""
        self._zfed_ops_version += 1

    # -- writing ------------------------------------------------------------

    def _place_new(self, obj: Persistent) -> FederatedConnection | None:
        """Add a new object to the member its class's placement rule names, if any."""
        manager = self._zfed_manager
        member = manager.placement_for(type(obj)) if manager is not None else None
        if member is None or member == self._zfed_member.name:
            return None
        manager.add(obj, member)
        return obj._p_jar

    def _find_stub(self, tkey: bytes) -> bytes | None:
        """The stub naming the target key ``tkey``, or None: a new one is made.

        A ``stubs_by_target`` entry is used only if its stub names that target
        (an entry naming another stub, damaged or outdated, would make the new
        reference read back as another object); a new stub replaces it.
        """
        oid = self._zfed_stub_of_target.get(tkey)
        if oid is not None:
            return oid
        oid = self._zfed_index_ops.get(("stubs_by_target", tkey))
        if oid is not None:
            return oid
        catalog = self._require_catalog("store references to other members")
        oid = catalog.stubs_by_target.get(tkey)
        if oid is None:
            return None
        if not self._stub_names(oid, tkey):
            log.warning("Member %r: stubs_by_target names the stub with oid %r for a target "
                        "that stub does not name; a new stub replaces it.",
                        self._zfed_member.name, oid)
            return None
        self._zfed_stub_of_target[tkey] = oid
        return oid

    def _stub_names(self, stub_oid: Any, tkey: bytes) -> bool:
        """True if the stub ``stub_oid`` names the target key ``tkey``, as readers see it."""
        if type(stub_oid) is not bytes or len(stub_oid) != 8:
            return False
        data = self.index_get("stubs_by_oid", stub_oid)
        if data is None:
            return self._names_target(stub_oid, tkey)
        if type(data) is not bytes:
            return False
        fields = data.split(b"\0", 5)  # see encode_entry
        return len(fields) == 6 and fields[0] + b"\0" + fields[2] + b"\0" + fields[5] == tkey

    def _target_entry(self, obj: Persistent) -> tuple[bytes, tuple[str, str, str, bytes, str, str]]:
        """The stub index key and stub entry naming ``obj``, an object of this member."""
        member = self._zfed_member
        uuid_kind = member.kind == "uuid"
        key = self._ensure_uuid(obj, on_store=False) if uuid_kind else obj._p_oid
        klass = type(obj)
        entry = (member.member_id, member.name, member.kind, key, klass.__module__, klass.__name__)
        return target_key(member.member_id, member.kind, key), entry

    def key_of_object(self, obj: Persistent) -> Any:
        """The key other members name ``obj`` by: its UUID in a ``uuid`` member, else its oid."""
        if self._zfed_member.kind == "uuid":
            return _uuid.UUID(bytes=self._ensure_uuid(obj, on_store=False))
        return u64(obj._p_oid)

    def object_for_key(self, key: Any) -> Any:
        """The object with ``key`` of this member's kind, or None (``POSKeyError`` if gone)."""
        if self._zfed_member.kind == "uuid":
            return self.object_of_uuid(key)
        return self.get(p64(key))

    def delete(self, obj: Persistent) -> None:
        raise FederationError(
            f"{obj!r} is an object of ZODB member {self._zfed_member.name!r}: remove the "
            "references to it instead, and pack."
        )

    def stable_id(self, obj: Persistent) -> None:
        """ZODB objects keep their key for good: no stable id to record in stubs."""
        return None

    def _ensure_uuid(self, obj: Any, *, on_store: bool) -> bytes:
        """Return the UUID of ``obj`` (a ``uuid`` member's object), issuing one if needed."""
        if obj._p_jar is not self:
            raise FederationError(f"{obj!r} is not an object of member {self._zfed_member.name!r}.")
        if obj._p_changed is None:
            obj._p_activate()
        # A BTree subclass has a __dict__, but its records keep only its items.
        state = None if isinstance(obj, _BTREES_TYPES) else getattr(obj, "__dict__", None)
        if state is None:
            if on_store:
                return b""
            raise FederationError(
                f"Member {self._zfed_member.name!r} names its objects by uuid, but "
                f"{type(obj).__qualname__} objects do not store a __dict__ to keep one in; "
                "reference a containing object instead."
            )
        value = state.get(UUID_ATTRIBUTE)
        if value is None:
            value = _uuid.uuid4().bytes
            if on_store:
                state[UUID_ATTRIBUTE] = value  # about to be serialized: no registration
            else:
                setattr(obj, UUID_ATTRIBUTE, value)  # registers: stored by commit or vote
            self.index_later("uuids", value, uuid_entry(obj._p_oid, type(obj)))
        return value

    def oid_for(self, kind: str, key: bytes) -> bytes | None:
        """The oid of the object an encoded key of ``kind`` names (None if unknown)."""
        if kind != "uuid":
            if len(key) != 8:
                raise ValueError(f"{key!r} is not an oid (8 bytes)")
            return key
        target = self._uuid_target(key)
        return target[0] if target is not None else None

    def object_of_uuid(self, key: _uuid.UUID) -> Any:
        """The object whose UUID is ``key``, or None.

        The ``uuids`` index names the object's class, so the object is made
        as a ghost and read once, to check that it has that UUID (an index
        left stale by an import names another object); ``POSKeyError`` when
        the index names a record that is gone.  Once checked, the object is
        found again from this connection's cache, without the index.
        """
        oid = self._zfed_uuid_checked.get(key.int)
        if oid is not None:
            obj = self._cache.get(oid)
            if obj is not None:
                return obj
        value = key.bytes
        target = self._uuid_target(value)
        if target is None:
            return None
        oid, klass = target
        obj = self._cache.get(oid)
        if obj is None:
            obj = self.ghost(oid, klass) if klass is not None else self.get(oid)
        if getattr(obj, UUID_ATTRIBUTE, None) != value:
            self._zfed_uuid_targets.pop(value, None)
            return None
        self._zfed_uuid_checked[key.int] = oid
        return obj

    def _uuid_target(self, value: bytes) -> tuple[bytes, type | None] | None:
        """The oid and class (if the index has it) of the object with UUID ``value``."""
        target = self._zfed_uuid_targets.get(value)
        if target is None:
            entry = self.index_get("uuids", value)
            if entry is None:
                return None
            target = self._decode_uuid_entry(entry)
            if ("uuids", value) not in self._zfed_index_ops:
                self._zfed_uuid_targets[value] = target  # committed: safe to keep
        return target

    def _decode_uuid_entry(self, entry: bytes) -> tuple[bytes, type | None]:
        path = entry[8:]
        klass = self._zfed_classes.get(path)  # a few classes, many entries
        if klass is None:
            oid, module, name = decode_uuid_entry(entry)
            if module is None:
                return oid, None
            klass = self._zfed_classes[path] = self._db.classFactory(self, module, name)
        return entry[:8], klass

    def _require_catalog(self, purpose: str) -> Catalog:
        catalog = self.ensure_catalog()
        if catalog is None:
            raise ReadOnlyMember(
                f"Member {self._zfed_member.name!r} has no federation catalog (it was opened "
                f"read-only), so it cannot {purpose}."
            )
        return catalog

    def index_later(self, index: str, key: bytes, value: Any) -> None:
        """Set (or, with ``None``, delete) ``catalog.<index>[key]`` when this member votes.

        Index records are never changed while objects are being serialized;
        see the module docstring.
        """
        self._require_catalog("record index entries")
        self._zfed_index_ops[index, key] = value
        self._zfed_ops_version += 1
        self._register()

    def index_get(self, index: str, key: bytes) -> Any:
        """``catalog.<index>[key]``, as this transaction will leave it."""
        if (index, key) in self._zfed_index_ops:
            return self._zfed_index_ops[index, key]
        catalog = self._catalog()
        tree = getattr(catalog, index, None) if catalog is not None else None
        return tree.get(key) if tree is not None else None

    def _apply_pending(self) -> None:
        """Write this transaction's pending index entries."""
        catalog = self._catalog()
        for (index, key), value in self._zfed_index_ops.items():
            tree = getattr(catalog, index, None)
            if tree is None:
                tree = new_index(index)
                setattr(catalog, index, tree)
            if value is not None:
                tree[key] = value
            elif key in tree:
                del tree[key]

    def _commit(self, transaction: Any) -> None:
        # ZODB's Connection._commit, with our writer and a resumable loop.
        if self.before is not None:
            raise ReadOnlyHistoryError()
        if self._import:
            self._importDuringCommit(transaction, *self._import)
            self._import = None
        self._store_registered(transaction, 0)
        if self._zfed_rewrites:
            self._store_rewrites(transaction)

    def rewrite_record(self, oid: bytes, rewrite: Callable[[bytes], bytes | None]) -> None:
        """Store ``rewrite(record)`` as the new revision of record ``oid`` when this commits.

        ``record`` is the revision this transaction sees (a change by
        another transaction since is a ``ConflictError`` at commit);
        ``rewrite`` runs while this member's objects are stored, so it may
        call :meth:`stub_reference`, and returns None to leave the record as
        it is.  Used by ``zfed migrate`` (:mod:`federation.migrate`).
        """
        self._require_catalog("rewrite records")  # before anything is stored
        data, serial = self._storage.load(oid)
        self._zfed_rewrites[oid] = (data, serial, rewrite)
        self._register()

    def stub_reference(self, obj: Persistent) -> tuple[Any, type]:
        """The ``(stub oid, Stub)`` reference to ``obj``, another member's object,
        making the stub if there is none (from a :meth:`rewrite_record` function)."""
        writer = FederatedWriter()
        writer._jar = self
        return writer._stub_reference(obj, obj._p_jar)

    def _store_rewrites(self, transaction: Any) -> None:
        for oid, (data, serial, rewrite) in self._zfed_rewrites.items():
            new = rewrite(data)
            if new is not None:
                self._storage.store(oid, serial, new, "", transaction)
                self._zfed_rewritten.append(oid)
        self._zfed_rewrites = {}

    def _store_stub(self, oid: bytes, state: bytes | tuple[bytes, str]) -> None:
        """Store a new stub record while this member's objects are being stored.

        The record is written as it is, not made a persistent object first:
        nothing in this process needs the stub object (referrers resolve
        stubs from the index), and a new reference costs one record less
        of ZODB's per-object work.
        """
        self._storage.store(oid, z64, stub_record(state), "", self._zfed_storing)

    def _store_registered(self, transaction: Any, start: int,
                          again: list[Any] | None = None) -> None:
        """Store registered objects from position ``start`` on, and what they add.

        ``again`` are objects stored earlier in this commit to store once more.
        """
        self._zfed_storing = transaction
        self._added_during_commit = []
        for obj in again or ():
            self._store_objects(FederatedWriter(obj), transaction)
        registered = self._registered_objects
        index = start
        while index < len(registered):
            obj = registered[index]
            index += 1
            oid = obj._p_oid
            if obj._p_jar is not self:
                raise FederationError(
                    f"{obj!r} was registered with member {self._zfed_member.name!r} "
                    "but belongs to another connection."
                )
            if oid in self._added:
                pass
            elif oid in self._creating or not obj._p_changed:
                continue
            self._store_objects(FederatedWriter(obj), transaction)
        for obj in self._added_during_commit:
            self._store_objects(FederatedWriter(obj), transaction)
        self._added_during_commit = None
        self._zfed_mark = len(registered)

    # -- taking part in a federated commit (see interfaces.Participant) -------

    commit_style = "zodb"

    @property
    def member(self) -> Any:
        return self._zfed_member

    @property
    def member_name(self) -> str:
        return self._zfed_member.name

    def lock_key(self) -> str:
        return f"zodb:{self._normal_storage.sortKey()}"

    def attach(self, manager: JarManager | None) -> None:
        """Serve ``manager`` (or, with None, no manager: a plain ZODB connection).

        Objects read without a manager hold placeholders for their references
        to other members' objects; they are dropped from the cache here, so
        that the manager reads them again with the references resolved.
        """
        self._zfed_manager = manager
        self._zfed_resolved = {}
        if manager is not None and self._zfed_placeholders:
            self._zfed_placeholders = False
            self.cacheMinimize()

    # -- the ZODB connection API, within a manager (see federation.databases) ----

    def get_connection(self, database_name: str) -> Any:
        """``Connection.get_connection``: in a manager, its connection of that member
        (a database name of native references names its member; see federation.native)."""
        manager = self._zfed_manager
        if manager is None:
            return super().get_connection(database_name)
        names = manager.federation.native_names
        return manager.connection(names.get(database_name, database_name))

    def close(self, primary: bool = True) -> None:
        """``Connection.close``; in a manager, one handle goes back to it.

        See :meth:`federation.manager.Manager.close_connection`; the manager
        itself closes its connections with ``primary=False``.
        """
        manager = self._zfed_manager
        if primary and manager is not None:
            manager.close_connection(self)
        else:
            super().close(primary)

    def _register(self, obj: Any = None) -> None:
        manager = self._zfed_manager
        if manager is None:
            super()._register(obj)  # a plain ZODB connection: it joins the transaction
            return
        if self._needs_to_join:
            manager.coordinator.join(self)  # before the change: joining may take a savepoint
            self._needs_to_join = False
        if obj is not None:
            self._registered_objects.append(obj)

    def tpc_begin(self, transaction: Any) -> None:
        # Connection.tpc_begin; in a federation the storage's own tpc_begin waits
        # for begin_branch(), and stores go to a buffer until then.
        self._modified = []
        meta = TransactionMetaData(transaction.user, transaction.description,
                                   transaction.extension)
        transaction.set_data(self, meta)
        self._creating.clear()
        self._zfed_collected = False
        if self._zfed_manager is None:
            self._normal_storage.tpc_begin(meta)
            self._zfed_begun = True
            return
        buffer = StoreBuffer(self._normal_storage, self._zfed_member.name)
        if self._storage is self._normal_storage:
            self._storage = buffer
        self._normal_storage = self._zfed_buffer = buffer

    def _unbuffer(self) -> None:
        """Put the real storage back in place of the buffer."""
        buffer, self._zfed_buffer = self._zfed_buffer, None
        if buffer is not None:
            if self._storage is buffer:
                self._storage = buffer.storage
            self._normal_storage = buffer.storage

    def _check_writable(self) -> None:
        if self._zfed_member.read_only and (self._registered_objects
                                            or self._savepoint_storage is not None):
            changed = ", ".join(repr(obj) for obj in self._registered_objects[:3])
            raise ReadOnlyMember(
                f"Member {self._zfed_member.name!r} is read-only, but these of its objects "
                f"were changed: {changed or 'objects saved in a savepoint'}."
            )

    @contextmanager
    def _zfed_reaching(self) -> Iterator[None]:
        """Report the storage's server going away as ``MemberUnavailable`` (a commit step
        that asks the server: RelStorage's new oids and vote)."""
        try:
            yield
        except UNREACHABLE_ERRORS as error:
            raise MemberUnavailable(self._zfed_member.name, cause=error) from error

    def get(self, oid: bytes) -> Any:
        """``Connection.get``; a storage whose server went away raises ``MemberUnavailable``."""
        try:
            return super().get(oid)
        except UNREACHABLE_ERRORS as error:
            raise MemberUnavailable(self._zfed_member.name, u64(oid), error) from error

    def collect(self, transaction: Any) -> bool:
        with self._zfed_reaching():
            return self._collect(transaction)

    def _collect(self, transaction: Any) -> bool:
        if not self._zfed_collected:
            self._zfed_collected = True
            if not (self._registered_objects or self._savepoint_storage is not None
                    or self._readCurrent or self._import or self._zfed_rewrites):
                return False
            self._check_writable()
            Connection.commit(self, transaction)
            self._zfed_mark = len(self._registered_objects)  # a savepoint commit empties it
            return True
        if self._zfed_mark < len(self._registered_objects):
            self._check_writable()
            self._store_registered(transaction.data(self), self._zfed_mark)
            return True
        return False

    def apply_index_ops(self, transaction: Any) -> bool:
        """Write the pending index entries, and store what they changed."""
        if self._zfed_ops_version == self._zfed_applied:
            return False
        meta = transaction.data(self)
        again, self._zfed_reapply = self._zfed_reapply, True
        self._apply_pending()
        self._zfed_applied = self._zfed_ops_version
        if again and self._zfed_buffer is not None:
            # Index records already stored in this commit changed once more: store them again.
            stored = [self._cache.get(oid) for oid in self._zfed_buffer.records]
            self._store_registered(meta, self._zfed_mark, [
                obj for obj in stored
                if isinstance(obj, (Catalog, Names, *_BTREES_TYPES)) and obj._p_changed])
        else:
            # Index records made by this transaction (a catalog created during
            # this commit) were stored before the entries were applied: again.
            creating = self._creating
            self._store_registered(meta, self._zfed_mark, [
                obj for obj in self._registered_objects[self._zfed_mark:]
                if obj._p_oid in creating and isinstance(obj, (Catalog, *_BTREES_TYPES))])
        return True

    def has_writes(self) -> bool:
        buffer = self._zfed_buffer
        return buffer is not None and bool(
            buffer.records or (buffer.checks and not self._zfed_member.read_only))

    def branch_size(self) -> int:
        return self._zfed_buffer.size if self._zfed_buffer is not None else 0

    def journal_branch(self, transaction: Any, gid: str, xid: str) -> dict[str, Any]:
        buffer = self._zfed_buffer
        assert buffer is not None
        with self._zfed_reaching():
            marker = self.new_oid()
        buffer.store(marker, z64, journal.marker_record(gid), "", None)
        member = self._zfed_member
        return {"kind": "zodb", "member_id": member.member_id, "name": member.name,
                "marker": marker, "records": self._zfed_redo_records(buffer)}

    def _zfed_redo_records(self, buffer: StoreBuffer) -> list[tuple]:
        """The branch's redo records; a history-free RelStorage's keep the revisions they
        replace (see :mod:`federation.adapters.relstorage`)."""
        records = buffer.redo_records()
        if not relstorage.history_free(buffer.storage):
            return records
        with self._zfed_reaching():
            return relstorage.with_old_states(buffer.storage, records)

    def begin_branch(self, transaction: Any, xid: str) -> None:
        buffer = self._zfed_buffer
        assert buffer is not None
        self._unbuffer()
        meta = transaction.data(self)
        with self._zfed_reaching():
            self._normal_storage.tpc_begin(meta)
            self._zfed_begun = True
            buffer.replay(meta, self._cache.invalidate)

    def tpc_vote(self, transaction: Any) -> None:
        # Called by transaction itself only when this connection has no manager.
        self.apply_index_ops(transaction)
        super().tpc_vote(transaction)

    def prepare(self, transaction: Any) -> None:
        with self._zfed_reaching():
            super().tpc_vote(transaction)

    vote_one_phase = prepare

    def commit_last(self, transaction: Any, gid: str) -> None:
        raise AssertionError("a ZODB member is never the last resource")

    def tpc_finish(self, transaction: Any) -> None:
        self._unbuffer()
        if self._zfed_begun:
            super().tpc_finish(transaction)
        else:
            self._tpc_cleanup()
        self._cache.invalidate(self._zfed_rewritten)  # objects read before their rewrite
        self._zfed_rewritten = []
        for (index, key), value in self._zfed_index_ops.items():
            if value is None:
                continue
            if index == "stubs_by_target":
                self._zfed_stub_of_target[key] = value
            elif index == "uuids":
                self._zfed_uuid_targets[key] = self._decode_uuid_entry(value)
        for stub_oid, retarget in self._zfed_writing.items():
            if self._zfed_retargets.get(stub_oid) == retarget:
                del self._zfed_retargets[stub_oid]
        self._zfed_forgot = False
        if self._zfed_watch is not None and len(self._zfed_watch) == 1:
            self._zfed_watch = None  # the catalog may have got its generation: look again
        self._zfed_reset_pending()

    def tpc_abort(self, transaction: Any) -> None:
        self._unbuffer()
        self._zfed_end_aborted()
        self._abort()  # what transaction's abort() does first for a resource that did not vote
        super().tpc_abort(transaction)

    def tpc_abandon(self, transaction: Any) -> None:
        """Give up this branch without undoing anything: recovery redoes it from the journal.

        The storage's transaction is dropped; the objects it wrote stay this
        connection's, as ghosts, and load what recovery writes.
        """
        self._unbuffer()
        if self._zfed_begun:
            self._normal_storage.tpc_abort(transaction.data(self))
        self._zfed_reset_pending()
        if self._savepoint_storage is not None:
            self._abort_savepoint()
        self._cache.invalidate([*self._modified, *self._creating])
        self._added.clear()
        self._tpc_cleanup()

    def abort(self, transaction: Any) -> None:
        self._unbuffer()
        self._zfed_end_aborted()
        super().abort(transaction)

    def _zfed_end_aborted(self) -> None:
        if self._zfed_forgot:  # cached from index entries this transaction changed
            self._zfed_forget()
        self._zfed_forgot = False
        self._zfed_reset_pending()

    def savepoint(self) -> Any:
        savepoint = super().savepoint()
        savepoint.state = (savepoint.state, dict(self._zfed_index_ops))
        return savepoint

    def _rollback_savepoint(self, state: Any) -> None:
        zodb_state, index_ops = state
        super()._rollback_savepoint(zodb_state)
        self._zfed_index_ops = dict(index_ops)
        self._zfed_ops_version += 1

    def beforeCompletion(self, txn: Any) -> None:
        super().beforeCompletion(txn)
        if self._zfed_retargets:
            self._write_retargets()
        manager = self._zfed_manager
        if not self._zfed_member.writable or manager is None:
            return
        try:
            missing = self._catalog() is None
        except MemberUnavailable:
            return  # gone (RelStorage's server down): a commit that changes it fails its vote
        if missing and manager.coordinator.joined:
            self.ensure_catalog()  # other members may name this member's id


    # -- reading ------------------------------------------------------------

    def _native_jar(self, database_name: str) -> Any:
        """The jar, in this connection's manager, of the member called ``database_name``
        by native references (see :mod:`federation.native`); else an ``Unreachable``."""
        manager = self._zfed_manager
        assert manager is not None
        name = manager.federation.native_names.get(database_name)
        if name is None:
            return Unreachable(z64, DanglingStub(
                f"Member {self._zfed_member.name!r} holds a native reference to database "
                f"{shorten(database_name)}, which no member of this federation is (a member's "
                "'database_name' setting names it)."
            ))
        try:
            return manager.jar(name)
        except MemberUnavailable as error:
            return Unreachable(z64, error)

    def _native_target(self, pid: list[Any]) -> Any:
        """The object a native ``['m', ...]`` or ``['n', ...]`` reference names.

        In a federation: the object of the member of that database name, in
        this manager (one object per target, one transaction); an
        ``Unreachable`` placeholder, which writes the reference back as it
        was, for a database that is no member or a member that is unavailable.
        Without a manager: ZODB's own multi-database loading when the
        database's ``databases`` mapping has that name, else a placeholder.
        """
        form, (database_name, oid, *klass) = pid
        oid = oid.encode("ascii") if isinstance(oid, str) else oid
        if self._zfed_manager is None:
            self._zfed_placeholders = True  # dropped when a manager attaches
            if database_name in self._db.databases:
                return ObjectReader.loaders[form](self._reader, database_name, oid, *klass)
            return Unreachable(oid, MemberUnavailable(
                database_name, u64(oid),
                FederationError("the connection is not in a federation")), pid)
        jar = self._native_jar(database_name)
        if isinstance(jar, Unreachable):
            jar.stub_oid, jar.reference = oid, pid
            return jar
        if klass:
            return jar.ghost(oid, klass[0])
        try:
            return jar.get(oid)
        except POSKeyError:
            return Unreachable(oid, ObjectMissing(jar.member_name, oid), pid)

    def _resolve_stub(self, stub_oid: bytes) -> Any:
        """The target of the stub ``stub_oid`` (a ghost, or an ``Unreachable``)."""
        self._zfed_stub_reads += 1
        resolved = self._zfed_resolved.get(stub_oid)
        if resolved is None:
            resolved = self._resolve_stub_entry(stub_oid)
            if type(resolved) is Unreachable:
                return resolved
        jar, oid, klass = resolved
        return jar.ghost_for_stub(oid, klass, self, stub_oid)

    def _resolve_stub_entry(self, stub_oid: bytes) -> tuple[Any, bytes, type] | Unreachable:
        """The connection, oid and class of the stub's target, now cached; else why not.

        A stub that cannot be read (a damaged ``stubs_by_oid`` entry, a stub
        record that does not decode) is a :class:`CorruptRecord` for this
        one reference: the referrer and everything else stay readable.
        """
        data: Any = None
        try:
            data = self._stub_entry_data(stub_oid)
            if type(data) is Unreachable:
                return data
            manager = self._zfed_manager
            if manager is None:
                self._zfed_placeholders = True  # dropped when a manager attaches
                raise MemberUnavailable(
                    decode_entry(data)[1],
                    cause=FederationError("the connection is not in a federation"),
                )
            resolved = manager.resolve_stub_data(data)
        except (MemberUnavailable, DanglingStub, CorruptRecord) as error:
            return Unreachable(stub_oid, error)
        except (ConflictError, TransientError):
            raise
        except _DAMAGED as error:
            return Unreachable(stub_oid, self._corrupt_stub(stub_oid, data, error))
        self._zfed_resolved[stub_oid] = resolved
        return resolved

    def _corrupt_stub(self, stub_oid: bytes, data: Any, error: BaseException) -> CorruptRecord:
        """The error for the stub ``stub_oid`` whose entry ``data`` (None: its record) is bad."""
        number = u64(stub_oid)
        where = (f"its stubs_by_oid entry {shorten(data)}" if data is not None
                 else "its stub record")
        return CorruptRecord(
            f"Member {self._zfed_member.name!r}: the stub with oid {number} (0x{number:x}) "
            f"cannot be read from {where}: {describe(error)}. The reference to it is "
            "unusable until it is repaired (Manager.reindex rebuilds index entries from "
            "stub records; a damaged stub record needs a backup).",
            member=self._zfed_member.name, record=stub_oid,
        )

    def _stub_entry_data(self, stub_oid: bytes) -> bytes | Unreachable:
        """The encoded entry of a stub: from the index (as this transaction leaves it),
        else from the stub record itself."""
        data = self.index_get("stubs_by_oid", stub_oid)
        if data is not None:
            if type(data) is not bytes:
                raise TypeError(f"the entry is a {type(data).__qualname__}, not bytes")
            return data
        try:
            stub = self.get(stub_oid)
            stub._p_activate()
        except POSKeyError:
            return Unreachable(stub_oid, DanglingStub(
                f"Member {self._zfed_member.name!r} has no stub record with oid "
                f"{u64(stub_oid)}; the reference to it is dangling."
            ))
        if not isinstance(stub, Stub):
            raise TypeError(f"the record is a {type(stub).__qualname__}, not a stub")
        return encode_entry(stub.entry())

    def retarget_stub(self, old: bytes, new: bytes, new_key: bytes) -> None:
        """Point the stub of target key ``old`` at target key ``new`` (its record was renamed).

        ``new_key`` is the record's new encoded key.  This connection's
        caches follow at once; the stub record and its index entries are
        rewritten by the next transaction that commits
        (:meth:`beforeCompletion`), so a transaction that only read joins
        nothing and can be closed as usual, and an aborted one leaves the
        rewrite pending.  Read-only members and members with no such stub
        are left alone.
        """
        if self._catalog() is None:
            return
        stub_oid = self.index_get("stubs_by_target", old)
        if stub_oid is None or self._zfed_member.read_only:
            return
        self._zfed_retargets[stub_oid] = (old, new, new_key)
        self._zfed_stub_of_target.pop(old, None)
        if self.index_get("stubs_by_target", new) is None:
            self._zfed_stub_of_target[new] = stub_oid  # new references reuse the stub
        resolved = self._zfed_resolved.get(stub_oid)
        if resolved is not None:
            jar, _oid, klass = resolved
            kind = decode_entry(self.index_get("stubs_by_oid", stub_oid))[2]
            self._zfed_resolved[stub_oid] = (jar, jar.oid_for(kind, new_key), klass)

    def _write_retargets(self) -> None:
        """Rewrite the stubs :meth:`retarget_stub` recorded, as part of this transaction.

        They stay recorded until the transaction finishes (``tpc_finish``).
        A rewrite whose stub is gone (collected by a pack) or no longer names
        the old key (rewritten by another process) is dropped: there is
        nothing left to rewrite.
        """
        for stub_oid, (old, _new, _key) in list(self._zfed_retargets.items()):
            if not self._names_target(stub_oid, old):
                del self._zfed_retargets[stub_oid]
                self._zfed_resolved.pop(stub_oid, None)
                self._zfed_stub_of_target.clear()
        self._zfed_writing = dict(self._zfed_retargets)
        if self._zfed_writing:
            bump_generation(self._require_catalog("rewrite stubs"))
        for stub_oid, (old, new, new_key) in self._zfed_writing.items():
            stub = self.get(stub_oid)
            stub.key = new_key  # registers: the stub record is stored with its new key
            self.index_later("stubs_by_target", old, None)
            if self.index_get("stubs_by_target", new) is None:
                self.index_later("stubs_by_target", new, stub_oid)
            self.index_later("stubs_by_oid", stub_oid, encode_entry(stub.entry()))

    def _wrong_class(self, obj: Any, klass: type) -> None:
        """Give ``obj``, a ghost being loaded, its record's class ``klass``."""
        if issubclass(klass, Broken) and issubclass(type(obj), klass):
            return  # the record's class is missing: ZODB made a PersistentBroken of it
        number = u64(obj._p_oid)
        named = f"{type(obj).__module__}.{type(obj).__qualname__}"
        real = f"{klass.__module__}.{klass.__qualname__}"
        try:
            obj.__class__ = klass  # while being loaded: this registers no change
        except TypeError as error:
            raise CorruptRecord(
                f"Member {self._zfed_member.name!r}: the record with oid {number} "
                f"(0x{number:x}) is a {real}, but a reference (an outdated or damaged stub "
                f"entry) named it as a {named}, and it cannot be loaded as one: {error}.",
                member=self._zfed_member.name, record=obj._p_oid,
            ) from None
        log.warning("Member %r: the record with oid %d is a %s, but a reference named it as "
                    "a %s (an outdated or damaged stub entry); it is loaded as a %s.",
                    self._zfed_member.name, number, real, named, real)

    def _names_target(self, stub_oid: bytes, tkey: bytes) -> bool:
        """True if the stub record ``stub_oid`` exists and names the target key ``tkey``."""
        try:
            record, _serial = self._storage.load(stub_oid)
            if not is_stub(record):
                return False
            entry = decode_entry(stub_data(record)[0])
        except POSKeyError:
            return False
        except (ConflictError, TransientError, *UNREACHABLE_ERRORS):
            raise
        except Exception:
            return False  # not a stub record we can read: nothing to rewrite
        return target_key(entry[0], entry[2], entry[3]) == tkey

    def ghost(self, oid: bytes, klass: type) -> Any:
        """A ghost of this member's object ``oid`` of class ``klass``, without loading it."""
        return self._reader.load_persistent(oid, klass)

    def ghost_for_stub(self, oid: bytes, klass: type, conn: Any, stub_oid: bytes) -> Any:
        """:meth:`ghost`, for the target of a stub of another member (``conn``)."""
        return self._reader.load_persistent(oid, klass)

    def stub_targets_near(self, stub_oid: bytes, member_id: str, kind: str,
                          scan: int) -> Iterator[bytes]:
        """The encoded keys that stubs near ``stub_oid`` name in member ``member_id``.

        Referrers saved together got their stubs together, so a traversal of
        them is about to reach these targets: first the ``scan`` index
        entries after ``stub_oid`` (in stub oid order, across commits), then
        those within ``scan`` oids before it (referrers whose stubs were
        made in reverse order), then the entries after those, lazily, for as
        long as the caller reads.  Used to prefetch foreign records in batches.
        """
        catalog = self._catalog()
        if catalog is None:
            return
        tree = catalog.stubs_by_oid
        low = p64(max(u64(stub_oid) - scan, 0))
        after = iter(tree.values(min=stub_oid, excludemin=True))
        before = tree.values(min=low, max=stub_oid, excludemax=True)
        prefix, kind_text = member_id.encode() + b"\0", kind.encode()
        for data in itertools.chain(itertools.islice(after, scan), before, after):
            if data.startswith(prefix):
                fields = data.split(b"\0", 5)  # see encode_entry
                if fields[2] == kind_text:
                    yield fields[5]

    def setstate(self, obj: Any) -> None:
        try:
            super().setstate(obj)
        except ConflictError:
            raise
        except POSKeyError as error:
            if isinstance(error, ObjectMissing):
                raise
            raise ObjectMissing(self._zfed_member.name, obj._p_oid) from error
        except UNREACHABLE_ERRORS as error:
            raise MemberUnavailable(self._zfed_member.name, u64(obj._p_oid), error) from error

    def stub_entries(self) -> list[tuple[bytes, tuple[str, str, str, bytes, str, str]]]:
        """``(stub oid, entry)`` for every stub recorded in this member."""
        catalog = self._catalog()
        if catalog is None:
            return []
        entries = []
        for oid, data in catalog.stubs_by_oid.items():
            try:
                entries.append((oid, decode_entry(data)))
            except _DAMAGED as error:
                raise self._corrupt_stub(oid, data, error) from None
        return entries
