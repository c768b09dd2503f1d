"""The adapter conformance suite: every foreign adapter passes these tests.

An adapter's test module subclasses :class:`AdapterConformance` and
defines a ``foreign`` fixture returning a :class:`ForeignFixture`.  Tests
of a capability the adapter does not claim are skipped, never passed.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import transaction

import federation
from federation import resolvers
from tests.helpers import journal_entries
from tests.models import Item, Person


def _number(n: int) -> Any:
    return n


@dataclass
class ForeignFixture:
    """How the suite reaches one adapter's member, named ``people``.

    ``spec`` is the member specification for ``federation.open``; ``seed``
    writes record number ``n`` directly, as another program would;
    ``bad_record`` is a record the store rejects; ``second_spec`` (optional)
    is a second member of the same kind, for the last-resource test.
    ``kind`` is the member's key kind and ``key(n)`` the key of record
    number ``n`` (the number itself for ``integer`` keys).
    """

    spec: Any
    seed: Callable[[int, dict[str, Any]], None]
    two_phase: bool
    batch_size: int
    bad_record: dict[str, Any]
    second_spec: Any = None
    kind: str = "integer"
    key: Callable[[int], Any] = _number

    def ref(self, n: int) -> federation.Ref:
        """The reference to record number ``n`` of the member ``people``."""
        return federation.Ref("people", self.kind, self.key(n))

    def oid(self, n: int) -> bytes:
        """The oid (encoded key) of record number ``n``."""
        kind = resolvers.get(self.kind)
        return kind.encode(kind.coerce(self.key(n)))

    def key_text(self, n: int) -> str:
        """The key of record number ``n`` as error messages write it, as a regex."""
        return re.escape(str(resolvers.get(self.kind).coerce(self.key(n))))


class AdapterConformance:
    """The shared tests; ``foreign`` is the adapter's fixture."""

    @pytest.fixture
    def members(self, foreign: ForeignFixture, tmp_path) -> dict[str, Any]:
        return {"main": (tmp_path / "main.fs").as_uri(), "people": foreign.spec}

    @pytest.fixture
    def fed(self, members):
        opened = federation.open(members)
        yield opened
        transaction.abort()
        opened.close()

    @pytest.fixture
    def conn(self, fed):
        manager = fed.open()
        yield manager
        transaction.abort()
        manager.close()

    def _record(self, name: str, **extra: Any) -> dict[str, Any]:
        return {"name": name, "email": f"{name.lower()}@example.org", "owner": None, **extra}

    def test_get_loads_a_record(self, foreign, conn):
        """conn.get(ref) returns the record as an object of the mapped class, the same each time."""
        foreign.seed(1, self._record("Ada"))
        ada = conn.get(foreign.ref(1))
        assert isinstance(ada, Person) and ada.name == "Ada"
        assert conn.get(str(foreign.ref(1))) is ada
        assert conn.ref(ada) == foreign.ref(1)

    def test_missing_key_names_member_and_key(self, foreign, conn):
        """A key with no record raises KeyNotFound naming the member and the key."""
        with pytest.raises(federation.KeyNotFound, match=f"{foreign.key_text(4242)}.*'people'"):
            conn.get(foreign.ref(4242))

    def test_following_references_loads_in_batches(self, foreign, fed, members):
        """Following N references, one per referrer, costs ceil(N / batch) round trips.

        The federation is reopened first, so no ghost of a target exists
        before its referrer is read; none is loaded again when warm, nor in
        the next transaction.
        """
        count = foreign.batch_size * 2 + 7
        for key in range(1, count + 1):
            foreign.seed(key, self._record(f"P{key}"))
        with fed.open() as conn:
            folder, people = conn.root("main"), conn.jar("people")
            for key in range(1, count + 1):
                folder[f"r{key}"] = Item(f"r{key}", link=people.ghost(foreign.oid(key)))
            transaction.commit()
        fed.close()
        batches = math.ceil(count / foreign.batch_size)
        with federation.open(members) as fresh, fresh.open() as conn:
            jar = conn.jar("people")
            folder = conn.root("main")
            names = [folder[f"r{key}"].link.name for key in range(1, count + 1)]
            assert names == [f"P{key}" for key in range(1, count + 1)]
            assert jar.load_count == batches
            again = [folder[f"r{key}"].link.name for key in range(1, count + 1)]
            assert again == names and jar.load_count == batches
            conn.sync()
            again = [folder[f"r{key}"].link.name for key in range(1, count + 1)]
            assert again == names and jar.load_count == 2 * batches
            transaction.abort()

    def test_create_store_delete(self, fed):
        """New, changed and deleted records are written on commit and seen by another manager."""
        tm1, tm2 = transaction.TransactionManager(), transaction.TransactionManager()
        with fed.open(tm1) as one, fed.open(tm2) as two:
            grace = Person("Grace", "grace@example.org")
            one.add(grace, "people")
            ref = one.ref(grace)
            tm1.commit()
            assert two.get(ref).name == "Grace"
            tm2.commit()

            grace.email = "hopper@example.org"
            tm1.commit()
            tm2.begin()
            assert two.get(ref).email == "hopper@example.org"
            tm2.commit()

            one.delete(grace)
            tm1.commit()
            tm2.begin()
            with pytest.raises(federation.KeyNotFound):
                two.get(ref)
            tm2.abort()

    def test_abort_writes_nothing(self, foreign, fed):
        """An aborted transaction leaves the store as it was."""
        foreign.seed(1, self._record("Ada"))
        with fed.open() as conn:
            conn.get(foreign.ref(1)).name = "Changed"
            new = Person("New")
            conn.add(new, "people")
            new_ref = conn.ref(new)
            transaction.abort()
            assert conn.get(foreign.ref(1)).name == "Ada"
            with pytest.raises(federation.KeyNotFound):
                conn.get(new_ref)

    def test_references_both_ways(self, foreign, fed):
        """ZODB -> foreign references go through stubs, foreign -> ZODB through Ref values."""
        foreign.seed(1, self._record("Ada"))
        with fed.open() as conn:
            page = conn.root("main")["page"] = Item("page")
            transaction.commit()
            ada = conn.get(foreign.ref(1))
            conn.root("main")["about-ada"] = Item("about", link=ada)
            ada.owner = page
            transaction.commit()
        with fed.open() as conn:
            ada = conn.root("main")["about-ada"].link
            assert ada.name == "Ada"
            assert ada.owner is conn.root("main")["page"]
            assert [s.target for s in conn.stubs("main")] == [conn.ref(ada)]
            transaction.abort()

    def test_row_gone_and_wrong_kind_are_clear_errors(self, foreign, fed):
        """A referenced record deleted elsewhere, or a key of the wrong kind, is a clear error."""
        foreign.seed(1, self._record("Ada"))
        foreign.seed(2, self._record("Bob"))
        wrong_kind = "uuid" if foreign.kind != "uuid" else "integer"
        wrong_key = {"uuid": "0" * 32, "integer": "1"}[wrong_kind]
        with fed.open() as conn:
            conn.root("main")["link"] = Item("link", link=conn.get(foreign.ref(2)))
            transaction.commit()
            with fed.open(transaction.TransactionManager()) as other:
                other.delete(other.get(foreign.ref(2)))
                other.transaction_manager.commit()
            conn.sync()
            gone = f"'people'.*key {foreign.key_text(2)}"
            with pytest.raises(federation.DanglingStub, match=gone):
                conn.root("main")["link"].link.name  # noqa: B018 - touching it is the test
            with pytest.raises(federation.InvalidKey, match=foreign.kind):
                conn.get(f"people:{wrong_kind}:{wrong_key}")
            transaction.abort()

    def test_find_treats_values_as_data(self, foreign, conn):
        """find() matches values exactly; query syntax in a value is data."""
        foreign.seed(1, self._record("*)(uid=*"))
        foreign.seed(2, self._record("x' OR '1'='1"))
        foreign.seed(3, self._record("Ada"))
        jar = conn.jar("people")
        assert [p.name for p in jar.find("name", "*)(uid=*")] == ["*)(uid=*"]
        assert [p.name for p in jar.find("name", "x' OR '1'='1")] == ["x' OR '1'='1"]
        assert jar.find("name", "nobody") == []

    def test_rejected_value_changes_no_member(self, foreign, fed):
        """A value the store rejects fails the commit naming the member; no member changes."""
        foreign.seed(1, self._record("Ada"))
        with fed.open() as conn:
            conn.root("main")["x"] = Item("x")
            ada = conn.get(foreign.ref(1))
            for name, value in foreign.bad_record.items():
                setattr(ada, name, value)
            with pytest.raises(federation.FederationError, match="'people'"):
                transaction.commit()
            transaction.abort()
            assert "x" not in conn.root("main")
            assert journal_entries(conn, "main") == []
            assert conn.get(foreign.ref(1)).name == "Ada"

    def test_savepoint_rollback(self, foreign, fed):
        """Rolling back to a savepoint restores records changed after it."""
        foreign.seed(1, self._record("Ada"))
        with fed.open() as conn:
            ada = conn.get(foreign.ref(1))
            ada.email = "first@example.org"
            savepoint = transaction.savepoint()
            ada.email = "second@example.org"
            savepoint.rollback()
            transaction.commit()
            transaction.begin()
            assert conn.get(foreign.ref(1)).email == "first@example.org"
            transaction.abort()

    def test_changes_by_others_seen_after_a_boundary(self, foreign, conn):
        """A record changed by another program is read afresh in the next transaction."""
        foreign.seed(1, self._record("Ada"))
        ada = conn.get(foreign.ref(1))
        assert ada.name == "Ada"
        foreign.seed(1, self._record("Ada Lovelace"))
        conn.sync()
        assert ada.name == "Ada Lovelace"
        assert conn.get(foreign.ref(1)) is ada

    def test_prepared_transaction_recovery(self, foreign, fed):
        """A prepared transaction is listed by recover() and can be rolled back or committed."""
        if not foreign.two_phase:
            pytest.skip("the adapter has no two-phase commit")
        member = fed.member("people")
        key = foreign.key(7)
        adapter = member.factory()
        try:
            adapter.begin("zfed-test-recover")
            adapter.create(key, self._record("Prepared"))
            adapter.prepare()
        finally:
            adapter.close()
        other = member.factory()
        try:
            assert "zfed-test-recover" in other.recover(0.0)
            assert other.load_many([key]) == {}  # prepared, not visible
            other.finish_prepared("zfed-test-recover", commit=True)
            assert other.load(key)["name"] == "Prepared"
            assert "zfed-test-recover" not in other.recover(0.0)
        finally:
            other.close()

    def test_two_last_resources_are_refused_before_writing(self, foreign, tmp_path):
        """A transaction changing two members without two-phase commit fails; nothing is written."""
        if foreign.two_phase or foreign.second_spec is None:
            pytest.skip("needs an adapter without two-phase commit")
        foreign.seed(1, self._record("Ada"))
        members = {"main": (tmp_path / "main.fs").as_uri(), "people": foreign.spec,
                   "others": foreign.second_spec}
        with federation.open(members) as fed, fed.open() as conn:
            conn.get(foreign.ref(1)).name = "Changed"
            conn.add(Person("Other"), "others")
            with pytest.raises(federation.FederationError, match="two-phase"):
                transaction.commit()
            transaction.abort()
            assert conn.get(foreign.ref(1)).name == "Ada"
