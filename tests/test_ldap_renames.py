"""Renamed and moved LDAP entries against a real slapd: references follow them by entryUUID.

A stub naming an entry keeps the DN and, when the session had seen the
entry, its entryUUID.  When the DN names no entry any more, one more search
by entryUUID finds it, the same Python object moves to the new DN, and the
stub is rewritten in that transaction (see docs/ldap.md, "Renamed and
moved entries").
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import transaction

import federation
from federation.resolvers.dn import DN
from tests.ldap_helpers import (  # noqa: F401 - fixture ou
    admin,
    directory,
    make_ou,
    ou_fixture,
    people_entries,
    raw_entry,
    remove_tree,
    searches,
    seeder,
)
from tests.models import Item, Person
from tests.servers.slapd import SlapdServer

pytestmark = pytest.mark.server


def members_of(server: SlapdServer, base: str, tmp_path: Path, **options: Any) -> dict[str, Any]:
    """A ZODB member 'main' and the directory member 'people' of the persons below ``base``."""
    return {"main": (tmp_path / "main.fs").as_uri(),
            "people": directory(server, "people", people_entries(base), **options)}


def person(dn: str) -> federation.Ref:
    """The reference to the entry ``dn`` of the member 'people'."""
    return federation.Ref("people", "dn", dn)


def link_to(members: dict[str, Any], dn: str) -> None:
    """Commit root['link'] of 'main', an Item referencing the entry ``dn`` (loaded first)."""
    with federation.open(members) as fed, fed.open() as conn:
        conn.root("main")["link"] = Item("link", conn.get(person(dn)))
        transaction.commit()


def linked_then_renamed(server: SlapdServer, base: str,
                        tmp_path: Path) -> tuple[dict[str, Any], str, str]:
    """Seed uid=p1 (Ada), link root['link'] to it, then rename it to uid=ada elsewhere.

    Returns the members, the old DN and the new DN.
    """
    seeder(server, base)(1, {"name": "Ada"})
    members = members_of(server, base, tmp_path)
    old, new = f"uid=p1,{base}", f"uid=ada,{base}"
    link_to(members, old)
    with admin(server) as ldap:
        ldap.modify_dn(old, "uid=ada")
    return members, old, new


def stub_targets(conn: federation.Manager) -> list[federation.Ref | None]:
    """The targets of the stubs of 'main', sorted by their text."""
    return sorted((stub.target for stub in conn.stubs("main")), key=str)


@pytest.fixture
def tree(slapd_server: SlapdServer) -> Iterator[tuple[str, str, str]]:
    """A fresh OU, the member's base, holding two OUs ``one`` and ``two``; removed afterwards."""
    base = make_ou(slapd_server)
    yield base, make_ou(slapd_server, base), make_ou(slapd_server, base)
    with admin(slapd_server) as conn:
        remove_tree(conn, base)


def test_follow_finds_renamed_entries_by_entry_uuid(slapd_server, ou):
    """stable_id is a loaded entry's entryUUID; follow() finds it under its new DN in one search."""
    seeder(slapd_server, ou)(1, {"name": "Ada"})
    adapter = directory(slapd_server, "people", people_entries(ou))()
    try:
        old = DN(f"uid=p1,{ou}")
        assert adapter.stable_id(old) is None
        adapter.load(old)
        stable_id = adapter.stable_id(old)
        assert uuid.UUID(stable_id)
        with admin(slapd_server) as conn:
            conn.modify_dn(str(old), "uid=renamed")
        before = adapter.connection.usage.search_operations
        assert adapter.load_many([old]) == {}
        [(key, state)] = adapter.follow([stable_id, "not-a-uuid", str(uuid.uuid4())]).values()
        assert adapter.connection.usage.search_operations - before == 2
        assert key == DN(f"uid=renamed,{ou}") and state["name"] == "Ada"
        assert adapter.stable_id(key) == stable_id
    finally:
        adapter.close()


