"""The model-based test of a federation, with a budget of a few seconds (see tests/stateful.py).

``benchmarks/model.py`` runs the same machine with a large budget.
"""

from __future__ import annotations

import transaction
from hypothesis import HealthCheck, settings

from tests.models import Item
from tests.stateful import FederationModel

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
