"""Foreign members on real servers, described by configuration files (PostgreSQL, slapd)."""

from __future__ import annotations

import uuid

import psycopg
import pytest
import transaction

import federation
from tests.ldap_helpers import ou_fixture, raw_entry  # noqa: F401 (ou is a fixture)
from tests.models import Item, Person

pytestmark = pytest.mark.server


def test_postgresql_member_from_toml(tmp_path, postgresql_server, monkeypatch):
    """A PostgreSQL member from TOML: conninfo, password_env, table options; two-phase commit."""
    table = f"person_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgresql_server.dsn, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {table} (id BIGINT PRIMARY KEY, name TEXT, email TEXT, "
                     "owner_ref TEXT)")
    monkeypatch.setenv("ZFED_PG_PASSWORD", "pg-s3cret")
    config = tmp_path / "federation.toml"
    config.write_text(f"""
[members.main]
path = "main.fs"
create = true

[members.people]
adapter = "postgresql"
[members.people.options]
conninfo = "{postgresql_server.dsn}"
password_env = "ZFED_PG_PASSWORD"
table = "{table}"
class = "tests.models.Person"
columns = {{ name = "name", email = "email" }}
refs = {{ owner = "owner_ref" }}
batch_size = 10
""")
    try:
        with federation.open_config(config) as fed, fed.open() as conn:
            assert fed.member("people").two_phase
            page = conn.root("main")["page"] = Item("page")
            conn.add(page, "main")
            ada = Person("Ada", owner=page)
            conn.add(ada, "people")
            conn.root("main")["ada"] = ada
            transaction.commit()
        with federation.open_config(config) as fed, fed.open() as conn:
            assert conn.root("main")["ada"].owner is conn.root("main")["page"]
        with psycopg.connect(postgresql_server.dsn) as conn:
            assert conn.execute(f"SELECT name FROM {table}").fetchall() == [("Ada",)]
    finally:
        with psycopg.connect(postgresql_server.dsn, autocommit=True) as conn:
            conn.execute(f"DROP TABLE {table}")


def ldap_config(tmp_path, server, ou, variable):
    config = tmp_path / "federation.toml"
    config.write_text(f"""
[members.main]
path = "main.fs"
create = true

[members.people]
adapter = "ldap"
[members.people.options]
uri = "{server.uri}"
bind_dn = "{server.admin_dn}"
password_env = "{variable}"
class = "tests.models.Person"
base = "{ou}"
object_classes = ["inetOrgPerson"]
rdn = "cn"
attributes = {{ name = "cn", email = {{ name = "mail", type = "str" }} }}
refs = {{ owner = "description" }}
on_create = {{ sn = "configured" }}
""")
    return config


def test_ldap_member_from_toml(tmp_path, slapd_server, ou, monkeypatch):
    """An LDAP member from TOML binds with the password from the environment and writes."""
    monkeypatch.setenv("ZFED_LDAP_PASSWORD", slapd_server.admin_password)
    config = ldap_config(tmp_path, slapd_server, ou, "ZFED_LDAP_PASSWORD")
    with federation.open_config(config) as fed, fed.open() as conn:
        page = conn.root("main")["page"] = Item("page")
        conn.add(page, "main")
        ada = Person("Ada", email="ada@example.org", owner=page)
        conn.add(ada, "people")
        conn.root("main")["ada"] = ada
        transaction.commit()
        dn = str(conn.ref(ada).key)
    entry = raw_entry(slapd_server, dn, "sn", "mail")
    assert entry["sn"] == [b"configured"] and entry["mail"] == [b"ada@example.org"]
    with federation.open_config(config) as fed, fed.open() as conn:
        assert conn.root("main")["ada"].owner is conn.root("main")["page"]


def test_ldap_wrong_password_is_not_shown(tmp_path, slapd_server, ou, monkeypatch):
    """A bind refused with a password from the environment: the message never shows it."""
    monkeypatch.setenv("ZFED_LDAP_PASSWORD", "not-the-Password-42")
    config = ldap_config(tmp_path, slapd_server, ou, "ZFED_LDAP_PASSWORD")
    with pytest.raises(federation.FederationError, match=r"'people' cannot bind") as raised:
        federation.open_config(config)
    assert "not-the-Password-42" not in str(raised.value)
