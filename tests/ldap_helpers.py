"""Helpers the LDAP tests share: the admin's connection, fresh OUs, members, seeding, counting.

The ``ou`` fixture is defined here as ``ou_fixture``; a test module that
needs it imports that name (``from tests.ldap_helpers import ou_fixture``).
"""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from persistent import Persistent

import federation
from federation.adapters.ldap import Directory, Entries
from federation.resolvers.dn import DN
from tests.models import Person
from tests.servers.slapd import SlapdServer

with warnings.catch_warnings():
    # ldap3 2.9.1 touches pyasn1 0.6's deprecated tagMap/typeMap at import time.
    warnings.simplefilter("ignore", DeprecationWarning)
    import ldap3


class Account(Persistent):
    """A directory account (inetOrgPerson, posixAccount and the test schema's zfedAccount)."""

    def __init__(self, **values: Any) -> None:
        self.__dict__.update(values)


@contextmanager
def admin(server: SlapdServer) -> Iterator[ldap3.Connection]:
    """An ldap3 connection bound as the directory's admin, as another program would use."""
    conn = ldap3.Connection(ldap3.Server(server.uri, get_info=ldap3.NONE), server.admin_dn,
                            server.admin_password, auto_bind=True, raise_exceptions=True)
    try:
        yield conn
    finally:
        conn.unbind()


def remove_tree(conn: ldap3.Connection, base: str) -> None:
    """Delete ``base`` and every entry below it, deepest first."""
    conn.search(base, "(objectClass=*)", ldap3.SUBTREE, attributes=["1.1"])
    for dn in sorted((entry["dn"] for entry in conn.response), key=lambda d: -len(DN(d))):
        conn.delete(dn)


def make_ou(server: SlapdServer, parent: str | None = None) -> str:
    """A fresh organizational unit (``ou=t<hex>``) under ``parent`` (the base DN); its DN."""
    dn = f"ou=t{uuid.uuid4().hex},{parent or server.base_dn}"
    with admin(server) as conn:
        conn.add(dn, ["organizationalUnit"])
    return dn


@pytest.fixture(name="ou")
def ou_fixture(slapd_server: SlapdServer) -> Iterator[str]:
    """A fresh OU for one test's entries, removed afterwards."""
    dn = make_ou(slapd_server)
    yield dn
    with admin(slapd_server) as conn:
        remove_tree(conn, dn)


def people_entries(base: str) -> Entries:
    """Persons as inetOrgPerson entries named ``uid=n<hex>``; the owner Ref in description."""
    return Entries(Person, base=base, object_classes=("inetOrgPerson",), rdn="uid",
                   attributes={"name": "cn", "email": "mail"}, refs={"owner": "description"},
                   on_create={"uid": lambda state: f"n{uuid.uuid4().hex[:12]}",
                              "sn": lambda state: state.get("name")})


def directory(server: SlapdServer, member: str, entries: Entries, **options: Any) -> Directory:
    """A Directory member on the test server, bound as the admin unless options say otherwise."""
    settings = {"bind_dn": server.admin_dn, "password": server.admin_password, **options}
    return Directory(member, server.uri, entries, **settings)


def seeder(server: SlapdServer, base: str) -> Callable[[int, dict[str, Any]], None]:
    """Write person number ``n`` (``uid=p<n>``) directly: add it, or replace its values."""
    def seed(n: int, record: dict[str, Any]) -> None:
        values = {"cn": record["name"], "mail": record.get("email"),
                  "description": record.get("owner")}
        with admin(server) as conn:
            dn = f"uid=p{n},{base}"
            conn.raise_exceptions = False
            if not conn.add(dn, ["inetOrgPerson"], {"sn": "seeded", **{
                    k: v for k, v in values.items() if v is not None}}):
                assert conn.result["description"] == "entryAlreadyExists", conn.result
                changes = {k: [(ldap3.MODIFY_REPLACE, [v] if v is not None else [])]
                           for k, v in values.items()}
                assert conn.modify(dn, changes), conn.result
    return seed


def searches(conn: federation.Manager, member: str = "people") -> int:
    """The LDAP search operations the member's session sent so far."""
    return conn.jar(member).adapter.connection.usage.search_operations


def raw_entry(server: SlapdServer, dn: str, *attributes: str) -> dict[str, list[bytes]]:
    """The raw LDAP values of an entry, read as another program would (empty if it is gone)."""
    with admin(server) as conn:
        conn.raise_exceptions = False
        conn.search(dn, "(objectClass=*)", ldap3.BASE, attributes=list(attributes) or ["*"])
        return dict(conn.response[0]["raw_attributes"]) if conn.response else {}
