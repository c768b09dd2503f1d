"""SQL members: a table (or view) mapped to a persistent class.

SQLite (the standard library's ``sqlite3``) is the embedded default and
takes part in transactions as the single last resource; PostgreSQL (through
psycopg 3) takes part in the real two-phase commit with ``PREPARE
TRANSACTION``.  All SQL is parameterised; table and column names are
checked against ``[A-Za-z_][A-Za-z0-9_]*`` and quoted.

::

    people = federation.adapters.sql.sqlite(
        "people", "people.sqlite",
        Table("person", Person, key="id", columns={"name": "name", "email": "email"},
              refs={"owner": "owner_ref"}))
    fed = federation.open({"main": "file:///srv/main.fs", "people": people})

Integer keys are issued by the database, never twice, even when the
transaction that asked for one is aborted, and never one that a deleted
row had (a reference kept elsewhere would silently name the new row):

- PostgreSQL: a sequence of ours, ``zfed_key_<table>``, created by the
  first key issued and started above the table's highest key; ``nextval``
  is outside transactions.
- SQLite: a table of ours, ``zfed_keys`` (``name`` the table, ``next`` the
  last key issued), in the member's file, created by the first key issued
  (a member only read is never written to).  A key is issued in a
  transaction of its own on a second connection; a key asked for while
  this session's own write transaction holds the file (objects placed in
  the member during a commit) is issued in that transaction, and the
  process remembers it, so that the process never issues it again.
  Either way, the key is above every key of the table.

A member's stable id, which stubs and reference text name it by, and
the names it had are kept in a table of ours, ``zfed_members`` (``tbl``
the member's table, ``name`` a member name, or ``''`` for the row holding
the id, ``member_id``), created by the first write that needs the id (a
new stub or reference naming the member), in a transaction of its own.
Opening only reads it.

A database that is busy (SQLite "database is locked", PostgreSQL
serialization failures, deadlocks and lock timeouts) raises
:class:`federation.MemberBusy`, which ``transaction.attempts()`` retries.
Messages never quote the password of the connection string.
"""

from __future__ import annotations

import hashlib
import os
import re
import sqlite3
import time
import uuid as _uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from federation import resolvers
from federation.errors import (
    CommitFenced,
    ConfigurationError,
    FederationError,
    KeyNotFound,
    MemberBusy,
    MemberUnavailable,
    describe,
    shorten,
)
from federation.options import Options

IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

#: SQLite's table of issued keys (see the module docstring).
SQLITE_KEYS = "zfed_keys"
#: The table of member ids and names (see the module docstring).
SQL_MEMBERS = "zfed_members"

#: Passwords in a connection string: libpq ``password=...`` or a URI's ``user:password@``.
_PASSWORDS = re.compile(r"""(?ix) password \s*=\s* (?: '((?:[^'\\]|\\.)*)' | ([^\s'&]+) )
                            | ^[a-z][a-z0-9+.-]*://[^/@:\s]*:([^/@\s]+)@""")
#: PostgreSQL SQLSTATEs of a transaction to try again: serialization failure,
#: deadlock, lock not available (lock_timeout, NOWAIT).
_PG_BUSY = frozenset({"40001", "40P01", "55P03"})
#: SQLite result codes of a locked database: SQLITE_BUSY, SQLITE_LOCKED.
_SQLITE_BUSY = frozenset({5, 6})


