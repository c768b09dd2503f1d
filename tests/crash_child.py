"""The child of the crash harness: a scenario's members, and a commit killed where asked.

A *scenario* (:class:`Scenario`) is a list of member kinds (``file``,
``zeo``, ``relstorage`` and ``relstorage-hf`` (RelStorage on PostgreSQL,
history-preserving and history-free), ``sqlite``, ``postgresql``) kept in
one folder (and on running servers), used by every trial, so that
FileStorage hands out the oids of lost transactions again and a reference
to a lost object would reach another object.

Transaction ``k`` of client ``c`` (:func:`write_transaction`) changes every
member in one commit: in each ZODB member ``m`` an
:class:`tests.models.Item` ``"{m}{k}"`` in the client's folder
``root(m)["client{c}"]``, linked in a ring to the next ZODB member's item
(``a3.link is b3``, ``b3.link is a3``), the last one holding each SQL
member's new row as attribute ``row_{s}``; in each SQL member a
:class:`tests.models.Person` row ``"{s}{k}/{c}"`` whose Ref column
``owner`` names the first ZODB member's item; and every member's counter
(the folder's ``"count"``, the email of the SQL row ``"count{c}"``) set to
``k``.

The child process (:func:`child_main`) wraps, in itself only, the methods
the coordinator reaches (:class:`Probe`): ``tpc_begin``, ``store``,
``tpc_vote`` and ``tpc_finish`` of each ZODB member's storage (at the
storage class, before the federation opens, since
``MVCCAdapterInstance`` copies ``tpc_vote`` from its storage; RelStorage's
``store``, which only buffers in the process, is not traced), ``begin``,
``create``, ``store``, ``prepare``, ``commit`` and ``record_outcome`` of
the SQL adapter (and ``fence`` and ``finish_prepared``, which recovery
calls), and ``federation.recovery.write_prepared``.  Each call is an
*event* ``"{member}.{method}#{n}:{before|after}"`` (``n`` counts that
member's calls of that method in the commit), written to stdout as it
happens; the event the parent chose kills the process with SIGKILL, as
does a timer thread at a random instant, or the ``n``-th event of
recovery in a child that only opens the federation.

This module imports nothing of the parent (:mod:`tests.crash_harness`).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ZODB_KINDS = ("file", "zeo", "relstorage", "relstorage-hf")
#: The RelStorage kinds, and whether each keeps history.
RELSTORAGE_KINDS = {"relstorage": True, "relstorage-hf": False}
SQL_KINDS = ("sqlite", "postgresql")


@dataclass
class Scenario:
    """Members of one harness run: kinds, folder, and where the servers listen."""

    kinds: list[str]
    folder: str
    zeo: dict[str, list[Any]] = field(default_factory=dict)  # member -> [host, port]
    relstorage: dict[str, str] = field(default_factory=dict)  # member -> postgres:// URI
    dsn: str = ""
    table: str = "crash"
    clients: int = 1
    key: str = "integer"  # the kind of the SQL members' keys: integer or uuid
    recover: bool = True  # False: the harness's own check, that it sees what recovery repairs

    @property
    def names(self) -> list[str]:
        return [chr(ord("a") + index) for index in range(len(self.kinds))]

    @property
    def zodb(self) -> list[str]:
        return [n for n, kind in zip(self.names, self.kinds, strict=True) if kind in ZODB_KINDS]

    @property
    def sql(self) -> list[str]:
        return [n for n, kind in zip(self.names, self.kinds, strict=True) if kind in SQL_KINDS]

    def kind(self, name: str) -> str:
        return self.kinds[self.names.index(name)]

    def table_of(self, name: str) -> str:
        return f"{self.table}_{name}"

    def members(self) -> dict[str, Any]:
        """The ``federation.open`` mapping of the scenario's members."""
        from federation.adapters import sql
        from tests.models import Person

        members: dict[str, Any] = {}
        for name in self.names:
            kind = self.kind(name)
            if kind == "file":
                members[name] = (Path(self.folder) / f"{name}.fs").as_uri()
            elif kind == "zeo":
                host, port = self.zeo[name]
                members[name] = f"zeo://{host}:{port}?wait_timeout=30"
            elif kind in RELSTORAGE_KINDS:
                members[name] = self.relstorage[name]
            else:
                table = sql.Table(self.table_of(name), Person, key="id",
                                  columns={"name": "name", "email": "email"},
                                  refs={"owner": "owner"}, kind=self.key)
                members[name] = (sql.sqlite(name, self.sqlite_path(name), table)
                                 if kind == "sqlite" else sql.postgresql(name, self.dsn, table))
        return members

    def sqlite_path(self, name: str) -> str:
        return str(Path(self.folder) / f"{name}.sqlite")

    def sql_connect(self, name: str) -> Any:
        if self.kind(name) == "sqlite":
            return sqlite3.connect(self.sqlite_path(name), isolation_level=None, timeout=30)
        import psycopg
        return psycopg.connect(self.dsn, autocommit=True)

    def to_json(self) -> dict[str, Any]:
        return {"kinds": self.kinds, "folder": self.folder, "zeo": self.zeo,
                "relstorage": self.relstorage, "dsn": self.dsn,
                "table": self.table, "clients": self.clients, "key": self.key,
                "recover": self.recover}