def test_stubs_follow_a_renamed_entry(slapd_server, ou, tmp_path):
    """A ZODB reference follows an entry renamed elsewhere; its stub names the new DN on commit."""
    seeder(slapd_server, ou)(1, {"name": "Ada"})
    members = members_of(slapd_server, ou, tmp_path)
    link_to(members, f"uid=p1,{ou}")
    with admin(slapd_server) as ldap:
        ldap.modify_dn(f"uid=p1,{ou}", "uid=ada")
    with federation.open(members) as fed, fed.open() as conn:
        ada = conn.root("main")["link"].link
        assert ada.name == "Ada"
        assert conn.ref(ada) == person(f"uid=ada,{ou}")
        transaction.commit()
        assert stub_targets(conn) == [conn.ref(ada)]
    with admin(slapd_server) as ldap:
        ldap.delete(f"uid=ada,{ou}")
    with federation.open(members) as fed, fed.open() as conn:
        with pytest.raises(federation.DanglingStub, match=f"'people'.*uid=ada,{ou}"):
            conn.root("main")["link"].link.name  # noqa: B018 - touching it is the test
        transaction.abort()


@pytest.mark.parametrize("moved", [False, True], ids=["modrdn", "new-superior"])
def test_entry_renamed_by_another_client_while_a_manager_is_open(slapd_server, tree, tmp_path,
                                                                 moved):
    """An entry a manager loaded, renamed (or moved to another OU of the base) by another client,
    is the same object after sync, under its new DN, changed there; its stub follows on commit."""
    base, one, two = tree
    seeder(slapd_server, one)(1, {"name": "Ada", "email": "ada@example.org"})
    old, new = f"uid=p1,{one}", f"uid=p1,{two}" if moved else f"uid=ada,{one}"
    members = members_of(slapd_server, base, tmp_path)
    link_to(members, old)
    with federation.open(members) as fed, fed.open() as conn:
        ada = conn.root("main")["link"].link
        assert ada.name == "Ada"  # loaded: the session saw its entryUUID
        with admin(slapd_server) as ldap:
            ldap.modify_dn(old, new.split(",")[0], new_superior=two if moved else None)
        conn.sync()
        before = searches(conn)
        assert conn.root("main")["link"].link is ada
        assert ada.name == "Ada"
        assert searches(conn) - before == 2  # the load by DN, then the follow by entryUUID
        assert conn.ref(ada) == person(new)
        assert conn.get(person(new)) is ada
        ada.email = "lovelace@example.org"
        transaction.commit()
        assert conn.root("main")["link"].link is ada and conn.ref(ada) == person(new)
    assert raw_entry(slapd_server, new, "mail") == {"mail": [b"lovelace@example.org"]}
    assert raw_entry(slapd_server, old) == {}
    with federation.open(members) as fed, fed.open() as conn:
        assert stub_targets(conn) == [person(new)]
        before = searches(conn)
        assert conn.root("main")["link"].link.email == "lovelace@example.org"
        assert searches(conn) - before == 1  # the stub names the new DN: no follow
        transaction.abort()


def test_aborted_follow_leaves_the_stub_and_is_followed_again(slapd_server, ou, tmp_path):
    """A transaction that followed a rename and was aborted leaves the stub's old DN; a
    federation opened anew follows the rename again (the batch search, then the follow)."""
    members, old, new = linked_then_renamed(slapd_server, ou, tmp_path)
    for _ in range(2):
        with federation.open(members) as fed, fed.open() as conn:
            before = searches(conn)
            ada = conn.root("main")["link"].link
            assert ada.name == "Ada"
            assert searches(conn) - before == 2
            assert conn.ref(ada) == person(new)
            transaction.abort()
            assert stub_targets(conn) == [person(old)]


def test_aborted_follow_is_rewritten_by_the_next_commit(slapd_server, ou, tmp_path):
    """After an aborted follow, the next commit rewrites the stub (it stays pending): saving
    the referrer then keeps the one stub, naming the new DN (no second stub for it)."""
    members, _old, new = linked_then_renamed(slapd_server, ou, tmp_path)
    with federation.open(members) as fed, fed.open() as conn:
        ada = conn.root("main")["link"].link
        assert ada.name == "Ada"
        transaction.abort()
        assert ada.name == "Ada" and conn.ref(ada) == person(new)
        conn.root("main")["link"].title = "changed"
        transaction.commit()
        assert stub_targets(conn) == [person(new)]


