"""The federation's writer stores what ZODB's own writer stores, stubs aside."""

from __future__ import annotations

from typing import Any

import transaction
from BTrees.IOBTree import IOBTree
from BTrees.OOBTree import OOBTree, OOTreeSet
from hypothesis import given, settings
from hypothesis import strategies as st
from ZODB.serialize import ObjectWriter

import federation
from federation.catalog import CATALOG_ATTRIBUTE
from federation.connection import FederatedWriter
from tests.models import Item

_PLAIN_VALUES = st.one_of(st.binary(max_size=40), st.text(max_size=20), st.integers(),
                          st.floats(allow_nan=False), st.booleans(), st.none())


def _buckets(tree: Any) -> list[Any]:
    found, bucket = [], tree._firstbucket
    while bucket is not None:
        found.append(bucket)
        bucket = bucket._next
    return found


def _stored(obj: Any) -> bytes:
    return obj._p_jar._storage.load(obj._p_oid)[0]


def _assert_records_as_zodb_writes_them(tree: Any) -> None:
    # A tree of one bucket keeps it inside its own record.
    for obj in [tree, *_buckets(tree)]:
        if obj._p_oid is not None:
            assert _stored(obj) == ObjectWriter(obj).serialize(obj)


@settings(max_examples=60, deadline=None)
@given(items=st.dictionaries(st.text(max_size=12), _PLAIN_VALUES, min_size=1, max_size=400),
       numbers=st.lists(st.integers(-2**31, 2**31 - 1), min_size=1, max_size=300))
def test_plain_buckets_are_the_records_zodb_writes(items, numbers):
    """Buckets of plain data take the fast path and come out byte for byte as ZODB's."""
    fed = federation.open({"main": "memory://", "notes": "memory://"})
    conn = fed.open(transaction.TransactionManager())
    try:
        root = conn.root("main")
        filled = {**{f"fill{i:03}": i for i in range(100)}, **items}  # several buckets
        tree = root["tree"] = OOBTree(filled)
        keys = root["keys"] = IOBTree({n: str(n) for n in [*numbers, *range(200)]})
        members = root["set"] = OOTreeSet(filled)
        conn.transaction_manager.commit()
        for each in (tree, keys, members):
            _assert_records_as_zodb_writes_them(each)
        tree.update({f"{key}!": value for key, value in items.items()})  # changed buckets too
        conn.transaction_manager.commit()
        _assert_records_as_zodb_writes_them(tree)
    finally:
        conn.close()
        fed.close()


def test_plain_buckets_skip_the_per_item_reference_check(conn, monkeypatch):
    """Writing a bucket of plain data asks persistent_id about its next bucket, not every item."""
    calls = []
    original = FederatedWriter.persistent_id

    def counting(self: FederatedWriter, obj: Any) -> Any:
        calls.append(obj)
        return original(self, obj)

    monkeypatch.setattr(FederatedWriter, "persistent_id", counting)
    conn.root("main")["tree"] = OOBTree({f"k{i:04}": f"v{i}" for i in range(3000)})
    transaction.commit()
    # ZODB's writer asks about all 6,000 keys and values; the tree record still
    # holds a separator key and a reference per bucket.
    assert len(calls) < 1500


def test_index_buckets_and_buckets_with_references(conn):
    """Catalog index buckets match ZODB's records; buckets holding objects keep their references."""
    pages = conn.root("main")
    tree = conn.root("notes")["tree"] = OOBTree()
    local = conn.root("notes")["local"] = OOBTree()
    for i in range(400):
        pages[f"p{i}"] = Item(f"p{i}")
    transaction.commit()
    for i in range(400):
        tree[f"n{i}"] = pages[f"p{i}"]  # cross-member: stubs
        local[f"n{i}"] = Item(f"local {i}")  # same member: plain references
    transaction.commit()

    catalog = getattr(conn.root("notes"), CATALOG_ATTRIBUTE)
    for index in (catalog.stubs_by_target, catalog.stubs_by_oid):
        assert len(_buckets(index)) > 1
        _assert_records_as_zodb_writes_them(index)
    _assert_records_as_zodb_writes_them(local)
    conn.jar("notes").cacheMinimize()
    assert [tree[f"n{i}"] for i in range(400)] == [pages[f"p{i}"] for i in range(400)]
    assert local["n7"].title == "local 7"
