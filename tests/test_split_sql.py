"""Split objects whose primary is a foreign member: a SQLite table."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest
import transaction

import federation
from federation.adapters import sql
from tests.helpers import journal_entries
from tests.models import AnnotatedRow, Row

TABLE = sql.Table("page", Row, key="id", columns={"path": "path", "title": "title"})


@pytest.fixture
def members(tmp_path: Path) -> dict[str, object]:
    """A SQLite 'shared' member with two rows, and a ZODB 'local' member."""
    path = tmp_path / "shared.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE page (id INTEGER PRIMARY KEY, path TEXT UNIQUE, "
                   "title TEXT NOT NULL CHECK (length(title) > 0))")
        db.executemany("INSERT INTO page VALUES (?, ?, ?)", [(1, "/about", "About"),
                                                            (2, "/news", "News")])
    db.close()
    return {"shared": sql.sqlite("shared", str(path), TABLE),
            "local": (tmp_path / "local.fs").as_uri(), "path": path}


def _open(members: dict[str, object], **shared: object) -> federation.Federation:
    spec = {"adapter": members["shared"], **shared} if shared else members["shared"]
    return federation.open({"shared": spec, "local": members["local"]})


def test_sql_primary_attributes_and_annotations(members):
    """Primary attributes come from the row, annotations go to ZODB; lookups use the adapter."""
    with _open(members) as fed, fed.open() as conn:
        page = conn.find(AnnotatedRow, path="/about")   # found through the adapter's find
        assert page.title == "About" and page._p_jar is None
        page.rating = 5
        page.title = "About us"                          # an UPDATE of the row, same commit
        transaction.commit()
    with sqlite3.connect(members["path"]) as db:
        assert db.execute("SELECT title FROM page WHERE id = 1").fetchone() == ("About us",)
    db.close()
    with _open(members) as fed, fed.open() as conn:
        page = conn.split(AnnotatedRow, 1)
        assert page.rating == 5 and page.title == "About us"
        assert conn.find(AnnotatedRow, path="/about") is page


def test_read_only_sql_primary_is_untouched(members):
    """With a read-only SQL primary, annotations commit and the database file is unchanged."""
    digest = hashlib.sha256(Path(members["path"]).read_bytes()).hexdigest()
    with _open(members, read_only=True) as fed, fed.open() as conn:
        page = conn.find(AnnotatedRow, path="/news")
        page.tags = ["press"]
        transaction.commit()
        with pytest.raises(federation.ReadOnlyMember, match="'shared'"):
            page.title = "Changed"
    assert hashlib.sha256(Path(members["path"]).read_bytes()).hexdigest() == digest
    with _open(members, read_only=True) as fed, fed.open() as conn:
        assert conn.split(AnnotatedRow, 2).tags == ["press"]


def test_sql_primary_failure_leaves_both_parts(members):
    """A row the table rejects fails the commit; neither the row nor the annotation changes."""
    with _open(members) as fed, fed.open() as conn:
        page = conn.find(AnnotatedRow, path="/about")
        page.rating = 1
        transaction.commit()
        page.rating = 2
        page.title = ""  # the CHECK constraint rejects it
        with pytest.raises(federation.FederationError, match="'shared'"):
            transaction.commit()
        transaction.abort()
        assert journal_entries(conn, "local") == []
        assert page.rating == 1 and page.title == "About"
