"""The model-based test of a federation, with a budget of a few seconds (see tests/stateful.py).

``benchmarks/model.py`` runs the same machine with a large budget.
"""

from __future__ import annotations

import sqlite3

import transaction
from hypothesis import HealthCheck, settings

import federation
from tests.models import Item, Person
from tests.stateful import FederationModel
from tests.test_adapter_sqlite import make_member

TestFederationModel = FederationModel.TestCase
TestFederationModel.settings = settings(
    max_examples=15, stateful_step_count=20, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def test_member_joined_after_a_savepoint_and_rolled_back_is_released(fed):
    """A member whose only change was rolled back to a savepoint taken before it joined is
    not left joined after the commit (found by the model: the manager could not close)."""
    tm = transaction.TransactionManager()
    conn = fed.open(tm)
    conn.root("main")["kept"] = Item("kept")
    savepoint = tm.savepoint()
    conn.root("notes")["dropped"] = Item("dropped")
    savepoint.rollback()
    tm.commit()
    assert all(jar._needs_to_join for jar in conn._jars.values())
    conn.close()
    with fed.open() as again:
        assert "dropped" not in again.root("notes")
        assert again.root("main")["kept"].title == "kept"
        transaction.abort()


def test_new_rows_rolled_back_to_a_savepoint_from_before_the_member_joined(tmp_path):
    """New SQL rows, one changed after it was added, rolled back to a savepoint taken
    before their member joined: the rollback works and no row is written (found by the
    model: the rollback raised TypeError, and a row added first was kept)."""

    people, path = make_member(tmp_path, "people")
    members = {"main": (tmp_path / "main.fs").as_uri(), "people": people}
    with federation.open(members) as fed:
        tm = transaction.TransactionManager()
        conn = fed.open(tm)
        conn.root("main")["before"] = Item("before")
        savepoint = tm.savepoint()
        first, second = Person("first"), Person("second")
        conn.add(first, "people")
        conn.add(second, "people")
        first.owner = conn.root("main")["before"]
        second.email = "second@example.org"
        conn.root("main")["first"] = first
        savepoint.rollback()
        tm.commit()
        conn.close()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT count(*) FROM person").fetchone()[0] == 0
    db.close()
