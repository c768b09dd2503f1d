"""uuid members, export/import, zodbconvert, and a pack that keeps cross-member targets."""

from __future__ import annotations

import uuid

import pytest
import transaction
import ZODB
from BTrees.OOBTree import OOBTree
from ZODB.FileStorage import FileStorage
from ZODB.POSException import POSKeyError

import federation
from tests.helpers import page_and_note
from tests.models import Item


@pytest.fixture
def uuid_fed(uris):
    """A federation whose 'main' member names its objects by uuid."""
    fed = federation.open({"main": {"uri": uris["main"], "key": "uuid"}, "notes": uris["notes"]})
    yield fed
    transaction.abort()
    fed.close()


def test_uuid_member_refs_and_lookup(uuid_fed):
    """Objects of a uuid member are referenced, got and looked up by their uuid."""
    conn = uuid_fed.open()
    try:
        page, _note = page_and_note(conn)
        ref = conn.ref(page)
        assert ref.kind == "uuid" and isinstance(ref.key, uuid.UUID)
        assert conn.ref(page) == ref  # stable
        assert conn.get(ref) is page
        assert conn.lookup(ref.key) is page
        assert conn.lookup(str(ref.key)) is page
        assert conn.stubs("notes")[0].target == ref
        missing = uuid.uuid4()
        with pytest.raises(federation.KeyNotFound, match=str(missing)) as caught:
            conn.lookup(missing)
        assert isinstance(caught.value, KeyError)
    finally:
        conn.close()


def test_uuid_lookup_reads_each_record_once(uuid_fed, uris):
    """A key lookup makes the ghost from the index's class: one record read, not two."""
    with uuid_fed.open() as conn:
        page, _note = page_and_note(conn)
        ref = conn.ref(page)
        transaction.commit()
    uuid_fed.close()
    members = {"main": {"uri": uris["main"], "key": "uuid"}, "notes": uris["notes"]}
    with federation.open(members) as fresh, fresh.open() as conn:
        storage = conn.jar("main")._storage
        loads = []
        real_load = storage.load
        storage.load = lambda oid, version="": loads.append(oid) or real_load(oid)
        try:
            assert conn.get(ref).title == page.title
        finally:
            del storage.load
        assert loads.count(page._p_oid) == 1
        transaction.abort()


class Folder(OOBTree):
    """A BTree subclass: it has a __dict__, but its records keep only its items."""


def test_uuid_index_names_only_objects_that_keep_their_uuid(uuid_fed):
    """BTrees (the catalog's indexes too) get no uuid, as their records could not keep it."""
    with uuid_fed.open() as conn:
        main = conn.root("main")
        main["folder"] = Folder()
        main["tree"] = OOBTree({f"k{i}": Item(f"t{i}") for i in range(300)})
        page_and_note(conn)
        transaction.commit()
        catalog = conn.jar("main")._catalog()
        assert len(catalog.uuids) == 301  # the page and the 300 items
        for value in catalog.uuids:
            assert conn.lookup(uuid.UUID(bytes=value)) is not None
        with pytest.raises(federation.FederationError, match="Folder objects do not store"):
            conn.root("notes")["folder link"] = main["folder"]
            transaction.commit()
        transaction.abort()


def test_uuid_index_entries_without_class_still_resolve(uuid_fed):
    """Index entries written before the class was kept (the bare oid) still resolve."""
    with uuid_fed.open() as conn:
        page, _note = page_and_note(conn)
        ref = conn.ref(page)
        transaction.commit()
        conn.jar("main")._catalog().uuids[ref.key.bytes] = page._p_oid
        transaction.commit()
    with uuid_fed.open() as conn:
        assert conn.get(ref).title == page.title
        transaction.abort()


