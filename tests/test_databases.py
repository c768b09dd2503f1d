"""``Federation.databases``: ZODB members as ``ZODB.DB``s, for code that calls ``db.open()``."""

from __future__ import annotations

import threading
import time

import pytest
import transaction
from ZODB.POSException import POSKeyError

import federation
from federation import gc
from federation.databases import FederatedDatabase, manager_of
from federation.interfaces import Database
from tests.models import Item
from tests.test_adapter_sqlite import make_member


def one_sentence(error: BaseException) -> str:
    """The error's message, checked to be one line ending with a full stop."""
    message = str(error)
    assert "\n" not in message and message.endswith(".")
    return message


def linked(databases, tm=None):
    """Open main and notes on ``tm``, link a note to a page, commit; the two connections."""
    main = databases["main"].open(tm)
    notes = databases["notes"].open(tm)
    page = Item("page")
    main.add(page)
    main.root()["page"] = page
    notes.root()["note"] = Item("note", link=page)
    (tm or transaction.manager).commit()
    return main, notes


def test_a_plain_script_follows_references_after_reopening(uris):
    """A script that only calls db.open() writes and reads cross-member references."""
    with federation.open(uris) as fed:
        main, notes = linked(fed.databases)
        main.close()
        notes.close()
    with federation.open(uris) as fed:
        db = fed.databases["notes"]
        conn = db.open()
        note = conn.root()["note"]
        assert note.link.title == "page"  # an object, not an Unreachable placeholder
        assert note.link is conn.get_connection("main").root()["page"]
        note.link.title = "home"
        transaction.commit()
        conn.close()
    with federation.open(uris) as fed, fed.databases["main"].transaction() as conn:
        assert conn.root()["page"].title == "home"


def test_one_manager_per_transaction_manager(fed):
    """Every member opened on one transaction manager is a connection of one manager."""
    main, notes = linked(fed.databases)
    assert isinstance(fed.databases["main"], Database)
    assert manager_of(main) is manager_of(notes) is fed.databases.manager()
    assert main.get_connection("notes") is notes and notes.get_connection("main") is main
    assert notes.root()["note"].link is main.root()["page"]
    assert manager_of(main.root()["page"]) is manager_of(main)
    assert main.transaction_manager is transaction.manager.manager
    notes.close()
    main.close()


def test_one_two_phase_commit_covers_every_member(fed):
    """A commit that fails in one member leaves the other as it was."""
    main, notes = linked(fed.databases)
    size = main._storage.getSize()

    class Boom:
        def __reduce__(self):
            raise RuntimeError("cannot pickle this")

    main.root()["page"].title = "changed"
    notes.root()["bad"] = Item("bad", link=Boom())
    with pytest.raises(RuntimeError):
        transaction.commit()
    transaction.abort()
    assert main._storage.getSize() == size
    assert main.root()["page"].title == "page" and "bad" not in notes.root()
    notes.close()
    main.close()


def test_second_open_is_the_same_connection_and_one_more_handle(fed):
    """Opening a member twice on one transaction manager gives its connection twice."""
    main, notes = linked(fed.databases)
    again = fed.databases["main"].open()
    assert again is main
    main.close()
    notes.close()
    manager = fed.databases.manager()
    assert manager is not None and not manager.closed
    assert again.root()["page"].title == "page"  # the last handle is still open
    again.close()
    assert manager.closed and fed.databases.manager() is None


def test_the_last_close_returns_the_connections_to_the_pool(fed):
    """The manager closes with its last handle; the next open reuses its connections."""
    main, notes = linked(fed.databases)
    page = main.root()["page"]
    notes.close()
    assert notes.root()["note"].link is page  # closing one handle leaves the others usable
    main.close()
    assert main.opened is None and notes.opened is None
    reopened = fed.databases["notes"].open()
    assert reopened is notes and reopened.opened is not None
    assert reopened.root()["note"].link is page  # the caches came back with them
    reopened.close()
    reopened.close()  # a second close of a pooled connection changes nothing
    assert fed.databases["notes"].open() is notes and fed.databases.manager() is not None
    notes.close()
    assert fed.databases.manager() is None


