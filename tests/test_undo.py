"""Undo in one member: the federation's readers of every record keep working after it.

An object whose creation was undone stays in a FileStorage's index without
data, and ``record_iternext`` raises ``POSKeyError`` for it; check, pack and
reindex list every record that way.
"""

from __future__ import annotations

import pytest
import transaction
import ZEO

import federation
from federation.connection import ObjectMissing
from tests.models import Item


def _undo_last(fed, member: str) -> None:
    db = fed.member(member).db
    db.undo(db.undoLog(0, 1)[0]["id"])
    transaction.commit()


@pytest.mark.parametrize("where", ["last", "middle"])
def test_check_pack_and_reindex_after_an_undone_creation(fed, conn, where):
    """The undone object's referrer in another member is reported dangling; nothing fails,
    and the pack keeps everything live."""
    page = Item("page")
    conn.add(page, "main")
    conn.root("main")["page"] = page
    conn.root("notes")["note"] = Item("note", link=page)
    transaction.commit()
    _undo_last(fed, "main")  # the page's creation (and its root entry) undone in 'main' only
    if where == "middle":
        conn.root("main")["later"] = Item("later")  # an oid after the undone one
        transaction.commit()
    report = fed.check()
    assert [(f.member, f.kind) for f in report.findings] == [("notes", "dangling")]
    assert "main:oid:" in report.findings[0].message
    collection = fed.pack()
    assert collection["notes"].marked >= 2
    transaction.begin()
    assert conn.reindex("main").removed == 0
    transaction.commit()
    with pytest.raises(ObjectMissing, match="main"):
        conn.root("notes")["note"].link.title  # noqa: B018 (the load is the test)
    if where == "middle":
        assert conn.root("main")["later"].title == "later"


@pytest.mark.server
def test_check_and_pack_over_zeo_after_an_undone_creation(tmp_path):
    """ZEO forwards ``record_iternext`` and its ``POSKeyError``: the same listing goes on."""
    servers = []
    try:
        uris = {}
        for name in ("main", "notes"):
            (host, port), stop = ZEO.server(path=str(tmp_path / f"{name}.fs"),
                                            port=("127.0.0.1", 0))
            servers.append(stop)
            uris[name] = f"zeo://{host}:{port}?wait_timeout=5"
        with federation.open(uris) as fed, fed.open() as conn:
            page = Item("page")
            conn.add(page, "main")
            conn.root("main")["page"] = page
            conn.root("notes")["note"] = Item("note", link=page)
            transaction.commit()
            _undo_last(fed, "main")
            conn.root("main")["later"] = Item("later")
            transaction.commit()
            report = fed.check()
            assert [(f.member, f.kind) for f in report.findings] == [("notes", "dangling")]
            assert fed.pack()["main"].marked >= 2
            transaction.abort()
    finally:
        for stop in servers:
            stop()
