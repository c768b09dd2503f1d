"""zfed info's facts, on every kind of member the Python API can open."""

from __future__ import annotations

import transaction
from ZODB.MappingStorage import MappingStorage

import federation
from federation import info
from tests.helpers import page_and_note
from tests.test_adapter_sqlite import make_member


def test_describe_every_kind_of_member(tmp_path, uris):
    """FileStorage, MappingStorage, read-only and foreign members are described, by name."""
    with federation.open({"main": uris["main"], "notes": uris["notes"]}) as fed, \
            fed.open() as conn:
        page_and_note(conn)
    people, _path = make_member(tmp_path, "people")
    members = {"notes": uris["notes"], "scratch": MappingStorage(), "people": people,
               "main": {"uri": uris["main"], "read_only": True}}
    with federation.open(members) as fed:
        facts = info.describe(fed)
    by_name = {member["name"]: member for member in facts["members"]}
    assert list(by_name) == ["main", "notes", "people", "scratch"]
    assert by_name["main"]["storage"] == "FileStorage" and by_name["main"]["read_only"]
    assert by_name["notes"]["stubs"] == 1 and by_name["main"]["stubs"] == 0
    assert by_name["scratch"]["storage"] == "MappingStorage"
    assert by_name["scratch"]["where"] is None and by_name["scratch"]["objects"] >= 1
    assert by_name["people"] == {
        "name": "people", "storage": "foreign (SQLite)", "where": None, "key": "integer",
        "read_only": False, "available": True, "objects": None, "stubs": None, "size": None,
    }
    lines = info.render(facts)
    assert lines[lines.index("people: foreign (SQLite)") + 1] == (
        "  key integer; objects unknown, stubs unknown, bytes unknown")
    assert "  key integer, read-only; " in lines[1]


def test_describe_reports_the_journal(uris):
    """The commit journal is reported after the members: where it is kept, what it holds."""
    with federation.open({"main": uris["main"], "notes": uris["notes"]}) as fed:
        facts = info.describe(fed)
        transaction.abort()
    assert facts["journal"] == {"members": ["main", "notes"], "pending": 0, "tombstones": 0}
    assert info.render(facts)[-1] == "journal: kept in main, notes; 0 pending entries, 0 tombstones"


def test_describe_an_unreachable_member(uris):
    """A member whose server cannot be reached is listed as unavailable, counts unknown."""
    members = {"main": uris["main"], "remote": "zeo://127.0.0.1:1?wait_timeout=1"}
    with federation.open(members) as fed:
        facts = info.describe(fed)
    remote = facts["members"][1]
    assert remote["name"] == "remote" and remote["available"] is False
    assert remote["storage"] == "unavailable"
    assert (remote["objects"], remote["stubs"], remote["size"]) == (None, None, None)
    assert info.render(facts)[2] == "remote: unavailable"