def test_entry_moved_out_of_the_base_is_a_dangling_stub(slapd_server, tree, ou, tmp_path):
    """An entry moved out of the member's base is not followed: DanglingStub naming its old DN."""
    base, one, _ = tree
    seeder(slapd_server, one)(1, {"name": "Ada"})
    members = members_of(slapd_server, base, tmp_path)
    link_to(members, f"uid=p1,{one}")
    with admin(slapd_server) as ldap:
        ldap.modify_dn(f"uid=p1,{one}", "uid=p1", new_superior=ou)
    with federation.open(members) as fed, fed.open() as conn:
        with pytest.raises(federation.DanglingStub, match=f"'people'.*uid=p1,{one}"):
            conn.root("main")["link"].link.name  # noqa: B018 - touching it is the test
        transaction.abort()


def test_many_stubs_renamed_while_no_manager_was_open(slapd_server, ou, tmp_path):
    """Following N renamed entries costs a batch search and a follow search per batch at most;
    every stub names its entry's new DN after the commit."""
    count, batch = 25, 10
    seed = seeder(slapd_server, ou)
    for n in range(1, count + 1):
        seed(n, {"name": f"P{n}"})
    members = members_of(slapd_server, ou, tmp_path, batch_size=batch)
    with federation.open(members) as fed, fed.open() as conn:
        for n in range(1, count + 1):
            conn.root("main")[f"r{n}"] = Item(f"r{n}", conn.get(person(f"uid=p{n},{ou}")))
        transaction.commit()
    with admin(slapd_server) as ldap:
        for n in range(1, count + 1):
            ldap.modify_dn(f"uid=p{n},{ou}", f"uid=q{n}")
    renamed = [person(f"uid=q{n},{ou}") for n in range(1, count + 1)]
    with federation.open(members) as fed, fed.open() as conn:
        links = [conn.root("main")[f"r{n}"].link for n in range(1, count + 1)]  # ghosts
        before = searches(conn)
        assert [p.name for p in links] == [f"P{n}" for n in range(1, count + 1)]
        assert searches(conn) - before <= 2 * math.ceil(count / batch)
        assert [conn.ref(p) for p in links] == renamed
        transaction.commit()
    with federation.open(members) as fed, fed.open() as conn:
        assert stub_targets(conn) == sorted(renamed, key=str)
        links = [conn.root("main")[f"r{n}"].link for n in range(1, count + 1)]
        before = searches(conn)
        assert [p.name for p in links] == [f"P{n}" for n in range(1, count + 1)]
        assert searches(conn) - before == math.ceil(count / batch)
        transaction.abort()


def test_stub_made_with_its_entry_keeps_no_entry_uuid(slapd_server, ou, tmp_path):
    """A stub written in the transaction that creates its target entry keeps no entryUUID: it
    does not follow a later rename (DanglingStub naming the old DN).  An entry committed first
    and referenced in a later transaction is followed."""
    members = members_of(slapd_server, ou, tmp_path)
    with federation.open(members) as fed, fed.open() as conn:
        ada, bob = Person("Ada"), Person("Bob")
        conn.add(ada, "people")
        conn.root("main")["ada"] = Item("ada", ada)  # the stub is written before the entry
        conn.add(bob, "people")
        transaction.commit()
        conn.root("main")["bob"] = Item("bob", bob)  # the entry exists: its entryUUID is kept
        transaction.commit()
        ada_dn, bob_dn = str(conn.ref(ada).key), str(conn.ref(bob).key)
        assert list(conn.jar("main")._catalog().stable_ids.values()) == [
            raw_entry(slapd_server, bob_dn, "entryUUID")["entryUUID"][0].decode()]
    with admin(slapd_server) as ldap:
        ldap.modify_dn(ada_dn, "uid=ada")
        ldap.modify_dn(bob_dn, "uid=bob")
    with federation.open(members) as fed, fed.open() as conn:
        with pytest.raises(federation.DanglingStub, match=f"'people'.*{re.escape(ada_dn)}"):
            conn.root("main")["ada"].link.name  # noqa: B018 - touching it is the test
        assert conn.root("main")["bob"].link.name == "Bob"
        assert conn.ref(conn.root("main")["bob"].link) == person(f"uid=bob,{ou}")
        transaction.abort()
