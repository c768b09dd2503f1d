"""zfed and user errors: one line on stderr, exit status 1, never a traceback."""

from __future__ import annotations

import pytest
import ZODB
from click.testing import CliRunner
from ZODB.FileStorage import FileStorage

from federation.catalog import CATALOG_ATTRIBUTE
from federation.cli import main


def _run(*args: str):
    result = CliRunner().invoke(main, list(args))
    assert isinstance(result.exception, SystemExit), result.exception  # not a crash
    return result


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ('[members.main]\npath = "main.fs"\nread_only = "false"\n', "'read_only' must be a bool"),
        ('[members.main]\nuri = "zeo://h:notaport"\n', "cannot use the URI"),
        ('[members.main]\npath = "garbage.fs"\n', "not a FileStorage file"),
        ('[members.main]\npath = "missing/main.fs"\n', "does not exist"),
        ('[members.main]\npath = "corrupt.fs"\n', "federation catalog"),
        ('[members.main]\npath = "locked.fs"\n', "locked"),
        ("\xff\xfe not toml", "Cannot read federation configuration"),
        ('[members.main]\npath = "main.fs"\ncreate = true\n[placement]\n"a.B" = "nope"\n',
         "no member named"),
    ],
)
@pytest.mark.parametrize("command", ["stubs", "reindex"])
def test_user_errors_are_one_line(tmp_path, config, expected, command):
    """Each configuration or storage problem is one 'Error:' line and exit status 1."""
    (tmp_path / "garbage.fs").write_bytes(b"garbage" * 20)
    db = ZODB.DB(str(tmp_path / "corrupt.fs"))
    with db.transaction() as conn:
        setattr(conn.root(), CATALOG_ATTRIBUTE, "not a catalog")
    db.close()
    path = tmp_path / "federation.toml"
    path.write_bytes(config.encode("utf-8", "surrogateescape") if "\xff" not in config
                     else b"\xff\xfe not toml")
    holder = FileStorage(str(tmp_path / "locked.fs"))
    try:
        result = _run(command, str(path), "main")
    finally:
        holder.close()
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert expected in lines[0]
    assert "Traceback" not in result.output
