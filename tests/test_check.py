"""zfed check and Federation.check(): what they find, how they exit, what --repair does."""

from __future__ import annotations

import io
import json
import sqlite3

import pytest
import transaction
import ZEO
import ZODB
from click.testing import CliRunner
from ZODB.FileStorage import FileStorage

import federation
from federation import demo
from federation.check import CheckReport
from federation.cli import _Progress, main
from tests.models import Item
from tests.test_adapter_sqlite import make_member


def _config(tmp_path, uris: dict[str, str]) -> str:
    path = tmp_path / "federation.toml"
    path.write_text("".join(f'[members.{name}]\nuri = "{uri}"\n' for name, uri in uris.items()))
    return str(path)


def _kinds(report: CheckReport) -> dict[tuple[str, str], int]:
    counts: dict[tuple[str, str], int] = {}
    for finding in report.findings:
        counts[finding.member, finding.kind] = counts.get((finding.member, finding.kind), 0) + 1
    return counts


def test_check_finds_a_target_removed_by_a_plain_pack(tmp_path, uris):
    """A plain ZODB pack removes a target only another member references: zfed check finds
    the dangling reference and exits 1; on a consistent federation it exits 0."""
    uris = {name: uris[name] for name in ("main", "notes")}
    with federation.open(uris) as fed, fed.open() as conn:
        orphan = Item("orphan")
        conn.add(orphan, "main")
        conn.root("main")["kept"] = Item("kept")
        transaction.commit()
        conn.root("notes")["note"] = Item("note", link=orphan)
        conn.root("notes")["kept"] = Item("link", link=conn.root("main")["kept"])
        transaction.commit()
    config = _config(tmp_path, uris)
    runner = CliRunner()
    clean = runner.invoke(main, ["check", config])
    assert clean.exit_code == 0, clean.output
    assert "notes: no problems" in clean.output

    db = ZODB.DB(FileStorage(uris["main"].removeprefix("file://")))
    db.pack()
    db.close()

    found = runner.invoke(main, ["check", config])
    assert found.exit_code == 1, found.output
    assert "notes: dangling: stub oid" in found.output
    assert f"main:oid:{int.from_bytes(orphan._p_oid, 'big')}" in found.output
    as_json = runner.invoke(main, ["check", "--json", config])
    assert as_json.exit_code == 1
    data = json.loads(as_json.output)
    assert not data["ok"]
    assert [(f["member"], f["kind"]) for f in data["findings"]] == [("notes", "dangling")]


def test_check_passes_on_the_demo_members(tmp_path):
    """Every member of the demo federation (three FileStorage files, a SQLite table) is clean."""
    demo.run(tmp_path, echo=lambda line: None)
    with federation.open_config(tmp_path / demo.CONFIG_NAME) as fed:
        report = fed.check()
    assert report.ok, report.lines()
    assert report.members == ["library", "people", "notes", "readers"]


def test_repair_fixes_indexes_and_says_what_it_did(tmp_path, uris):
    """--repair reindexes members with index findings; a second check is clean."""
    uris = {name: uris[name] for name in ("main", "notes")}
    with federation.open(uris) as fed, fed.open() as conn:
        page = conn.root("main")["page"] = Item("page")
        transaction.commit()
        conn.root("notes")["a"] = Item("a", link=page)
        transaction.commit()
        catalog = conn.jar("notes")._catalog()
        catalog.stubs_by_target.clear()
        catalog.stubs_by_oid[b"\0" * 7 + b"\x7f"] = b"bogus"
        transaction.commit()
    config = _config(tmp_path, uris)
    runner = CliRunner()
    repaired = runner.invoke(main, ["check", "--repair", config])
    assert repaired.exit_code == 1, repaired.output
    assert "notes: stub-not-indexed:" in repaired.output
    assert "notes: index-without-stub: stubs_by_oid names stub oid 127" in repaired.output
    assert "notes: repaired: reindexed: 1 index entries added or corrected, 1 removed" in (
        repaired.output)
    again = runner.invoke(main, ["check", config])
    assert again.exit_code == 0, again.output


