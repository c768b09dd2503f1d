"""ZODB members as ``ZODB.DB`` objects, for applications that call ``db.open()``.

Code written for plain ZODB (Zope, pyramid_zodbconn, scripts) receives
databases and calls ``db.open()``; ``Federation.databases`` gives it one
:class:`FederatedDatabase` per ZODB member (the contract is
:class:`federation.interfaces.Database`)::

    databases = fed.databases
    conn = databases["main"].open()            # a member connection of a manager
    notes = conn.get_connection("notes")       # the same manager's "notes" connection
    notes.root()["n1"] = Note(about=conn.root()["home"])   # a cross-member reference
    transaction.commit()                       # one two-phase commit
    conn.close()                               # the manager closes with its last handle

The manager: one per transaction manager.  The first ``open()`` on a
transaction manager opens a :class:`federation.Manager` (``Federation.open``)
and later ones, of any member, hand out that manager's connections, so
identity holds across them and one commit covers them.  Each ``open()`` is
a handle, each ``close()`` of a connection gives one back, and the last
closes the manager: its connections go back to the federation's pool
together, with their caches.  The manager joins the federation's commit
coordinator of the transaction manager (``Federation.coordinator_for``),
which managers opened with ``Federation.open`` on the same transaction
manager share: their changes commit in the same two-phase commit, but
their objects are their own, and changes to one member through two of
them are refused at commit (two branches of one member would wait for
each other's locks).
"""

from __future__ import annotations

import contextlib
import threading
import time
import weakref
from collections.abc import Iterator, Mapping
from typing import Any

import transaction as _transaction

from federation.adapters.zodb import ZodbMember
from federation.connection import FederatedConnection
from federation.errors import (
    FederationError,
    MemberUnavailable,
    NoZodbDatabase,
    UnknownMember,
    shorten,
)
from federation.manager import Manager, thread_transaction_manager

SECONDS_PER_DAY = 86400.0


class Databases(Mapping[str, "FederatedDatabase"]):
    """Member name -> :class:`FederatedDatabase`, for every ZODB member of a federation.

    A foreign member's name raises :class:`~federation.errors.NoZodbDatabase`
    and any other name :class:`~federation.UnknownMember` (both are
    ``KeyError``s, so ``in`` and ``get`` work as on a dict).
    """

    def __init__(self, federation: Any) -> None:
        self.federation = federation
        self._databases = {
            name: FederatedDatabase(self, name)
            for name, member in federation.members.items() if isinstance(member, ZodbMember)
        }
        # The open manager of each transaction manager; a closed one is replaced.
        self._managers: weakref.WeakValueDictionary[Any, Manager] = (
            weakref.WeakValueDictionary())
        self._lock = threading.Lock()

    def __getitem__(self, name: str) -> FederatedDatabase:
        try:
            return self._databases[name]
        except (KeyError, TypeError):
            pass
        if isinstance(name, str) and name in self.federation.members:
            raise NoZodbDatabase(name)
        raise UnknownMember(name, list(self.federation.members))

    def __iter__(self) -> Iterator[str]:
        return iter(self._databases)

    def __len__(self) -> int:
        return len(self._databases)

    def __repr__(self) -> str:
        return f"<Databases {', '.join(map(repr, self._databases))}>"

    def with_primary(self, primary: str) -> dict[str, FederatedDatabase]:
        """These databases and, also under the name ``''``, the one of member ``primary``.

        pyramid_zodbconn looks its primary database up under ``''``; the
        alias never becomes a member name (references still name
        ``primary``).
        """
        return {"": self[primary], **self._databases}

    def manager(self, transaction_manager: Any = None) -> Manager | None:
        """The open manager whose connections ``open()`` hands out on that transaction manager.

        None when no connection is open on it.
        """
        with self._lock:
            manager = self._managers.get(thread_transaction_manager(transaction_manager))
        return manager if manager is not None and not manager.closed else None

    def open(self, name: str, transaction_manager: Any = None) -> FederatedConnection:
        """Member ``name``'s connection of the transaction manager's manager; one more handle."""
        if self.federation.closed:
            raise FederationError(
                f"Cannot open database {shorten(name)}: its federation is closed.")
        tm = thread_transaction_manager(transaction_manager)
        with self._lock:
            manager = self._managers.get(tm)
        if manager is not None and not manager.closed:
            return manager.open_connection(name)
        manager = self.federation.open(tm)
        try:
            conn = manager.open_connection(name)
        except BaseException:
            manager.close()
            raise
        with self._lock:
            self._managers[tm] = manager
        return conn

    def close(self) -> None:
        """Close the federation (every member); nothing happens when it is closed."""
        if not self.federation.closed:
            self.federation.close()


