"""Cross-member references stored as stub records."""

from __future__ import annotations

import transaction
import ZODB
from BTrees.OOBTree import OOBTree
from ZODB.FileStorage import FileStorage
from ZODB.serialize import referencesf

import federation
from federation.catalog import CATALOG_ATTRIBUTE, Stub
from tests.helpers import page_and_note
from tests.models import Item


def _reopen(fed_uris: dict[str, str]) -> tuple[federation.Federation, federation.Manager]:
    fed = federation.open(fed_uris)
    return fed, fed.open()


def test_reference_round_trips_through_commit_and_reopen(fed, conn, uris):
    """A reference from one member to another reads back as the target object."""
    _page, _note = page_and_note(conn)
    conn.close()
    fed.close()

    fed2, conn2 = _reopen(uris)
    try:
        note = conn2.root("notes")["note"]
        assert note.link is conn2.root("main")["page"]
        assert note.link.title == "page"
        assert note.link._p_jar is conn2.jar("main")
    finally:
        conn2.close()
        fed2.close()


def test_get_of_ref_is_the_object_itself(conn):
    """conn.get(conn.ref(target)) returns the very same object."""
    page = conn.root("main")["page"] = Item("page")
    transaction.commit()
    ref = conn.ref(page)
    assert (ref.member, ref.kind) == ("main", "integer")
    assert conn.get(ref) is page
    assert conn.get(str(ref)) is page
    assert federation.Ref.parse(str(ref)) == ref


def test_one_stub_per_target_per_member(conn):
    """Many referrers of one target share one stub; each member keeps its own."""
    page = conn.root("main")["page"] = Item("page")
    transaction.commit()
    notes = conn.root("notes")
    for i in range(5):
        notes[f"n{i}"] = Item(f"n{i}", link=page)
    conn.root("people")["p"] = Item("p", link=page)
    transaction.commit()
    notes["later"] = Item("later", link=page)
    transaction.commit()

    [stub] = conn.stubs("notes")
    assert stub.target == conn.ref(page)
    assert stub.class_name == "tests.models.Item"
    assert len(conn.stubs("people")) == 1
    assert conn.stubs("main") == []


def test_pickles_hold_only_plain_references(conn, fed):
    """A referrer's record holds an ordinary (oid, class) reference to a local stub."""
    _page, note = page_and_note(conn)
    storage = fed.member("notes").db.storage
    data, _ = storage.load(note._p_oid)
    [stub_oid] = referencesf(data)
    stub_record, _ = storage.load(stub_oid)
    assert b"federation.catalog" in stub_record and b"Stub" in stub_record
    # No multi-database ('m'/'n') reference: ZODB's own reference finder sees the stub.
    assert stub_oid == conn.stubs("notes")[0].oid.to_bytes(8, "big")


def test_members_open_with_plain_zodb(conn, fed, uris):
    """Every member stays a database that plain ZODB.DB opens and reads."""
    _page, _note = page_and_note(conn)
    conn.close()
    fed.close()

    path = uris["notes"].removeprefix("file://")
    db = ZODB.DB(FileStorage(path, read_only=True))
    try:
        with db.transaction() as plain:
            note = plain.root()["note"]
            assert note.title == "note"
            assert isinstance(note.link, Stub)  # plain ZODB sees the stub record itself
            assert note.link.kind == "integer"
            assert list(plain.root()) == ["note"]  # the catalog is no root key
            assert hasattr(plain.root(), CATALOG_ATTRIBUTE)
    finally:
        db.close()