def test_check_reports_unreferenced_stubs_and_shared_uuids(tmp_path, uris):
    """A stub whose referrer and target are dead, and two objects keeping one UUID after an
    import; a stub of a live target that nothing references is kept, not reported."""
    members = {"main": {"uri": uris["main"], "key": "uuid"}, "notes": uris["notes"]}
    with federation.open(members) as fed, fed.open() as conn:
        page = conn.root("main")["page"] = Item("page")
        dead = Item("dead")
        conn.add(dead, "main")
        transaction.commit()
        conn.root("notes")["a"] = Item("a", link=page)
        conn.root("notes")["d"] = Item("d", link=dead)
        transaction.commit()
        del conn.root("notes")["a"], conn.root("notes")["d"]
        stream = tmp_path / "page.zexp"
        with stream.open("wb") as out:
            conn.jar("main").exportFile(page._p_oid, out)
        with stream.open("rb") as source:
            conn.root("main")["copy"] = conn.jar("main").importFile(source)
        transaction.commit()
        report = fed.check()
    assert _kinds(report) == {("notes", "unreferenced-stub"): 1, ("main", "uuid-mismatch"): 1}
    [shared] = [f for f in report.findings if f.kind == "uuid-mismatch"]
    assert "both keep UUID" in shared.message
    [stub] = [f for f in report.findings if f.kind == "unreferenced-stub"]
    assert "the next pack removes it" in stub.message


def test_check_reports_a_sql_ref_naming_nothing(tmp_path):
    """A SQL row whose Ref column names a missing object is a foreign-ref finding."""
    people, path = make_member(tmp_path, "people")
    members = {"main": (tmp_path / "main.fs").as_uri(), "people": people}
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO person (id, name, owner_ref) VALUES (1, 'a', 'main:integer:999')")
        db.execute("INSERT INTO person (id, name, owner_ref) VALUES (2, 'b', 'nowhere:integer:1')")
        db.execute("INSERT INTO person (id, name, owner_ref) VALUES (3, 'c', 'people:integer:9')")
    db.close()
    with federation.open(members) as fed:
        report = fed.check()
    assert _kinds(report) == {("people", "foreign-ref"): 3}
    text = "\n".join(report.lines())
    assert "key 1 references main:oid:999" in text
    assert "no member 'nowhere'" in text
    assert "key 3 references people:integer:9" in text


class _Terminal(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def test_progress_is_shown_on_a_terminal_only():
    """The commands' progress bar writes to a terminal, and nothing to a pipe or file."""
    shown, quiet = _Terminal(), io.StringIO()
    for stream in (shown, quiet):
        progress = _Progress(stream)
        progress("mark", 4096, 10000)
        progress("mark", 8192, 10000)
        progress("scan", 1, None)
        progress.close()
    assert "mark" in shown.getvalue() and quiet.getvalue() == ""


@pytest.mark.server
def test_zfed_pack_dry_run_and_refusal(tmp_path, uris):
    """zfed pack --dry-run lists what would go, per member; with a ZEO member down, zfed pack
    exits 1 naming it; with --exclude it runs and says so."""
    (host, port), stop = ZEO.server(path=str(tmp_path / "zeo.fs"), port=("127.0.0.1", 0),
                                    threaded=True)
    members = {"main": uris["main"], "remote": f"zeo://{host}:{port}?wait_timeout=1"}
    with federation.open(members) as fed, fed.open() as conn:
        gone = conn.root("main")["gone"] = Item("gone")
        transaction.commit()
        del conn.root("main")["gone"]
        transaction.commit()
    oid = int.from_bytes(gone._p_oid, "big")
    config = _config(tmp_path, members)
    runner = CliRunner()
    dry = runner.invoke(main, ["pack", "--dry-run", config])
    assert dry.exit_code == 0, dry.output
    assert f"main\toid {oid} (0x{oid:x})\twould be collected" in dry.output
    assert "main: dry run, nothing changed" in dry.output
    stop()
    refused = runner.invoke(main, ["pack", config])
    assert refused.exit_code == 1
    assert "Member 'remote' cannot be read" in refused.output
    assert "--exclude remote" in refused.output
    excluded = runner.invoke(main, ["pack", "--exclude", "remote", config])
    assert excluded.exit_code == 0, excluded.output
    assert "remote: excluded (not read, not packed)" in excluded.output
    assert "collected 1 object(s)" in excluded.output
