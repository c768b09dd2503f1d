"""A long-lived manager's resolution caches under MVCC: right after others change the indexes."""

from __future__ import annotations

import pytest
import transaction

import federation
from federation.adapters.memory import MemoryDatabase
from federation.catalog import UUID_ATTRIBUTE
from federation.connection import Unreachable
from tests.models import Item, Person

#: The connection's fewest kept cache entries (``RESOLUTION_CACHE_MIN``).
RESOLUTION_CACHE_MIN = 1000


def _two(fed: federation.Federation):
    """Two managers on two transaction managers, as two threads of one application."""
    tm1, tm2 = transaction.TransactionManager(), transaction.TransactionManager()
    return (fed.open(tm1), tm1), (fed.open(tm2), tm2)


def _assert_link_reads_back(fed: federation.Federation, key: str, title: str) -> None:
    """A new manager, its cache emptied, reads notes[key].link as the object ``title``."""
    with fed.open() as conn:
        conn.jar("notes").cacheMinimize()
        link = conn.root("notes")[key].link
        assert not isinstance(link, Unreachable), link
        assert link.title == title
        transaction.abort()


@pytest.fixture
def uuid_fed(uris):
    """A federation whose 'main' member names its objects by uuid."""
    fed = federation.open({"main": {"uri": uris["main"], "key": "uuid"}, "notes": uris["notes"]})
    yield fed
    fed.close()


def test_uuid_lookup_follows_a_reindex_by_another_manager(uuid_fed):
    """After another manager moved a UUID to another object and reindexed, get() finds it."""
    (m1, tm1), (m2, tm2) = _two(uuid_fed)
    first = m1.root("main")["first"] = Item("first")
    tm1.commit()
    ref = m1.ref(first)
    tm1.commit()
    assert m1.get(ref) is first
    # What an import does: the UUID now belongs to a new object; the index is rebuilt.
    tm2.begin()
    root = m2.root("main")
    moved = root["moved"] = Item("moved")
    tm2.commit()
    setattr(moved, UUID_ATTRIBUTE, getattr(root["first"], UUID_ATTRIBUTE))
    delattr(root["first"], UUID_ATTRIBUTE)
    tm2.commit()
    m2.reindex("main")
    tm2.commit()
    tm1.begin()
    assert m1.get(ref).title == "moved"
    tm1.abort()
    tm2.abort()
    m1.close()
    m2.close()


def test_uuid_lookups_follow_reindexes_of_a_catalog_from_an_older_release(uuid_fed):
    """A catalog without a generation counter gets one from the first reindex; a manager
    notices that reindex, and the next one, which changes only the counter."""
    (m1, tm1), (m2, tm2) = _two(uuid_fed)
    root = m1.root("main")
    for title in ("first", "second", "third"):
        root[title] = Item(title)
    del m1.jar("main")._catalog().generation  # as made by an older release
    tm1.commit()
    ref = m1.ref(root["first"])
    tm1.commit()
    for old, new in (("first", "second"), ("second", "third")):
        assert m1.get(ref).title == old
        tm2.begin()
        other = m2.root("main")
        setattr(other[new], UUID_ATTRIBUTE, getattr(other[old], UUID_ATTRIBUTE))
        delattr(other[old], UUID_ATTRIBUTE)
        tm2.commit()
        m2.reindex("main")
        tm2.commit()
        tm1.begin()
        assert m1.get(ref).title == new
    tm1.abort()
    m1.close()
    m2.close()


def test_stub_resolution_follows_a_reindex_by_another_manager(fed):
    """A stub resolution cached from a wrong index entry is dropped once another manager
    reindexes: the referrer, read again, names the stub record's target."""
    (m1, tm1), (m2, tm2) = _two(fed)
    page = m1.root("main")["page"] = Item("page")
    other = m1.root("main")["other"] = Item("other")
    tm1.commit()
    m1.root("notes")["note"] = Item("note", link=page)
    tm1.commit()
    tm2.begin()
    catalog = m2.jar("notes")._catalog()
    [(stub_oid, entry)] = catalog.stubs_by_oid.items()
    # Other software damaged the entry: it names 'other'.
    catalog.stubs_by_oid[stub_oid] = entry[: -8] + other._p_oid
    tm2.commit()
    tm1.begin()
    m1.jar("notes").cacheMinimize()
    assert m1.root("notes")["note"].link.title == "other"  # what the index says, for now
    m2.reindex("notes")
    tm2.commit()
    tm1.begin()
    m1.jar("notes").cacheMinimize()
    assert m1.root("notes")["note"].link.title == "page"
    tm1.abort()
    m1.close()
    m2.close()


def test_no_reference_to_a_stub_that_a_pack_collected(fed):
    """A stub this manager made, replaced in the index by another manager and collected by
    a pack, is not named by this manager's new references."""
    (m1, tm1), (m2, tm2) = _two(fed)
    page = m1.root("main")["page"] = Item("page")
    tm1.commit()
    m1.root("notes")["first"] = Item("first", link=page)
    tm1.commit()  # m1 now knows the stub of 'page'
    tm2.begin()
    catalog = m2.jar("notes")._catalog()
    [(tkey, old_stub)] = catalog.stubs_by_target.items()
    del catalog.stubs_by_target[tkey]  # lost, as after an import
    m2.root("notes")["second"] = Item("second", link=m2.root("main")["page"])
    del m2.root("notes")["first"]
    tm2.commit()
    assert catalog.stubs_by_target[tkey] != old_stub
    fed.pack()
    tm1.begin()
    m1.root("notes")["third"] = Item("third", link=page)
    tm1.commit()
    m1.close()
    m2.close()
    _assert_link_reads_back(fed, "third", "page")