def test_thousands_of_new_references_into_three_members(fed, uris):
    """One commit creating 3,000 new cross-member references keeps every one, no duplicates."""
    conn = fed.open()
    targets = {}
    for member in ("main", "notes", "people"):
        folder = conn.root(member)
        for i in range(1000):
            folder[f"t{i}"] = Item(f"{member}-{i}")
        targets[member] = folder
    transaction.commit()
    # One commit: each member gets 1000 new referrers pointing into the next member,
    # plus a second referrer to each target (must reuse the same stub).
    order = {"main": "notes", "notes": "people", "people": "main"}
    for source, target in order.items():
        folder = conn.root(source)
        for i in range(1000):
            folder[f"r{i}"] = Item(f"r{i}", link=targets[target][f"t{i}"])
            folder[f"s{i}"] = Item(f"s{i}", link=targets[target][f"t{i}"])
    transaction.commit()
    conn.close()
    fed.close()

    fed2, conn2 = _reopen(uris)
    try:
        for source, target in order.items():
            stubs = conn2.stubs(source)
            assert len(stubs) == 1000
            assert len({s.target for s in stubs}) == 1000
            for i in range(1000):
                referrer = conn2.root(source)[f"r{i}"]
                twin = conn2.root(source)[f"s{i}"]
                assert referrer.link is conn2.root(target)[f"t{i}"]
                assert twin.link is referrer.link
                assert referrer.link.title == f"{target}-{i}"
    finally:
        conn2.close()
        fed2.close()


def test_stub_index_keeps_oids_not_objects(conn):
    """The stub index maps targets to stub oids (bytes), so reading it substitutes nothing."""
    page, _note = page_and_note(conn)
    catalog = getattr(conn.root("notes"), CATALOG_ATTRIBUTE)
    [(target_key, stub_oid)] = list(catalog.stubs_by_target.items())
    assert isinstance(stub_oid, bytes) and len(stub_oid) == 8
    assert target_key.endswith(page._p_oid)


def test_reading_resolves_stubs_without_loading_stub_records(fed, uris):
    """Cold reads resolve many stubs from a few index buckets, not one load per stub."""
    conn = fed.open()
    pages = conn.root("main")
    notes = conn.root("notes")
    for i in range(600):
        pages[f"p{i}"] = Item(f"p{i}")
    transaction.commit()
    for i in range(600):
        notes[f"n{i}"] = Item(f"n{i}", link=pages[f"p{i}"])
    transaction.commit()
    conn.close()
    fed.close()

    fed2, conn2 = _reopen(uris)
    try:
        jar = conn2.jar("notes")
        notes = conn2.root("notes")
        before = jar._load_count
        for i in range(600):
            assert notes[f"n{i}"].link._p_oid is not None
        loads = jar._load_count - before
        # 600 referrer loads plus a handful of catalog/index records; no stub record loads.
        assert 600 <= loads < 620
    finally:
        conn2.close()
        fed2.close()


def test_reference_to_a_new_object_explicitly_added(conn):
    """A new object added to a member is stored there and referenced by stub elsewhere."""
    page = Item("new page")
    conn.add(page, "main")
    conn.root("notes")["note"] = Item("note", link=page)
    transaction.commit()
    assert page._p_jar is conn.jar("main")
    assert conn.root("notes")["note"].link is page
    assert len(conn.stubs("notes")) == 1


def test_member_rename_keeps_references(fed, conn, uris):
    """References follow a member renamed in the configuration (stubs name member ids)."""
    _page, _note = page_and_note(conn)
    conn.close()
    fed.close()

    renamed = {"primary": uris["main"], "notes": uris["notes"]}
    fed2 = federation.open(renamed)
    conn2 = fed2.open()
    try:
        note = conn2.root("notes")["note"]
        assert note.link is conn2.root("primary")["page"]
        assert conn2.stubs("notes")[0].target.member == "primary"
    finally:
        conn2.close()
        fed2.close()


def test_btrees_hold_cross_member_references_and_jars_sort(conn, fed, uris):
    """BTree buckets store cross-member values as stubs; every member jar has a str sortKey."""
    pages = conn.root("main")
    for i in range(100):
        pages[f"p{i}"] = Item(f"p{i}")
    transaction.commit()
    tree = conn.root("notes")["tree"] = OOBTree()
    for i in range(100):
        tree[f"k{i:03d}"] = pages[f"p{i}"]
    transaction.commit()
    assert all(isinstance(conn.jar(name).sortKey(), str) for name in ("main", "notes", "people"))
    conn.close()
    fed.close()

    fed2, conn2 = _reopen(uris)
    try:
        tree = conn2.root("notes")["tree"]
        assert [tree[f"k{i:03d}"].title for i in range(100)] == [f"p{i}" for i in range(100)]
        assert tree["k007"] is conn2.root("main")["p7"]
        assert len(conn2.stubs("notes")) == 100
    finally:
        conn2.close()
        fed2.close()