def test_closing_a_connection_from_get_connection_closes_the_group(fed):
    """As in a native multi-database, closing a secondary connection closes them all."""
    main = fed.databases["main"].open()
    notes = main.get_connection("notes")
    notes.close()
    assert fed.databases.manager() is None and main.opened is None


def test_closing_with_changes_is_refused(fed):
    """A connection whose manager has changes cannot be closed: one sentence, then it can."""
    main, notes = linked(fed.databases)
    main.root()["page"].title = "changed"
    with pytest.raises(federation.FederationError) as caught:
        main.close()  # not the last handle, but main has changes
    assert "'main'" in one_sentence(caught.value)
    notes.close()
    with pytest.raises(federation.FederationError) as caught:
        main.close()  # the last handle: the manager cannot close
    assert "main" in one_sentence(caught.value)
    transaction.abort()
    main.close()
    assert fed.databases.manager() is None


def test_a_connection_of_federation_open_is_closed_with_its_manager(fed):
    """A jar of a manager from Federation.open() refuses close(): close the manager."""
    with fed.open() as conn:
        with pytest.raises(federation.FederationError) as caught:
            conn.jar("main").close()
        assert "close the manager" in one_sentence(caught.value)
        assert conn.root("main") is not None


def test_federation_open_and_db_open_share_the_commit(fed):
    """A manager of Federation.open() and db.open() connections commit as one transaction."""
    main = fed.databases["main"].open()
    with fed.open() as other:
        assert other is not manager_of(main)
        assert other.coordinator is manager_of(main).coordinator
        main.root()["a"] = Item("a")
        other.root("notes")["b"] = Item("b")
        transaction.abort()
        assert "a" not in main.root() and "b" not in other.root("notes")
        main.root()["a"] = Item("a")
        other.root("notes")["b"] = Item("b")
        transaction.commit()
    main.close()
    with fed.databases["notes"].transaction() as conn:
        assert conn.root()["b"].title == "b" and conn.get_connection("main").root()["a"]


def test_one_member_changed_through_two_managers_is_refused_not_hung(fed):
    """Changes to one member through a Federation.open() manager and a db.open()
    connection on the same transaction manager: a FederationError naming the member, and
    nothing written, where the second branch used to wait forever for the member's commit
    lock, which the first held."""
    tm = transaction.TransactionManager()
    main = fed.databases["main"].open(tm)
    with fed.open(tm) as other:
        main.root()["a"] = Item("a")
        other.root("main")["b"] = Item("b")
        other.root("notes")["c"] = Item("c")
        with pytest.raises(federation.FederationError) as caught:
            tm.commit()
        assert "Member 'main'" in one_sentence(caught.value)
        tm.abort()
    main.close()
    with fed.databases["main"].transaction() as conn:
        assert not {"a", "b"} & set(conn.root())
        assert "c" not in conn.get_connection("notes").root()

def test_one_foreign_member_changed_through_two_managers_is_refused(tmp_path, uris):
    """A foreign member changed through two managers on one transaction manager: refused at
    commit in one sentence naming it (SQLite said "Members 'people', 'people' lack two-phase
    commit"; a PostgreSQL member's second branch waited forever for the row lock of the
    first)."""
    from tests.test_adapter_sqlite import seeder

    people, path = make_member(tmp_path, "people")
    seeder(path)(1, {"name": "Ada"})
    tm = transaction.TransactionManager()
    with federation.open({"main": uris["main"], "people": people}) as fed, \
            fed.open(tm) as first, fed.open(tm) as second:
        first.get("people:integer:1").email = "ada@first"
        second.get("people:integer:1").email = "ada@second"
        with pytest.raises(federation.FederationError) as caught:
            tm.commit()
        assert "Member 'people'" in one_sentence(caught.value)
        tm.abort()
        assert first.get("people:integer:1").email is None

def test_members_whose_storages_share_a_sort_key_commit_together():
    """Two memory:// members (MappingStorages, whose sortKey is the same default name) are
    two storages: a transaction over both commits, not refused as one member twice."""
    with federation.open({"a": "memory://", "b": "memory://"}) as fed, \
            fed.open(transaction.TransactionManager()) as conn:
        item = Item("x")
        conn.add(item, "b")
        conn.root("a")["x"] = item
        conn.transaction_manager.commit()
        assert conn.root("a")["x"] is conn.root("b")._p_jar.get(item._p_oid)

