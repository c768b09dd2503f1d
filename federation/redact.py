"""Credentials kept out of every message, repr, log record and ``zfed`` output.

A URI may carry a password before the host (``postgres://user:pass@host/db``
for RelStorage, ``ldap://user:pass@host``) or in its query (``zeo://host:port?
username=u&password=p``); a libpq connection string has ``password=...``.
:func:`redact` replaces each with ``***`` wherever it appears in a text;
:func:`has_secret` says whether there was one.
"""

from __future__ import annotations

import re

#: What a secret is replaced with.
MASK = "***"

_URI_PASSWORD = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^/@\s:]*):[^/@\s]*@")
_PASSWORD_SETTING = re.compile(
    r"(?i)(?P<name>\b(?:password|passwd|pwd|secret|token|credentials))(?P<eq>\s*[=:]\s*)"
    r"(?:'[^']*'|\"[^\"]*\"|[^\s&;,'\"]+)"
)


def redact(text: str) -> str:
    """``text`` with the passwords of URIs and connection settings in it replaced by ``***``."""
    text = _URI_PASSWORD.sub(rf"\g<scheme>\g<user>:{MASK}@", text)
    return _PASSWORD_SETTING.sub(rf"\g<name>\g<eq>{MASK}", text)


def has_secret(text: str) -> bool:
    """Whether ``text`` carries a password that :func:`redact` would hide."""
    return redact(text) != text
