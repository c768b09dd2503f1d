"""Stores and data sets for :mod:`federation.benchmark`.

Both sides of every comparison are driven through the same small
:class:`Store` interface, so that a workload is written once:

- :class:`Ours` opens FileStorage members as a federation;
- :class:`Native` opens the same kind of files as a ZODB multi-database
  (``ZODB.DB(storage, databases=..., database_name=...)``), where ZODB writes
  ``['m', (database, oid, class)]`` references by itself.

Every store is opened on existing files with new ``DB`` objects, so its caches
start empty.  Both use the same connection cache size, large enough that a
second pass over the data finds every object in memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import transaction
import ZODB
from BTrees.OOBTree import OOBTree
from persistent import Persistent
from ZODB.FileStorage import FileStorage

import federation


class Target(Persistent):
    """An object other members refer to."""

    def __init__(self, title: str) -> None:
        self.title = title


class Referrer(Persistent):
    """An object holding one cross-member reference."""

    def __init__(self, target: Any) -> None:
        self.target = target


class Holder(Persistent):
    """An object holding many cross-member references (to build many stubs fast)."""

    def __init__(self, targets: list[Any]) -> None:
        self.targets = targets


def key(i: int) -> str:
    """The container key of the ``i``-th object (sorts like ``i``)."""
    return f"{i:08d}"


class Store:
    """Named databases, opened fresh, with one transaction manager."""

    name = "?"

    def __init__(self) -> None:
        self.tm = transaction.TransactionManager()

    def root(self, member: str) -> Any:
        raise NotImplementedError

    def jar(self, member: str) -> Any:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def loads(self) -> int:
        """Records loaded from storage so far by this store's connections."""
        return sum(self.jar(member)._load_count for member in self.members)

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.tm.abort()
        self.close()


class Ours(Store):
    """FileStorage members opened as a federation."""

    name = "federation"

    def __init__(self, paths: dict[str, Path], cache_size: int,
                 kinds: dict[str, str] | None = None) -> None:
        super().__init__()
        self.members = list(paths)
        specs = {
            name: {"uri": f"{path.as_uri()}?connection_cache_size={cache_size}",
                   "key": (kinds or {}).get(name, "integer")}
            for name, path in paths.items()
        }
        self.fed = federation.open(specs)
        self.conn = self.fed.open(self.tm)

    def root(self, member: str) -> Any:
        return self.conn.root(member)

    def jar(self, member: str) -> Any:
        return self.conn.jar(member)

    def close(self) -> None:
        self.conn.close()
        self.fed.close()


class Native(Store):
    """FileStorage databases opened as a native ZODB multi-database."""

    name = "ZODB multi-database"

    def __init__(self, paths: dict[str, Path], cache_size: int) -> None:
        super().__init__()
        self.members = list(paths)
        self.databases: dict[str, Any] = {}
        for name, path in paths.items():
            ZODB.DB(FileStorage(str(path)), databases=self.databases, database_name=name,
                    cache_size=cache_size)
        self.conn = self.databases[self.members[0]].open(self.tm)

    def root(self, member: str) -> Any:
        return self.conn.get_connection(member).root()

    def jar(self, member: str) -> Any:
        return self.conn.get_connection(member)

    def close(self) -> None:
        self.conn.close()
        for db in self.databases.values():
            db.close()


def open_store(side: str, paths: dict[str, Path], cache_size: int) -> Store:
    """A fresh store of ``side`` (``"ours"`` or ``"baseline"``) on ``paths``."""
    if side == "ours":
        return Ours(paths, cache_size)
    return Native(paths, cache_size)


def batches(n: int, size: int) -> Iterator[range]:
    """``range(n)`` cut into ranges of at most ``size``."""
    for start in range(0, n, size):
        yield range(start, min(n, start + size))


def _commit_targets(store: Store, targets: OOBTree, chunk: range) -> list[Target]:
    """Make and commit the targets of ``chunk`` in member ``a``."""
    made = [Target(f"t{i}") for i in chunk]
    for i, target in zip(chunk, made, strict=True):
        targets[key(i)] = target
    store.tm.commit()
    return made


def build_pairs(store: Store, n: int, batch: int = 5000) -> None:
    """N targets in ``a`` (root ``targets``) and N referrers in ``b`` (root ``referrers``).

    Referrer ``i`` references target ``i``.  Targets are committed before
    anything in another member references them.
    """
    targets = store.root("a")["targets"] = OOBTree()
    referrers = store.root("b")["referrers"] = OOBTree()
    store.tm.commit()
    for chunk in batches(n, batch):
        made = _commit_targets(store, targets, chunk)
        for i, target in zip(chunk, made, strict=True):
            referrers[key(i)] = Referrer(target)
        store.tm.commit()


