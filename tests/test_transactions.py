"""Savepoints, rollback, abort and write conflicts across members."""

from __future__ import annotations

import pytest
import transaction
from ZODB.POSException import ConflictError

import federation
from tests.models import Item


def test_abort_leaves_no_stub(conn):
    """An aborted transaction leaves neither the referrer nor its stub."""
    page = conn.root("main")["page"] = Item("page")
    transaction.commit()
    conn.root("notes")["note"] = Item("note", link=page)
    transaction.abort()
    assert conn.stubs("notes") == []
    assert "note" not in conn.root("notes")
    # The next commit creates the stub afresh and it resolves.
    conn.root("notes")["note"] = Item("note", link=page)
    transaction.commit()
    assert conn.root("notes")["note"].link is page
    assert len(conn.stubs("notes")) == 1


def test_failed_commit_writes_nothing_anywhere(conn):
    """A commit that fails in one member leaves every member as it was."""
    page = conn.root("main")["page"] = Item("page")
    transaction.commit()
    main_size = conn.jar("main")._storage.getSize()
    notes_size = conn.jar("notes")._storage.getSize()

    class Boom:
        def __reduce__(self):
            raise RuntimeError("cannot pickle this")

    page.title = "changed"
    conn.root("notes")["note"] = Item("note", link=page)
    conn.root("people")["bad"] = Item("bad", link=Boom())
    with pytest.raises(RuntimeError):
        transaction.commit()
    transaction.abort()
    assert conn.jar("main")._storage.getSize() == main_size
    assert conn.jar("notes")._storage.getSize() == notes_size
    assert conn.stubs("notes") == []
    assert page.title == "page"


def test_savepoint_rollback_drops_stubs_made_after_it(conn):
    """Rolling back to a savepoint forgets the stubs created after it."""
    page = conn.root("main")["page"] = Item("page")
    other = conn.root("main")["other"] = Item("other")
    transaction.commit()

    conn.root("notes")["a"] = Item("a", link=page)
    savepoint = transaction.savepoint()
    conn.root("notes")["b"] = Item("b", link=other)
    transaction.savepoint()
    savepoint.rollback()
    transaction.commit()

    assert [s.target for s in conn.stubs("notes")] == [conn.ref(page)]
    assert "b" not in conn.root("notes")
    assert conn.root("notes")["a"].link is page


def test_savepoints_then_commit_keep_every_reference(conn):
    """References made across several savepoints all survive the final commit."""
    pages = conn.root("main")
    for i in range(30):
        pages[f"p{i}"] = Item(f"p{i}")
    transaction.commit()
    notes = conn.root("notes")
    for i in range(30):
        notes[f"n{i}"] = Item(f"n{i}", link=pages[f"p{i}"])
        if i % 10 == 9:
            transaction.savepoint(optimistic=True)
    transaction.commit()
    assert len(conn.stubs("notes")) == 30
    for i in range(30):
        assert notes[f"n{i}"].link is pages[f"p{i}"]


def test_write_conflict_between_two_managers_is_retried(fed):
    """Two managers changing one object: a ConflictError that transaction.attempts() retries."""
    tm1 = transaction.TransactionManager()
    tm2 = transaction.TransactionManager()
    one = fed.open(tm1)
    two = fed.open(tm2)
    try:
        page = one.root("main")["page"] = Item("page")
        tm1.commit()
        one.root("notes")["count"] = Item("count")
        one.root("notes")["count"].value = 0
        tm1.commit()
        tm2.begin()

        one.root("notes")["count"].value += 1
        one.root("notes")["count"].link = page
        two.root("notes")["count"].value += 1
        tm1.commit()
        with pytest.raises(ConflictError):
            tm2.commit()
        tm2.abort()

        for attempt in tm2.attempts():
            with attempt:
                counter = two.root("notes")["count"]
                counter.value += 1
                counter.link = two.root("main")["page"]
        tm1.begin()
        assert one.root("notes")["count"].value == 2
        assert one.root("notes")["count"].link is page
        assert len(one.stubs("notes")) == 1
    finally:
        tm1.abort()
        tm2.abort()
        one.close()
        two.close()


def test_two_managers_creating_stubs_concurrently(fed):
    """Stubs created at once by two managers in one member both survive (index buckets merge)."""
    tm1 = transaction.TransactionManager()
    tm2 = transaction.TransactionManager()
    one = fed.open(tm1)
    two = fed.open(tm2)
    try:
        pages = one.root("main")
        for i in range(40):
            pages[f"p{i}"] = Item(f"p{i}")
        tm1.commit()
        notes = one.root("notes")
        notes["first"] = Item("first", link=pages["p0"])  # the index has a bucket now
        notes["h1"] = Item("holder one")
        notes["h2"] = Item("holder two")
        tm1.commit()
        tm2.begin()

        notes["h1"].links = [pages[f"p{i}"] for i in range(1, 20)]
        other_notes, other_pages = two.root("notes"), two.root("main")
        other_notes["h2"].links = [other_pages[f"p{i}"] for i in range(20, 40)]
        tm1.commit()
        tm2.commit()  # no ConflictError: both wrote different keys of the same buckets

        tm1.begin()
        assert len(one.stubs("notes")) == 40
        assert [p.title for p in notes["h2"].links] == [f"p{i}" for i in range(20, 40)]
        assert notes["h2"].links[0] is pages["p20"]
    finally:
        tm1.abort()
        tm2.abort()
        one.close()
        two.close()


def test_closed_manager_refuses_work(fed):
    """Using a closed manager raises a FederationError, not an obscure ZODB error."""
    conn = fed.open()
    conn.close()
    with pytest.raises(federation.FederationError, match="closed"):
        conn.root("main")


def test_closing_with_pending_changes_is_refused(fed):
    """Closing a manager with uncommitted changes names the members; after abort it closes."""
    conn = fed.open()
    conn.root("notes")["x"] = Item("x")
    with pytest.raises(federation.FederationError, match="notes"):
        conn.close()
    transaction.abort()
    conn.close()
    with pytest.raises(federation.FederationError, match="closed"):
        conn.root("notes")
