"""References through stubs follow a renamed foreign record by its stable id."""

from __future__ import annotations

import pytest
import transaction

import federation
from federation.adapters.memory import MemoryDatabase
from tests.models import Item, Person


@pytest.fixture
def people():
    """A renaming in-memory member with Ada (key 1) and Bob (key 2)."""
    database = MemoryDatabase("people", Person, can_rename=True, batch_size=10)
    database.insert(1, {"name": "Ada", "email": None, "owner": None})
    database.insert(2, {"name": "Bob", "email": None, "owner": None})
    return database


@pytest.fixture
def fed(people, tmp_path):
    opened = federation.open({"main": (tmp_path / "main.fs").as_uri(), "people": people})
    with opened.open() as conn:
        conn.root("main")["ada"] = Item("about Ada", link=conn.get("people:integer:1"))
        conn.root("main")["bob"] = Item("about Bob", link=conn.get("people:integer:2"))
        transaction.commit()
    yield opened
    transaction.abort()
    opened.close()


def test_stub_records_the_stable_id(fed, people):
    """A stub to a record of a renaming member keeps the record's stable id."""
    with fed.open() as conn:
        catalog = conn.jar("main")._catalog()
        assert sorted(catalog.stable_ids.values()) == sorted(people.stable_ids.values())
        transaction.abort()


def test_rename_before_opening_is_followed_and_the_stub_rewritten(fed, people):
    """A record renamed while no manager was open is found by its stable id; the stub follows."""
    people.rename(1, 5)
    with fed.open() as conn:
        jar = conn.jar("people")
        before = jar.load_count
        ada = conn.root("main")["ada"].link
        assert ada.name == "Ada"
        assert jar.load_count - before == 2  # the batch, then one search by stable id
        assert conn.ref(ada) == federation.Ref("people", "integer", 5)
        assert conn.get("people:integer:5") is ada
        transaction.commit()
    with fed.open() as conn:
        targets = sorted(s.target.key for s in conn.stubs("main"))
        assert targets == [2, 5]
        before = conn.jar("people").load_count
        assert conn.root("main")["ada"].link.name == "Ada"
        assert conn.jar("people").load_count - before == 1  # the stub names the new key
        transaction.abort()


def test_rename_while_open_keeps_the_same_object(fed, people):
    """A record renamed by another program while a manager holds it: same object, new key."""
    with fed.open() as conn:
        ada = conn.root("main")["ada"].link
        assert ada.name == "Ada"
        people.rename(1, 7)
        conn.sync()
        assert ada.name == "Ada"
        assert conn.root("main")["ada"].link is ada
        assert conn.ref(ada) == federation.Ref("people", "integer", 7)
        ada.email = "ada@example.org"
        transaction.commit()
        assert people.records[7]["email"] == "ada@example.org"
    with fed.open() as conn:
        assert conn.ref(conn.root("main")["ada"].link).key == 7
        transaction.abort()


def test_aborted_transaction_rewrites_no_stub(fed, people, tmp_path):
    """When the transaction that followed a rename aborts, the stub keeps the old key."""
    people.rename(1, 5)
    with fed.open() as conn:
        assert conn.root("main")["ada"].link.name == "Ada"
        transaction.abort()
        assert sorted(s.target.key for s in conn.stubs("main")) == [1, 2]
    fed.close()
    members = {"main": (tmp_path / "main.fs").as_uri(), "people": people}
    with federation.open(members) as again, again.open() as conn:
        before = conn.jar("people").load_count
        assert conn.root("main")["ada"].link.name == "Ada"
        assert conn.jar("people").load_count - before == 2  # followed again
        transaction.abort()


def test_deleted_record_is_a_dangling_stub_naming_the_key(fed, people):
    """A referenced record that was deleted (not renamed) raises DanglingStub naming its key."""
    people.remove(1)
    with fed.open() as conn:
        with pytest.raises(federation.DanglingStub, match=r"'people'.*key 1\b"):
            conn.root("main")["ada"].link.name  # noqa: B018 - touching it is the test
        assert conn.root("main")["bob"].link.name == "Bob"
        transaction.abort()


def test_reindex_keeps_stable_ids(fed, people):
    """Rebuilding the indexes restores the stable ids from the stub records."""
    with fed.open() as conn:
        before = dict(conn.jar("main")._catalog().stable_ids)
        conn.reindex("main")
        transaction.commit()
        assert dict(conn.jar("main")._catalog().stable_ids) == before
    people.rename(2, 9)
    with fed.open() as conn:
        assert conn.root("main")["bob"].link.name == "Bob"
        transaction.abort()


def test_reading_a_renamed_record_joins_no_transaction(fed, people):
    """Following a rename only reads: the manager closes without a commit or an abort."""
    people.rename(1, 5)
    with fed.open() as conn:
        assert conn.root("main")["ada"].link.name == "Ada"
        assert all(jar._needs_to_join for jar in conn._jars.values())
    with fed.open() as conn:
        assert sorted(s.target.key for s in conn.stubs("main")) == [1, 2]
        transaction.abort()