@dataclass(frozen=True)
class Table:
    """How a table maps to a class.

    ``columns`` maps attribute names to column names; ``refs`` maps
    attributes that hold objects of other members to text columns keeping
    their :class:`federation.Ref`.  ``key`` is the key column, of the
    ``kind`` ``integer`` (issued by the database), ``uuid`` (issued here,
    kept as text) or ``uid`` (taken from the attribute ``key_attribute``).
    """

    name: str
    klass: type
    key: str
    columns: Mapping[str, str]
    refs: Mapping[str, str] = field(default_factory=dict)
    kind: str = "integer"
    key_attribute: str | None = None

    def __post_init__(self) -> None:
        for name in (self.name, self.key, *self.columns.values(), *self.refs.values()):
            if not IDENTIFIER.fullmatch(name):
                raise ConfigurationError(f"{name!r} is not a plain SQL identifier.")
        if self.kind not in ("integer", "uuid", "uid"):
            raise ConfigurationError(f"Table {self.name!r}: key kind {self.kind!r} is not "
                                     "integer, uuid or uid.")
        if self.kind == "uid" and self.key_attribute is None:
            raise ConfigurationError(f"Table {self.name!r}: uid keys need a key_attribute.")

    @property
    def attribute_columns(self) -> dict[str, str]:
        return {**self.columns, **self.refs}


class SqlDatabase:
    """A factory of :class:`SqlAdapter` sessions on one table."""

    def __init__(self, member: str, table: Table, connect: Callable[[], Any], dialect: str,
                 *, batch_size: int = 100, secrets: tuple[str, ...] = ()) -> None:
        for bad, problem in [
            (not isinstance(table, Table), f"{shorten(table)} is not a sql.Table"),
            (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1,
             f"batch_size {shorten(batch_size)} is not a positive int"),
        ]:
            if bad:
                raise ConfigurationError(f"Member {shorten(member)}: {problem}.")
        self.member = member
        self.table = table
        self.connect = connect
        self.dialect = dialect
        self.batch_size = batch_size
        self.secrets = tuple(secret for secret in secrets if secret)
        self.last_key = 0  # the highest key this process issued (SQLite)
        self.key_source_ready = False  # the sequence or key table exists

    def __repr__(self) -> str:
        return f"<SqlDatabase {self.member!r} ({self.dialect}, table {self.table.name!r})>"

    def __call__(self) -> SqlAdapter:
        return SqlAdapter(self)


def sqlite(member: str, path: str, table: Table, *, batch_size: int = 100,
           timeout: float = 30.0) -> SqlDatabase:
    """A SQLite member: ``path`` is the database file.

    A statement waits up to ``timeout`` seconds for another connection's lock
    on the file, then raises :class:`federation.MemberBusy`.
    """
    if not isinstance(path, (str, os.PathLike)) or isinstance(timeout, bool) or not isinstance(
            timeout, (int, float)) or timeout < 0:
        raise ConfigurationError(
            f"Member {shorten(member)}: a SQLite member needs a file path and a timeout of zero "
            f"or more seconds, not {shorten(path)} and {shorten(timeout)}."
        )

    def connect() -> sqlite3.Connection:
        if not os.path.exists(path):  # sqlite3 would create an empty database: a typo
            raise ConfigurationError(
                f"Member {shorten(member)}: the SQLite file {shorten(os.fspath(path))} does not "
                "exist; a SQLite member's database and table must exist before it joins."
            )
        # No PRAGMA here: a read-only member's file must stay untouched byte for byte.
        return sqlite3.connect(path, isolation_level=None, check_same_thread=False,
                               timeout=timeout)
    return SqlDatabase(member, table, connect, "sqlite", batch_size=batch_size)


def postgresql(member: str, conninfo: str, table: Table, *, batch_size: int = 100) -> SqlDatabase:
    """A PostgreSQL member: ``conninfo`` is a libpq connection string."""
    import psycopg

    if not isinstance(conninfo, str):
        raise ConfigurationError(
            f"Member {shorten(member)}: a PostgreSQL member needs a libpq connection string."
        )

    def connect() -> Any:
        return psycopg.connect(conninfo, autocommit=True)
    return SqlDatabase(member, table, connect, "postgresql", batch_size=batch_size,
                       secrets=_passwords(conninfo))


def _passwords(conninfo: Any) -> tuple[str, ...]:
    """The passwords a connection string holds, to keep them out of messages."""
    if not isinstance(conninfo, str):
        return ()
    found = [group for match in _PASSWORDS.finditer(conninfo) for group in match.groups()
             if group]
    return tuple({*found, *(re.sub(r"\\(.)", r"\1", text) for text in found),
                  *(unquote(text) for text in found)})