def build_holders(store: Store, n: int, per_holder: int = 100, batch: int = 10_000) -> None:
    """N targets in ``a`` and N/``per_holder`` holders in ``b``: N stubs in ``b``."""
    targets = store.root("a")["targets"] = OOBTree()
    holders = store.root("b")["holders"] = OOBTree()
    store.tm.commit()
    for chunk in batches(n, batch):
        made = _commit_targets(store, targets, chunk)
        for start in range(0, len(made), per_holder):
            holders[key(chunk[start])] = Holder(made[start:start + per_holder])
        store.tm.commit()
        store.tm.abort()  # a transaction boundary: lets the caches shrink
        for jar in (store.jar("a"), store.jar("b")):
            jar.cacheMinimize()


def build_keyed(path: Path, n: int, cache_size: int, batch: int = 5000) -> list[Any]:
    """N targets in a ``uuid`` member at ``path``; returns their UUIDs in key order."""
    import uuid

    with Ours({"u": path}, cache_size, kinds={"u": "uuid"}) as store:
        objects = store.root("u")["objects"] = OOBTree()
        for chunk in batches(n, batch):
            for i in chunk:
                objects[key(i)] = Target(f"t{i}")
            store.tm.commit()
        return [uuid.UUID(bytes=obj._federation_uuid) for obj in objects.values()]


def build_index_baseline(path: Path, cache_size: int, uuids: list[Any]) -> tuple[str, list[Any]]:
    """Index the objects of ``root["objects"]`` at ``path`` (a plain ZODB) for the baseline.

    With zope.intid installed: an ``IntIds`` utility in ``root["intids"]``;
    returns its name and the objects' int ids, in key order.  Without it: an
    ``OOBTree`` UUID -> object in ``root["uuid_index"]`` and the UUID bytes.
    """
    db = ZODB.DB(FileStorage(str(path)), cache_size=cache_size)
    try:
        with db.transaction() as conn:
            root = conn.root()
            objects = list(root["objects"].values())
            try:
                return "zope.intid IntIds.getObject", _register_intids(root, objects)
            except ImportError:
                index = root["uuid_index"] = OOBTree()
                for obj, value in zip(objects, uuids, strict=True):
                    index[value.bytes] = obj
                return ("OOBTree uuid index (zope.intid is not installed: "
                        "pip install -e '.[bench]')"), [value.bytes for value in uuids]
    finally:
        db.close()


def _register_intids(root: Any, objects: list[Any]) -> list[int]:
    from persistent.interfaces import IPersistent
    from ZODB.interfaces import IConnection
    from zope.component import getGlobalSiteManager
    from zope.intid import IntIds
    from zope.keyreference.interfaces import IKeyReference
    from zope.keyreference.persistent import KeyReferenceToPersistent, connectionOfPersistent

    # As zope.intid's own tests do: key references for persistent objects, registered
    # globally for the time of the registration only (lookups do not need them).
    gsm = getGlobalSiteManager()
    adapters = [(KeyReferenceToPersistent, (IPersistent,), IKeyReference),
                (connectionOfPersistent, (IPersistent,), IConnection)]
    added = [a for a in adapters if gsm.adapters.lookup(a[1], a[2]) is None]
    for factory, required, provided in added:
        gsm.registerAdapter(factory, required, provided)
    try:
        intids = root["intids"] = IntIds()
        return [intids.register(obj) for obj in objects]
    finally:
        for factory, required, provided in added:
            gsm.unregisterAdapter(factory, required, provided)


def foreign_store(folder: Path, cache_size: int) -> Ours:
    """Member ``b`` (FileStorage) and member ``rows``, a SQLite table of :class:`Target` rows."""
    from federation.adapters import sql

    store = Ours.__new__(Ours)
    Store.__init__(store)
    store.members = ["b"]
    rows = sql.sqlite("rows", str(folder / "rows.sqlite"), sql.Table(
        "target", Target, key="id", columns={"title": "title"}))
    b = f"{(folder / 'b.fs').as_uri()}?connection_cache_size={cache_size}"
    store.fed = federation.open({"b": b, "rows": rows})
    store.conn = store.fed.open(store.tm)
    return store


def build_foreign(folder: Path, n: int, cache_size: int, per_holder: int = 100) -> None:
    """N rows; in ``b``, N referrers and N/``per_holder`` holders referencing them."""
    import sqlite3

    with sqlite3.connect(folder / "rows.sqlite") as db:
        db.execute("CREATE TABLE target (id INTEGER PRIMARY KEY, title TEXT NOT NULL)")
        db.executemany("INSERT INTO target (id, title) VALUES (?, ?)",
                       ((i, f"t{i}") for i in range(1, n + 1)))
    db.close()
    with foreign_store(folder, cache_size) as store:
        referrers = store.root("b")["referrers"] = OOBTree()
        holders = store.root("b")["holders"] = OOBTree()
        for chunk in batches(n, 5000):
            rows = [store.conn.get(f"rows:integer:{i + 1}") for i in chunk]
            for i, row in zip(chunk, rows, strict=True):
                referrers[key(i)] = Referrer(row)
            for start in range(0, len(rows), per_holder):
                holders[key(chunk[start])] = Holder(rows[start:start + per_holder])
            store.tm.commit()
