"""The commit coordinator: late work before any vote, lock order, aborts, the journal's cost."""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest
import transaction
from persistent import Persistent
from ZODB.POSException import ConflictError

import federation
from tests.helpers import journal_entries
from tests.models import Item, Person, Placed
from tests.test_adapter_sqlite import make_member


class Tagged(Persistent):
    """A class placed in the SQLite member by a rule (in the tests that set one)."""


def _open(tmp_path, placement=None, **extra):
    members = {name: (tmp_path / f"{name}.fs").as_uri() for name in ("main", "notes")}
    members.update(extra)
    return federation.open(members, placement=placement or {})


def test_stub_made_by_a_late_object_is_indexed(tmp_path):
    """A stub created while storing an object placed during another member's commit is indexed."""
    with _open(tmp_path, {Placed: "main"}) as fed, fed.open() as conn:
        page = conn.root("notes")["page"] = Item("page")
        transaction.commit()
        placed = Placed("late")
        placed.link = page  # main stores it only because notes' commit placed it there
        conn.root("notes")["placed"] = placed
        transaction.commit()
    with _open(tmp_path, {Placed: "main"}) as fed, fed.open() as conn:
        page = conn.root("notes")["page"]
        assert [stub.target for stub in conn.stubs("main")] == [conn.ref(page)]
        conn.root("main")["again"] = Item("again", link=page)
        transaction.commit()
        assert len(conn.stubs("main")) == 1  # the index found it: no duplicate stub


def test_last_resource_ref_to_a_new_zodb_object_is_written(tmp_path):
    """A row placed late whose Ref column names a new object placed by a rule: both stored."""
    people, _path = make_member(tmp_path, "people")
    placement = {Placed: "main", Person: "people"}
    with _open(tmp_path, placement, people=people) as fed, fed.open() as conn:
        placed = Placed("placed")  # placed in main by notes' commit, stored late
        placed.person = Person("Ada", owner=Placed("owner"))  # then in people, then main
        conn.root("notes")["placed"] = placed
        transaction.commit()
    with _open(tmp_path, placement, people=people) as fed, fed.open() as conn:
        assert conn.root("notes")["placed"].person.owner.title == "owner"


def test_placement_target_foreign_member_is_idle_in_zodb_only_commits(tmp_path):
    """Two SQLite placement targets take no part in commits that change only ZODB members."""
    one, one_path = make_member(tmp_path, "one")
    two, _ = make_member(tmp_path, "two")
    with _open(tmp_path, {Person: "one", Tagged: "two"}, one=one, two=two) as fed, \
            fed.open() as conn:
        for index in range(3):
            conn.root("main")[f"page{index}"] = Item(f"page{index}")
            transaction.commit()
        other = sqlite3.connect(one_path, timeout=0)
        other.execute("BEGIN IMMEDIATE")  # no lock left behind by the commits
        other.rollback()
        other.close()


def test_sqlite_is_rolled_back_after_a_failed_commit(tmp_path):
    """After a commit that failed (a duplicate key), SQLite holds no lock and attempts() retries."""
    people, path = make_member(tmp_path, "people")
    with _open(tmp_path, people=people) as fed, fed.open() as conn:
        ada = Person("Ada")
        conn.add(ada, "people")
        transaction.commit()
        key = conn.ref(ada).key
        with sqlite3.connect(path) as other:  # another program takes the next key
            other.execute("INSERT INTO person (id, name) VALUES (?, 'Squatter')", (key + 1,))
        other.close()
        conn.jar("people").adapter.new_key = lambda state: key + 1  # collide with the squatter
        conn.add(Person("Bob"), "people")
        conn.root("main")["x"] = Item("x")
        with pytest.raises(federation.FederationError, match="'people'"):
            transaction.commit()
        transaction.abort()
        check = sqlite3.connect(path, timeout=0)
        check.execute("BEGIN IMMEDIATE")  # would raise "database is locked"
        check.rollback()
        check.close()
        assert "x" not in conn.root("main")


