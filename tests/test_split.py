"""Split objects: a primary member's objects with annotations kept in a secondary member."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import pytest
import transaction
from persistent.mapping import PersistentMapping

import federation
from tests import models
from tests.models import Annotated, Item


@pytest.fixture
def split_uris(tmp_path: Path) -> dict[str, str]:
    """A 'shared' member with two pages (kept by path) and an empty 'local' member."""
    uris = {name: (tmp_path / f"{name}.fs").as_uri() for name in ("shared", "local")}
    with federation.open(uris) as fed, fed.open() as conn:
        pages = conn.root("shared")["pages"] = PersistentMapping()
        for path, title in [("/about", "About"), ("/news", "News")]:
            page = pages[path] = Item(title)
            page.path = path
        transaction.commit()
    return uris


def _key(conn: federation.Manager, path: str) -> int:
    return conn.ref(conn.root("shared")["pages"][path]).key


def _digest(uri: str) -> str:
    return hashlib.sha256(Path(uri.removeprefix("file://")).read_bytes()).hexdigest()


def test_attributes_read_and_write_both_parts(split_uris):
    """Plain attribute access reads primary attributes and keeps secondary ones locally."""
    with federation.open(split_uris) as fed, fed.open() as conn:
        page = conn.split(Annotated, _key(conn, "/about"))
        assert page.title == "About" and page.path == "/about"
        assert page._p_jar is None  # no secondary state yet: no record
        page.rating = 5
        assert page._p_jar is conn.jar("local")
        transaction.commit()
        key = _key(conn, "/about")

    with federation.open(split_uris) as fed, fed.open() as conn:
        page = conn.split(Annotated, key)
        assert page.rating == 5 and page.title == "About"
        assert conn.lookup(key, cls=Annotated) is page
        assert conn.find(Annotated, path="/about") is page
        assert conn.split(Annotated, conn.root("shared")["pages"]["/about"]) is page
        assert conn.split_records(Annotated) == [page]


def test_no_secondary_state_leaves_nothing_in_the_secondary(split_uris):
    """Reading a split object, and even changing a primary attribute, writes nothing locally."""
    with federation.open(split_uris) as fed, fed.open() as conn:
        size = conn.jar("local")._storage.getSize()
        page = conn.split(Annotated, _key(conn, "/news"))
        page.title = "Latest news"
        transaction.commit()
        assert conn.jar("local")._storage.getSize() == size
        assert conn.root("shared")["pages"]["/news"].title == "Latest news"
        assert conn.split_records(Annotated) == []


def test_read_only_primary_is_untouched_byte_for_byte(split_uris):
    """With a read-only primary, secondary changes commit and the primary file is unchanged."""
    before = _digest(split_uris["shared"])
    config = {"shared": {"uri": split_uris["shared"], "read_only": True},
              "local": split_uris["local"]}
    with federation.open(config) as fed, fed.open() as conn:
        page = conn.find(Annotated, path="/about")
        page.rating = 3
        page.tags = ["company"]
        transaction.commit()
        with pytest.raises(federation.ReadOnlyMember, match=r"'shared'.*title"):
            page.title = "Renamed"
        transaction.commit()
        assert page.title == "About"
    assert _digest(split_uris["shared"]) == before

    with federation.open(config) as fed, fed.open() as conn:
        assert conn.find(Annotated, path="/about").tags == ["company"]


def test_unique_lookups_go_through_the_secondary_index(split_uris, monkeypatch):
    """Once a record exists, find() uses the secondary's index, not the primary's search."""
    with federation.open(split_uris) as fed, fed.open() as conn:
        conn.find(Annotated, path="/about").rating = 1
        transaction.commit()

    calls = []

    def counting_search(jar, attribute, value):
        calls.append(value)
        return models.find_by_path(jar, attribute, value)

    spec = dataclasses.replace(Annotated.__split__, search=counting_search)
    monkeypatch.setattr(Annotated, "__split__", spec)
    with federation.open(split_uris) as fed, fed.open() as conn:
        assert conn.find(Annotated, path="/about").rating == 1
        assert calls == []
        assert conn.find(Annotated, path="/news").title == "News"
        assert calls == ["/news"]
        with pytest.raises(federation.KeyNotFound, match="/missing"):
            conn.find(Annotated, path="/missing")
        with pytest.raises(federation.FederationError, match="not declared unique"):
            conn.find(Annotated, title="About")


def test_changes_by_others_are_seen_and_stale_copies_refreshed(split_uris):
    """A primary changed by another manager is seen after a boundary; stale keys are re-indexed."""
    with federation.open(split_uris) as fed:
        tm1, tm2 = transaction.TransactionManager(), transaction.TransactionManager()
        one, other = fed.open(tm1), fed.open(tm2)
        try:
            page = one.find(Annotated, path="/about")
            page.rating = 4
            tm1.commit()

            moved = other.root("shared")["pages"].pop("/about")
            moved.path = "/company"
            other.root("shared")["pages"]["/company"] = moved
            tm2.commit()

            tm1.begin()
            assert page.path == "/company"  # seen after the transaction boundary
            with pytest.raises(federation.KeyNotFound):
                one.find(Annotated, path="/about")  # the stale copy is dropped
            tm1.commit()
            found = one.find(Annotated, path="/company")
            assert found is page and found.rating == 4  # matched back to the record
            tm1.commit()
            tm1.begin()
            assert one.find(Annotated, path="/company") is page
        finally:
            tm1.abort()
            tm2.abort()
            one.close()
            other.close()


def test_both_parts_commit_atomically(split_uris):
    """A failure while committing leaves both the primary and the secondary as they were."""
    with federation.open(split_uris) as fed, fed.open() as conn:
        page = conn.find(Annotated, path="/about")
        page.rating = 1
        transaction.commit()
        sizes = {name: conn.jar(name)._storage.getSize() for name in ("shared", "local")}

        class Unpicklable:
            def __reduce__(self):
                raise RuntimeError("no")

        page.title = "Changed"
        page.rating = Unpicklable()
        with pytest.raises(RuntimeError):
            transaction.commit()
        transaction.abort()
        assert {n: conn.jar(n)._storage.getSize() for n in sizes} == sizes
        assert page.title == "About" and page.rating == 1


def test_vanished_primary_keeps_the_secondary_data_reachable(split_uris):
    """When the primary object is deleted and packed, lookups fail clearly; annotations remain."""
    with federation.open(split_uris) as fed, fed.open() as conn:
        page = conn.find(Annotated, path="/news")
        page.rating = 2
        key = _key(conn, "/news")
        transaction.commit()
        del conn.root("shared")["pages"]["/news"]
        transaction.commit()
    with federation.open(split_uris) as fed:
        fed.pack()
        with fed.open() as conn:
            with pytest.raises(federation.KeyNotFound, match=str(key)):
                conn.split(Annotated, key)
            [record] = conn.split_records(Annotated)
            assert record.rating == 2
            with pytest.raises(federation.DanglingStub, match="'shared'"):
                record.title  # noqa: B018 - touching it is the test


def test_split_object_referenced_from_another_member(split_uris):
    """A split object is an ordinary object of its secondary member for references."""
    uris = dict(split_uris, notes=split_uris["local"].replace("local.fs", "notes.fs"))
    with federation.open(uris) as fed, fed.open() as conn:
        page = conn.find(Annotated, path="/about")
        conn.root("notes")["see"] = Item("see also", link=page)  # gets a record in 'local'
        transaction.commit()
        assert page._p_jar is conn.jar("local")
    with federation.open(uris) as fed, fed.open() as conn:
        linked = conn.root("notes")["see"].link
        assert linked is conn.find(Annotated, path="/about")
        assert linked.title == "About"
