"""The real test servers: PostgreSQL with two-phase commit, slapd with the sample tree."""

from __future__ import annotations

import uuid
import warnings

import psycopg
import pytest

from tests.servers.postgresql import PostgresServer
from tests.servers.slapd import SlapdServer

with warnings.catch_warnings():
    # ldap3 2.9.1 touches pyasn1 0.6's deprecated tagMap/typeMap at import time.
    warnings.simplefilter("ignore", DeprecationWarning)
    import ldap3

pytestmark = pytest.mark.server


def _prepared(server: PostgresServer, gid: str) -> bool:
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM pg_prepared_xacts WHERE gid = %s",
                           [gid]).fetchone()
    return row == (1,)


def _values(server: PostgresServer, table: str) -> list[str]:
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        return [row[0] for row in conn.execute(f"SELECT value FROM {table} ORDER BY value")]


@pytest.fixture
def table(postgresql_server: PostgresServer) -> str:
    """A fresh table of text values in the session's PostgreSQL database."""
    name = f"t_{uuid.uuid4().hex}"
    with psycopg.connect(postgresql_server.dsn) as conn:
        conn.execute(f"CREATE TABLE {name} (value text PRIMARY KEY)")
    return name


def test_postgresql_accepts_connections(postgresql_server: PostgresServer) -> None:
    """The server answers on its loopback port with the configured user and database."""
    with psycopg.connect(postgresql_server.dsn, autocommit=True) as conn:
        user, dbname, prepared = conn.execute(
            "SELECT current_user, current_database(), current_setting('max_prepared_transactions')"
        ).fetchone()
    assert (user, dbname) == (postgresql_server.user, postgresql_server.dbname)
    assert int(prepared) > 0


def test_postgresql_two_phase_commit(postgresql_server: PostgresServer, table: str) -> None:
    """A prepared transaction is invisible until COMMIT PREPARED makes it durable."""
    gid = f"zfed-{uuid.uuid4().hex}"
    with psycopg.connect(postgresql_server.dsn) as conn:
        conn.tpc_begin(gid)  # a string is used verbatim as PREPARE TRANSACTION's gid
        conn.execute(f"INSERT INTO {table} VALUES ('committed')")
        conn.tpc_prepare()
        assert _prepared(postgresql_server, gid)
        with psycopg.connect(postgresql_server.dsn) as other:
            assert gid in [xid.gtrid for xid in other.tpc_recover()]
        assert _values(postgresql_server, table) == []
        conn.tpc_commit()
    assert not _prepared(postgresql_server, gid)
    assert _values(postgresql_server, table) == ["committed"]


def test_postgresql_rollback_prepared(postgresql_server: PostgresServer, table: str) -> None:
    """ROLLBACK PREPARED, even from another session, discards a prepared transaction."""
    gid = f"zfed-{uuid.uuid4().hex}"
    with psycopg.connect(postgresql_server.dsn, autocommit=True) as conn:
        conn.execute("BEGIN")
        conn.execute(f"INSERT INTO {table} VALUES ('discarded')")
        conn.execute(f"PREPARE TRANSACTION '{gid}'")
    assert _prepared(postgresql_server, gid)
    with psycopg.connect(postgresql_server.dsn, autocommit=True) as conn:
        conn.execute(f"ROLLBACK PREPARED '{gid}'")
    assert not _prepared(postgresql_server, gid)
    assert _values(postgresql_server, table) == []


def _connect(server: SlapdServer, *, admin: bool = True) -> ldap3.Connection:
    ldap_server = ldap3.Server(server.host, port=server.port, get_info=ldap3.NONE)
    if admin:
        return ldap3.Connection(ldap_server, server.admin_dn, server.admin_password,
                                auto_bind=True, raise_exceptions=True)
    return ldap3.Connection(ldap_server, auto_bind=True, raise_exceptions=True)


def test_slapd_search_people(slapd_server: SlapdServer) -> None:
    """An anonymous search finds the three sample people, each with an entryUUID."""
    conn = _connect(slapd_server, admin=False)
    try:
        conn.search(f"ou=people,{slapd_server.base_dn}", "(objectClass=inetOrgPerson)",
                    attributes=["uid", "mail", "uidNumber", "entryUUID"])
        found = {entry.uid.value: entry for entry in conn.entries}
    finally:
        conn.unbind()
    assert sorted(found) == ["alice", "bob", "carol"]
    assert found["alice"].mail.value == "alice@example.org"
    assert len({uuid.UUID(str(entry.entryUUID.value)) for entry in found.values()}) == 3


def test_slapd_admin_bind(slapd_server: SlapdServer) -> None:
    """A simple bind succeeds as the admin and fails with a wrong password."""
    conn = _connect(slapd_server)
    assert conn.bound
    conn.unbind()
    ldap_server = ldap3.Server(slapd_server.host, port=slapd_server.port, get_info=ldap3.NONE)
    wrong = ldap3.Connection(ldap_server, slapd_server.admin_dn, "wrong")
    try:
        assert not wrong.bind()
        assert wrong.result["description"] == "invalidCredentials"
    finally:
        wrong.unbind()


def test_slapd_modify_dn_keeps_entryuuid(slapd_server: SlapdServer) -> None:
    """Renaming an entry (modify_dn) changes its DN and keeps its entryUUID."""
    groups = f"ou=groups,{slapd_server.base_dn}"
    conn = _connect(slapd_server)
    try:
        conn.add(f"cn=before,{groups}", ["groupOfNames"],
                 {"member": f"uid=alice,ou=people,{slapd_server.base_dn}"})
        conn.search(groups, "(cn=before)", attributes=["entryUUID"])
        before = conn.entries[0].entryUUID.value
        conn.modify_dn(f"cn=before,{groups}", "cn=after")
        conn.search(groups, "(|(cn=before)(cn=after))", attributes=["entryUUID"])
        assert [entry.entry_dn for entry in conn.entries] == [f"cn=after,{groups}"]
        assert conn.entries[0].entryUUID.value == before
        conn.delete(f"cn=after,{groups}")
    finally:
        conn.unbind()
