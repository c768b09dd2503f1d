"""Recovery: what a crash at each point of the decision leaves, settled on the next open."""

from __future__ import annotations

import sqlite3

import pytest
import transaction
import ZODB
from click.testing import CliRunner

import federation
from federation import journal, recovery
from federation.cli import main
from tests.helpers import journal_entries
from tests.models import Item, Person
from tests.test_adapter_sqlite import make_member


class Died(Exception):
    """Stands for the process dying at this point (the in-process clean-up is disabled)."""


def _die(*args):
    raise Died()


def _members(tmp_path, **extra):
    members = {name: (tmp_path / f"{name}.fs").as_uri() for name in ("main", "notes")}
    members.update(extra)
    return members


def _crash_in_finish(monkeypatch, conn, member):
    """Make ``member``'s finish fail after the decision, with no recovery in this process."""
    monkeypatch.setattr(conn.jar(member), "tpc_finish", _die)
    monkeypatch.setattr(recovery, "resolve", lambda *args: None)


def _two_member_commit(conn):
    """A transaction whose journal entry lands in main (the larger branch) and redoes notes."""
    page = conn.root("main")["page"] = Item("page")
    transaction.commit()
    page.title = "x" * 10_000  # main's branch is the larger: main decides
    conn.root("notes")["note"] = Item("note", link=page)


def _decided_then_crashed(tmp_path, monkeypatch) -> str:
    """Commit over main and notes; notes "dies" before it finishes. The global id."""
    with federation.open(_members(tmp_path)) as fed, fed.open() as conn:
        _two_member_commit(conn)
        _crash_in_finish(monkeypatch, conn, "notes")
        transaction.commit()  # decided: the commit stands
        [gid] = journal_entries(conn, "main")
        monkeypatch.undo()
    return gid


def test_decided_branch_lost_in_a_crash_is_redone(tmp_path, monkeypatch):
    """The decider finished, the other member did not: the next open redoes it from the journal."""
    gid = _decided_then_crashed(tmp_path, monkeypatch)
    with federation.open(_members(tmp_path)) as fed, fed.open() as conn:
        assert fed.recovery.committed == [gid]
        assert conn.root("notes")["note"].link is conn.root("main")["page"]
        assert journal_entries(conn, "main") == []
    with federation.open(_members(tmp_path)) as fed:
        assert fed.recovery == recovery.RecoveryReport()  # settled once, not again


def test_conflicting_redo_is_in_doubt_and_settled_by_an_operator(tmp_path, monkeypatch):
    """Another writer changed the lost branch's objects: open refuses; zfed recover settles."""
    gid = _decided_then_crashed(tmp_path, monkeypatch)
    db = ZODB.DB(str(tmp_path / "notes.fs"))  # another program, plain ZODB
    with db.transaction() as plain:
        plain.root()["other"] = "written meanwhile"
    db.close()
    with pytest.raises(federation.InDoubtTransactions, match=gid) as raised:
        federation.open(_members(tmp_path))
    assert "'notes'" in str(raised.value) and "oid 0" in str(raised.value)
    config = tmp_path / "federation.toml"
    config.write_text('[members.main]\npath = "main.fs"\n[members.notes]\npath = "notes.fs"\n')
    runner = CliRunner()
    listed = runner.invoke(main, ["recover", str(config)])
    assert listed.exit_code == 1 and f"in doubt: transaction {gid}" in listed.output
    settled = runner.invoke(main, ["recover", str(config), "--commit", gid])
    assert (settled.exit_code, settled.output) == (0, f"{gid}: committed\n")
    with federation.open(_members(tmp_path)) as fed, fed.open() as conn:
        assert conn.root("notes")["note"].link is conn.root("main")["page"]
        assert "other" not in conn.root("notes")  # the operator's word: the journal wins