class FederatedDatabase:
    """One ZODB member as a ``ZODB.DB``: see :class:`federation.interfaces.Database`."""

    def __init__(self, databases: Databases, name: str) -> None:
        self._databases = databases
        self.database_name = name

    def __repr__(self) -> str:
        return f"<FederatedDatabase {self.database_name!r}>"

    @property
    def databases(self) -> Databases:
        """Every ZODB member's database, by member name."""
        return self._databases

    @property
    def storage(self) -> Any:
        """The member's storage; writing to it directly bypasses the federation."""
        return self._db().storage

    def _db(self) -> Any:
        """The member's own ``ZODB.DB``; an error when it is closed or unreachable."""
        federation = self._databases.federation
        name = self.database_name
        if federation.closed:
            raise FederationError(f"Database {name!r} is closed with its federation.")
        member = federation.members[name]
        if member.db is None:
            raise MemberUnavailable(name, cause=member.error)
        return member.db

    def open(self, transaction_manager: Any = None, at: Any = None,
             before: Any = None) -> FederatedConnection:
        """The member's connection of *the* manager of ``transaction_manager`` (see the module)."""
        if at is not None or before is not None:
            raise FederationError(
                f"Database {self.database_name!r} opens no historical connections (at, "
                "before): their references to other members could not be followed."
            )
        return self._databases.open(self.database_name, transaction_manager)

    @contextlib.contextmanager
    def transaction(self, note: str | None = None) -> Iterator[FederatedConnection]:
        """``DB.transaction``: a connection on a new transaction manager, committed on success."""
        tm = _transaction.TransactionManager()
        conn = self.open(tm)
        try:
            txn = tm.begin()
            if note:
                txn.note(note)
            yield conn
            tm.commit()
        except BaseException:
            tm.abort()
            raise
        finally:
            conn.close()

    def pack(self, t: float | None = None, days: float = 0.0) -> Any:
        """Pack the whole federation to time ``t`` (now by default) minus ``days``.

        A member packed alone would lose the objects only other members
        reference, so this is :meth:`federation.Federation.pack`; it returns
        its report.
        """
        self._db()  # a closed federation, or this member unreachable: say so
        if t is not None:
            days += max(0.0, (time.time() - t) / SECONDS_PER_DAY)
        return self._databases.federation.pack(days=days)

    def close(self) -> None:
        """Close the federation, and every member with it (see the class)."""
        self._databases.close()

    # -- what ZODB.DB also answers, read from the member's database ----------

    def getName(self) -> str:
        """The member's name, as ``DB.getName`` (ZODB's storage name is ``storage.getName()``)."""
        return self.database_name

    def getSize(self) -> int:
        """The size of the member's storage, in bytes."""
        return self._db().getSize()

    def objectCount(self) -> int:
        """The number of records in the member's storage."""
        return self._db().objectCount()

    def lastTransaction(self) -> bytes:
        """The id of the member's last committed transaction."""
        return self._db().lastTransaction()

    def supportsUndo(self) -> bool:
        """False: undoing one member alone could break references of the others."""
        return False


def manager_of(obj: Any) -> Manager:
    """The manager of a connection ``DB.open()`` returned, or of one of its objects.

    So that code given a connection can use :class:`federation.Manager`'s
    ``ref``, ``get`` and ``add``.
    """
    jar = obj if isinstance(obj, FederatedConnection) else getattr(obj, "_p_jar", None)
    manager = getattr(jar, "_zfed_manager", None)
    if not isinstance(manager, Manager):
        raise FederationError(
            f"{shorten(obj)} is not a connection of an open federation manager, nor an "
            "object of one."
        )
    return manager
