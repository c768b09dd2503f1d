"""The zfed command: the demo and the maintenance commands."""

from __future__ import annotations

from click.testing import CliRunner

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
    pack = runner.invoke(main, ["pack", str(config)])
    assert pack.exit_code == 0, pack.output
    assert "notes: packed; 5 live stubs" in pack.output
    unknown = runner.invoke(main, ["stubs", str(config), "nope"])
    assert unknown.exit_code == 1
    assert "no member named 'nope'" in unknown.output