class SqlAdapter:
    """One session (one SQL connection) on a table. See ``federation.interfaces.Adapter``."""

    can_rename = False
    can_range = True

    def __init__(self, database: SqlDatabase) -> None:
        self.db = database
        table = database.table
        self.kind = table.kind
        self.klass = table.klass
        self.ref_attributes = frozenset(table.refs)
        self.batch_size = database.batch_size
        self.two_phase = database.dialect == "postgresql"
        self._mark = "%s" if self.two_phase else "?"
        self._conn = self._connect()
        self._writer: Any = None
        self._xid: str | None = None
        self._keys: Any = None  # SQLite: the connection that issues keys

    # -- plumbing ---------------------------------------------------------

    def _connect(self) -> Any:
        """A new connection; a connection string the driver refuses is a ConfigurationError."""
        try:
            return self._call(self.db.connect)
        except (MemberUnavailable, MemberBusy, ConfigurationError):
            raise
        except FederationError as error:
            raise ConfigurationError(
                f"Member {self.db.member!r} cannot connect to its {self.db.dialect} database: "
                f"{describe(error.__cause__ or error)}."
            ) from error.__cause__

    def _call(self, function: Callable[..., Any], *args: Any, key: Any = None) -> Any:
        """Run a driver call, turning driver errors into federation errors."""
        try:
            return function(*args)
        except FederationError:
            raise
        except Exception as error:
            cause = _Scrubbed(error, self.db.secrets)
            chained = cause if cause.scrubbed else error
            if _is_busy_error(error):
                raise MemberBusy(self.db.member, cause) from chained
            if _is_connection_error(error):
                raise MemberUnavailable(self.db.member, key, cause) from chained
            if _is_data_error(error):
                what = f"the record with key {key!s}" if key is not None else "a statement"
                raise FederationError(
                    f"Member {self.db.member!r} (table {self.db.table.name!r}) rejects {what}: "
                    f"{describe(cause)}."
                ) from chained
            if cause.scrubbed:
                raise FederationError(
                    f"Member {self.db.member!r}: {type(error).__name__}: {describe(cause)}."
                ) from cause
            raise

    def _execute(self, sql: str, params: tuple[Any, ...] = (), *, key: Any = None,
                 connection: Any = None) -> Any:
        conn = connection if connection is not None else self._conn
        return self._call(conn.execute, sql.replace("?", self._mark), params, key=key)

    def _q(self, name: str) -> str:
        return f'"{name}"'

    def _to_db(self, key: Any) -> Any:
        return str(key) if self.kind == "uuid" else key

    def _from_db(self, value: Any) -> Any:
        return resolvers.get(self.kind).coerce(value if not isinstance(value, _uuid.UUID)
                                               else str(value))

    def _columns(self, state: Mapping[str, Any], key: Any) -> dict[str, Any]:
        columns = self.db.table.attribute_columns
        unknown = sorted(set(state) - set(columns))
        if unknown:
            raise FederationError(
                f"Member {self.db.member!r} (table {self.db.table.name!r}) has no column for "
                f"attribute(s) {', '.join(unknown)} of the record with key {key!s}."
            )
        return {columns[name]: value for name, value in state.items()}

    # -- reading ----------------------------------------------------------

    def _select(self) -> str:
        table = self.db.table
        names = ", ".join(self._q(c) for c in (table.key, *table.attribute_columns.values()))
        return f"SELECT {names} FROM {self._q(table.name)}"

    def _state(self, row: tuple[Any, ...]) -> tuple[Any, dict[str, Any]]:
        attributes = list(self.db.table.attribute_columns)
        return self._from_db(row[0]), dict(zip(attributes, row[1:], strict=True))

    def load(self, key: Any) -> dict[str, Any]:
        found = self.load_many([key])
        if key not in found:
            raise KeyNotFound(self.db.member, self.kind, key)
        return found[key]

    def load_many(self, keys: list[Any]) -> dict[Any, dict[str, Any]]:
        marks = ", ".join("?" for _ in keys)
        sql = f"{self._select()} WHERE {self._q(self.db.table.key)} IN ({marks})"
        rows = self._execute(sql, tuple(self._to_db(k) for k in keys)).fetchall()
        return dict(self._state(row) for row in rows)

    def find(self, attribute: str, value: Any) -> list[Any]:
        column = self._columns({attribute: value}, None)
        [(name, data)] = column.items()
        table = self.db.table
        sql = (f"SELECT {self._q(table.key)} FROM {self._q(table.name)} "
               f"WHERE {self._q(name)} = ? ORDER BY {self._q(table.key)}")
        return [self._from_db(row[0]) for row in self._execute(sql, (data,)).fetchall()]

    def references(self) -> Iterator[tuple[Any, str]]:
        """See ``federation.interfaces.ReferenceHolder``: one query over the ref columns."""
        table = self.db.table
        columns = list(table.refs.values())
        if not columns:
            return
        names = ", ".join(self._q(c) for c in (table.key, *columns))
        held = " OR ".join(f"{self._q(c)} IS NOT NULL" for c in columns)
        sql = f"SELECT {names} FROM {self._q(table.name)} WHERE {held}"
        for row in self._execute(sql).fetchall():
            key = self._from_db(row[0])
            for text in row[1:]:
                if text:
                    yield key, text

    def new_key(self, state: dict[str, Any]) -> Any:
        table = self.db.table
        if self.kind == "uuid":
            return _uuid.uuid4()
        if self.kind == "uid":
            return state.get(table.key_attribute)
        if self.two_phase:
            return self._next_in_sequence()
        return self._next_in_key_table()

    def _highest_key(self, connection: Any) -> int:
        table = self.db.table
        sql = f"SELECT max({self._q(table.key)}) FROM {self._q(table.name)}"
        return self._execute(sql, connection=connection).fetchone()[0] or 0

    def _next_in_sequence(self) -> int:
        """PostgreSQL: ``nextval`` of our sequence, made the first time above every key."""
        name = self._q(_sequence_name(self.db.table.name))
        if not self.db.key_source_ready:
            start = self._highest_key(self._conn) + 1
            try:
                self._execute(f"CREATE SEQUENCE IF NOT EXISTS {name} START WITH {int(start)}")
            except FederationError as error:
                # Two sessions created it at once (the loser fails on pg_type): it exists.
                try:
                    self._execute(f"SELECT 1 FROM {name}")
                except FederationError:
                    raise error from error.__cause__
            self.db.key_source_ready = True
        table = self.db.table
        # A key some other program already used is skipped (taken from the sequence).
        sql = (f"SELECT n.k FROM (SELECT nextval(?::regclass) AS k) AS n WHERE NOT EXISTS "
               f"(SELECT 1 FROM {self._q(table.name)} WHERE {self._q(table.key)} = n.k)")
        while True:
            row = self._execute(sql, (name,)).fetchone()
            if row is not None:
                return row[0]

    def _next_in_key_table(self) -> int:
        """SQLite: the next key of our key table (see the module docstring)."""
        if self._conn.in_transaction:  # our own write transaction holds the file
            return self._issue_key(self._conn)
        if self._keys is None:
            self._keys = self._connect()
        self._execute("BEGIN IMMEDIATE", connection=self._keys)
        try:
            key = self._issue_key(self._keys)
            self._execute("COMMIT", connection=self._keys)
        except BaseException:
            if self._keys.in_transaction:
                self._keys.execute("ROLLBACK")
            raise
        return key

    def _issue_key(self, connection: Any) -> int:
        name = self.db.table.name
        if not self.db.key_source_ready:
            self._execute(f"CREATE TABLE IF NOT EXISTS {SQLITE_KEYS} "
                          "(name TEXT PRIMARY KEY, next INTEGER NOT NULL)", connection=connection)
            # Created for good only in a transaction of its own (the writer's may abort).
            self.db.key_source_ready = connection is self._keys
        row = self._execute(f"SELECT next FROM {SQLITE_KEYS} WHERE name = ?", (name,),
                            connection=connection).fetchone()
        key = max(row[0] if row else 0, self._highest_key(connection), self.db.last_key) + 1
        self._execute(f"INSERT OR REPLACE INTO {SQLITE_KEYS} (name, next) VALUES (?, ?)",
                      (name, key), connection=connection)
        self.db.last_key = key
        return key

    # -- writing ----------------------------------------------------------

    def begin(self, xid: str) -> None:
        self._xid = xid
        if self.two_phase:
            self._writer = self._call(self.db.connect)
            self._writer.autocommit = False
            self._call(self._writer.tpc_begin, xid)
        else:
            self._writer = self._conn
            self._execute("BEGIN IMMEDIATE")

    def create(self, key: Any, state: dict[str, Any]) -> None:
        columns = {self.db.table.key: self._to_db(key), **self._columns(state, key)}
        names = ", ".join(self._q(c) for c in columns)
        marks = ", ".join("?" for _ in columns)
        sql = f"INSERT INTO {self._q(self.db.table.name)} ({names}) VALUES ({marks})"
        self._execute(sql, tuple(columns.values()), key=key, connection=self._writer)

    def store(self, key: Any, state: dict[str, Any]) -> None:
        columns = self._columns(state, key)
        assignments = ", ".join(f"{self._q(c)} = ?" for c in columns)
        sql = (f"UPDATE {self._q(self.db.table.name)} SET {assignments} "
               f"WHERE {self._q(self.db.table.key)} = ?")
        cursor = self._execute(sql, (*columns.values(), self._to_db(key)), key=key,
                               connection=self._writer)
        if cursor.rowcount == 0:
            raise KeyNotFound(self.db.member, self.kind, key)

    def delete(self, key: Any) -> None:
        sql = f"DELETE FROM {self._q(self.db.table.name)} WHERE {self._q(self.db.table.key)} = ?"
        cursor = self._execute(sql, (self._to_db(key),), key=key, connection=self._writer)
        if cursor.rowcount == 0:
            raise KeyNotFound(self.db.member, self.kind, key)

    def prepare(self) -> None:
        self._call(self._writer.tpc_prepare)

    def commit(self) -> None:
        if self.two_phase:
            self._call(self._writer.tpc_commit)
            self._close_writer()
        else:
            self._execute("COMMIT")

    def abort(self) -> None:
        if not self.two_phase:
            if self._conn.in_transaction:
                self._execute("ROLLBACK")
            return
        try:
            if self._writer is not None and not self._writer.closed:
                self._call(self._writer.tpc_rollback)
        except MemberUnavailable:
            pass  # a prepared transaction stays on the server: recover() rolls it back
        finally:
            self._close_writer()

    def release(self) -> None:
        if self.two_phase:
            self._close_writer()  # a prepared transaction stays on the server for recovery
        else:
            self.abort()

    def _close_writer(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._writer = None

    def recover(self, older_than: float = 0.0) -> list[str]:
        if not self.two_phase:
            return []
        writer = self._call(self.db.connect)
        try:
            writer.autocommit = False
            now = time.time()
            return sorted(
                xid.gtrid for xid in self._call(writer.tpc_recover)
                if xid.gtrid.startswith("zfed-")
                and (xid.prepared is None or now - xid.prepared.timestamp() >= older_than)
            )
        finally:
            writer.close()

    def finish_prepared(self, xid: str, commit: bool) -> None:
        writer = self._call(self.db.connect)
        try:
            writer.autocommit = False
            self._call(writer.tpc_commit if commit else writer.tpc_rollback, xid)
        finally:
            writer.close()

    # -- the member's id and names (see federation.interfaces.MemberRecord) --------

    def _has_table(self, name: str) -> bool:
        exists = ("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
                  if not self.two_phase else "SELECT to_regclass(?) IS NOT NULL")
        found = self._execute(exists, (name,)).fetchone()
        return bool(found and found[0])

    def member_record(self) -> tuple[str | None, list[str]]:
        if not self._has_table(SQL_MEMBERS):
            return None, []  # nothing recorded yet (and opening must not create the table)
        rows = self._execute(f"SELECT name, member_id FROM {SQL_MEMBERS} WHERE tbl = ?",
                             (self.db.table.name,)).fetchall()
        ids = [member_id for name, member_id in rows if name == ""]
        return (ids[0] if ids else None), sorted(name for name, _ in rows if name)

    def record_member(self, name: str, member_id: str) -> tuple[str, bool]:
        own = not self.two_phase and self._conn.in_transaction  # our writer holds the file
        if own:
            return self._record_member(self._conn, name, member_id), False
        if self.two_phase:
            connection = self._call(self.db.connect)
            try:
                with connection.transaction():
                    return self._record_member(connection, name, member_id), True
            finally:
                connection.close()
        if self._keys is None:
            self._keys = self._connect()
        self._execute("BEGIN IMMEDIATE", connection=self._keys)
        try:
            stored = self._record_member(self._keys, name, member_id)
            self._execute("COMMIT", connection=self._keys)
        except BaseException:
            if self._keys.in_transaction:
                self._keys.execute("ROLLBACK")
            raise
        return stored, True

    def _record_member(self, connection: Any, name: str, member_id: str) -> str:
        table = self.db.table.name
        self._execute(f"CREATE TABLE IF NOT EXISTS {SQL_MEMBERS} (tbl TEXT NOT NULL, "
                      "name TEXT NOT NULL, member_id TEXT NOT NULL, PRIMARY KEY (tbl, name))",
                      connection=connection)
        insert = (f"INSERT INTO {SQL_MEMBERS} (tbl, name, member_id) VALUES (?, ?, ?) "
                  "ON CONFLICT (tbl, name) DO NOTHING")
        self._execute(insert, (table, "", member_id), connection=connection)
        stored = self._execute(f"SELECT member_id FROM {SQL_MEMBERS} WHERE tbl = ? AND name = ''",
                               (table,), connection=connection).fetchone()[0]
        self._execute(insert, (table, name, stored), connection=connection)
        return stored

    # -- outcomes of a last resource (see federation.interfaces.OutcomeRecording) --

    _OUTCOMES = ("CREATE TABLE IF NOT EXISTS zfed_commits "
                 "(gid TEXT PRIMARY KEY, outcome TEXT NOT NULL)")

    def record_outcome(self, gid: str) -> None:
        self._execute(self._OUTCOMES, connection=self._writer)
        try:
            self._writer.execute(
                "INSERT INTO zfed_commits (gid, outcome) VALUES (?, 'committed')"
                .replace("?", self._mark), (gid,))
        except Exception as error:
            if _is_data_error(error):
                raise CommitFenced(
                    f"Member {self.db.member!r}: transaction {gid} was settled by recovery "
                    "in another process before it could commit; nothing was written."
                ) from error
            raise

    def outcome(self, gid: str) -> bool | None:
        exists = ("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'zfed_commits'"
                  if not self.two_phase else "SELECT to_regclass('zfed_commits') IS NOT NULL")
        found = self._execute(exists).fetchone()
        if not found or not found[0]:
            return None  # nothing recorded yet (and a dry run must not create the table)
        row = self._execute("SELECT outcome FROM zfed_commits WHERE gid = ?", (gid,)).fetchone()
        return None if row is None else row[0] == "committed"

    def fence(self, gid: str) -> bool:
        self._execute(self._OUTCOMES)
        self._execute("INSERT INTO zfed_commits (gid, outcome) VALUES (?, 'aborted') "
                      "ON CONFLICT (gid) DO NOTHING", (gid,))
        return bool(self.outcome(gid))

    def close(self) -> None:
        self._close_writer()
        if self._keys is not None:
            self._keys.close()
            self._keys = None
        self._conn.close()


def _psycopg_errors() -> tuple[tuple[type, ...], tuple[type, ...]]:
    """psycopg's (connection errors, data errors), or empty tuples without psycopg."""
    try:
        import psycopg
    except ImportError:  # SQLite only: psycopg is an optional dependency
        return (), ()
    return ((psycopg.OperationalError, psycopg.InterfaceError),
            (psycopg.IntegrityError, psycopg.DataError, psycopg.ProgrammingError))


def _sequence_name(table: str) -> str:
    """Our key sequence of ``table``; PostgreSQL names have at most 63 bytes."""
    name = f"zfed_key_{table}"
    if len(name) <= 63:
        return name
    return f"zfed_key_{table[:30]}_{hashlib.sha1(table.encode()).hexdigest()[:16]}"


class _Scrubbed(Exception):
    """A driver error's text without the passwords of the connection string."""

    def __init__(self, error: Exception, secrets: tuple[str, ...]) -> None:
        text = str(error)
        for secret in secrets:
            text = text.replace(secret, "***")
        self.scrubbed = text != str(error)
        super().__init__(text)


def _is_busy_error(error: Exception) -> bool:
    if isinstance(error, sqlite3.OperationalError):
        code = getattr(error, "sqlite_errorcode", None)
        if code is not None:
            return code & 0xFF in _SQLITE_BUSY
        return "locked" in str(error)
    return getattr(error, "sqlstate", None) in _PG_BUSY


def _is_connection_error(error: Exception) -> bool:
    return isinstance(error, (ConnectionError, *_psycopg_errors()[0]))


def _is_data_error(error: Exception) -> bool:
    return isinstance(error, (sqlite3.Error, *_psycopg_errors()[1]))


# -- members described by a configuration file (see federation.interfaces.AdapterFactory) --


def table_from_options(options: Options) -> Table:
    """The :class:`Table` the options ``table``, ``class``, ``key``, ``columns``,
    ``refs``, ``kind`` and ``key_attribute`` describe."""
    table = options.text("table")
    klass = options.klass("class")
    settings = {"key": options.text("key", "id"), "columns": options.text_table("columns"),
                "refs": options.text_table("refs"), "kind": options.text("kind", "integer"),
                "key_attribute": options.text("key_attribute", None)}
    try:
        return Table(table, klass, **settings)
    except ConfigurationError as error:
        raise ConfigurationError(f"Member {shorten(options.member)}: {error}") from error


def sqlite_from_options(member: str, options: dict[str, Any]) -> SqlDatabase:
    """A SQLite member from configuration options: ``path`` (the database file,
    relative to the configuration file), ``timeout``, ``batch_size`` and the
    table's (:func:`table_from_options`)."""
    settings = Options(member, options)
    path = settings.path("path")
    timeout = settings.number("timeout", float, 30.0, 0)
    batch_size = settings.number("batch_size", int, 100, 1)
    table = table_from_options(settings)
    settings.done()
    return sqlite(member, path, table, batch_size=batch_size, timeout=timeout)


sqlite_from_options.path_options = ("path",)  # type: ignore[attr-defined]


def postgresql_from_options(member: str, options: dict[str, Any]) -> SqlDatabase:
    """A PostgreSQL member from configuration options: ``conninfo`` (a libpq
    connection string or URI), ``password_env`` (the environment variable
    holding the password), ``batch_size`` and the table's
    (:func:`table_from_options`)."""
    settings = Options(member, options)
    conninfo = settings.text("conninfo")
    password = settings.password()
    batch_size = settings.number("batch_size", int, 100, 1)
    table = table_from_options(settings)
    settings.done()
    if password is not None:
        from psycopg.conninfo import make_conninfo

        try:
            conninfo = make_conninfo(conninfo, password=password)
        except Exception as error:  # psycopg.ProgrammingError: not a connection string
            raise ConfigurationError(
                f"Member {shorten(member)}: the option 'conninfo' is not a libpq connection "
                f"string: {describe(_Scrubbed(error, (password,)))}."
            ) from None
    return postgresql(member, conninfo, table, batch_size=batch_size)