def test_conflict_is_retried_with_attempts(tmp_path):
    """A ConflictError in one member aborts every member, and transaction.attempts() retries."""
    people, _path = make_member(tmp_path, "people")
    with _open(tmp_path, people=people) as fed:
        tm1, tm2 = transaction.TransactionManager(), transaction.TransactionManager()
        first, second = fed.open(tm1), fed.open(tm2)
        first.root("main")["page"] = Item("page")
        tm1.commit()
        tm2.begin()
        second.root("main")["page"].title = "second"
        first.root("main")["page"].title = "first"
        tm1.commit()
        ada = Person("Ada")
        second.add(ada, "people")
        with pytest.raises(ConflictError):
            tm2.commit()
        tm2.abort()
        for attempt in tm2.attempts():
            with attempt:
                second.root("main")["page"].title = "second"
                second.add(Person("Ada"), "people")
        tm1.begin()
        assert first.root("main")["page"].title == "second"
        assert [p.name for p in first.jar("people").find("name", "Ada")] == ["Ada"]
        first.close()
        second.close()


def test_abort_of_a_changed_new_foreign_object(tmp_path):
    """conn.add(obj, sql); obj.x = 1; abort: no error, and the manager closes."""
    people, _path = make_member(tmp_path, "people")
    with _open(tmp_path, people=people) as fed:
        conn = fed.open()
        ada = Person("Ada")
        conn.add(ada, "people")
        ada.email = "ada@example.org"
        transaction.abort()
        assert ada._p_jar is None
        conn.close()


def test_one_member_transactions_write_no_journal(tmp_path):
    """A commit that changes one member leaves no journal entry and no marker behind."""
    with _open(tmp_path) as fed, fed.open() as conn:
        conn.root("main")["page"] = Item("page")
        transaction.commit()
        size = conn.jar("main")._storage.getSize()
        conn.root("main")["page"].title = "changed"
        transaction.commit()
        grown = conn.jar("main")._storage.getSize() - size
        conn.root("main")["page"].title = "CHANGED"
        transaction.commit()
        assert conn.jar("main")._storage.getSize() - size == 2 * grown  # the same cost each
        assert journal_entries(conn, "main") == []
        assert journal_entries(conn, "notes") == []


def test_several_member_transactions_journal_and_clean_up(tmp_path):
    """A commit over two members writes one entry; a later one, or close, deletes it."""
    with _open(tmp_path) as fed, fed.open() as conn:
        page = conn.root("main")["page"] = Item("page")
        transaction.commit()
        page.title = "changed"
        conn.root("notes")["note"] = Item("note", link=page)
        transaction.commit()
        assert len(journal_entries(conn, "main") + journal_entries(conn, "notes")) == 1
    with _open(tmp_path) as fed, fed.open() as conn:
        assert journal_entries(conn, "main") + journal_entries(conn, "notes") == []
        assert conn.root("notes")["note"].link is conn.root("main")["page"]


def test_threads_with_their_own_managers_do_not_deadlock(tmp_path):
    """Two threads commit into late-joining members in opposite orders; none waits for ever."""
    with _open(tmp_path, {Placed: "notes", Tagged: "main"}) as fed:
        errors: list[BaseException] = []
        done = threading.Event()
        deadline = time.monotonic() + 5.0
        counts = [0, 0]

        def worker(index: int) -> None:
            tm = transaction.TransactionManager()
            conn = fed.open(tm)
            try:
                while time.monotonic() < deadline and not done.is_set():
                    for attempt in tm.attempts(10):
                        with attempt:
                            if index:  # main's commit places an object in notes
                                conn.root("main")[f"p{counts[index]}"] = Placed("p")
                            else:  # notes' commit places an object in main
                                conn.root("notes")[f"t{counts[index]}"] = Tagged()
                    counts[index] += 1
            except BaseException as error:
                errors.append(error)
            finally:
                tm.abort()
                conn.close()

        threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in (0, 1)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)  # the watchdog: a deadlock fails here, not at the timeout
        done.set()
        assert not any(thread.is_alive() for thread in threads), "the committers deadlocked"
        assert errors == []
        assert min(counts) > 10


def test_a_coordinator_lives_as_long_as_its_managers(tmp_path):
    """Managers on one transaction manager share a coordinator; the last to close releases it."""
    with _open(tmp_path) as fed:
        tm = transaction.TransactionManager()
        first, second = fed.open(tm), fed.open(tm)
        shared = first.coordinator
        assert second.coordinator is shared
        first.close()
        assert list(fed._coordinators.values()) == [shared]  # second still uses it
        second.close()
        assert fed._coordinators == {}  # no coordinator kept per transaction manager ever used
