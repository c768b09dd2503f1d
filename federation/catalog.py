"""The federation records kept inside each ZODB member.

Record format
=============

Everything zodb-federation stores in a member is made of ordinary
persistent objects referenced by ordinary ``(oid, class)`` references, so a
member stays a plain ZODB database: ``ZODB.DB`` opens it, ``fsrefs`` checks
it, pack and conflict resolution work on it.

The catalog
-----------
The root mapping's attribute ``root.zodb_federation`` (an attribute, not a
key: iterating the root shows only the application's own entries; pack and
``fsrefs`` still reach it) is a :class:`Catalog`, created with the root when
a federation makes a new database, and in an existing database without one
by the first transaction that writes (to any member: other members may then
store references naming the id).  Opening never writes to an existing
database.  It holds:

``member_id``
    A random UUID (hex text) naming this database for good.  Stubs name
    their target member by this id, so renaming a member in the federation
    configuration does not break references into it.  A member without a
    catalog (opened read-only before it ever had one) is named
    ``"name:<member name>"`` instead.

``names`` (:class:`Names`)
    ``member name -> b""``, a mapping that merges concurrent additions:
    every name the member had when a transaction wrote to it.  Reference
    text written under an old name (in foreign records,
    :func:`federation.ref.ref_text` without an id) and stubs named
    ``name:<old name>`` still find the member after it is renamed in the
    configuration (:meth:`federation.Federation.member_for`).

``stubs_by_target`` (:class:`Index`)
    ``target key -> stub oid``.  The target key is
    ``member_id + b"\\0" + kind + b"\\0" + encoded key`` where the encoded key
    is the key kind's order-preserving encoding (for an ``integer`` ZODB
    target, its 8-byte oid).  Values are stub oids as *bytes*, never stub
    objects: a reference to a stub would be replaced by its target when the
    index is read back.

``stubs_by_oid`` (:class:`Index`)
    ``stub oid -> entry``, the entry being the bytes
    ``member_id \0 member name \0 kind \0 class module \0 class name \0
    encoded key`` (:func:`encode_entry`; one bytes value pickles much faster
    than a tuple of six).  The member name is the target member's name when
    the stub was made; it is used only when the member id is unknown (the
    member could not be opened), to say which member is missing.
    Reading a referrer resolves its stub references from these buckets (one
    bucket load resolves hundreds of stubs) instead of loading each stub.

``uuids`` (:class:`Index`)
    ``16-byte UUID -> oid + class`` for members whose key kind is ``uuid``:
    the 8-byte oid followed by the object's class as ``module.name`` text
    (:func:`uuid_entry`), so that a lookup makes a ghost without reading the
    record twice (older entries hold the bare oid; they still resolve).  The UUID
    itself is also kept on the object, as ``_federation_uuid``, so that it
    travels with the object through export/import and the index can be
    rebuilt (:meth:`federation.Manager.reindex`).

Stub records
------------
A :class:`Stub` is stored in the *referencing* member, once per target
(exactly one per referencing member, target member and key).  Its state is
its entry in the :func:`encode_entry` form: the target member's id and name,
the key kind, the encoded key, and the target's class (module and name, so
a ghost of the target can be made without loading it); its attributes
``member_id``, ``member_name``, ``kind``, ``key``, ``module`` and ``name``
spell it out.  A stub whose target can be renamed also keeps the target's
stable id: its state is then the pair ``(encoded entry, stable id)``
(format 2; stubs of format 1 are the bare encoded entry, and still are when
there is no stable id).  Referrers point at the stub with a plain
``(stub oid, federation.catalog.Stub)`` reference; the federation's reader
recognises the class and substitutes the target.  Stubs that no referrer
reaches any more are removed by the federation's pack
(:mod:`federation.gc`); their index entries are then dropped by
:func:`federation.maintenance.prune`.

``stable_ids`` (:class:`Index`)
    ``stub oid -> stable id`` (text) for stubs whose target member can rename
    its records (an LDAP entry keeps its ``entryUUID`` through a modrdn or a
    move, while its DN, the key, changes).  When a target's key has vanished,
    the foreign jar asks its adapter for the record with that stable id, and
    the stub's key is rewritten (:meth:`federation.Manager` does it through
    the pending index writes, so it is saved when the transaction commits).
    The stub record keeps the stable id too, so :func:`reindex` rebuilds this
    index.

``keep_alive`` (:class:`Index`)
    ``oid -> object``: real ``(oid, class)`` references to this member's
    objects that live stubs of other members, or foreign records, name;
    written by :func:`federation.gc.collect` (entry by entry) so that
    packing this member does not collect them.  The federation's own mark
    does not follow it.

``journal`` (:class:`Index`)
    ``global transaction id -> entry`` (bytes): the commit journal of
    transactions over several members (:mod:`federation.journal`).  Its
    first key, ``""``, is a sentinel that stays.

``generation`` (``BTrees.Length.Length``)
    A counter that every change to *existing* index entries bumps:
    :func:`federation.maintenance.reindex`, :func:`federation.maintenance.prune`
    (after a pack) and the rewrite of a renamed target's stub.  New entries
    do not bump it.  Connections keep what they resolved from the indexes
    across transactions, and drop it when this record (or the catalog's) is
    invalidated (:meth:`federation.connection.FederatedConnection.newTransaction`),
    and turn the unchanged objects they loaded with targets resolved through
    the old entries back into ghosts (ZODB sends no invalidation for them:
    their records did not change); a transaction that changes such an object
    checks the counter at commit (``readCurrent``), so that it cannot write
    back a target an entry no longer names.  A ``Length`` merges concurrent
    bumps instead of raising a ``ConflictError``.
    Catalogs made by older releases get it on the first bump.

``splits`` (:class:`Index`)
    In a secondary member: ``split key -> secondary record`` of a split
    object (:mod:`federation.split`), a real reference, which keeps the
    record reachable for pack even when its primary object vanished.  The split key is
    ``class name + b"\0" + target key of the primary object``.

``unique`` (:class:`Index`)
    In a secondary member: ``class name \0 attribute \0 value -> oid``
    for the unique attributes split classes declare; the values are copies,
    checked against the primary on every lookup.

Catalogs made by older releases lack the newer indexes; they are added on
first use.  Indexes are BTrees with 120-entry buckets (:class:`Index`), so a traversal
that follows many references loads few index records.
"""

