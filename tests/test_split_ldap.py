"""Split objects whose primary is an LDAP directory and secondary a ZODB FileStorage."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import transaction
from persistent import Persistent

import federation
from federation import Split, SplitObject
from federation.adapters.ldap import Entries
from tests.helpers import journal_entries
from tests.ldap_helpers import admin, directory, make_ou, raw_entry, remove_tree, seeder
from tests.servers.slapd import SlapdServer

pytestmark = pytest.mark.server


class Profile(Persistent):
    """A directory entry: the primary part of a Member."""


class Member(SplitObject):
    """A person of the directory 'people', with the application's own attributes in 'local'."""

    __split__ = Split(primary="people", secondary="local", key="dn",
                      primary_attributes={"name", "email"}, unique={"email"})


@pytest.fixture
def people_ou(slapd_server: SlapdServer) -> Iterator[str]:
    """A fresh OU holding Ada (uid=p1) and Bob (uid=p2), removed afterwards."""
    ou = make_ou(slapd_server)
    seed = seeder(slapd_server, ou)
    seed(1, {"name": "Ada", "email": "ada@example.org"})
    seed(2, {"name": "Bob", "email": "bob@example.org"})
    yield ou
    with admin(slapd_server) as conn:
        remove_tree(conn, ou)


@pytest.fixture
def members(slapd_server: SlapdServer, people_ou: str, tmp_path: Path) -> dict[str, Any]:
    """The directory member 'people' (Profiles, by DN) and a ZODB member 'local'."""
    entries = Entries(Profile, base=people_ou, object_classes=("inetOrgPerson",), rdn="uid",
                      attributes={"name": "cn", "email": "mail"}, on_create={"sn": "-"})
    return {"people": directory(slapd_server, "people", entries),
            "local": (tmp_path / "local.fs").as_uri()}


def _open(members: dict[str, Any], **people: Any) -> federation.Federation:
    spec = {"adapter": members["people"], **people} if people else members["people"]
    return federation.open({"people": spec, "local": members["local"]})


def _stamp(server: SlapdServer, dn: str) -> list[bytes]:
    """The entry's entryCSN: it changes with every write to the entry."""
    return raw_entry(server, dn, "entryCSN")["entryCSN"]


def test_annotations_are_kept_in_zodb_and_the_entry_is_untouched(slapd_server, people_ou,
                                                                  members):
    """Secondary attributes commit to ZODB without any write to the directory entry."""
    dn = f"uid=p1,{people_ou}"
    stamp = _stamp(slapd_server, dn)
    with _open(members) as fed, fed.open() as conn:
        ada = conn.find(Member, email="ada@example.org")   # one search, through the adapter
        assert ada.name == "Ada" and ada._p_jar is None
        ada.karma, ada.tags = 12, ["pioneer"]
        transaction.commit()
        assert conn.jar("people").adapter.connection.usage.modify_operations == 0
    assert _stamp(slapd_server, dn) == stamp
    with _open(members) as fed, fed.open() as conn:
        ada = conn.split(Member, dn)
        assert (ada.name, ada.karma, ada.tags) == ("Ada", 12, ["pioneer"])
        assert conn.find(Member, email="ada@example.org") is ada
        transaction.abort()


def test_primary_attributes_are_written_to_the_directory(slapd_server, people_ou, members):
    """A changed primary attribute is a modify of the entry in the same commit; both are reread."""
    dn = f"uid=p2,{people_ou}"
    with _open(members) as fed, fed.open() as conn:
        bob = conn.split(Member, dn)
        bob.karma = 3
        bob.email = "robert@example.org"
        transaction.commit()
    assert raw_entry(slapd_server, dn, "mail")["mail"] == [b"robert@example.org"]
    with _open(members) as fed, fed.open() as conn:
        bob = conn.find(Member, email="robert@example.org")
        assert (bob.name, bob.karma) == ("Bob", 3)
        assert conn.ref(bob._v_primary) == federation.Ref("people", "dn", dn)
        with pytest.raises(federation.KeyNotFound):
            conn.find(Member, email="bob@example.org")
        transaction.abort()


def test_rejected_primary_value_changes_neither_part(slapd_server, people_ou, members):
    """A value the directory rejects fails the commit; neither the entry nor ZODB changes."""
    dn = f"uid=p1,{people_ou}"
    with _open(members) as fed, fed.open() as conn:
        ada = conn.split(Member, dn)
        ada.karma = 1
        transaction.commit()
        stamp = _stamp(slapd_server, dn)
        ada.karma = 2
        ada.name = ""   # not a valid cn
        with pytest.raises(federation.FederationError, match=f"'people'.*uid=p1,{people_ou}"):
            transaction.commit()
        transaction.abort()
        assert journal_entries(conn, "local") == []
        assert (ada.karma, ada.name) == (1, "Ada")
    assert _stamp(slapd_server, dn) == stamp


def test_read_only_directory_primary(slapd_server, people_ou, members):
    """With a read-only directory member, annotations commit and primary attributes are refused."""
    dn = f"uid=p2,{people_ou}"
    stamp = _stamp(slapd_server, dn)
    with _open(members, read_only=True) as fed, fed.open() as conn:
        bob = conn.find(Member, email="bob@example.org")
        bob.reviewed = True
        transaction.commit()
        with pytest.raises(federation.ReadOnlyMember, match="'people'"):
            bob.name = "Robert"
        transaction.abort()
    assert _stamp(slapd_server, dn) == stamp
    with _open(members, read_only=True) as fed, fed.open() as conn:
        assert conn.split(Member, dn).reviewed is True
        transaction.abort()
