"""User-name keys (``uid``), configurable by a pattern.

The default alphabet is the POSIX *portable user name*: characters of the
portable filename character set ``[A-Za-z0-9._-]``, not starting with a
hyphen (POSIX.1-2017, 3.437 "User Name"), at most 32 characters long (the
limit of Linux login names, ``LOGIN_NAME_MAX``/``utmp``).  Another alphabet
is one ``UidKind(name=..., pattern=...)`` away, e.g. for mail local parts.

:meth:`UidKind.parse` strips nothing: whitespace is simply not a valid
character.  A case-insensitive kind (``case_sensitive=False``) lowercases the
text first; its pattern and length limit then apply to the lowercased,
canonical name, so every canonical key matches the pattern.

Byte encoding: the UTF-8 bytes of the name.  UTF-8 byte order is code point
order for every string without lone surrogates (which are rejected), so the
encoding preserves ``str`` order for the default ASCII alphabet and for any
custom one.
"""

from __future__ import annotations

import re
from typing import Any

from federation.errors import ConfigurationError, InvalidKey

PORTABLE_USER_NAME = r"[A-Za-z0-9._][A-Za-z0-9._-]*"
"""The POSIX portable user name: portable filename characters, no leading '-'."""


class UidKind:
    """Name keys validated by a regular expression.

    See :class:`federation.interfaces.KeyKind`.
    """

    def __init__(
        self,
        name: str = "uid",
        pattern: str | re.Pattern[str] = PORTABLE_USER_NAME,
        max_length: int = 32,
        case_sensitive: bool = True,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ConfigurationError(f"The key kind name {name!r} is not a non-empty string.")
        if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1:
            raise ConfigurationError(
                f"The maximum length {max_length!r} of key kind {name!r} is not a positive int."
            )
        try:
            self.pattern = re.compile(pattern)
        except (re.error, TypeError) as exc:
            raise ConfigurationError(
                f"The pattern {pattern!r} of key kind {name!r} is not a regular expression: {exc}."
            ) from None
        self.name = name
        self.max_length = max_length
        self.case_sensitive = case_sensitive

    def parse(self, text: str) -> str:
        """Return *text* as a canonical name, validating length and pattern."""
        if not isinstance(text, str):
            raise InvalidKey(self.name, text, "expected text")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidKey(self.name, text, "the text contains a lone surrogate") from None
        name = text if self.case_sensitive else text.lower()
        if not name:
            raise InvalidKey(self.name, text, "the name is empty")
        if len(name) > self.max_length:
            raise InvalidKey(
                self.name, text, f"the name is longer than {self.max_length} characters"
            )
        if self.pattern.fullmatch(name) is None:
            raise InvalidKey(
                self.name, text, f"the name does not match the pattern {self.pattern.pattern!r}"
            )
        return name

    def coerce(self, value: Any) -> str:
        """Return the text *value* as a canonical name."""
        return self.parse(value)

    def format(self, key: Any) -> str:
        """Return the canonical text of *key* (the name itself)."""
        return self.parse(key)

    def encode(self, key: Any) -> bytes:
        """Return the UTF-8 bytes of *key*."""
        return self.parse(key).encode("utf-8")

    def decode(self, data: bytes) -> str:
        """Return the name whose UTF-8 bytes are *data*."""
        if not isinstance(data, (bytes, bytearray)):
            raise InvalidKey(self.name, data, "expected bytes")
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidKey(self.name, data, "the bytes are not UTF-8") from None
        try:
            return self.parse(text)
        except InvalidKey as error:
            raise InvalidKey(self.name, data, error.reason) from None

    def issue(self, name: str) -> str:
        """Return the validated canonical form of the chosen *name*."""
        return self.parse(name)

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}(name={self.name!r}, pattern={self.pattern.pattern!r}, "
            f"max_length={self.max_length}, case_sensitive={self.case_sensitive})"
        )
