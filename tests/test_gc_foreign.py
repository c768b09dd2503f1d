"""Foreign members and the collector: references their records hold keep objects alive."""

from __future__ import annotations

import pytest
import transaction
from ZODB.POSException import POSKeyError

import federation
from federation.adapters.memory import MemoryAdapter, MemoryDatabase
from federation.interfaces import ReferenceHolder
from tests.ldap_helpers import directory, ou_fixture, people_entries  # noqa: F401 - fixture ou
from tests.models import Item, Person


def test_memory_adapter_lists_the_references_its_records_hold():
    """references() yields (key, Ref text) for every non-empty reference attribute."""
    badges = MemoryDatabase("badges", Person, ref_attributes={"owner"})
    badges.insert(1, {"name": "a", "owner": "main:integer:7"})
    badges.insert(2, {"name": "b", "owner": None})
    adapter = badges()
    assert isinstance(adapter, ReferenceHolder)
    assert list(adapter.references()) == [(1, "main:integer:7")]


class _Silent(MemoryAdapter):
    """An adapter with reference attributes and no way to list them."""

    references = None  # type: ignore[assignment]


def test_pack_refuses_a_member_whose_references_cannot_be_listed(tmp_path):
    """A foreign member that holds references but cannot list them stops the pack, named."""
    database = MemoryDatabase("badges", Person, ref_attributes={"owner"})
    members = {"main": (tmp_path / "main.fs").as_uri(),
               "badges": lambda: _Silent(database)}
    with federation.open(members) as fed:
        with pytest.raises(federation.CollectionRefused, match="'badges' holds references"):
            fed.pack()
        assert fed.pack(exclude=["badges"])["main"].packed


@pytest.mark.server
def test_ldap_reference_is_the_only_reference(slapd_server, ou, tmp_path):
    """An object that only an LDAP entry's reference attribute names survives the pack."""
    people = directory(slapd_server, "people", people_entries(ou))
    members = {"main": (tmp_path / "main.fs").as_uri(), "people": people}
    with federation.open(members) as fed:
        with fed.open() as conn:
            owner = Item("owned by an entry")
            conn.add(owner, "main")
            person = Person("Ada")
            person.email, person.owner = None, owner
            conn.add(person, "people")
            transaction.commit()
            ref, oid = conn.ref(person), owner._p_oid
        adapter = people()
        try:
            main_id = fed.member("main").member_id  # the text names main by id too
            text = f"main@{main_id}:integer:{int.from_bytes(oid, 'big')}"
            assert list(adapter.references()) == [(ref.key, text)]
        finally:
            adapter.close()
        fed.pack()
        fed.member("main").db.storage.load(oid)
        with fed.open() as conn:
            conn.get(ref).owner = None
            transaction.commit()
        fed.pack()
        with pytest.raises(POSKeyError):
            fed.member("main").db.storage.load(oid)
