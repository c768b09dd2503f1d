"""Split objects: one object, its state kept in a primary and a secondary member.

This is Scenario 2 of the PEAK note on cross-database stubs: the primary
member (a shared or read-only ZODB, later a directory) holds the object's
own attributes; the secondary member, a database of the application's,
holds the application's extra attributes for the same object.  The class
says which is which, in one place::

    class Page(SplitObject):
        __split__ = Split(primary="shared", secondary="local", key="integer",
                          primary_attributes={"title", "body"}, unique={"path"},
                          search=find_page_by_path)   # (primary_jar, attribute, value)

Plain attribute access reads and writes both parts.  The object's jar is the
secondary member's connection: changed secondary attributes are saved in
its record there; a changed primary attribute changes the primary object,
which the primary member saves in the same two-phase commit.  The secondary
record (and its oid) is created on the first change of a secondary
attribute; an object never given secondary state leaves nothing in the
secondary member.

How :meth:`federation.Manager.split` and :meth:`federation.Manager.find`
resolve a key (the same object is returned for the rest of the
transaction, whichever way it was found):

1. the split objects already handed out in this transaction;
2. the secondary member's index (``splits`` for primary keys, ``unique``
   for unique attributes), double-checked against the primary: the primary
   object must exist, and a copied unique value that went stale is
   re-indexed and the lookup goes on;
3. the primary member: by key, or for a unique attribute through the
   class's ``search(primary_jar, attribute, value)`` (for a foreign
   primary, by default, its adapter's ``find``); the primary object
   found is matched back to the secondary index, else a new split object
   without secondary record is made;
4. else :class:`federation.KeyNotFound`.

A primary object that vanished while its secondary record remains: the
secondary attributes stay readable (for inspection and cleanup) and
touching a primary attribute raises :class:`federation.DanglingStub`
naming the primary member and key; lookups by key raise ``KeyNotFound``.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from persistent import Persistent
from ZODB.POSException import POSKeyError

from federation import resolvers
from federation.errors import ConfigurationError, FederationError, KeyNotFound, ReadOnlyMember
from federation.ref import Ref

if TYPE_CHECKING:
    from federation.interfaces import JarManager

#: The attribute of a secondary record naming its primary object (a stub entry tuple).
ENTRY = "_split_entry"


@dataclass(frozen=True)
class Split:
    """Where a split class keeps its state (see the module docstring)."""

    primary: str
    secondary: str
    key: str = "integer"
    primary_attributes: Collection[str] = field(default_factory=frozenset)
    unique: Collection[str] = field(default_factory=frozenset)
    search: Callable[[Any, str, Any], Any] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "primary_attributes", frozenset(self.primary_attributes))
        object.__setattr__(self, "unique", frozenset(self.unique))
        if self.primary == self.secondary:
            raise ConfigurationError(
                f"A split class needs two members; both are {self.primary!r}."
            )
        resolvers.get(self.key)


class SplitObject(Persistent):
    """Base class of split objects; subclasses set ``__split__`` to a :class:`Split`."""

    __split__: ClassVar[Split]

    def __getattr__(self, name: str) -> Any:
        # Called only when normal lookup failed: primary attributes are never local.
        spec = type(self).__split__
        if name.startswith(("_p_", "_v_", "__")) or name not in spec.primary_attributes:
            raise AttributeError(name)
        return getattr(_primary(self), name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith(("_p_", "_v_")) or name == ENTRY:
            Persistent.__setattr__(self, name, value)
            return
        spec = type(self).__split__
        manager = _manager(self)
        if name in spec.primary_attributes:
            if manager.federation.member(spec.primary).read_only:
                raise ReadOnlyMember(
                    f"Member {spec.primary!r} is read-only: {type(self).__qualname__}.{name} "
                    "is a primary attribute and cannot be changed."
                )
            old = getattr(self, name, None)
            setattr(_primary(self), name, value)
        else:
            old = self.__dict__.get(name)
            if self._p_jar is None:
                manager.add(self, spec.secondary)  # first secondary state: make the record
            Persistent.__setattr__(self, name, value)
        if name in spec.unique and self._p_jar is not None and old != value:
            jar = manager.jar(spec.secondary)
            if old is not None:
                jar.index_later("unique", unique_key(type(self), name, old), None)
            jar.index_later("unique", unique_key(type(self), name, value), self._p_oid)


def _manager(obj: SplitObject) -> JarManager:
    jar = obj._p_jar
    manager = getattr(jar, "_zfed_manager", None) if jar is not None else obj._v_manager
    if manager is None:
        raise FederationError(
            f"This {type(obj).__qualname__} object is not attached to an open federation manager."
        )
    return manager


def _primary(obj: SplitObject) -> Persistent:
    primary = obj.__dict__.get("_v_primary")
    if primary is None:
        jar, oid, klass = _manager(obj).resolve_entry(*obj.__dict__[ENTRY])
        primary = obj._v_primary = jar.ghost(oid, klass)
    return primary


def split_key(cls: type, kind: str, key: bytes) -> bytes:
    """The ``splits`` index key of the split object of ``cls`` for a primary key."""
    return f"{cls.__module__}.{cls.__qualname__}".encode() + b"\0" + kind.encode() + b"\0" + key


def unique_key(cls: type, attribute: str, value: Any) -> bytes:
    """The ``unique`` index key of ``cls.attribute == value``."""
    text = f"{cls.__module__}.{cls.__qualname__}\0{attribute}\0{type(value).__name__}:{value}"
    return text.encode()


def adopt(manager: JarManager, obj: SplitObject) -> None:
    """Index the secondary record just made for ``obj`` (called by ``Manager.add``)."""
    cls = type(obj)
    spec = cls.__split__
    jar = manager.jar(spec.secondary)
    _member_id, _name, kind, key, _module, _class = obj.__dict__[ENTRY]
    jar.index_later("splits", split_key(cls, kind, key), obj)
    for attribute in spec.unique:
        value = getattr(obj, attribute, None)
        if value is not None:
            jar.index_later("unique", unique_key(cls, attribute, value), obj._p_oid)


class SplitResolver:
    """Finds split objects for one manager (see the module docstring)."""

    def __init__(self, manager: JarManager) -> None:
        self._manager = manager
        self._handed_out: dict[bytes, SplitObject] = {}
        self._transaction: Any = None
        self.secondaries: set[str] = set()

    def _seen(self) -> dict[bytes, SplitObject]:
        current = self._manager.transaction_manager.get()
        if current is not self._transaction:
            self._transaction = current
            self._handed_out.clear()
            self.secondaries.clear()
        return self._handed_out

    def by_key(self, cls: type[SplitObject], key: Any) -> SplitObject:
        """The split object of ``cls`` whose primary object has ``key`` (or is ``key``)."""
        spec = cls.__split__
        manager = self._manager
        if isinstance(key, Persistent):
            ref = manager.ref(key)
        else:
            ref = key if isinstance(key, Ref) else Ref(spec.primary, spec.key, key)
        if ref.member != spec.primary or ref.kind != spec.key:
            raise KeyNotFound(spec.primary, spec.key, ref)
        skey = split_key(cls, ref.kind, ref.encoded_key)
        seen = self._seen()
        obj = seen.get(skey)
        if obj is None:
            obj = self._from_secondary(cls, "splits", skey)
        if obj is None:
            primary = manager.get(ref)
            jar = primary._p_jar
            _tkey, entry = jar._target_entry(primary)
            obj = cls.__new__(cls)
            obj._v_manager = manager
            obj._v_primary = primary
            obj._split_entry = entry
            self.secondaries.add(spec.secondary)
        seen[skey] = obj
        return obj

    def by_attribute(self, cls: type[SplitObject], attribute: str, value: Any) -> SplitObject:
        """The split object of ``cls`` whose unique ``attribute`` equals ``value``."""
        spec = cls.__split__
        if attribute not in spec.unique:
            raise FederationError(
                f"{cls.__qualname__}.{attribute} is not declared unique; declared: "
                f"{', '.join(sorted(spec.unique)) or 'none'}."
            )
        obj = self._from_secondary(cls, "unique", unique_key(cls, attribute, value))
        if obj is not None and getattr(obj, attribute, None) == value:
            return self._remember(cls, obj)
        if obj is not None:  # a stale copy: index the current value, look further
            self._reindex(obj, attribute, value)
        primary = self._search(spec, attribute, value)
        if primary is not None:
            return self.by_key(cls, primary)
        raise KeyNotFound(spec.secondary, f"{cls.__qualname__}.{attribute}", value)

    def _search(self, spec: Split, attribute: str, value: Any) -> Any:
        """The primary object whose ``attribute`` is ``value``, found by class or adapter."""
        jar = self._manager.jar(spec.primary)
        if spec.search is not None:
            return spec.search(jar, attribute, value)
        find = getattr(jar, "find", None)  # foreign members search through their adapter
        found = find(attribute, value) if find is not None else []
        return found[0] if found else None

    def _remember(self, cls: type, obj: SplitObject) -> SplitObject:
        _member_id, _name, kind, key, _module, _class = obj.__dict__[ENTRY]
        return self._seen().setdefault(split_key(cls, kind, key), obj)

    def _reindex(self, obj: SplitObject, attribute: str, stale: Any) -> None:
        jar = self._manager.jar(type(obj).__split__.secondary)
        if jar._zfed_member.read_only:
            return
        jar.index_later("unique", unique_key(type(obj), attribute, stale), None)
        current = getattr(obj, attribute, None)
        if current is not None:
            jar.index_later("unique", unique_key(type(obj), attribute, current), obj._p_oid)

    def _from_secondary(self, cls: type, index: str, key: bytes) -> SplitObject | None:
        """The secondary record an index names, if it and its primary object exist."""
        jar = self._manager.jar(cls.__split__.secondary)
        found = jar.index_get(index, key)
        if found is None:
            return None
        try:
            obj = jar.get(found) if isinstance(found, bytes) else found
            obj._p_activate()
        except POSKeyError:
            obj = None
        if not isinstance(obj, cls):
            if not jar._zfed_member.read_only:
                jar.index_later(index, key, None)
            return None
        try:
            _primary(obj)._p_activate()  # the double check: the primary object exists
        except POSKeyError as error:
            _member_id, _name, kind, key, _module, _class = obj.__dict__[ENTRY]
            raise KeyNotFound(
                cls.__split__.primary, kind, resolvers.get(kind).decode(key)
            ) from error
        return obj

    def records(self, cls: type[SplitObject]) -> list[SplitObject]:
        """Every secondary record of ``cls``, including those whose primary vanished."""
        jar = self._manager.jar(cls.__split__.secondary)
        catalog = jar._catalog()
        tree = getattr(catalog, "splits", None) if catalog is not None else None
        if tree is None:
            return []
        prefix = f"{cls.__module__}.{cls.__qualname__}".encode() + b"\0"
        return list(tree.values(prefix, prefix + b"\xff", excludemax=True))
