"""The manager: one application's view of all members, inside one transaction manager."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

import transaction as _transaction
from persistent import Persistent
from ZODB.POSException import POSKeyError
from ZODB.utils import u64

from federation import maintenance, resolvers, split
from federation.catalog import decode_entry, target_key
from federation.errors import (
    AmbiguousPlacement,
    DanglingStub,
    FederationError,
    InvalidKey,
    KeyNotFound,
    MemberUnavailable,
    NoZodbDatabase,
)
from federation.ref import Ref

if TYPE_CHECKING:
    from federation.connection import FederatedConnection
    from federation.interfaces import FederationView, Participant
    from federation.maintenance import ReindexReport


#: How many stub entry prefixes (target member and class) a manager keeps resolved.
PREFIX_CACHE_SIZE = 1024


class StubInfo(NamedTuple):
    """One stub record of a member, as listed by :meth:`Manager.stubs`."""

    oid: int
    target: Ref | None  # None when the target member is not in this federation
    member_id: str
    class_name: str


class Manager:
    """The jar-like object that :meth:`Federation.open` returns.

    It holds one connection per member, all driven by one commit
    coordinator joined to one ``transaction`` manager: commit with
    ``transaction.commit()`` (or the manager's ``transaction_manager``), and
    the commit is a journaled two-phase commit over every member that has
    changes (:mod:`federation.coordinator`, ``docs/transactions.md``).

    Where a new object goes (resolution order):

    1. the member it was explicitly given to with :meth:`add`;
    2. else the member that the federation's placement rule for its class
       (or the nearest base class) names;
    3. else the member of the one object that references it, as in ZODB;
    4. else, when objects of two members reference it,
       :class:`~federation.AmbiguousPlacement` is raised at commit and
       nothing is written.
    """

    def __init__(self, federation: FederationView, transaction_manager: Any,
                 jars: dict[str, Participant]) -> None:
        self.federation = federation
        self.transaction_manager = transaction_manager
        self._jars = jars
        self._closed = False
        self._handles = 0  # connections handed out by open_connection and not closed yet
        self._splits = split.SplitResolver(self)
        self._stub_prefixes: dict[bytes, tuple[Any, str, type | None]] = {}
        self.coordinator = federation.coordinator_for(transaction_manager, self)
        for jar in jars.values():
            jar.attach(self)

    # -- members ----------------------------------------------------------

    def _jar(self, member: str) -> Participant:
        jar = self._jars.get(member)
        if jar is not None:
            return jar
        if self._closed:
            raise FederationError("This federation manager is closed.")
        raise MemberUnavailable(member, cause=self.federation.member(member).error)

    def jar(self, member: str) -> Participant:
        """The ZODB connection of ``member``."""
        return self._jar(member)

    def connection(self, member: str) -> FederatedConnection:
        """The ZODB connection of ``member``, as ``Connection.get_connection`` returns it.

        A foreign member has none: :class:`~federation.errors.NoZodbDatabase`.
        """
        jar = self._jar(member)
        if jar.commit_style != "zodb":  # a foreign member's jar
            raise NoZodbDatabase(member)
        return jar  # type: ignore[return-value]

    @property
    def jars(self) -> dict[str, Any]:
        """The jar of every available member, by member name."""
        return dict(self._jars)

    def root(self, member: str) -> Any:
        """The root mapping of ``member``."""
        return self._jar(member).root()

    def add(self, obj: Persistent, member: str) -> None:
        """Place the new object ``obj`` in ``member`` (see the resolution order)."""
        jar = self._jar(member)
        if obj._p_jar is not None and obj._p_jar is not jar:
            raise AmbiguousPlacement(
                f"{obj!r} already belongs to member {self._member_name(obj._p_jar)!r}; "
                f"it cannot also be added to member {member!r}."
            )
        jar.add(obj)
        if isinstance(obj, split.SplitObject):
            split.adopt(self, obj)

    def _member_name(self, jar: Any) -> str:
        member = getattr(jar, "_zfed_member", None)
        return member.name if member is not None else repr(jar)

    def _owned_jar(self, obj: Any) -> Participant:
        jar = getattr(obj, "_p_jar", None)
        if jar is None and isinstance(obj, Persistent):
            member = self.placement_for(type(obj))
            if member is None:
                raise AmbiguousPlacement(
                    f"{obj!r} is a new object of no member yet; add it with "
                    "conn.add(obj, member) or give its class a placement rule."
                )
            self.add(obj, member)
            jar = obj._p_jar
        if getattr(jar, "_zfed_manager", None) is not self:
            raise FederationError(f"{obj!r} is not an object of this federation manager.")
        return jar

    # -- references -------------------------------------------------------

    def ref(self, obj: Persistent) -> Ref:
        """The :class:`Ref` naming ``obj`` by its member's key kind."""
        jar = self._owned_jar(obj)
        member = jar.member
        return Ref(member.name, member.kind, jar.key_of_object(obj))

    def delete(self, obj: Persistent) -> None:
        """Delete the record of ``obj``, an object of a foreign member, on commit.

        ZODB objects are not deleted explicitly: remove the references to
        them and pack.
        """
        self._owned_jar(obj).delete(obj)

    def get(self, ref: Ref | str) -> Any:
        """The object ``ref`` names (a ghost until touched); ``KeyNotFound`` if none.

        A reference by a key of the member's own kind costs no round trip; one
        by another key kind the member accepts (``lookup_kinds``, such as
        ``uid`` for an LDAP member) is resolved by the adapter, with a search.
        """
        if isinstance(ref, str):
            ref = self.federation.ref_of_text(ref)  # a foreign record's text too (member@id:...)
        return self._get(ref.member, ref.kind, ref.key)

    def _get(self, name: str, kind: str, key: Any) -> Any:
        """:meth:`get` for a member name, a key kind and a canonical key of that kind."""
        jar = self._jars.get(name) or self._jar(name)
        member = jar.member
        if kind == member.kind:
            try:
                obj = jar.object_for_key(key)
            except POSKeyError as error:
                raise KeyNotFound(name, kind, key) from error
            if obj is None:
                raise KeyNotFound(name, kind, key)
            return obj
        if kind in member.lookup_kinds:
            oid = jar.resolve(kind, key)  # a search: a uid names a directory entry
        else:
            raise InvalidKey(kind, str(Ref(name, kind, key)),
                             f"member {name!r} names its objects by {member.kind} keys")
        if oid is None:
            raise KeyNotFound(name, kind, key)
        try:
            return jar.get(oid)
        except POSKeyError as error:
            raise KeyNotFound(name, kind, key) from error

    def split(self, cls: type[split.SplitObject], key: Any) -> split.SplitObject:
        """The split object of ``cls`` for a primary key, ``Ref`` or primary object.

        See :mod:`federation.split` for the resolution order.
        """
        return self._splits.by_key(cls, key)

    def find(self, cls: type[split.SplitObject], **attribute: Any) -> split.SplitObject:
        """The split object of ``cls`` whose one declared unique attribute has a value.

        ``conn.find(Page, path="/about")``; see :mod:`federation.split`.
        """
        if len(attribute) != 1:
            raise FederationError(
                f"find() takes exactly one unique attribute of {cls.__qualname__}, "
                f"not {len(attribute)}."
            )
        [(name, value)] = attribute.items()
        return self._splits.by_attribute(cls, name, value)

    def split_records(self, cls: type[split.SplitObject]) -> list[split.SplitObject]:
        """Every secondary record of ``cls``, including those whose primary vanished."""
        return self._splits.records(cls)

    def lookup(self, key: Any, kind: str | None = None,
               cls: type[split.SplitObject] | None = None) -> Any:
        """Find an object by a typed key, in whichever member has it.

        With ``cls``, a split class, the key is its primary key and the
        split object is returned (:meth:`split`).  Otherwise, resolution order:

        1. a :class:`Ref`, or ``member:kind:key`` text, is looked up with
           :meth:`get`;
        2. otherwise the key is tried, in the federation's member order, in
           each available member whose key kind is ``kind`` or that accepts
           ``kind`` as a lookup kind (a ``uid`` in an LDAP member), or,
           without ``kind``, whose kind accepts the key; ``integer`` keys are
           never tried, as they are not unique across members;
        3. the first member that has it wins;
        4. if none has it, :class:`~federation.KeyNotFound` is raised (and
           :class:`~federation.InvalidKey` if no member's kind accepts the key).
        """
        if cls is not None:
            return self.split(cls, key)
        if isinstance(key, Ref):
            return self.get(key)
        if isinstance(key, str) and kind is None and key.count(":") >= 2:
            try:
                return self.get(Ref.parse(key))
            except InvalidKey:
                pass  # not reference text: try it as a key below
        tried = []
        for name, member in self.federation.members.items():
            wanted = member.kind if kind is None else kind
            if wanted == "integer" or (wanted != member.kind
                                       and wanted not in member.lookup_kinds):
                continue
            try:
                value = resolvers.get(wanted).coerce(key)
            except InvalidKey:
                continue
            tried.append(wanted)
            if name not in self._jars:
                continue
            try:
                return self._get(name, wanted, value)
            except KeyNotFound:
                continue
        if not tried:
            raise InvalidKey(kind or "federation", key, "no member names its objects by such keys")
        return self._not_found(key, tried)

    @staticmethod
    def _not_found(key: Any, kinds: list[str]) -> Any:
        raise KeyNotFound(None, "/".join(sorted(set(kinds))), key)

    def stubs(self, member: str) -> list[StubInfo]:
        """The stub records kept in ``member``: one per object of another member it references."""
        by_id = self.federation.members_by_id
        result = []
        entries = self._jar(member).stub_entries()
        for stub_oid, (member_id, _name, kind, key, module, name) in entries:
            target_member = by_id.get(member_id)
            target = None
            if target_member is not None:
                target = Ref(target_member.name, kind, resolvers.get(kind).decode(key))
            result.append(StubInfo(u64(stub_oid), target, member_id, f"{module}.{name}"))
        return result

    # -- maintenance ------------------------------------------------------

    def reindex(self, member: str) -> ReindexReport:
        """Rebuild ``member``'s stub and uuid indexes (after an import); the caller commits."""
        return maintenance.reindex(self, member)

    # -- used by the member connections ------------------------------------

    def placement_for(self, cls: type) -> str | None:
        """The member a placement rule sends new ``cls`` objects to, or None."""
        return self.federation.placement_for(cls)

    def stable_id_of_target(self, member: Any, oid: bytes) -> str | None:
        """The stable id that a stub of any ZODB member recorded for ``member``'s ``oid``."""
        tkey = target_key(member.member_id, member.kind, oid)
        for jar in self._jars.values():
            stub_oid = jar.index_get("stubs_by_target", tkey)
            stable_id = jar.index_get("stable_ids", stub_oid) if stub_oid is not None else None
            if stable_id is not None:
                return stable_id
        return None

    def retarget_stubs(self, member: Any, old: bytes, new: bytes) -> None:
        """Rewrite, in every writable ZODB member, the stub naming ``old`` to name ``new``.

        Called when a foreign record was found under a new key.  The rewrite
        is saved when the transaction commits; if it is aborted, the record
        is followed again next time.
        """
        old_target = target_key(member.member_id, member.kind, old)
        new_target = target_key(member.member_id, member.kind, new)
        for jar in self._jars.values():
            jar.retarget_stub(old_target, new_target, new)

    def resolve_stub_data(self, data: bytes) -> tuple[Any, bytes, type | None]:
        """The connection, oid and class of the target an encoded stub entry names.

        Stubs of one target member and class share everything but the key: that
        part is resolved once per manager.
        """
        key = data.split(b"\0", 5)[5]
        prefix = data[: len(data) - len(key)]
        target = self._stub_prefixes.get(prefix)
        if target is None:
            member_id, member_name, kind, _key, module, name = decode_entry(data)
            jar, klass = self._resolve_target(member_id, member_name, kind, key, module, name)
            if len(self._stub_prefixes) >= PREFIX_CACHE_SIZE:
                self._stub_prefixes.clear()  # one per target member and class: rarely many
            target = self._stub_prefixes[prefix] = (jar, kind, klass)
        jar, kind, klass = target
        return jar, self._oid_in(jar, kind, key), klass

    def resolve_entry(self, member_id: str, member_name: str, kind: str, key: bytes,
                       module: str, name: str) -> tuple[Any, bytes, type | None]:
        """The connection, oid and class of the target a stub entry names."""
        jar, klass = self._resolve_target(member_id, member_name, kind, key, module, name)
        return jar, self._oid_in(jar, kind, key), klass

    def forget_resolutions(self) -> None:
        """Drop every member connection's stub resolutions (a member's indexes changed)."""
        self._stub_prefixes.clear()
        for jar in self._jars.values():
            jar.forget_resolutions()

    @staticmethod
    def _oid_in(jar: Any, kind: str, key: bytes) -> bytes:
        """The oid of the object an encoded key names in ``jar``'s member."""
        oid = jar.oid_for(kind, key)
        if oid is None:
            raise DanglingStub(
                f"Member {jar.member_name!r} has no object with {kind} key "
                f"{resolvers.get(kind).decode(key)!s}."
            )
        return oid

    def member_of_id(self, member_id: str, member_name: str) -> Any:
        """The member of the stable id ``member_id``, written with ``member_name``; or None.

        Finds, as :meth:`Federation.member_of_id` does, an id the member
        called ``member_name`` got since the federation opened: a foreign
        member's store, or a ZODB member's first catalog, stored by another
        process (whose stubs and rows name the member by that id).
        """
        member = self.federation.member_of_id(member_id, member_name)
        if member is not None:
            return member
        named = self.federation.members.get(member_name)
        jar = self._jars.get(named.name) if named is not None else None
        if jar is None:
            return None
        jar.read_member_id()
        return self.federation.members_by_id.get(member_id)

    def _resolve_target(self, member_id: str, member_name: str, kind: str, key: bytes,
                        module: str, name: str) -> tuple[Any, type | None]:
        """The connection of the member a stub entry names, and the target's class."""
        member = self.member_of_id(member_id, member_name)
        if member is None:
            # An unknown database under a known name: unreachable, or a copy of
            # the database (export/import), which uuid keys still identify.
            member = self.federation.members.get(member_name)
            if member is not None and not member.available:
                key_value = resolvers.get(kind).decode(key)
                raise MemberUnavailable(member_name, key_value, member.error)
            if kind != "uuid":
                member = None  # oids of another database mean nothing here
        if member is None:
            raise DanglingStub(
                f"A stub names member {member_name!r} (id {member_id}), "
                "which is not part of this federation."
            )
        jar = self._jars.get(member.name)
        if jar is None:
            raise MemberUnavailable(member.name, resolvers.get(kind).decode(key), member.error)
        db = getattr(jar, "_db", None)
        return jar, db.classFactory(jar, module, name) if db is not None else None

    # -- life cycle -------------------------------------------------------

    def sync(self) -> None:
        """Start a new transaction and see what other processes committed."""
        self.transaction_manager.begin()

    @property
    def closed(self) -> bool:
        """True once the manager is closed."""
        return self._closed

    def open_connection(self, member: str) -> FederatedConnection:
        """Hand out ``member``'s connection as ``DB.open()`` does: one more handle.

        :mod:`federation.databases` calls it; each handle is given back by
        one ``close()`` of a connection of this manager, and the last one
        closes the manager (:meth:`close_connection`).
        """
        jar = self.connection(member)
        self._handles += 1
        return jar

    def close_connection(self, jar: FederatedConnection) -> None:
        """``close()`` called on one of this manager's connections: give back one handle.

        The last handle closes the manager (its connections go back to the
        federation's pool); closing an earlier one leaves every connection
        usable, as the other handles still share them.  A connection with
        changes in the current transaction cannot be closed, as in ZODB; nor
        can one of a manager that ``Federation.open`` returned (close the
        manager itself).
        """
        if not self._handles:
            raise FederationError(
                f"The connection of member {jar.member_name!r} belongs to a federation manager "
                "opened with Federation.open(); close the manager instead."
            )
        if self._handles == 1:
            self.close()
        elif any(joined is jar for joined in self.coordinator.joined):
            raise FederationError(
                f"Cannot close the connection of member {jar.member_name!r}: it has changes in "
                "the current transaction; commit or abort it first."
            )
        self._handles -= 1

    def close(self) -> None:
        """Close every member connection; the manager cannot be used afterwards."""
        if self._closed:
            return
        own = set(map(id, self._jars.values()))
        joined = [jar.member_name for jar in self.coordinator.joined if id(jar) in own]
        if joined:
            raise FederationError(
                f"Cannot close the manager: members {', '.join(sorted(joined))} have changes "
                "in the current transaction; commit or abort it first."
            )
        self.federation.release_coordinator(self.coordinator, self)
        jars, self._jars = self._jars, {}
        self._closed = True
        for jar in jars.values():
            jar.attach(None)
            jar.close(primary=False)
        self.federation.release(jars)

    def __enter__(self) -> Manager:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is not None:
            self.transaction_manager.abort()
        self.close()


def thread_transaction_manager(transaction_manager: Any = None) -> Any:
    """The transaction manager a manager joins: the thread's for None.

    ``transaction.manager`` (a ``ThreadTransactionManager``) stands for a
    different transaction manager in each thread, so it also means the
    thread's: managers of two threads must never share a coordinator.
    """
    if transaction_manager is None:
        transaction_manager = _transaction.manager
    if isinstance(transaction_manager, _transaction.ThreadTransactionManager):
        return transaction_manager.manager
    return transaction_manager
