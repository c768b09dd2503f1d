"""The federation-wide mark: which objects of which member some root reaches.

Roots are every ZODB member's root object and every reference that a
foreign member's record holds (:class:`federation.interfaces.ReferenceHolder`).
Edges are the references in records (``ZODB.serialize.referencesf``, as
pack reads them), ZODB's native multi-database references to the member
of that database name (:mod:`federation.native`; ``referencesf`` skips
them, weak ones are not followed) and, for a stub record, its target in
another member.
Records are read raw (:mod:`federation.records`): the application's classes
are never needed.

Marks are kept per member as ``LLTreeSet`` of oids (8 bytes per oid in
buckets, so 10^6 objects take a few tens of MB), and so are the *cross*
targets: objects that a marked stub of another member or a foreign record
names.

The keep-alive index
--------------------
The catalog's ``keep_alive`` index is what the previous run found live;
the mark never follows it (what it names is live only if found again), so
garbage that it kept is released.  Its own records stay (pack keeps them).

Snapshots and the tail
----------------------
Each ZODB member is read at a snapshot, its last transaction when the mark
started: an object's references are those of its revision at the snapshot.
Then every record written after the snapshot is a root
(:meth:`Marker.scan_tail`, repeatable).  The marked set is then closed
under both, so it contains every object reachable at any moment between
the snapshot and the end of the last scan: a path at such a moment follows,
hop by hop, either a revision at the snapshot or a revision written since.
A record that other processes write after the last scan is not covered; the
collector (:mod:`federation.gc`) chooses the pack time so that none matters.
"""

from __future__ import annotations

import contextlib
import functools
from array import array
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import transaction
from BTrees.LLBTree import LLTreeSet
from ZODB.POSException import POSKeyError
from ZODB.utils import p64, u64, z64

from federation import journal, native, resolvers
from federation.adapters import relstorage
from federation.catalog import CATALOG_ATTRIBUTE, decode_entry, journal_items
from federation.connection import UNREACHABLE_ERRORS
from federation.errors import (
    CollectionRefused,
    FederationError,
    InvalidKey,
    MemberUnavailable,
    UnknownMember,
)
from federation.interfaces import ReferenceHolder
from federation.records import index_records, is_stub, listed_records, stub_data
from federation.ref import Ref

#: Pending marks are kept per member as pairs of unsigned 64-bit numbers in an
#: ``array("Q")`` (16 bytes each, not a tuple of Python objects): the oid, and
#: who holds the reference, to name it if the target is missing.  A holder is
#: a record of the same member (its oid; 0 is the root), or, with ``_CROSS``
#: set, a stub of another member (``_STUB``, member number and stub oid) or an
#: entry of ``Marker._other_holders`` (foreign records).
_CROSS = 1 << 63
_STUB = 1 << 62
_OID_BITS = 48
_OID_MASK = (1 << _OID_BITS) - 1

#: ``progress(phase, done, total)``: what a long run reports; total None when unknown.
Progress = Callable[[str, int, "int | None"], None]


@dataclass
class Dangling:
    """A reference whose target does not exist (or names no member of the federation)."""

    member: str  # where the reference is held
    holder: str  # the referring record: "oid 12" or "key 3" (foreign)
    target: str  # what it names
    reason: str


@dataclass
class ForeignTarget:
    """A reference to a foreign member's record, checked by ``check`` only."""

    member: str
    holder: str
    target: str  # the foreign member's name
    kind: str
    key: Any


@dataclass
class View:
    """A ZODB member as the mark reads it."""

    name: str
    member: Any
    storage: Any
    snapshot: bytes = z64
    scanned: bytes = z64
    kind: str = "integer"
    conn: Any = None  # reads the catalog (uuid lookups), synced at each scan
    tm: Any = None
    skip: frozenset[bytes] = frozenset()  # the keep-alive index: never followed

    @property
    def before(self) -> bytes:
        return p64(u64(self.snapshot) + 1)


