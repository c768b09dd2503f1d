"""UUID keys (named ``uuids`` so that it never shadows the stdlib ``uuid``).

Text forms accepted by :meth:`UuidKind.parse` (surrounding whitespace is
stripped first; hex digits in any case):

- canonical ``xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx``;
- 32 hex digits without hyphens;
- ``urn:uuid:`` (any case) followed by the canonical form (RFC 4122 URN);
- the canonical form in braces, ``{...}`` (the Microsoft GUID form).

Anything else is rejected, including the looser inputs ``uuid.UUID()``
itself accepts (stray hyphens, one-sided braces, underscores).  Keys are
``uuid.UUID`` values; the canonical text is lowercase with hyphens.

Byte encoding: the 16 bytes of ``UUID.bytes`` (big-endian).  Byte order is
the order of ``UUID.int``, which is also how ``uuid.UUID`` instances compare.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from federation.errors import InvalidKey

_H = "[0-9a-fA-F]"
_CANONICAL = f"{_H}{{8}}-{_H}{{4}}-{_H}{{4}}-{_H}{{4}}-{_H}{{12}}"
_FORMS = re.compile(
    f"(?P<plain>{_CANONICAL})"
    f"|(?P<bare>{_H}{{32}})"
    f"|(?i:urn:uuid:)(?P<urn>{_CANONICAL})"
    f"|\\{{(?P<braced>{_CANONICAL})\\}}"
)
_SIZE = 16


class UuidKind:
    """UUID keys.  See :class:`federation.interfaces.KeyKind`."""

    name = "uuid"

    def parse(self, text: str) -> uuid.UUID:
        """Return the UUID named by *text* in one of the accepted forms."""
        if not isinstance(text, str):
            raise InvalidKey(self.name, text, "expected text")
        match = _FORMS.fullmatch(text.strip())
        if match is None:
            raise InvalidKey(
                self.name,
                text,
                "expected 32 hex digits, optionally hyphenated 8-4-4-4-12, "
                "in braces or after urn:uuid:",
            )
        digits = next(group for group in match.groups() if group is not None)
        return uuid.UUID(hex=digits.replace("-", ""))

    def coerce(self, value: Any) -> uuid.UUID:
        """Return *value* (a ``uuid.UUID`` or its text) as a key."""
        if isinstance(value, uuid.UUID):
            return value
        if isinstance(value, str):
            return self.parse(value)
        raise InvalidKey(self.name, value, "expected a uuid.UUID or text")

    def format(self, key: Any) -> str:
        """Return the canonical lowercase hyphenated text of *key*."""
        return str(self.coerce(key))

    def encode(self, key: Any) -> bytes:
        """Return the 16 big-endian bytes of *key*."""
        return self.coerce(key).bytes

    def decode(self, data: bytes) -> uuid.UUID:
        """Return the UUID encoded in exactly 16 bytes of *data*."""
        if not isinstance(data, (bytes, bytearray)):
            raise InvalidKey(self.name, data, "expected bytes")
        if len(data) != _SIZE:
            raise InvalidKey(self.name, data, f"expected {_SIZE} bytes, got {len(data)}")
        return uuid.UUID(bytes=bytes(data))

    def issue(self) -> uuid.UUID:
        """Return a fresh random (version 4) UUID."""
        return uuid.uuid4()

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}()"
