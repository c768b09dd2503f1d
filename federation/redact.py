"""Credentials kept out of what ``zfed`` prints.

A zodburi URI may carry a password, in its query (``zeo://host:port?
username=u&password=p``) or before the host (``postgres://user:pass@host/db``
for RelStorage).  :func:`redact` replaces it with ``***``; :func:`has_secret`
says whether there was one.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

#: Query parameters whose values are secrets.
SECRET_PARAMETERS = frozenset({"password", "passwd", "secret", "token", "credentials"})

#: What a secret is replaced with.
MASK = "***"


def redact(uri: str) -> str:
    """``uri`` with any password replaced by ``***``; other text is returned as it is."""
    parts = urlsplit(uri if "://" in uri else "")
    if not parts.scheme:
        return uri
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        if ":" in userinfo:
            netloc = f"{userinfo.partition(':')[0]}:{MASK}@{host}"
    query = parse_qsl(parts.query, keep_blank_values=True)
    if any(name.lower() in SECRET_PARAMETERS for name, _ in query):
        query = [(name, MASK if name.lower() in SECRET_PARAMETERS else value)
                 for name, value in query]
        text = urlencode(query, safe="*")
    else:
        text = parts.query
    return urlunsplit(parts._replace(netloc=netloc, query=text))


def has_secret(uri: str) -> bool:
    """Whether ``uri`` carries a password that :func:`redact` would hide."""
    return redact(uri) != uri
