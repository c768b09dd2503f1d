"""Credentials are kept out of what zfed prints."""

from __future__ import annotations

import pytest

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
