"""reindex changes index entries, safely under concurrent commits, and keeps every live stub."""

from __future__ import annotations

import transaction

from federation import maintenance
from tests.models import Item


def test_reindex_keeps_a_stub_committed_meanwhile(fed):
    """A stub committed by another manager while reindex runs keeps its index entries."""
    with fed.open() as conn:
        page = conn.root("main")["page"] = Item("page")
        late = conn.root("main")["late"] = Item("late")
        transaction.commit()
        conn.root("notes")["a"] = Item("a", link=page)
        transaction.commit()
        # Something for reindex to repair, so that both commits change the index.
        catalog = conn.jar("notes")._catalog()
        [tkey] = catalog.stubs_by_target.keys()
        del catalog.stubs_by_target[tkey]
        transaction.commit()

    def commit_meanwhile(step: str) -> None:
        assert step == "scanned"
        tm = transaction.TransactionManager()
        with fed.open(tm) as other:
            other.root("notes")["b"] = Item("b", link=other.root("main")["late"])
            tm.commit()

    tm = transaction.TransactionManager()
    with fed.open(tm) as conn:
        report = maintenance.reindex(conn, "notes", hook=commit_meanwhile)
        tm.commit()
        assert (report.stubs, report.added) == (1, 1)
    with fed.open() as conn:
        targets = {stub.target.key for stub in conn.stubs("notes")}
        assert targets == {int.from_bytes(page._p_oid, "big"), int.from_bytes(late._p_oid, "big")}
        # The index still finds the stub: a new reference reuses it.
        conn.root("notes")["c"] = Item("c", link=conn.root("main")["late"])
        transaction.commit()
        assert len(conn.stubs("notes")) == 2


def test_reindex_keeps_stubs_of_objects_only_other_members_reach(fed):
    """Stubs held by an object that only another member references stay indexed."""
    with fed.open() as conn:
        person = conn.root("people")["ada"] = Item("Ada")
        transaction.commit()
        middle = Item("middle", link=person)  # main -> people: a stub in main
        conn.add(middle, "main")
        transaction.commit()
        conn.root("notes")["n"] = Item("n", link=middle)  # only notes reaches middle
        transaction.commit()
        before = conn.stubs("main")
        assert len(before) == 1
        report = conn.reindex("main")
        transaction.commit()
        assert report.stubs == 1 and report.removed == 0
        assert conn.stubs("main") == before


def test_reindex_drops_entries_whose_stub_is_gone_and_fixes_missing_ones(fed):
    """Entries of removed stubs go; a stub missing from the index is added back."""
    with fed.open() as conn:
        page = conn.root("main")["page"] = Item("page")
        transaction.commit()
        conn.root("notes")["a"] = Item("a", link=page)
        transaction.commit()
        catalog = conn.jar("notes")._catalog()
        [(tkey, stub_oid)] = catalog.stubs_by_target.items()
        del catalog.stubs_by_target[tkey]
        catalog.stubs_by_oid[b"\0" * 7 + b"\x7f"] = catalog.stubs_by_oid[stub_oid]
        transaction.commit()
        report = conn.reindex("notes")
        transaction.commit()
        assert (report.added, report.removed) == (1, 1)
        assert dict(catalog.stubs_by_target) == {tkey: stub_oid}
        assert list(catalog.stubs_by_oid) == [stub_oid]
