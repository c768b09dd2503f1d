"""The in-memory reference adapter passes the conformance suite (two-phase and last-resource)."""

from __future__ import annotations

import pytest
import transaction

import federation
from federation.adapters.memory import MemoryDatabase
from tests.conformance import AdapterConformance, ForeignFixture
from tests.models import Person


def _reject_empty_name(record):
    return "name must not be empty" if not record.get("name") else None


def _fixture(two_phase: bool) -> ForeignFixture:
    def database(name):
        return MemoryDatabase(name, Person, ref_attributes={"owner"}, two_phase=two_phase,
                              batch_size=10, validate=_reject_empty_name)

    people = database("people")
    return ForeignFixture(spec=people, seed=people.insert, two_phase=two_phase, batch_size=10,
                          bad_record={"name": ""}, second_spec=database("others"))


class TestMemoryTwoPhase(AdapterConformance):
    """The reference adapter with two-phase commit."""

    @pytest.fixture
    def foreign(self):
        return _fixture(two_phase=True)


class TestMemoryLastResource(AdapterConformance):
    """The reference adapter taking part as the last resource."""

    @pytest.fixture
    def foreign(self):
        return _fixture(two_phase=False)


def test_value_changed_in_place_is_written(tmp_path):
    """A list attribute changed in place (then marked changed) is written on commit."""
    people = MemoryDatabase("people", Person)
    people.insert(1, {"name": "Ada", "email": ["ada@example.org"], "owner": None})
    members = {"main": (tmp_path / "main.fs").as_uri(), "people": people}
    with federation.open(members) as fed, fed.open() as conn:
        ada = conn.get("people:integer:1")
        ada.email.append("lovelace@example.org")
        ada._p_changed = True
        transaction.commit()
    assert people.records[1]["email"] == ["ada@example.org", "lovelace@example.org"]
