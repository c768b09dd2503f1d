"""Damaged or outdated stub entries and records: one unusable reference, never a wrong object."""

from __future__ import annotations

import pytest
import transaction
from BTrees.OOBTree import OOBTree
from ZODB.Connection import TransactionMetaData
from ZODB.DB import DB
from ZODB.FileStorage import FileStorage
from ZODB.utils import u64

import federation
from federation.catalog import decode_entry, encode_entry, stub_record, target_key
from federation.connection import Unreachable
from tests.models import Folder, Item, Placed


def _stub_of(conn, member: str, target) -> bytes:
    """The oid of ``member``'s stub naming ``target``."""
    target_member = conn.federation.member(target._p_jar._zfed_member.name)
    tkey = target_key(target_member.member_id, target_member.kind, target._p_oid)
    return conn.jar(member)._catalog().stubs_by_target[tkey]


@pytest.fixture
def linked(fed):
    """A note in 'notes' linking two pages of 'main'; the stub oids of both links."""
    with fed.open() as conn:
        box = conn.root("main")["box"] = Folder()  # loading the root makes no ghost of a page
        page = box["page"] = Item("page")
        other = box["other"] = Item("other")
        transaction.commit()
        note = conn.root("notes")["note"] = Item("note", link=page)
        note.other = other
        transaction.commit()
        stubs = _stub_of(conn, "notes", page), _stub_of(conn, "notes", other)
    return stubs


def _set_entry(fed, stub_oid: bytes, value) -> None:
    with fed.open() as conn:
        conn.jar("notes")._catalog().stubs_by_oid[stub_oid] = value
        transaction.commit()


def _page_entry(fed, stub_oid: bytes) -> tuple:
    with fed.open() as conn:
        entry = decode_entry(conn.jar("notes")._catalog().stubs_by_oid[stub_oid])
        transaction.abort()
    return entry


BAD_ENTRIES = {
    "no fields": b"garbage",
    "too few fields": b"a\0b\0c",
    "not bytes": 42,
    "not utf-8": b"\xff\xfe\0x\0integer\0tests.models\0Item\0\0\0\0\0\0\0\0\x01",
    "short key": None,  # made from the real entry below
    "unknown member and bad uuid key": b"nobody\0main\0uuid\0tests.models\0Item\0\x01",
}


@pytest.mark.parametrize("case", sorted(BAD_ENTRIES))
def test_damaged_stub_entry_is_a_corrupt_record_for_that_reference_only(fed, linked, case):
    """A damaged stubs_by_oid entry: the referrer loads, that one reference is an
    Unreachable raising CorruptRecord naming member and stub; nothing is written."""
    page_stub, _other_stub = linked
    bad = BAD_ENTRIES[case]
    if bad is None:
        entry = _page_entry(fed, page_stub)
        bad = encode_entry((*entry[:3], b"\x01\x02", *entry[4:]))
    _set_entry(fed, page_stub, bad)
    storages = {name: fed.member(name).db.storage for name in ("main", "notes")}
    last = {name: storage.lastTransaction() for name, storage in storages.items()}
    with fed.open() as conn:
        conn.jar("notes").cacheMinimize()  # the note was loaded before the damage
        note = conn.root("notes")["note"]
        assert note.title == "note"
        assert note.other.title == "other"
        assert isinstance(note.link, Unreachable)
        with pytest.raises(federation.CorruptRecord) as caught:
            note.link.title  # noqa: B018
        number = u64(page_stub)
        assert "Member 'notes'" in str(caught.value)
        assert f"oid {number} (0x{number:x})" in str(caught.value)
        assert caught.value.member == "notes" and caught.value.record == page_stub
        assert all(jar._needs_to_join for jar in conn._jars.values())
        transaction.commit()
    assert {name: storage.lastTransaction() for name, storage in storages.items()} == last


