"""zfed demo writes its configuration, and every zfed command works on it."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

import federation
from federation import demo
from federation.cli import main
from federation.serve import FederationServer


@pytest.fixture
def demo_config(tmp_path):
    """A demo directory made by ``zfed demo``, and the configuration it wrote."""
    result = CliRunner().invoke(main, ["demo", str(tmp_path)])
    assert result.exit_code == 0, result.output
    config = tmp_path / demo.CONFIG_NAME
    assert f"Its configuration is {config}" in result.output
    return config


def zfed(*args):
    result = CliRunner().invoke(main, [str(arg) for arg in args])
    assert result.exit_code == 0, result.output
    return result.output


def test_demo_configuration_describes_every_member(demo_config):
    """The written configuration has the four members, the SQLite one included."""
    members, placement = federation.read_config(demo_config)
    assert list(members) == ["library", "people", "notes", "readers"]
    assert members["readers"]["adapter"] == "sqlite"
    assert members["readers"]["options"]["path"] == str(demo_config.parent / "readers.sqlite")
    assert placement == {}


def test_info_stubs_and_check_on_the_demo(demo_config):
    """zfed info, stubs and check read all four members of the demo's configuration."""
    facts = json.loads(zfed("info", demo_config, "--json"))
    assert {m["name"]: m["storage"] for m in facts["members"]} == {
        "library": "FileStorage", "notes": "FileStorage", "people": "FileStorage",
        "readers": "foreign (SQLite)"}
    stubs = zfed("stubs", demo_config, "notes")
    assert stubs.count("readers:integer:") == 2 and stubs.count("library:integer:") == 3
    check = zfed("check", demo_config)
    assert check.splitlines() == [f"{name}: no problems"
                                  for name in ("library", "people", "notes", "readers")]


def test_maintenance_commands_on_the_demo(demo_config):
    """zfed reindex, pack, recover and shell -c work on the demo's configuration."""
    assert "3 uuids indexed" in zfed("reindex", demo_config, "people")
    assert zfed("recover", demo_config) == "Nothing to recover.\n"
    dry = zfed("pack", demo_config, "--dry-run")  # counts no stubs it has not pruned
    assert "notes: dry run, nothing changed; " in dry and "live stubs" not in dry
    pack = zfed("pack", demo_config)  # the SQLite member is read: nothing refuses
    assert "notes: packed; 5 live stubs" in pack
    shell = zfed("shell", demo_config, "-c",
                 "print(sorted(roots), conn.jar('readers').find('name', 'Grace')[0].name)")
    assert shell == "['library', 'notes', 'people'] Grace\n"
    again = CliRunner().invoke(main, ["demo", str(demo_config.parent)])
    assert "Reopened the databases of an earlier run." in again.output


def test_serve_the_demo(demo_config, tmp_path):
    """zfed serve serves the demo's files; its client configuration keeps the SQLite member."""
    server = FederationServer(demo_config)
    try:
        server.start()
        assert server.served == ["library", "notes", "people"]
        client = tmp_path / "client.toml"
        server.write_client_config(client)
        with federation.open_config(client) as fed, fed.open() as conn:
            note = conn.root("notes")["note-1"]
            assert note.by.name == "Edsger" and note.about.title
            assert fed.member("readers").kind == "integer"
    finally:
        server.close()


def test_demo_keeps_a_configuration_of_ones_own(tmp_path):
    """zfed demo in a directory whose federation.toml is not the demo's refuses, in one
    sentence, and leaves the file and the directory as they were."""
    mine = '[members.main]\npath = "Data.fs"\n'
    (tmp_path / "federation.toml").write_text(mine)
    result = CliRunner().invoke(main, ["demo", str(tmp_path)])
    assert result.exit_code == 1
    assert result.output.startswith("Error: ") and result.output.count("\n") == 1
    assert "federation.toml" in result.output
    assert (tmp_path / "federation.toml").read_text() == mine
    assert sorted(path.name for path in tmp_path.iterdir()) == ["federation.toml"]
    assert CliRunner().invoke(main, ["demo", str(tmp_path / "demo")]).exit_code == 0
    assert CliRunner().invoke(main, ["demo", str(tmp_path / "demo")]).exit_code == 0  # again