from __future__ import annotations

import pickle
import uuid as _uuid
from collections.abc import Iterator
from typing import Any

from BTrees.Length import Length
from BTrees.OOBTree import OOBTree
from persistent import Persistent
from ZODB._compat import _protocol

#: The attribute of a member's root mapping that holds the catalog.
CATALOG_ATTRIBUTE = "zodb_federation"

#: The catalog's record format; bumped on incompatible changes.
FORMAT = 2

#: The attribute under which objects of ``uuid`` members keep their UUID.
UUID_ATTRIBUTE = "_federation_uuid"


class Index(OOBTree):
    """An ``OOBTree`` with larger buckets than the default 30: few records per lookup.

    Not much larger: a commit rewrites every bucket it touches whole.
    """

    max_leaf_size = 120
    max_internal_size = 64  # loading an internal node makes a ghost per child


#: The first key of the ``journal`` index, never deleted: BTrees cannot merge two
#: commits when one deletes the first key of a bucket and the other inserts.
JOURNAL_SENTINEL = ""


class Names(Persistent):
    """``Catalog.names``: a set of member names that concurrent additions merge.

    Two transactions that add the same name (two processes writing to a
    renamed member for the first time) would make a BTree raise a
    ``ConflictError``; this record resolves the conflict with the union.
    """

    def __init__(self) -> None:
        self.names: dict[str, bytes] = {}

    def __setitem__(self, name: str, value: bytes) -> None:
        self.names = {**self.names, name: value}

    def get(self, name: str, default: Any = None) -> Any:
        return self.names.get(name, default)

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self.names))

    def _p_resolveConflict(self, old: dict[str, Any], committed: dict[str, Any],
                           new: dict[str, Any]) -> dict[str, Any]:
        return {**new, "names": {**committed["names"], **new["names"]}}


def new_index(name: str) -> Index | Names:
    """A new, empty index of the catalog called ``name``."""
    if name == "names":
        return Names()
    tree = Index()
    if name == "journal":
        tree[JOURNAL_SENTINEL] = b""
    return tree


def journal_items(tree: Any) -> list[tuple[str, bytes]]:
    """``(global id, entry)`` of a ``journal`` index (see :mod:`federation.journal`)."""
    return [(gid, entry) for gid, entry in (tree or {}).items() if gid != JOURNAL_SENTINEL]


