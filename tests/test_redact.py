"""Credentials are kept out of what zfed prints."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from federation.cli import main
from federation.redact import has_secret, redact


@pytest.mark.parametrize(("uri", "shown"), [
    ("zeo://db:8100?username=u&password=s3cret", "zeo://db:8100?username=u&password=***"),
    ("postgres://app:s3cret@db/main", "postgres://app:***@db/main"),
    ("zeo://db:8100?storage=main", "zeo://db:8100?storage=main"),
    ("file:///srv/main.fs", "file:///srv/main.fs"),
    ("not a uri", "not a uri"),
])
def test_redact_hides_passwords_only(uri, shown):
    """A password in a URI's query or user part becomes ***; the rest is kept as written."""
    assert redact(uri) == shown
    assert has_secret(uri) is (shown != uri)
    assert "s3cret" not in redact(uri)


def test_a_bad_uri_is_refused_without_its_password(tmp_path):
    """The error for a URI zodburi refuses names the member and URI, not the password."""
    config = tmp_path / "federation.toml"
    config.write_text('[members.main]\nuri = "zeo://127.0.0.1:1?password=s3cret&wait=x"\n')
    result = CliRunner().invoke(main, ["info", str(config)])
    assert result.exit_code == 1
    assert "Member 'main': cannot use the URI 'zeo://127.0.0.1:1?password=***&wait=x'" in (
        result.output)
    assert "s3cret" not in result.output