class Probe:
    """Wraps the methods a commit reaches, reports each call, kills at the chosen one."""

    STORAGE_METHODS = ("tpc_begin", "store", "tpc_vote", "tpc_finish")
    RELSTORAGE_METHODS = ("tpc_begin", "tpc_vote", "tpc_finish")
    SQL_METHODS = ("begin", "create", "store", "prepare", "commit", "record_outcome", "fence",
                   "finish_prepared")

    def __init__(self, kill_at: str | None, kill_nth: int | None = None) -> None:
        self.kill_at = kill_at
        self.kill_nth = kill_nth
        self.seen = 0
        self.armed = False
        #: id(storage) -> member; for RelStorage, whose connections have storages of their
        #: own, the storage name -> member.
        self.names: dict[int | str, str] = {}
        self.calls: dict[tuple[str, str], int] = {}

    def install(self) -> None:
        from relstorage.storage import RelStorage
        from ZEO.ClientStorage import ClientStorage
        from ZODB.FileStorage import FileStorage

        from federation import recovery
        from federation.adapters.sql import SqlAdapter

        for cls in (FileStorage, ClientStorage):
            for method in self.STORAGE_METHODS:
                setattr(cls, method, self._wrap(getattr(cls, method), method,
                                                lambda obj: self.names.get(id(obj), "open")))
        for method in self.RELSTORAGE_METHODS:
            setattr(RelStorage, method, self._wrap(
                getattr(RelStorage, method), method,
                lambda obj: self.names.get(obj.getName(), "open")))
        for method in self.SQL_METHODS:
            setattr(SqlAdapter, method, self._wrap(getattr(SqlAdapter, method), method,
                                                   lambda obj: obj.db.member))
        write = recovery.write_prepared
        recovery.write_prepared = self._wrap(  # type: ignore[assignment]
            write, "write_prepared", lambda federation: "journal")

    def _wrap(self, function: Callable[..., Any], method: str,
              member: Callable[[Any], str | None]) -> Callable[..., Any]:
        def wrapper(first: Any, *args: Any, **kwargs: Any) -> Any:
            name = member(first) if self.armed else None
            if name is None:
                return function(first, *args, **kwargs)
            count = self.calls[name, method] = self.calls.get((name, method), 0) + 1
            self.event(f"{name}.{method}#{count}:before")
            result = function(first, *args, **kwargs)
            self.event(f"{name}.{method}#{count}:after")
            return result
        return wrapper

    def event(self, event: str) -> None:
        emit(f"E {event}")
        self.seen += 1
        if event == self.kill_at or self.seen == self.kill_nth:
            die()

    @contextmanager
    def commit(self, delay: float | None = None) -> Iterator[None]:
        """Count and report calls inside the block; kill after ``delay`` seconds if given."""
        timer = threading.Timer(delay, die) if delay is not None else None
        self.calls = {}
        self.armed = True
        emit("B")
        if timer is not None:
            timer.daemon = True
            timer.start()
        try:
            yield
        finally:
            self.armed = False
            if timer is not None:
                timer.cancel()


def emit(line: str) -> None:
    os.write(1, f"{line}\n".encode())  # unbuffered: what was written survives SIGKILL


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def child_main() -> None:
    """Run the transactions of one client (argv[1]: JSON), killed where the parent asked."""
    import transaction

    import federation

    order = json.loads(sys.argv[1])
    scenario = Scenario(**order["scenario"])
    probe = Probe(order.get("kill_at"), order.get("kill_nth"))
    probe.install()
    if order.get("kill_nth") is not None:
        with probe.commit():  # killed in the middle of recovery
            federation.open(scenario.members(), recover=scenario.recover).close()
        return
    fed = federation.open(scenario.members(), recover=scenario.recover)
    for name in scenario.zodb:
        storage = fed.members[name].db.storage
        key = storage.getName() if scenario.kind(name) in RELSTORAGE_KINDS else id(storage)
        probe.names[key] = name
    conn = fed.open()
    if order.get("barrier"):
        emit("R")  # opened (and recovered): the parent starts every client's commits at once
        sys.stdin.readline()
    client, kill_commit = order["client"], order.get("kill_commit")
    for index, k in enumerate(order["ks"]):
        delay = order.get("delay") if kill_commit in (None, index) else None
        for attempt in transaction.manager.attempts(50):
            with attempt:
                write_transaction(conn, scenario, client, k, order["counters"])
                started = time.perf_counter()  # the commit alone: random instants fall in it
                with probe.commit(delay):
                    transaction.commit()
        emit(f"C {k} {time.perf_counter() - started:.6f}")
    conn.close()
    fed.close()


def write_transaction(conn: Any, scenario: Scenario, client: int, k: int,
                      counters: dict[str, int]) -> None:
    """Make transaction ``k`` of ``client`` in ``conn`` (see the module docstring)."""
    from tests.models import Item, Person

    items = {}
    for name in scenario.zodb:
        folder = conn.root(name)[f"client{client}"]
        items[name] = folder[f"{name}{k}"] = Item(f"{name}{k}")
        conn.add(items[name], name)
        folder["count"] = k
    ring = scenario.zodb
    for index, name in enumerate(ring):
        items[name].link = items[ring[(index + 1) % len(ring)]]
    for name in scenario.sql:
        row = Person(row_name(name, client, k), owner=items[ring[0]])
        conn.add(row, name)
        setattr(items[ring[-1]], f"row_{name}", row)
        conn.get(f"{name}:{scenario.key}:{counters[name]}").email = str(k)


def row_name(member: str, client: int, k: int) -> str:
    """The name of the SQL row of transaction ``k`` of ``client``."""
    return f"{member}{k}/{client}"
