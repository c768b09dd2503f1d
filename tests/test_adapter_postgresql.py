"""The SQL adapter on a real PostgreSQL server: conformance, two-phase commit, crashes."""

from __future__ import annotations

import uuid

import psycopg
import pytest
import transaction

import federation
from federation.adapters import sql
from tests.conformance import AdapterConformance, ForeignFixture
from tests.helpers import change_page_and_row
from tests.models import Item, Person

pytestmark = pytest.mark.server


@pytest.fixture
def person_table(postgresql_server):
    """A fresh person table (its own name) in the test server's database."""
    name = f"person_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgresql_server.dsn, autocommit=True) as conn:
        conn.execute(
            f"CREATE TABLE {name} (id BIGINT PRIMARY KEY, "
            "name TEXT NOT NULL CHECK (length(name) > 0), email TEXT, owner_ref TEXT)"
        )
    table = sql.Table(name, Person, key="id", columns={"name": "name", "email": "email"},
                      refs={"owner": "owner_ref"})
    yield table
    with psycopg.connect(postgresql_server.dsn, autocommit=True) as conn:
        conn.execute(f"DROP TABLE {name}")


def _seeder(dsn: str, table: sql.Table):
    def seed(key: int, record: dict) -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(
                f"INSERT INTO {table.name} (id, name, email, owner_ref) VALUES (%s, %s, %s, %s) "
                "ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, email = EXCLUDED.email, "
                "owner_ref = EXCLUDED.owner_ref",
                (key, record["name"], record.get("email"), record.get("owner")),
            )
    return seed


class TestPostgresql(AdapterConformance):
    """PostgreSQL: a two-phase member."""

    @pytest.fixture
    def foreign(self, postgresql_server, person_table):
        member = sql.postgresql("people", postgresql_server.dsn, person_table, batch_size=10)
        return ForeignFixture(spec=member, seed=_seeder(postgresql_server.dsn, person_table),
                              two_phase=True, batch_size=10, bad_record={"name": ""})


def _prepared(dsn: str) -> list[str]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return [row[0] for row in conn.execute("SELECT gid FROM pg_prepared_xacts").fetchall()]


def test_connection_lost_between_vote_and_finish(postgresql_server, person_table, tmp_path,
                                                 monkeypatch):
    """A connection killed after the decision: the commit stands, recovery commits the branch."""
    dsn = postgresql_server.dsn
    _seeder(dsn, person_table)(1, {"name": "Ada", "email": "ada@example.org"})
    members = {"main": (tmp_path / "main.fs").as_uri(),
               "people": sql.postgresql("people", dsn, person_table)}
    original = sql.SqlAdapter.commit

    def dying_commit(adapter):
        with psycopg.connect(dsn, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (adapter._writer.info.backend_pid,))
        return original(adapter)

    with federation.open(members) as fed, fed.open() as conn:
        conn.root("main")["page"] = Item("page")
        transaction.commit()

        conn.get("people:integer:1").name = "Ada Lovelace"
        conn.root("main")["page"].title = "changed"
        monkeypatch.setattr(sql.SqlAdapter, "commit", dying_commit)
        transaction.commit()  # decided when main finished: never rolled back
        monkeypatch.setattr(sql.SqlAdapter, "commit", original)

        transaction.begin()
        assert conn.root("main")["page"].title == "changed"
        assert conn.get("people:integer:1").name == "Ada Lovelace"  # committed by recovery
        assert [gid for gid in _prepared(dsn) if gid.startswith("zfed-")] == []
        transaction.abort()


def test_prepared_branch_without_decision_is_rolled_back(postgresql_server, person_table,
                                                         tmp_path, monkeypatch):
    """A branch prepared before a crash that came before the decision is rolled back on open."""
    dsn = postgresql_server.dsn
    _seeder(dsn, person_table)(1, {"name": "Ada", "email": "ada@example.org"})
    members = {"main": (tmp_path / "main.fs").as_uri(),
               "people": sql.postgresql("people", dsn, person_table)}
    with federation.open(members) as fed, fed.open() as conn:
        change_page_and_row(conn, monkeypatch)
        monkeypatch.setattr(type(conn.jar("main")), "tpc_finish", _fail)
        with pytest.raises(RuntimeError, match="crash"):
            transaction.commit()
        transaction.abort()
        monkeypatch.undo()
        [left] = [gid for gid in _prepared(dsn) if gid.startswith("zfed-")]
    with federation.open(members) as fed, fed.open() as conn:
        assert fed.recovery.rolled_back == [left.rpartition(".")[0]]
        assert left not in _prepared(dsn)
        assert conn.root("main")["page"].title == "page"
        assert conn.get("people:integer:1").name == "Ada"
        transaction.abort()


def _fail(*args):
    raise RuntimeError("crash before the decision")


def test_server_connection_gone_is_member_unavailable(postgresql_server, person_table, tmp_path):
    """A reading connection killed by the server raises MemberUnavailable naming the member."""
    dsn = postgresql_server.dsn
    _seeder(dsn, person_table)(1, {"name": "Ada"})
    members = {"main": (tmp_path / "main.fs").as_uri(),
               "people": sql.postgresql("people", dsn, person_table)}
    with federation.open(members) as fed, fed.open() as conn:
        jar = conn.jar("people")
        with psycopg.connect(dsn, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (jar.adapter._conn.info.backend_pid,))
        with pytest.raises(federation.MemberUnavailable, match="'people'"):
            conn.get("people:integer:1")
        transaction.abort()


def test_failed_commit_leaves_no_session_in_a_transaction(postgresql_server, person_table,
                                                          tmp_path):
    """A commit that fails (a duplicate key) rolls PostgreSQL back: no session holds locks."""
    dsn = postgresql_server.dsn
    seed = _seeder(dsn, person_table)
    seed(1, {"name": "Ada"})
    seed(2, {"name": "Bob"})
    members = {"main": (tmp_path / "main.fs").as_uri(),
               "people": sql.postgresql("people", dsn, person_table)}
    with federation.open(members) as fed, fed.open() as conn:
        conn.get("people:integer:1").name = "Ada Lovelace"  # a row lock, then a failure
        jar = conn.jar("people")
        jar.adapter.new_key = lambda state: 2  # the key of an existing row
        conn.add(Person("Copy"), "people")
        conn.root("main")["x"] = Item("x")
        with pytest.raises(federation.FederationError, match="'people'"):
            transaction.commit()
        transaction.abort()
        with psycopg.connect(dsn, autocommit=True) as admin:
            stuck = admin.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE state LIKE 'idle in transaction%'"
            ).fetchone()[0]
            assert stuck == 0
            admin.execute("SET lock_timeout = '2s'")
            admin.execute(f"UPDATE {person_table.name} SET name = 'Free' WHERE id = 1")
        assert "x" not in conn.root("main")