def test_stub_record_that_does_not_decode(fed, linked, tmp_path):
    """A stub record whose state is not an entry (and no index entry): CorruptRecord."""
    page_stub, _other_stub = linked
    with fed.open() as conn:
        del conn.jar("notes")._catalog().stubs_by_oid[page_stub]
        transaction.commit()
    storage = fed.member("notes").db.storage
    meta = TransactionMetaData()
    storage.tpc_begin(meta)
    storage.store(page_stub, storage.load(page_stub)[1], stub_record(b"garbage"), "", meta)
    storage.tpc_vote(meta)
    storage.tpc_finish(meta)
    with fed.open() as conn:
        conn.sync()
        conn.jar("notes").cacheMinimize()
        note = conn.root("notes")["note"]
        assert note.other.title == "other"
        with pytest.raises(federation.CorruptRecord, match=r"Member 'notes'.*stub record"):
            note.link.title  # noqa: B018
        transaction.abort()


def test_class_hint_that_disagrees_with_the_target_loads_the_real_class(fed, linked, uris,
                                                                        tmp_path):
    """A stub entry naming the wrong class: the target loads as its record's class, and
    writing through it keeps that class in the record."""
    page_stub, _other_stub = linked
    entry = _page_entry(fed, page_stub)
    _set_entry(fed, page_stub, encode_entry((*entry[:4], Placed.__module__, Placed.__name__)))
    fed.close()
    with federation.open(uris) as again, again.open() as conn:
        page = conn.root("notes")["note"].link
        assert page.title == "page"
        assert type(page) is Item
        page.title = "changed"
        transaction.commit()
        oid = page._p_oid
    db = DB(FileStorage(str(tmp_path / "main.fs"), read_only=True))
    try:
        conn = db.open()
        obj = conn.get(oid)
        assert type(obj) is Item and obj.title == "changed"
        conn.close()
    finally:
        db.close()


def test_class_hint_of_another_layout_is_refused(fed, linked, uris):
    """A stub entry naming a class the target cannot take: CorruptRecord, nothing written."""
    page_stub, _other_stub = linked
    entry = _page_entry(fed, page_stub)
    _set_entry(fed, page_stub, encode_entry((*entry[:4], OOBTree.__module__, "OOBTree")))
    fed.close()
    with federation.open(uris) as again, again.open() as conn:
        storage = again.member("main").db.storage
        last = storage.lastTransaction()
        page = conn.root("notes")["note"].link
        with pytest.raises(federation.CorruptRecord, match=r"Member 'main'.*tests\.models\.Item"):
            page.title  # noqa: B018
        with pytest.raises(federation.CorruptRecord):
            page.title = "changed"
        transaction.commit()
        assert storage.lastTransaction() == last


def test_stubs_by_target_entry_naming_another_stub(fed, linked, uris):
    """stubs_by_target naming the stub of another target: a new reference still reads
    back as the object it was set to."""
    page_stub, other_stub = linked
    with fed.open() as conn:
        catalog = conn.jar("notes")._catalog()
        tkey = [key for key, value in catalog.stubs_by_target.items() if value == page_stub]
        catalog.stubs_by_target[tkey[0]] = other_stub
        transaction.commit()
    fed.close()
    with federation.open(uris) as again, again.open() as conn:
        conn.root("notes")["again"] = Item("again", link=conn.root("main")["box"]["page"])
        transaction.commit()
    with federation.open(uris) as again, again.open() as conn:
        assert conn.root("notes")["again"].link.title == "page"
        assert conn.root("notes")["note"].link.title == "page"
        transaction.abort()


def test_listing_stubs_names_a_damaged_entry(fed, linked):
    """Manager.stubs() on a member with a damaged entry raises CorruptRecord naming it."""
    page_stub, _other_stub = linked
    _set_entry(fed, page_stub, b"garbage")
    with fed.open() as conn:
        with pytest.raises(federation.CorruptRecord, match=r"Member 'notes'.*stub with oid"):
            conn.stubs("notes")
        transaction.abort()