def test_caches_are_bounded(tmp_path):
    """Thousands of references over many transactions leave bounded caches behind."""
    uris = {name: f"{(tmp_path / f'{name}.fs').as_uri()}?connection_cache_size=50"
            for name in ("main", "notes")}
    count, rounds = 3 * RESOLUTION_CACHE_MIN, 6
    with federation.open(uris) as fed, fed.open() as conn:
        notes = conn.jar("notes")
        for start in range(0, count, count // rounds):
            for i in range(start, start + count // rounds):
                target = Item(f"t{i}")
                conn.add(target, "main")
                conn.root("notes")[f"n{i}"] = Item(f"n{i}", link=target)
            transaction.commit()
        notes.cacheMinimize()
        for start in range(0, count, count // rounds):
            for i in range(start, start + count // rounds):
                assert conn.root("notes")[f"n{i}"].link is not None
            transaction.commit()
        transaction.begin()
        assert len(notes._zfed_stub_of_target) <= RESOLUTION_CACHE_MIN
        assert len(notes._zfed_resolved) <= RESOLUTION_CACHE_MIN
        assert len(notes._zfed_resolved) > 0
        transaction.abort()


@pytest.fixture
def people():
    """A renaming in-memory member with Ada (key 1)."""
    database = MemoryDatabase("people", Person, can_rename=True, batch_size=10)
    database.insert(1, {"name": "Ada", "email": None, "owner": None})
    return database


def test_pending_rewrite_of_a_collected_stub_is_dropped(people, tmp_path):
    """A stub rewrite left pending (the transaction that followed a rename aborted) whose
    stub was then collected does not make later commits and aborts fail."""
    members = {"main": (tmp_path / "main.fs").as_uri(), "people": people}
    with federation.open(members) as fed:
        with fed.open() as conn:
            conn.root("main")["ada"] = Item("about Ada", link=conn.get("people:integer:1"))
            transaction.commit()
        people.rename(1, 5)
        (m1, tm1), (m2, tm2) = _two(fed)
        assert m1.root("main")["ada"].link.name == "Ada"  # followed: the rewrite is pending
        tm1.abort()
        tm2.begin()
        # Another manager drops the only reference and the stub's entries; a pack collects it.
        catalog = m2.jar("main")._catalog()
        [(stub_oid, _entry)] = catalog.stubs_by_oid.items()
        del m2.root("main")["ada"]
        for index in (catalog.stubs_by_oid, catalog.stable_ids):
            del index[stub_oid]
        for tkey in list(catalog.stubs_by_target):
            del catalog.stubs_by_target[tkey]
        tm2.commit()
        fed.member("main").db.pack()
        tm1.begin()
        m1.root("main")["other"] = Item("other")
        tm1.commit()
        m1.root("main")["more"] = Item("more")
        tm1.abort()
        assert "ada" not in m1.root("main")
        tm1.abort()
        m1.close()
        m2.close()


def test_no_reference_to_a_stub_whose_creation_another_manager_undid(fed):
    """A stub this manager made (and never read back) whose transaction another manager
    undid is not named by this manager's new references."""
    (m1, tm1), (m2, tm2) = _two(fed)
    page = m1.root("main")["page"] = Item("page")
    tm1.commit()
    m1.root("notes")["first"] = Item("first", link=page)
    tm1.commit()  # m1 knows the stub of 'page' from writing it
    undone = fed.member("notes").db.undoLog(0, 1)[0]["id"]
    tm2.begin()
    fed.member("notes").db.undo(undone, tm2.get())
    tm2.commit()  # the stub record and its index entries are gone again
    tm1.begin()
    assert "first" not in m1.root("notes")
    m1.root("notes")["second"] = Item("second", link=page)
    tm1.commit()
    m1.close()
    m2.close()
    _assert_link_reads_back(fed, "second", "page")


def test_uuid_lookup_after_another_manager_undid_the_object(uuid_fed):
    """A UUID this manager resolved, whose object another manager's undo removed, is not
    found (a typed error), instead of a ghost of a record that is gone."""
    (m1, tm1), (m2, tm2) = _two(uuid_fed)
    m1.root("main")["kept"] = Item("kept")
    tm1.commit()
    first = m1.root("main")["first"] = Item("first")
    m1.add(first, "main")
    ref = m1.ref(first)
    tm1.commit()
    assert m1.get(ref) is first
    undone = uuid_fed.member("main").db.undoLog(0, 1)[0]["id"]
    tm2.begin()
    uuid_fed.member("main").db.undo(undone, tm2.get())
    tm2.commit()
    tm1.begin()
    assert "first" not in m1.root("main")
    with pytest.raises(federation.KeyNotFound):
        m1.get(ref)
    tm1.abort()
    m1.close()
    m2.close()
