"""Objects loaded in a long-lived connection, after another manager reindexes their member.

Reindex rewrites index entries (``stubs_by_oid``, ``uuids``), never the
referrers' records: ZODB sends no invalidation for an object whose
references were resolved through an entry that changed, so, before the
fix, such an object kept its old target for as long as it stayed in the
pickle cache.  Its next transaction must read the target the corrected
entry names; the transaction it was loaded in keeps its snapshot (ZODB's
MVCC), and may not commit a change to it.
"""

from __future__ import annotations

import pytest
import transaction
from ZODB.POSException import ConflictError

import federation
from federation.catalog import decode_entry, encode_entry
from federation.errors import DanglingStub
from tests.models import Item


def _damage_entry(conn, member: str, target_key: bytes | None) -> None:
    """Make ``member``'s only stubs_by_oid entry name ``target_key`` (None: remove it)."""
    catalog = conn.jar(member)._catalog()
    [(stub_oid, data)] = catalog.stubs_by_oid.items()
    if target_key is None:
        del catalog.stubs_by_oid[stub_oid]
    else:
        member_id, name, kind, _key, module, klass = decode_entry(data)
        catalog.stubs_by_oid[stub_oid] = encode_entry((member_id, name, kind, target_key,
                                                       module, klass))
    transaction.commit()


def _setup(uris, damage):
    """A note in notes linking to main's "right"; its stub's entry then names ``damage``
    ("wrong", or an oid of nothing, or None: no entry).  A federation opened anew returns:
    no connection has anything loaded."""
    with federation.open(uris) as fed, fed.open() as conn:
        right = conn.root("main")["right"] = Item("right")
        wrong = conn.root("main")["wrong"] = Item("wrong")
        transaction.commit()
        conn.root("notes")["note"] = Item("note", link=right)
        transaction.commit()
        _damage_entry(conn, "notes", wrong._p_oid if damage == "wrong" else damage)
    return federation.open(uris)


def _reindex_elsewhere(fed, member: str) -> None:
    tm = transaction.TransactionManager()
    with fed.open(tm) as other:
        report = other.reindex(member)
        assert report.added == 1
        tm.commit()


def test_loaded_referrer_reads_the_corrected_target_after_a_reindex(uris):
    """A note loaded through an outdated entry (naming the wrong object) reads the right one
    in the long-lived connection's next transaction, after another manager reindexed."""
    tm = transaction.TransactionManager()
    with _setup(uris, "wrong") as fed, fed.open(tm) as conn:
        note = conn.root("notes")["note"]
        assert note.link.title == "wrong"  # what the damaged entry says
        _reindex_elsewhere(fed, "notes")
        tm.begin()
        assert conn.root("notes")["note"] is note
        assert note.link.title == "right"
        assert note.link is conn.root("main")["right"]
        tm.abort()


def test_loaded_referrer_with_a_dangling_target_reads_it_after_a_reindex(uris):
    """A note whose entry named an object that does not exist (a ghost that cannot load)
    reads its target after another manager reindexed, in the same connection."""
    tm = transaction.TransactionManager()
    with _setup(uris, (2 ** 40).to_bytes(8, "big")) as fed, fed.open(tm) as conn:
        note = conn.root("notes")["note"]
        with pytest.raises(DanglingStub):
            note.link.title  # noqa: B018
        _reindex_elsewhere(fed, "notes")
        tm.begin()
        assert note.link is conn.root("main")["right"]
        tm.abort()


def test_referrer_changed_by_a_transaction_that_began_before_the_reindex_conflicts(uris):
    """A transaction that changed a note loaded through the old entries would write the old
    target back: its commit raises a ConflictError, and the retry reads the right target."""
    tm = transaction.TransactionManager()
    with _setup(uris, "wrong") as fed, fed.open(tm) as conn:
        note = conn.root("notes")["note"]
        assert note.link.title == "wrong"
        note.title = "changed"
        _reindex_elsewhere(fed, "notes")
        with pytest.raises(ConflictError):
            tm.commit()
        tm.abort()
        for attempt in tm.attempts():
            with attempt:
                note = conn.root("notes")["note"]
                note.title = "changed"
        tm.begin()
        assert note.title == "changed" and note.link.title == "right"
        tm.abort()
    with federation.open(uris) as fed, fed.open() as conn:
        assert conn.root("notes")["note"].link is conn.root("main")["right"]
        transaction.abort()


def test_loaded_referrer_into_a_uuid_member_reads_the_target_after_its_reindex(tmp_path):
    """Stubs into a ``uuid`` member resolve through that member's ``uuids`` index: after
    another manager reindexes it (here: an entry naming the wrong object), a note loaded in
    a long-lived connection of another member reads the right target."""
    from federation.catalog import UUID_ATTRIBUTE, uuid_entry

    uris = {"notes": (tmp_path / "notes.fs").as_uri(),
            "people": {"uri": (tmp_path / "people.fs").as_uri(), "key": "uuid"}}
    with federation.open(uris) as fed, fed.open() as conn:
        ada = conn.root("people")["ada"] = Item("Ada")
        bob = conn.root("people")["bob"] = Item("Bob")
        transaction.commit()
        conn.root("notes")["note"] = Item("note", link=ada)
        transaction.commit()
        uuids = conn.jar("people")._catalog().uuids
        uuids[getattr(ada, UUID_ATTRIBUTE)] = uuid_entry(bob._p_oid, Item)
        transaction.commit()
    tm = transaction.TransactionManager()
    with federation.open(uris) as fed, fed.open(tm) as conn:
        note = conn.root("notes")["note"]
        assert note.link.title == "Bob"  # what the damaged entry says
        _reindex_elsewhere(fed, "people")
        tm.begin()
        assert note.link is conn.root("people")["ada"]
        tm.abort()
