"""Unsigned 64-bit integer keys: the ZODB oid space.

Text forms accepted by :meth:`IntegerKind.parse` (surrounding whitespace is
stripped first):

- decimal ASCII digits, e.g. ``"42"`` (leading zeros are allowed);
- ``0x`` followed by ASCII hex digits, e.g. ``"0x2a"``, the form printed by
  ``ZODB.utils.oid_repr``.

Signs, underscores, non-ASCII digits, the empty string and values outside
``0 <= n < 2**64`` are rejected.  The canonical text is plain decimal.

Byte encoding: the key as 8 bytes, big-endian and unsigned.  That is exactly
the oid bytes ZODB uses (``ZODB.utils.p64``), and byte order equals numeric
order because every encoding has the same length.
"""

from __future__ import annotations

import re
from typing import Any

from federation.errors import InvalidKey

LIMIT = 2**64
"""Keys are integers in ``range(LIMIT)``."""

_DECIMAL = re.compile(r"[0-9]+")
_HEX = re.compile(r"0[xX]([0-9a-fA-F]+)")
_WIDTH = 8


class IntegerKind:
    """Unsigned 64-bit integer keys.  See :class:`federation.interfaces.KeyKind`."""

    name = "integer"

    def parse(self, text: str) -> int:
        """Return the integer named by decimal or ``0x`` hex *text*."""
        if not isinstance(text, str):
            raise InvalidKey(self.name, text, "expected text")
        body = text.strip()
        if not body:
            raise InvalidKey(self.name, text, "the text is empty")
        hex_match = _HEX.fullmatch(body)
        if hex_match is not None:
            digits = hex_match.group(1).lstrip("0")
            if len(digits) > 2 * _WIDTH:
                raise InvalidKey(self.name, text, "the value does not fit in 64 bits")
            return int(digits or "0", 16)
        if _DECIMAL.fullmatch(body) is None:
            raise InvalidKey(
                self.name, text, "expected decimal digits or 0x and hex digits, without a sign"
            )
        digits = body.lstrip("0")
        # Guard before int(): huge digit strings are slow and hit int_max_str_digits.
        if len(digits) > len(str(LIMIT - 1)):
            raise InvalidKey(self.name, text, "the value does not fit in 64 bits")
        return self._check(int(digits or "0"), text)

    def coerce(self, value: Any) -> int:
        """Return *value* (an ``int`` in range, or its text) as a key."""
        if isinstance(value, str):
            return self.parse(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidKey(self.name, value, "expected an int or text")
        return self._check(int(value), value)

    def format(self, key: Any) -> str:
        """Return the canonical decimal text of *key*."""
        return str(self.coerce(key))

    def encode(self, key: Any) -> bytes:
        """Return *key* as 8 big-endian bytes (``ZODB.utils.p64``)."""
        return self.coerce(key).to_bytes(_WIDTH, "big")

    def decode(self, data: bytes) -> int:
        """Return the key encoded in exactly 8 bytes of *data*."""
        if not isinstance(data, (bytes, bytearray)):
            raise InvalidKey(self.name, data, "expected bytes")
        if len(data) != _WIDTH:
            raise InvalidKey(self.name, data, f"expected {_WIDTH} bytes, got {len(data)}")
        return int.from_bytes(data, "big")

    def issue(self, after: int | str | None = None) -> int:
        """Return the key following *after*, or 1 when *after* is None."""
        if after is None:
            return 1
        previous = self.coerce(after)
        if previous == LIMIT - 1:
            raise InvalidKey(self.name, after, "no key follows it; the 64-bit key space is used up")
        return previous + 1

    def _check(self, number: int, original: Any) -> int:
        if number < 0:
            raise InvalidKey(self.name, original, "keys are not negative")
        if number >= LIMIT:
            raise InvalidKey(self.name, original, "the value does not fit in 64 bits")
        return number

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}()"
