"""The zfed command: the demo and the maintenance commands."""

from __future__ import annotations

import json
import sys
import types
from importlib.metadata import version
from pathlib import Path

import pytest
from click.testing import CliRunner

from federation import shell
from federation.cli import main


def test_demo_runs_twice(tmp_path):
    """zfed demo creates the federation, prints objects and stubs, and runs again."""
    runner = CliRunner()
    first = runner.invoke(main, ["demo", str(tmp_path / "demo")])
    assert first.exit_code == 0, first.output
    assert "Created the demo objects" in first.output
    assert "library:integer:" in first.output and "people:uuid:" in first.output
    assert "notes: 5 stub(s)" in first.output
    assert "Reader 'Grace' (a SQLite row)" in first.output
    second = runner.invoke(main, ["demo", str(tmp_path / "demo")])
    assert second.exit_code == 0, second.output
    assert "Reopened the databases of an earlier run" in second.output
    assert "library: 3 stub(s)" in second.output


def test_maintenance_commands(tmp_path):
    """zfed stubs, reindex and pack work on the demo federation's configuration."""
    runner = CliRunner()
    assert runner.invoke(main, ["demo", str(tmp_path)]).exit_code == 0
    config = tmp_path / "federation.toml"
    config.write_text(
        '[members.library]\npath = "library.fs"\n'
        '[members.people]\npath = "people.fs"\nkey = "uuid"\n'
        '[members.notes]\npath = "notes.fs"\n'
    )
    stubs = runner.invoke(main, ["stubs", str(config), "notes"])
    assert stubs.exit_code == 0, stubs.output
    assert stubs.output.count("library:integer:") == 3
    reindex = runner.invoke(main, ["reindex", str(config), "people"])
    assert reindex.exit_code == 0, reindex.output
    assert "3 uuids indexed" in reindex.output
    refused = runner.invoke(main, ["pack", str(config)])  # the SQLite member is missing
    assert refused.exit_code == 1
    assert refused.output.startswith("Error: Live stubs name member 'readers'")
    pack = runner.invoke(main, ["pack", str(config), "--exclude", "readers"])
    assert pack.exit_code == 0, pack.output
    assert "notes: packed; 5 live stubs" in pack.output
    unknown = runner.invoke(main, ["stubs", str(config), "nope"])
    assert unknown.exit_code == 1
    assert "no member named 'nope'" in unknown.output


def write_config(directory: Path, members: dict[str, str], *, create: bool = True,
                 extra: str = "") -> Path:
    """A configuration of FileStorage members ``name = path`` (key kinds after a colon)."""
    lines = []
    for name, spec in members.items():
        path, _, kind = spec.partition(":")
        lines += [f"[members.{name}]", f'path = "{path}"']
        lines += [f'key = "{kind}"'] if kind else []
        lines += ["create = true"] if create else []
    config = directory / "federation.toml"
    config.write_text("\n".join(lines) + "\n" + extra)
    return config


def test_plain_zfed_prints_help():
    """zfed alone prints the help, listing every command, and exits 0."""
    result = CliRunner().invoke(main, [], prog_name="zfed")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Usage: zfed")
    for command in ("bench", "check", "demo", "info", "migrate", "pack", "recover", "reindex",
                    "serve", "shell", "stubs"):
        assert f"\n  {command} " in result.output
    assert "TOML or ZODB's ZConfig format" in result.output  # every command takes both


def test_version_comes_from_the_package():
    """zfed --version prints the installed distribution's version."""
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert result.output == f"zfed, version {version('zodb-federation')}\n"


def test_help_texts_read_whole():
    """No command description is cut off in zfed --help; each is a sentence."""
    result = CliRunner().invoke(main, ["--help"], terminal_width=80)
    commands = result.output.split("Commands:\n", 1)[1].splitlines()
    assert len(commands) == len(main.commands)
    for line in commands:
        assert not line.endswith("...") and line.endswith("."), line


