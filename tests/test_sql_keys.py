"""SQL members: integer keys issued by the database, busy databases retried.

Keys must never be issued twice: not after a delete (an old reference would
silently name the new row), not by two sessions or two processes, not after
an abort.  A locked or conflicting database is a ``MemberBusy``, which
``transaction.attempts()`` retries.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import transaction
from transaction.interfaces import TransientError

import federation
from federation.adapters import sql
from tests.models import Person

SCHEMA = "CREATE TABLE {name} (id BIGINT PRIMARY KEY, name TEXT, email TEXT, owner_ref TEXT)"


def table(name: str = "person") -> sql.Table:
    return sql.Table(name, Person, key="id", columns={"name": "name", "email": "email"},
                     refs={"owner": "owner_ref"})


@pytest.fixture
def sqlite_file(tmp_path: Path) -> Path:
    path = tmp_path / "people.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute(SCHEMA.format(name="person"))
    conn.close()
    return path


@pytest.fixture
def pg_table(postgresql_server) -> Iterator[str]:
    name = f"person_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgresql_server.dsn, autocommit=True) as conn:
        conn.execute(SCHEMA.format(name=name))
    yield name
    with psycopg.connect(postgresql_server.dsn, autocommit=True) as conn:
        conn.execute(f"DROP TABLE {name}")
        conn.execute(f"DROP SEQUENCE IF EXISTS zfed_key_{name}")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.server)])
def database(request, tmp_path) -> Callable[[], sql.SqlDatabase]:
    """A function making a new SqlDatabase on one table: a new one is like another process."""
    if request.param == "sqlite":
        path = request.getfixturevalue("sqlite_file")
        return lambda: sql.sqlite("people", str(path), table())
    server = request.getfixturevalue("postgresql_server")
    name = request.getfixturevalue("pg_table")
    return lambda: sql.postgresql("people", server.dsn, table(name))


def _create(adapter: Any, name: str) -> int:
    key = adapter.new_key({"name": name})
    adapter.begin(f"zfed-test-{uuid.uuid4().hex}")
    adapter.create(key, {"name": name})
    if adapter.two_phase:
        adapter.prepare()
    adapter.commit()
    return key


def _delete(adapter: Any, key: int) -> None:
    adapter.begin(f"zfed-test-{uuid.uuid4().hex}")
    adapter.delete(key)
    if adapter.two_phase:
        adapter.prepare()
    adapter.commit()


def test_a_deleted_key_is_not_issued_again(database):
    """Deleting the highest row and creating another gives a new key, in any process."""
    adapter = database()()
    keys = [_create(adapter, name) for name in "abc"]
    _delete(adapter, keys[-1])
    assert _create(adapter, "d") not in keys
    adapter.close()
    later = database()()  # a new process: nothing remembered in memory
    _delete(later, keys[0] + 3)
    assert _create(later, "e") > keys[-1] + 1
    later.close()


def test_two_sessions_never_share_a_key(database):
    """Sessions of two databases objects (two processes' worth of state) get distinct keys."""
    one, two = database()(), database()()
    keys = []
    for _ in range(10):
        keys += [one.new_key({}), two.new_key({})]
    assert len(set(keys)) == len(keys)
    one.close()
    two.close()


def test_a_key_of_an_aborted_transaction_is_not_issued_again(database):
    """A key issued to a transaction that then aborts is never issued to another one."""
    adapter = database()()
    key = adapter.new_key({})
    adapter.begin(f"zfed-test-{uuid.uuid4().hex}")
    adapter.create(key, {"name": "gone"})
    adapter.abort()
    adapter.close()
    other = database()()
    assert other.new_key({}) > key
    other.close()


def test_keys_skip_rows_written_by_others(database):
    """Keys that another program used for rows of its own are never issued."""
    first = database()()
    key = _create(first, "a")
    first.begin(f"zfed-test-{uuid.uuid4().hex}")
    for taken in range(key + 1, key + 4):
        first.create(taken, {"name": "written by another program"})
    if first.two_phase:
        first.prepare()
    first.commit()
    first.close()
    adapter = database()()
    assert adapter.new_key({}) > key + 3
    adapter.close()


def test_a_key_while_the_session_writes(sqlite_file):
    """A key asked for during the session's own write transaction does not wait for itself."""
    db = sql.sqlite("people", str(sqlite_file), table(), timeout=0)
    adapter = db()
    adapter.begin("zfed-test")
    key = adapter.new_key({})
    adapter.create(key, {"name": "placed during the commit"})
    adapter.abort()
    assert adapter.new_key({}) > key  # this process never issues it again
    adapter.close()


def test_a_read_only_sqlite_member_is_not_written(sqlite_file):
    """Opening and reading a SQLite member adds no key table to its file."""
    before = sqlite_file.read_bytes()
    people = sql.sqlite("people", str(sqlite_file), table())
    with federation.open({"people": {"adapter": people, "read_only": True}}) as fed, \
            fed.open(transaction.TransactionManager()) as conn:
        assert conn.jar("people").find("name", "nobody") == []
    assert sqlite_file.read_bytes() == before


_ISSUER = textwrap.dedent("""
    import sys
    from federation.adapters import sql
    from tests.models import Person
    table = sql.Table(sys.argv[2], Person, key="id", columns={"name": "name"})
    if sys.argv[1] == "sqlite":
        db = sql.sqlite("people", sys.argv[3], table)
    else:
        db = sql.postgresql("people", sys.argv[3], table)
    adapter = db()
    sys.stdout.write(" ".join(str(adapter.new_key({})) for _ in range(100)))
    adapter.close()
""")


def _issue_in_two_processes(dialect: str, name: str, where: str) -> None:
    root = Path(__file__).resolve().parent.parent
    workers = [subprocess.Popen([sys.executable, "-c", _ISSUER, dialect, name, where],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=root)
               for _ in range(2)]
    keys = []
    for worker in workers:
        out, err = worker.communicate(timeout=120)
        assert worker.returncode == 0, err.decode()
        keys += [int(key) for key in out.split()]
    assert len(keys) == 200 and len(set(keys)) == 200


def test_two_sqlite_processes_never_share_a_key(sqlite_file):
    """Two processes issuing keys from one SQLite file at once get disjoint keys."""
    _issue_in_two_processes("sqlite", "person", str(sqlite_file))


@pytest.mark.server
def test_two_postgresql_processes_never_share_a_key(postgresql_server, pg_table):
    """Two processes issuing keys from one PostgreSQL table at once get disjoint keys."""
    _issue_in_two_processes("postgresql", pg_table, postgresql_server.dsn)


# -- busy databases -----------------------------------------------------------


def test_a_locked_sqlite_database_is_retried(sqlite_file):
    """'database is locked' is a MemberBusy, and transaction.attempts() tries again."""
    people = sql.sqlite("people", str(sqlite_file), table(), timeout=0)
    locker = sqlite3.connect(sqlite_file, isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")  # another program writes
    tm = transaction.TransactionManager()
    tries = []
    try:
        with federation.open({"people": people}) as fed, fed.open(tm) as conn:
            for attempt in tm.attempts(3):
                with attempt:
                    tries.append(1)
                    if len(tries) == 2:
                        locker.execute("ROLLBACK")  # the other program is done
                    conn.add(Person("ada"), "people")
    finally:
        locker.close()
    assert len(tries) == 2


def test_locked_sqlite_error_is_typed(sqlite_file):
    """The error names the member and is a TransientError."""
    adapter = sql.sqlite("people", str(sqlite_file), table(), timeout=0)()
    locker = sqlite3.connect(sqlite_file, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(federation.MemberBusy) as caught:
            adapter.load(1)
    finally:
        locker.close()
        adapter.close()
    assert isinstance(caught.value, TransientError)
    assert "Member 'people' is busy" in str(caught.value)


@pytest.mark.server
def test_postgresql_lock_timeout_is_retryable(postgresql_server, pg_table):
    """A lock_timeout while another session holds the table is a MemberBusy."""
    dsn = f"{postgresql_server.dsn} options='-c lock_timeout=50'"
    adapter = sql.postgresql("people", dsn, table(pg_table))()
    holder = psycopg.connect(postgresql_server.dsn)
    holder.execute(f"LOCK TABLE {pg_table} IN ACCESS EXCLUSIVE MODE")
    try:
        with pytest.raises(federation.MemberBusy, match="Member 'people' is busy"):
            adapter.load(1)
    finally:
        holder.rollback()
        holder.close()
        adapter.close()


@pytest.mark.server
@pytest.mark.parametrize("error", ["SerializationFailure", "DeadlockDetected",
                                   "LockNotAvailable"])
def test_postgresql_conflicts_are_retryable(postgresql_server, pg_table, error):
    """Serialization failures, deadlocks and lock timeouts are TransientErrors."""
    adapter = sql.postgresql("people", postgresql_server.dsn, table(pg_table))()

    def fail() -> None:
        raise getattr(psycopg.errors, error)("conflict")

    try:
        with pytest.raises(federation.MemberBusy) as caught:
            adapter._call(fail)
    finally:
        adapter.close()
    assert isinstance(caught.value, TransientError)


# -- settings -----------------------------------------------------------------


@pytest.mark.parametrize(("make", "message"), [
    (lambda: sql.sqlite("people", 3, table()), "needs a file path"),
    (lambda: sql.sqlite("people", "p.sqlite", table(), timeout="soon"), "timeout"),
    (lambda: sql.sqlite("people", "p.sqlite", table(), batch_size="10"), "batch_size '10'"),
    (lambda: sql.sqlite("people", "p.sqlite", "person"), "is not a sql.Table"),
    (lambda: sql.postgresql("people", None, table()), "libpq connection string"),
])
def test_bad_settings_are_configuration_errors(make, message):
    """Settings of the wrong type are refused when the member is described, naming it."""
    with pytest.raises(federation.ConfigurationError, match=message):
        make()


@pytest.mark.server
def test_no_right_to_create_the_sequence_is_a_clear_error(postgresql_server, pg_table):
    """A role that may not create our sequence gets an error naming member and cause."""
    role = f"app_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgresql_server.dsn, autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {role} LOGIN")
        admin.execute(f"REVOKE CREATE ON SCHEMA public FROM PUBLIC, {role}")
        admin.execute(f"GRANT SELECT, INSERT ON {pg_table} TO {role}")
    dsn = (f"host={postgresql_server.host} port={postgresql_server.port} user={role} "
           f"dbname={postgresql_server.dbname}")
    adapter = sql.postgresql("people", dsn, table(pg_table))()
    try:
        with pytest.raises(federation.FederationError,
                           match=r"Member 'people'.*permission denied for schema public"):
            adapter.new_key({})
    finally:
        adapter.close()
        with psycopg.connect(postgresql_server.dsn, autocommit=True) as admin:
            admin.execute(f"REVOKE ALL ON {pg_table} FROM {role}")
            admin.execute(f"DROP ROLE {role}")