class Catalog(Persistent):
    """The per-member record of zodb-federation (see the module docstring)."""

    def __init__(self) -> None:
        self.format = FORMAT
        self.member_id = self.new_member_id()
        self.stubs_by_target = Index()
        self.stubs_by_oid = Index()
        self.uuids = Index()
        self.keep_alive = Index()
        self.splits = Index()
        self.unique = Index()
        self.stable_ids = Index()
        self.names = Names()
        self.journal = new_index("journal")
        self.generation = Length()

    @staticmethod
    def new_member_id() -> str:
        """A new, random member id."""
        return _uuid.uuid4().hex


def bump_generation(catalog: Catalog) -> None:
    """Tell every connection that existing index entries of ``catalog`` changed."""
    generation = getattr(catalog, "generation", None)
    if generation is None:
        generation = catalog.generation = Length()
    generation.change(1)


class Stub(Persistent):
    """A record naming an object of another member (see the module docstring)."""

    stable_id: str | None = None

    def __init__(self, member_id: str, member_name: str, kind: str, key: bytes,
                 module: str, name: str, stable_id: str | None = None) -> None:
        self.member_id = member_id
        self.member_name = member_name
        self.kind = kind
        self.key = key
        self.module = module
        self.name = name
        if stable_id is not None:
            self.stable_id = stable_id

    def entry(self) -> Entry:
        """The stub's entry (``Catalog.stubs_by_oid`` keeps it encoded)."""
        return (self.member_id, self.member_name, self.kind, self.key, self.module, self.name)

    def __getstate__(self) -> bytes | tuple[bytes, str]:
        data = encode_entry(self.entry())
        return data if self.stable_id is None else (data, self.stable_id)

    def __setstate__(self, state: bytes | tuple[bytes, str]) -> None:
        data, stable_id = stub_state(state)
        names = ("member_id", "member_name", "kind", "key", "module", "name")
        self.__dict__.update(zip(names, decode_entry(data), strict=True))
        if stable_id is not None:
            self.stable_id = stable_id

    def __repr__(self) -> str:
        return f"<Stub {self.member_id}:{self.kind}:{self.key.hex()} {self.module}.{self.name}>"


Entry = tuple[str, str, str, bytes, str, str]


def encode_entry(entry: Entry) -> bytes:
    """A stub entry as stored in ``stubs_by_oid`` (see the module docstring)."""
    member_id, member_name, kind, key, module, name = entry
    return "\0".join((member_id, member_name, kind, module, name)).encode() + b"\0" + key


def decode_entry(data: bytes) -> Entry:
    """The stub entry :func:`encode_entry` stored."""
    member_id, member_name, kind, module, name, key = data.split(b"\0", 5)
    return (member_id.decode(), member_name.decode(), kind.decode(), key,
            module.decode(), name.decode())


#: The class part of a stub record: ZODB's record format is the pickled class,
#: then the pickled state (ZODB.serialize, format #1).
_STUB_CLASS_PICKLE = pickle.dumps(Stub, _protocol)


def stub_record(state: bytes | tuple[bytes, str]) -> bytes:
    """The ZODB data record of a stub with ``state``, as ``ObjectWriter`` would write it."""
    return _STUB_CLASS_PICKLE + pickle.dumps(state, _protocol)


def stub_state(state: bytes | tuple[bytes, str]) -> tuple[bytes, str | None]:
    """The encoded entry and the stable id (or None) of a stored stub state."""
    if isinstance(state, tuple):
        return state
    return state, None


def uuid_entry(oid: bytes, klass: type) -> bytes:
    """A ``uuids`` index value: the oid, then the class as ``module.name``."""
    return oid + f"{klass.__module__}.{klass.__name__}".encode()


def decode_uuid_entry(value: bytes) -> tuple[bytes, str | None, str | None]:
    """The oid, class module and class name (None in entries that have no class)."""
    oid, path = value[:8], value[8:].decode()
    if not path:
        return oid, None, None
    module, _, name = path.rpartition(".")
    return oid, module, name


def target_key(member_id: str, kind: str, key: bytes) -> bytes:
    """The ``stubs_by_target`` key of a target."""
    return member_id.encode("ascii") + b"\0" + kind.encode("ascii") + b"\0" + key