def test_missing_member_path_is_an_error(tmp_path):
    """A member path that does not exist fails in one sentence, exit 1, creating nothing."""
    runner = CliRunner()
    assert runner.invoke(main, ["demo", str(tmp_path)]).exit_code == 0
    config = write_config(tmp_path, {"library": "library.fs", "people": "peple.fs:uuid"},
                          create=False)
    before = sorted(tmp_path.iterdir())
    for command in (["info", str(config)], ["stubs", str(config), "library"],
                    ["pack", str(config)], ["shell", str(config), "-c", "pass"]):
        result = runner.invoke(main, command)
        assert result.exit_code == 1, (command, result.output)
        assert result.output.startswith("Error: Member 'people': the file ")
        assert "peple.fs' does not exist" in result.output
        assert result.output.count("\n") == 1 and result.output.endswith(".\n")
    assert sorted(tmp_path.iterdir()) == before


def test_stubs_sorted_by_oid_and_none_said(tmp_path):
    """zfed stubs lists stubs by oid, and says so when a member keeps none."""
    runner = CliRunner()
    assert runner.invoke(main, ["demo", str(tmp_path)]).exit_code == 0
    config = write_config(tmp_path, {"notes": "notes.fs", "library": "library.fs",
                                     "people": "people.fs:uuid"}, create=False)
    result = runner.invoke(main, ["stubs", str(config), "notes"])
    assert result.exit_code == 0, result.output
    oids = [int(line.split("\t")[0]) for line in result.output.splitlines()]
    assert len(oids) == 5 and oids == sorted(oids)
    empty = runner.invoke(main, ["stubs", str(config), "people"])
    assert (empty.exit_code, empty.output) == (0, "people: no stubs\n")


def test_pack_lists_members_in_order(tmp_path):
    """zfed pack prints one line per member, sorted by member name, then a total."""
    runner = CliRunner()
    assert runner.invoke(main, ["demo", str(tmp_path)]).exit_code == 0
    config = write_config(tmp_path, {"people": "people.fs:uuid", "notes": "notes.fs",
                                     "library": "library.fs"}, create=False)
    result = runner.invoke(main, ["pack", str(config), "--exclude", "readers"])
    assert result.exit_code == 0, result.output
    *members, total = result.output.splitlines()
    assert [line.split(":")[0] for line in members] == ["library", "notes", "people", "readers"]
    assert members[-1] == "readers: excluded (not read, not packed)"
    assert total.startswith("collected ")


def test_info_text_and_json(tmp_path):
    """zfed info shows per member storage, key kind, read-only flag and counts; --json too."""
    runner = CliRunner()
    assert runner.invoke(main, ["demo", str(tmp_path)]).exit_code == 0
    config = write_config(tmp_path, {"people": "people.fs:uuid", "notes": "notes.fs",
                                     "library": "library.fs"}, create=False)
    text = runner.invoke(main, ["info", str(config)])
    assert text.exit_code == 0, text.output
    lines = text.output.splitlines()
    assert lines[0] == f"library: FileStorage at {tmp_path / 'library.fs'}"
    assert lines[2].startswith("notes: FileStorage") and lines[4].startswith("people: ")
    assert lines[3].startswith("  key integer; ") and ", 5 stubs, " in lines[3]
    assert lines[5].startswith("  key uuid; ")
    as_json = runner.invoke(main, ["info", str(config), "--json"])
    assert as_json.exit_code == 0, as_json.output
    facts = json.loads(as_json.output)
    assert [member["name"] for member in facts["members"]] == ["library", "notes", "people"]
    notes = facts["members"][1]
    assert notes["storage"] == "FileStorage" and notes["stubs"] == 5
    assert notes["size"] == (tmp_path / "notes.fs").stat().st_size
    assert notes["objects"] > 5 and notes["read_only"] is False
    assert facts["journal"] == {"members": ["people", "notes", "library"], "pending": 0,
                                "tombstones": 0}