@dataclass
class Marker:
    """Marks what is live across the federation's members (see the module docstring).

    ``exclude`` names members left out: neither read nor followed into.
    Every other member must be readable, else :class:`CollectionRefused`.
    """

    federation: Any
    exclude: frozenset[str] = frozenset()
    progress: Progress | None = None
    views: dict[str, View] = field(default_factory=dict)
    holders: dict[str, Any] = field(default_factory=dict)  # foreign member -> adapter
    marks: dict[str, LLTreeSet] = field(default_factory=dict)
    cross: dict[str, LLTreeSet] = field(default_factory=dict)
    dangling: list[Dangling] = field(default_factory=list)
    #: Members that live stubs name and the federation does not have: name -> member id
    #: ("" for a database that live native references name).
    outsiders: dict[str, str] = field(default_factory=dict)
    foreign_targets: list[ForeignTarget] = field(default_factory=list)
    stubs: dict[str, dict[bytes, bytes]] | None = None  # check: member -> stub oid -> entry
    _todo: dict[str, array] = field(default_factory=dict)  # see _CROSS
    _names: list[str] = field(default_factory=list)  # member numbers in holder codes
    _other_holders: list[tuple[str, str]] = field(default_factory=list)
    _count: int = 0
    total: int = 0  # objects in the members, as their storages count them (for progress)

    # -- opening ------------------------------------------------------------

    def open(self) -> None:
        """Open every member not excluded; refuse when one cannot be read."""
        for name, member in self.federation.members.items():
            if name in self.exclude:
                continue
            if not member.available:
                raise _refused(name, member.error)
            if member.db is None:
                self._open_foreign(name, member)
                continue
            view = View(name, member, member.db.storage, kind=member.kind)
            view.tm = transaction.TransactionManager()
            view.conn = member.db.open(view.tm)
            self.views[name] = view
            catalog = getattr(view.conn.root(), CATALOG_ATTRIBUTE, None)
            keep_alive = getattr(catalog, "keep_alive", None)
            if keep_alive is not None and keep_alive._p_oid is not None:
                view.skip = frozenset([keep_alive._p_oid])
            self.marks[name] = LLTreeSet()
            self.cross[name] = LLTreeSet()
            self._todo[name] = array("Q")
            self._names.append(name)
        for view in self.views.values():
            self._call(view, relstorage.refresh, view.storage)
            view.snapshot = view.scanned = self._call(view, view.storage.lastTransaction)
            with contextlib.suppress(TypeError):  # a storage that cannot count its objects
                self.total += len(view.storage)

    def _open_foreign(self, name: str, member: Any) -> None:
        try:
            adapter = member.factory()
        except MemberUnavailable as error:
            raise _refused(name, error) from error
        if not adapter.ref_attributes:
            adapter.close()
            return
        if not isinstance(adapter, ReferenceHolder):
            adapter.close()
            raise CollectionRefused(
                f"Member {name!r} holds references ({', '.join(sorted(adapter.ref_attributes))}) "
                "but its adapter cannot list them (it has no references() method), so "
                "collecting garbage could remove objects only it references. Nothing was "
                f"collected; exclude it explicitly (--exclude {name}) only if it holds none."
            )
        self.holders[name] = adapter

    def close(self) -> None:
        """Close what :meth:`open` opened."""
        for adapter in self.holders.values():
            adapter.close()
        for view in self.views.values():
            if view.conn is not None:
                view.tm.abort()
                view.conn.close()
                view.conn = None
        self.holders.clear()

    def _call(self, view: View, function: Callable[..., Any], *args: Any) -> Any:
        try:
            return function(*args)
        except UNREACHABLE_ERRORS as error:
            raise _refused(view.name, error) from error

    # -- marking --------------------------------------------------------------

    def mark_roots(self) -> None:
        """Mark from every member's root, every foreign reference and the commit journal."""
        for view in self.views.values():
            self._mark(view.name, z64, 0)
        self.mark_foreign()
        self.mark_journal_markers()
        self._drain()

    def mark_journal_markers(self) -> None:
        """Keep the markers that pending commit journal entries name (they are unreferenced).

        Recovery reads a branch's marker to know whether the branch was
        applied (:mod:`federation.journal`); while the entry exists, its
        markers must not be collected.  A marker not written yet is skipped.
        """
        for view in list(self.views.values()):
            catalog = getattr(view.conn.root(), CATALOG_ATTRIBUTE, None)
            for gid, entry in journal_items(getattr(catalog, "journal", None)):
                for branch in journal.decode(entry)["branches"]:
                    member = self.federation.members_by_id.get(branch.get("member_id"))
                    target = self.views.get(member.name) if member is not None else None
                    marker = branch.get("marker")
                    if target is not None and self._read(target, marker) is not None:
                        self._target(view.name, f"journal entry {gid}", member, "integer",
                                     marker)

    def mark_foreign(self) -> None:
        """Mark what the foreign members' records reference now."""
        for name, adapter in self.holders.items():
            try:
                held = list(adapter.references())
            except MemberUnavailable as error:
                raise _refused(name, error) from error
            for key, text in held:
                self._foreign_reference(name, key, text)
        self._drain()

    def keep_reusable_stubs(self) -> int:
        """Mark the unmarked stubs whose targets are marked; how many there were.

        A transaction that references an object of another member reuses
        the stub that ``stubs_by_target`` (or its connection's cache) names
        for it, whether or not anything references that stub: a stub that
        is garbage now is referenced again as soon as its target is.  So a
        stub is kept, through its member's keep-alive set (``cross``), for
        as long as its target lives; only stubs of dead targets are collected.
        """
        added = 0
        for view in self.views.values():
            catalog = getattr(view.conn.root(), CATALOG_ATTRIBUTE, None)
            index = getattr(catalog, "stubs_by_target", None)
            if index is None:
                continue
            marks = self.marks[view.name]
            for tkey, stub_oid in index.items():
                number = u64(stub_oid)
                if number not in marks and self._live_target(tkey):
                    marks.add(number)
                    self.cross[view.name].add(number)
                    added += 1
        return added

    def _live_target(self, tkey: bytes) -> bool:
        """True unless the target a ``stubs_by_target`` key names is an unmarked object."""
        member_id, kind, key = tkey.split(b"\0", 2)
        member = self.federation.members_by_id.get(member_id.decode())
        view = self.views.get(member.name) if member is not None else None
        if view is None:
            return member is not None  # a foreign record (never collected), or excluded
        oid = self._oid_of(view, kind.decode(), key)
        return oid is not None and u64(oid) in self.marks[view.name]

    def scan_tail(self) -> bool:
        """Mark from every record written since the last scan; True if there was one."""
        new = False
        for view in self.views.values():
            self._sync_uuids(view)
            start = p64(u64(view.scanned) + 1)
            self._call(view, relstorage.refresh, view.storage)
            iterator = self._call(view, view.storage.iterator, start)
            try:
                for txn in iterator:
                    for record in txn:
                        new = True
                        if record.data is None:
                            continue  # a deletion, or an undone creation
                        self.marks[view.name].add(u64(record.oid))
                        self._follow(view, record.oid, record.data)
                    self._drain()
                    view.scanned = txn.tid
            except UNREACHABLE_ERRORS as error:
                raise _refused(view.name, error) from error
            finally:
                close = getattr(iterator, "close", None)
                if close is not None:
                    close()
        self._drain()
        return new

    def _sync_uuids(self, view: View) -> None:
        if view.conn is not None:
            view.tm.begin()

    def _mark(self, name: str, oid: bytes, holder: int) -> None:
        number = u64(oid)
        if self.marks[name].add(number):
            self._todo[name].extend((number, holder))

    def _drain(self) -> None:
        while any(self._todo.values()):  # a stub may name a member drained before
            for name, todo in self._todo.items():
                self._drain_member(self.views[name], todo)

    def _drain_member(self, view: View, todo: array) -> None:
        name = view.name
        while todo:
            holder = todo.pop()
            oid = p64(todo.pop())
            record = self._read(view, oid)
            if record is None:
                source, where = self._holder(name, holder)
                self.dangling.append(Dangling(source, where, f"{name}:oid:{u64(oid)}",
                                              f"member {name!r} has no such record"))
                continue
            self._follow(view, oid, record)
            self._count += 1
            if self.progress is not None and not self._count % 4096:
                self.progress("mark", min(self._count, self.total), self.total)

    def _holder(self, name: str, code: int) -> tuple[str, str]:
        """The member and description of the record a holder code names."""
        if not code & _CROSS:
            return name, f"oid {code}" if code else "the root"
        if code & _STUB:
            number = (code & ~(_CROSS | _STUB)) >> _OID_BITS
            return self._names[number], f"stub oid {code & _OID_MASK}"
        return self._other_holders[code & ~_CROSS]

    def _read(self, view: View, oid: bytes) -> bytes | None:
        """The revision of ``oid`` at the snapshot, else (a newer object) its current one."""
        storage = view.storage
        try:
            found = storage.loadBefore(oid, view.before)
            if found is not None and found[0] is not None:
                return found[0]
            return storage.load(oid)[0]
        except POSKeyError:
            return None
        except UNREACHABLE_ERRORS as error:
            raise _refused(view.name, error) from error

    def _follow(self, view: View, oid: bytes, record: bytes) -> None:
        if is_stub(record):
            self._follow_stub(view, oid, record)
            return
        marks, todo, skip = self.marks[view.name], self._todo[view.name], view.skip
        holder = u64(oid)
        refs, natives = native.references(record)
        for ref in refs:
            if ref in skip:
                continue  # what keep_alive names is live only if the mark finds it again
            number = u64(ref)
            if marks.add(number):
                todo.append(number)
                todo.append(holder)
        for ref in natives:
            if ref.form != "w":  # weak references keep nothing alive, as in ZODB
                self._follow_native(view.name, holder, ref)

    def _follow_native(self, source: str, holder: int, ref: native.NativeRef) -> None:
        """Mark the target of a native multi-database reference held by ``source``'s ``holder``.

        It names a member by its database name; one that names no member is
        dangling, and its database is an outsider (see ``outsiders``).
        """
        where = f"oid {holder}" if holder else "the root"
        name = self.federation.native_names.get(ref.database_name)
        if name is None:
            self.dangling.append(Dangling(
                source, where, f"database {ref.database_name!r} oid {u64(ref.oid)}",
                f"a native reference to database {ref.database_name!r}, which no member's "
                "database name is"))
            self.outsiders.setdefault(ref.database_name, "")
            return
        self._target(source, where, self.federation.members[name], "integer", ref.oid)

    def _follow_stub(self, view: View, oid: bytes, record: bytes) -> None:
        data, _stable_id = stub_data(record)
        if self.stubs is not None:
            self.stubs.setdefault(view.name, {})[oid] = data
        member_id, member_name, kind, key, _module, _name = decode_entry(data)
        holder = f"stub oid {u64(oid)}"
        target = self._member_of(member_id, member_name, kind)
        if target is None:
            self.dangling.append(Dangling(view.name, holder, f"member {member_name!r}",
                                          f"no member of the federation has id {member_id}"))
            self.outsiders.setdefault(member_name, member_id)
            return
        number = u64(oid)
        code = (_CROSS | _STUB | (self._names.index(view.name) << _OID_BITS) | number
                if number <= _OID_MASK else self._other(view.name, holder))
        self._target(view.name, holder, target, kind, key, code)

    def _member_of(self, member_id: str, member_name: str, kind: str) -> Any:
        """The member a stub names (as ``Manager._resolve_target`` finds it), or None."""
        federation = self.federation
        member = federation.member_of_id(member_id, member_name)
        if member is None and kind == "uuid":
            member = federation.members.get(member_name)  # a copy of the database
        return member

    def _other(self, source: str, holder: str) -> int:
        self._other_holders.append((source, holder))
        return _CROSS | (len(self._other_holders) - 1)

    def _target(self, source: str, holder: str, member: Any, kind: str, key: bytes,
                code: int | None = None) -> None:
        """Mark the object that ``key`` of ``kind`` names in ``member``."""
        name = member.name
        if name in self.exclude:
            return
        view = self.views.get(name)
        if view is None:  # a foreign member: its records are not collected
            self.foreign_targets.append(
                ForeignTarget(source, holder, name, kind, resolvers.get(kind).decode(key)))
            return
        oid = self._oid_of(view, kind, key)
        if oid is None:
            text = str(Ref(name, kind, resolvers.get(kind).decode(key)))
            self.dangling.append(Dangling(source, holder, text,
                                          f"member {name!r} has no object with that key"))
            return
        self.cross[name].add(u64(oid))
        if u64(oid) not in self.marks[name]:
            self._mark(name, oid, code if code is not None else self._other(source, holder))

    def _oid_of(self, view: View, kind: str, key: bytes) -> bytes | None:
        if kind == "integer":
            return key
        if kind != "uuid" or view.conn is None:
            return None
        catalog = getattr(view.conn.root(), CATALOG_ATTRIBUTE, None)
        entry = catalog.uuids.get(key) if catalog is not None else None
        return entry[:8] if entry is not None else None

    def _foreign_reference(self, source: str, key: Any, text: str) -> None:
        holder = f"key {key!s}"
        try:
            ref = self.federation.ref_of_text(text)
        except UnknownMember as error:
            self.dangling.append(Dangling(source, holder, text,
                                          f"the federation has no member {error.member!r}"))
            return
        except (InvalidKey, FederationError) as error:
            self.dangling.append(Dangling(source, holder, repr(text), str(error)))
            return
        member = self.federation.members[ref.member]
        if ref.member in self.views and ref.kind != member.kind:
            self.dangling.append(Dangling(source, holder, text,
                                          f"member {ref.member!r} has {member.kind} keys"))
            return
        self._target(source, holder, member, ref.kind, ref.encoded_key)

    # -- results ------------------------------------------------------------

    def marked(self, name: str) -> int:
        """How many objects of ``name`` are marked."""
        return len(self.marks[name])

    def unmarked(self, name: str) -> Iterable[tuple[bytes, bytes]]:
        """``(oid, tid)`` of the current records of ``name`` not marked and not newer than
        the last scan: what packing at the last scan collects."""
        view = self.views[name]
        storage = view.storage
        iternext = getattr(storage, "record_iternext", None)
        if iternext is None:
            return
        marks, limit = self.marks[name], view.scanned
        kept = index_records(storage, view.skip)
        for oid, tid, _record in listed_records(functools.partial(self._call, view, iternext)):
            if tid <= limit and u64(oid) not in marks and oid not in kept:
                yield oid, tid


def _refused(name: str, error: BaseException | None) -> CollectionRefused:
    why = f" ({error})" if error is not None else ""
    return CollectionRefused(
        f"Member {name!r} cannot be read{why}; it may hold the only references to objects of "
        "other members, so nothing was collected. Bring it back, or exclude it explicitly "
        f"(exclude=[{name!r}], zfed --exclude {name}) if you accept that objects only it "
        "references are collected."
    )