def test_last_resource_committed_then_crash(tmp_path, monkeypatch):
    """SQLite committed (the decision), main did not finish: the next open redoes main."""
    people, path = make_member(tmp_path, "people")
    members = _members(tmp_path, people=people)
    with federation.open(members) as fed, fed.open() as conn:
        ada = Person("Ada")
        conn.add(ada, "people")
        conn.root("main")["owner"] = ada
        _crash_in_finish(monkeypatch, conn, "main")
        transaction.commit()
        monkeypatch.undo()
    with sqlite3.connect(path) as raw:
        [(gid, outcome)] = raw.execute("SELECT gid, outcome FROM zfed_commits").fetchall()
    raw.close()
    assert outcome == "committed"
    with federation.open(members) as fed, fed.open() as conn:
        assert fed.recovery.committed == [gid]
        assert conn.root("main")["owner"].name == "Ada"


def test_crash_before_the_last_resource_commits(tmp_path, monkeypatch):
    """The entry was written, SQLite never committed: the next open fences it, rolls back."""
    people, path = make_member(tmp_path, "people")
    members = _members(tmp_path, people=people)
    with federation.open(members) as fed, fed.open() as conn:
        conn.add(Person("Ada"), "people")
        conn.root("main")["page"] = Item("page")
        monkeypatch.setattr(conn.jar("people"), "commit_last", _die)
        monkeypatch.setattr(recovery, "resolve", lambda *args: None)
        with pytest.raises(Died):
            transaction.commit()
        transaction.abort()
        [gid] = journal_entries(conn, "main")
        monkeypatch.undo()
    with federation.open(members) as fed, fed.open() as conn:
        assert fed.recovery.rolled_back == [gid]
        assert "page" not in conn.root("main")
        assert conn.jar("people").find("name", "Ada") == []
        assert journal_entries(conn, "main") == []
    with sqlite3.connect(path) as raw:  # a late commit of gid would now fail
        assert raw.execute("SELECT outcome FROM zfed_commits").fetchall() == [("aborted",)]
    raw.close()


def test_recover_dry_run_changes_nothing(tmp_path, monkeypatch):
    """zfed recover --dry-run says what it would do and leaves the journal as it is."""
    gid = _decided_then_crashed(tmp_path, monkeypatch)
    config = tmp_path / "federation.toml"
    config.write_text('[members.main]\npath = "main.fs"\n[members.notes]\npath = "notes.fs"\n')
    result = CliRunner().invoke(main, ["recover", str(config), "--dry-run"])
    assert (result.exit_code, result.output) == (0, f"{gid}: would be committed\n")
    with federation.open(_members(tmp_path), recover=False) as fed, fed.open() as conn:
        assert journal_entries(conn, "main") == [gid]
        assert "note" not in conn.root("notes")


def test_pack_keeps_the_markers_of_pending_entries(tmp_path):
    """A pack while an entry waits for deletion keeps its markers: recovery still reads them."""
    with federation.open(_members(tmp_path)) as fed:
        with fed.open() as conn:
            _two_member_commit(conn)
            transaction.commit()  # finished; its entry is deleted by a later journal write
            [gid] = journal_entries(conn, "main")
            [branch] = journal.decode(conn.root("main").zodb_federation.journal[gid])["branches"]
        fed.pack()
        record = fed.member("notes").db.storage.load(branch["marker"])[0]
        assert journal.is_marker_of(record, gid)


def test_recover_refuses_an_unknown_transaction_id(tmp_path):
    """zfed recover --commit GID with an id the journal does not have says so, exit status 1."""
    with federation.open(_members(tmp_path)):
        pass
    config = tmp_path / "federation.toml"
    config.write_text('[members.main]\npath = "main.fs"\n[members.notes]\npath = "notes.fs"\n')
    result = CliRunner().invoke(main, ["recover", str(config), "--commit", "zfed-nope"])
    assert result.exit_code == 1
    assert "No transaction zfed-nope is in the journal" in result.output