def test_shell_code_commits_only_when_it_says_so(tmp_path):
    """zfed shell -c runs code with fed, conn, roots and transaction; only commits persist."""
    runner = CliRunner()
    config = write_config(tmp_path, {"main": "main.fs", "notes": "notes.fs:uuid"})
    code = ("from tests.models import Item\n"
            "roots['main']['page'] = Item('page')\n"
            "transaction.commit()\n"
            "roots['notes']['note'] = Item('note', link=roots['main']['page'])\n"
            "transaction.commit()\n"
            "roots['main']['uncommitted'] = Item('lost')\n"
            "print(conn.ref(roots['notes']['note']).member, sorted(roots), fed is conn.federation)")
    result = runner.invoke(main, ["shell", str(config), "-c", code])
    assert (result.exit_code, result.output) == (0, "notes ['main', 'notes'] True\n")
    check = ("note = roots['notes']['note']\n"
             "assert note.link is conn.get(conn.ref(roots['main']['page']))\n"
             "print(sorted(roots['main']), isinstance(federation.Ref.parse('main:integer:1'),"
             " federation.Ref))")
    result = runner.invoke(main, ["shell", str(config), "-c", check])
    assert (result.exit_code, result.output) == (0, "['page'] True\n")


@pytest.mark.parametrize(("code", "status", "printed"), [
    ("1/0", 1, "ZeroDivisionError: division by zero"),
    ("raise SystemExit(3)", 3, ""),
    ("raise SystemExit('Stopped: no pages.')", 1, "Stopped: no pages."),
    ("import sys; sys.exit()", 0, ""),
])
def test_shell_code_exit_status(tmp_path, code, status, printed):
    """zfed shell -c exits 1 with the traceback on an error, and with what SystemExit asks."""
    config = write_config(tmp_path, {"main": "main.fs"})
    result = CliRunner().invoke(main, ["shell", str(config), "-c", code])
    assert result.exit_code == status, result.output
    assert printed in result.output
    assert "shell.py" not in result.output  # the traceback starts in the user's code


def test_shell_interactive_without_ipython(tmp_path, monkeypatch):
    """Without IPython, zfed shell is Python's console, greeting with the bound names."""
    monkeypatch.setattr(shell, "ipython_available", lambda: False)
    config = write_config(tmp_path, {"main": "main.fs", "notes": "notes.fs"})
    result = CliRunner().invoke(main, ["shell", str(config)],
                                input="print(sorted(roots), type(conn).__name__)\n")
    assert result.exit_code == 0, result.output
    assert f"zfed shell on {config}: members main, notes." in result.output
    assert "  conn " in result.output and "  roots " in result.output
    assert "['main', 'notes'] Manager" in result.output


def test_shell_follows_a_root_reference_into_another_member(tmp_path):
    """A member root holding another member's object directly resolves it in a new session."""
    config = write_config(tmp_path, {"main": "main.fs", "people": "people.fs:uuid"},
                          extra='[placement]\n"tests.models.Person" = "people"\n')
    runner = CliRunner()
    create = ("from tests.models import Person\n"
              "roots['main']['owner'] = Person('Grace')\n"
              "transaction.commit()\n")
    assert runner.invoke(main, ["shell", str(config), "-c", create]).exit_code == 0
    result = runner.invoke(main, ["shell", str(config), "-c",
                                  "print(roots['main']['owner'].name)"])
    assert (result.exit_code, result.output) == (0, "Grace\n")


def test_shell_uses_ipython_when_installed(tmp_path, monkeypatch):
    """With IPython installed, zfed shell starts it on the session's names."""
    started = {}
    fake = types.ModuleType("IPython")
    fake.start_ipython = lambda **kw: started.update(kw)
    monkeypatch.setitem(sys.modules, "IPython", fake)
    monkeypatch.setattr(shell, "ipython_available", lambda: True)
    config = write_config(tmp_path, {"main": "main.fs"})
    result = CliRunner().invoke(main, ["shell", str(config)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"zfed shell on {config}: members main.")
    assert started["argv"] == [] and started["display_banner"] is False
    assert set(started["user_ns"]) >= {"fed", "conn", "roots", "transaction", "federation"}