def test_uuid_references_survive_export_and_import(uuid_fed, uris, tmp_path):
    """An object moved by export/import into a new database is still found by its referrers."""
    conn = uuid_fed.open()
    page, _note = page_and_note(conn)
    key = conn.ref(page).key
    export = tmp_path / "page.zexp"
    with export.open("wb") as stream:
        conn.jar("main").exportFile(page._p_oid, stream)
    conn.close()
    uuid_fed.close()

    moved = {"main": {"uri": (tmp_path / "moved.fs").as_uri(), "key": "uuid"},
             "notes": uris["notes"]}
    fed = federation.open(moved)
    conn = fed.open()
    try:
        with export.open("rb") as stream:
            conn.root("main")["page"] = conn.jar("main").importFile(stream)
        transaction.commit()
        report = conn.reindex("main")
        transaction.commit()
        assert report.uuids == 1
        note = conn.root("notes")["note"]
        assert note.link is conn.root("main")["page"]
        assert conn.lookup(key).title == "page"
    finally:
        transaction.abort()
        conn.close()
        fed.close()


def test_references_survive_zodbconvert(fed, conn, uris, tmp_path):
    """A member copied with copyTransactionsFrom (what zodbconvert does) keeps its references."""
    _page, _note = page_and_note(conn)
    conn.close()
    fed.close()

    copy = tmp_path / "notes-copy.fs"
    source = FileStorage(uris["notes"].removeprefix("file://"), read_only=True)
    destination = FileStorage(str(copy))
    destination.copyTransactionsFrom(source)
    source.close()
    destination.close()

    fed2 = federation.open({"main": uris["main"], "notes": copy.as_uri()})
    conn2 = fed2.open()
    try:
        assert conn2.root("notes")["note"].link is conn2.root("main")["page"]
    finally:
        conn2.close()
        fed2.close()


def _orphan_only_notes_reference(fed: federation.Federation, title: str) -> bytes:
    """The oid of a new object of 'main' that only an object of 'notes' references."""
    conn = fed.open()
    try:
        orphan = Item(title)
        conn.add(orphan, "main")
        transaction.commit()
        conn.root("notes")["note"] = Item("note", link=orphan)
        transaction.commit()
        return orphan._p_oid
    finally:
        conn.close()


def test_pack_keeps_objects_only_other_members_reference(fed, uris):
    """fed.pack() keeps an object that only another member references; plain pack would not."""
    oid = _orphan_only_notes_reference(fed, "only referenced from notes")

    reports = fed.pack()
    assert reports["notes"].stubs == 1
    conn = fed.open()
    try:
        assert conn.root("notes")["note"].link.title == "only referenced from notes"
        # Once the referrer is gone, one pack releases the stub and the target.
        del conn.root("notes")["note"]
        transaction.commit()
    finally:
        conn.close()
    fed.pack()
    with pytest.raises(POSKeyError):
        fed.member("main").db.storage.load(oid)
    conn = fed.open()
    try:
        assert conn.stubs("notes") == []
    finally:
        conn.close()


def test_plain_pack_loses_what_federation_pack_keeps(uris):
    """The hazard fed.pack() removes: a plain ZODB pack collects a cross-member-only target."""
    fed = federation.open(uris)
    oid = _orphan_only_notes_reference(fed, "orphan")
    fed.close()

    db = ZODB.DB(FileStorage(uris["main"].removeprefix("file://")))
    try:
        db.pack()
        with pytest.raises(POSKeyError):
            db.storage.load(oid)
    finally:
        db.close()


def test_reindex_rebuilds_stub_indexes(conn):
    """reindex() rebuilds a member's stub index from its stub records."""
    page = conn.root("main")["page"] = Item("page")
    transaction.commit()
    conn.root("notes")["a"] = Item("a", link=page)
    transaction.commit()
    before = conn.stubs("notes")
    report = conn.reindex("notes")
    transaction.commit()
    assert (report.stubs, report.duplicate_stubs) == (1, 0)
    assert conn.stubs("notes") == before
    conn.root("notes")["b"] = Item("b", link=page)  # found through the rebuilt index
    transaction.commit()
    assert len(conn.stubs("notes")) == 1