def test_threads_have_managers_of_their_own(fed):
    """Two threads, each on its own transaction manager, get managers and objects of their own."""
    for conn in linked(fed.databases):
        conn.close()
    results: dict[str, object] = {}
    barrier = threading.Barrier(2)

    def work(name: str, member: str) -> None:
        try:
            conn = fed.databases[member].open(transaction.manager)  # the thread's, as ZODB does
            barrier.wait()  # both open at once
            page = conn.get_connection("notes").root()["note"].link
            conn.root()[name] = Item(name, link=page)
            transaction.commit()
            results[name] = (conn, manager_of(conn), page)
            barrier.wait()  # neither closes before both committed
            conn.close()
        except BaseException as error:
            results[name] = error
            barrier.abort()

    threads = [threading.Thread(target=work, args=args)
               for args in (("t1", "main"), ("t2", "notes"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    (conn1, manager1, page1), (conn2, manager2, page2) = results["t1"], results["t2"]
    assert conn1 is not conn2 and manager1 is not manager2 and page1 is not page2
    assert manager1.transaction_manager is not manager2.transaction_manager
    with fed.databases["notes"].transaction() as conn:
        main = conn.get_connection("main").root()
        assert main["t1"].link is conn.root()["t2"].link is main["page"]


def test_federation_open_on_transaction_manager_is_per_thread(fed):
    """fed.open(transaction.manager) in two threads: one's abort is not the other's commit."""
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def work(name: str, member: str, commit: bool) -> None:
        try:
            with fed.open(transaction.manager) as conn:
                conn.root(member)[name] = Item(name)
                barrier.wait()  # both changed
                if commit:
                    transaction.commit()
                barrier.wait()
                transaction.abort()
        except BaseException as error:
            errors.append(error)
            barrier.abort()

    threads = [threading.Thread(target=work, args=args)
               for args in (("kept", "main", True), ("dropped", "notes", False))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with fed.open() as conn:
        assert "kept" in conn.root("main") and "dropped" not in conn.root("notes")


def test_a_transaction_manager_of_ones_own(fed):
    """db.open(tm) on a transaction manager of the caller's is committed by that manager."""
    tm = transaction.TransactionManager()
    main, notes = linked(fed.databases, tm)
    assert main.transaction_manager is tm
    assert fed.databases.manager(tm) is manager_of(main)
    assert fed.databases.manager() is None  # nothing open on the thread's
    main.close()
    notes.close()


def test_db_transaction_commits_or_aborts(fed):
    """db.transaction() commits on success, aborts on an error, and closes either way."""
    with fed.databases["main"].transaction("a note") as conn:
        conn.root()["page"] = Item("page")
    assert fed.databases.manager(conn.transaction_manager) is None
    with pytest.raises(ZeroDivisionError), fed.databases["main"].transaction() as conn:
        conn.root()["page"].title = "changed"
        conn.root()["other"] = Item("other")
        1 / 0  # noqa: B018 - the error is the test
    with fed.databases["main"].transaction() as conn:
        assert conn.root()["page"].title == "page" and "other" not in conn.root()
    storage = fed.databases["main"].storage
    assert b"a note" in [info["description"] for info in storage.undoLog(0, 10)]


def test_what_zodb_db_answers(fed):
    """database_name, databases, storage and DB's informational calls."""
    databases = fed.databases
    db = databases["notes"]
    assert isinstance(db, FederatedDatabase) and repr(db) == "<FederatedDatabase 'notes'>"
    assert db.database_name == db.getName() == "notes"
    assert db.databases is databases and list(databases) == ["main", "notes", "people"]
    assert len(databases) == 3 and "notes" in databases and "nope" not in databases
    assert db.storage is fed.member("notes").db.storage
    for conn in linked(databases):
        conn.close()
    assert db.objectCount() >= 3 and db.getSize() > 0
    assert db.lastTransaction() == db.storage.lastTransaction()
    assert db.supportsUndo() is False


def test_pack_goes_through_the_federation(fed):
    """db.pack() keeps what only another member references and removes the garbage."""
    main, notes = linked(fed.databases)
    page = main.root()["page"]
    main.root()["garbage"] = garbage = Item("garbage")
    transaction.commit()
    page_oid, garbage_oid = page._p_oid, garbage._p_oid
    del main.root()["page"]  # now only the note in "notes" references the page
    del main.root()["garbage"]
    transaction.commit()
    main.close()
    notes.close()
    report = fed.databases["main"].pack(t=time.time(), days=0)
    assert isinstance(report, gc.CollectionReport)
    storage = fed.databases["main"].storage
    storage.load(page_oid)
    with pytest.raises(POSKeyError):
        storage.load(garbage_oid)
    with fed.databases["notes"].transaction() as conn:
        assert conn.root()["note"].link.title == "page"


def test_close_closes_the_federation(fed):
    """db.close() closes the federation; closing again does nothing; then open is refused."""
    fed.databases["main"].close()
    assert fed.closed and fed.member("main").db is None
    fed.databases["notes"].close()
    for call in (lambda: fed.databases["main"].open(), lambda: fed.databases["notes"].storage,
                 lambda: fed.databases["main"].pack()):
        with pytest.raises(federation.FederationError) as caught:
            call()
        assert "closed" in one_sentence(caught.value)


def test_an_unavailable_member(uris):
    """Opening a member whose server is down raises MemberUnavailable and leaves no manager."""
    members = {"main": uris["main"], "remote": "zeo://127.0.0.1:1?wait_timeout=1"}
    with federation.open(members) as fed:
        with pytest.raises(federation.MemberUnavailable) as caught:
            fed.databases["remote"].open()
        assert "'remote'" in one_sentence(caught.value)
        assert fed.databases.manager() is None
        conn = fed.databases["main"].open()
        with pytest.raises(federation.MemberUnavailable):
            conn.get_connection("remote")
        with pytest.raises(federation.MemberUnavailable):
            fed.databases["remote"].storage  # noqa: B018 - the error is the test
        conn.close()


def test_foreign_and_unknown_member_names(tmp_path, uris):
    """A foreign member has no database or connection; an unknown name is UnknownMember."""
    people, _path = make_member(tmp_path, "people")
    with federation.open({"main": uris["main"], "people": people}) as fed:
        assert list(fed.databases) == ["main"] and "people" not in fed.databases
        with pytest.raises(federation.NoZodbDatabase) as caught:
            fed.databases["people"]
        assert "'people' is a foreign member" in one_sentence(caught.value)
        with pytest.raises(federation.UnknownMember) as caught:
            fed.databases[""]
        one_sentence(caught.value)
        conn = fed.databases["main"].open()
        with pytest.raises(federation.NoZodbDatabase, match="'people' is a foreign member"):
            conn.get_connection("people")
        with pytest.raises(federation.UnknownMember, match="'nope'"):
            conn.get_connection("nope")
        conn.close()
        with pytest.raises(federation.FederationError, match="'people' is a foreign member"):
            fed.databases.with_primary("people")


def test_historical_connections_are_refused(fed):
    """db.open(at=...) or before=... is refused: their references could not be followed."""
    for kw in ({"at": b"\0" * 8}, {"before": b"\xff" * 8}):
        with pytest.raises(federation.FederationError) as caught:
            fed.databases["main"].open(**kw)
        assert "'main'" in one_sentence(caught.value)
    assert fed.databases.manager() is None


def test_manager_of_something_else(fed):
    """manager_of() an object of no manager is one sentence naming it."""
    with pytest.raises(federation.FederationError) as caught:
        manager_of(Item("loose"))
    assert "<Item loose>" in one_sentence(caught.value)


def test_with_primary_aliases_without_a_member_named_empty(fed):
    """with_primary() adds '' for pyramid_zodbconn; references still name the member."""
    aliased = fed.databases.with_primary("main")
    assert aliased[""] is aliased["main"] is fed.databases["main"]
    main = aliased[""].open()
    notes = main.get_connection("notes")
    page = Item("page")
    main.add(page)
    main.root()["page"] = page
    notes.root()["note"] = Item("note", link=page)
    transaction.commit()
    assert str(manager_of(main).ref(page)).startswith("main:integer:")
    assert {stub.target.member for stub in manager_of(main).stubs("notes")} == {"main"}
    main.close()
