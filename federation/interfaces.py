"""Contracts of zodb-federation.

The prose lives here; implementations say "See :class:`KeyKind`".
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class KeyKind(Protocol):
    """An oid factory: one kind of key by which objects are named.

    A key kind turns text into keys and keys into bytes.  Keys are plain,
    hashable, immutable Python values (``int``, ``uuid.UUID``,
    :class:`federation.resolvers.dn.DN`, ``str``).

    Contract:

    - ``parse(text)`` validates and normalises text, returning the key;
      bad input raises :class:`federation.InvalidKey` naming the kind and
      the text.
    - ``coerce(value)`` accepts a key value or its text and returns the
      canonical key (``parse`` for ``str`` input where that is not itself
      the key type); wrong types raise :class:`federation.InvalidKey`.
    - ``format(key)`` is the canonical text; ``parse(format(k)) == k``.
    - ``encode(key)`` returns bytes whose byte order is the key order, so
      encoded keys can be BTree keys scanned by range;
      ``decode(encode(k)) == k``.
    - ``issue(**hints)`` makes a key for a new object (a fresh UUID, the
      next integer after ``after``, a DN under ``parent``...).
    """

    name: str

    def parse(self, text: str) -> Any: ...

    def coerce(self, value: Any) -> Any: ...

    def format(self, key: Any) -> str: ...

    def encode(self, key: Any) -> bytes: ...

    def decode(self, data: bytes) -> Any: ...

    def issue(self, **hints: Any) -> Any: ...
