"""LDAP distinguished names (RFC 4514) as hierarchical keys.

Text
----
:meth:`DnKind.parse` reads RFC 4514 strings: RDNs separated by ``,``, AVAs of
a multi-valued RDN by ``+``, each AVA ``type=value``.  Types are names
(``cn``) or numeric OIDs (``2.5.4.3``), compared case-insensitively; the OIDs
of the names RFC 4514 section 3 lists (``cn``, ``l``, ``st``, ``o``, ``ou``,
``c``, ``street``, ``dc``, ``uid``) become those names.  Values are strings
with the escapes ``\\,`` ``\\+`` ``\\"`` ``\\\\`` ``\\<`` ``\\>`` ``\\;``
``\\=`` ``\\#`` ``\\ `` and ``\\XX`` hex pairs (UTF-8 bytes), or ``#`` and hex
pairs (BER).  Spaces around ``=``, ``,`` and ``+`` are tolerated (RFC 2253
style ``cn=a, dc=b``); unescaped leading and trailing spaces of a value are
dropped, escaped ones are kept.  Empty values and empty RDNs are rejected;
the empty text is the root DN.

Value model: an AVA is ``(type, value)`` with ``type`` lowercase and
``value`` the unescaped ``str``, compared exactly.  A ``#`` BER value that is
an OCTET STRING (UTF-8), UTF8String, PrintableString or IA5String with a
definite length becomes that ``str``; any other keeps its BER ``bytes``,
written back as lowercase ``#hex``.  AVAs of an RDN are a set, kept sorted.

The canonical text (``str(dn)``) has no optional spaces and escapes
``\\ , + " < > ; = #`` everywhere, NUL as ``\\00`` and a leading or trailing
space; ``ldap3.utils.dn.parse_dn`` accepts it.

Byte encoding and order
-----------------------
Keys are ordered hierarchically: RDN sequences compare from the root (the
last RDN of the text), so a subtree is one contiguous byte range.  The
encoding writes the RDNs root first; each RDN is its sorted AVAs joined by
0x01 and ends with 0x00::

    rdn = ava *( 0x01 ava ) 0x00
    ava = type 0x02 utf8(value)        ; str value
        / type 0x03 ber(value)         ; bytes value

Inside ``type`` and ``value`` each byte ``b`` in 0x00-0x04 becomes 0x04,
``b + 5``.  Separators never occur inside a field and every field byte sorts
above every separator, so ``bytes`` order is the tuple order of ``(type,
is_bytes, value)`` per AVA, of AVAs per RDN and of RDNs from the root, which
is :class:`DN` order; ``encode(parent)`` is a strict prefix of
``encode(child)``.  The strict descendants of a DN encoded
``E`` are exactly the keys in ``[E + 0x00, E[:-1] + 0x01)`` (``[0x00, 0xff)``
for the root), see :meth:`DnKind.subtree_range`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import total_ordering
from itertools import pairwise
from typing import Any

from federation.errors import InvalidKey, shorten

Value = str | bytes
AVA = tuple[str, Value]
RDN = tuple[AVA, ...]

KIND = "dn"
_OID_NAMES = {  # the names RFC 4514 section 3 lists, by OID
    "2.5.4.3": "cn",
    "2.5.4.6": "c",
    "2.5.4.7": "l",
    "2.5.4.8": "st",
    "2.5.4.9": "street",
    "2.5.4.10": "o",
    "2.5.4.11": "ou",
    "0.9.2342.19200300.100.1.1": "uid",
    "0.9.2342.19200300.100.1.25": "dc",
}
_TYPE = re.compile(r"[A-Za-z][A-Za-z0-9-]*|(?:0|[1-9][0-9]*)(?:\.(?:0|[1-9][0-9]*))+")
_HEX = frozenset("0123456789abcdefABCDEF")
# Characters a backslash may escape; NUL too, as ldap3's escape_rdn writes it.
_PAIRED = frozenset('\\,+"<>;=# \x00')
_UNESCAPED_BAD = frozenset('"<>;\x00')  # ',', '+' end a value; '\\' starts an escape
_TO_ESCAPE = re.compile(r'[\\,+"<>;=#\x00]|^ | \Z')  # NUL is written as \00
_PRINTABLE = re.compile(r"[A-Za-z0-9 '()+,\-./:=?]*")
_BER_STRINGS = {0x04: "utf-8", 0x0C: "utf-8", 0x13: "ascii", 0x16: "ascii"}
_END, _AND, _TEXT, _BER, _ESC = 0, 1, 2, 3, 4


def _ber_text(data: bytes) -> str | None:
    """Return the text of a simple BER string value, or None."""
    if len(data) < 2 or data[0] not in _BER_STRINGS:
        return None
    length, offset = data[1], 2
    if length & 0x80:
        count = length & 0x7F
        if not 0 < count <= 4:
            return None
        length, offset = int.from_bytes(data[2 : 2 + count], "big"), 2 + count
    if offset + length != len(data):
        return None
    try:
        text = data[offset:].decode(_BER_STRINGS[data[0]])
    except UnicodeDecodeError:
        return None
    if data[0] == 0x13 and _PRINTABLE.fullmatch(text) is None:
        return None
    return text or None


def _attribute_type(text: str, source: Any) -> str:
    if not text:
        raise InvalidKey(KIND, source, "an attribute type is missing")
    if _TYPE.fullmatch(text) is None:
        reason = f"the attribute type {shorten(text)} is neither a name nor a numeric OID"
        raise InvalidKey(KIND, source, reason)
    lowered = text.lower()
    return _OID_NAMES.get(lowered, lowered)


def _value(value: Any, attribute: str, source: Any) -> Value:
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value)
        text = _ber_text(value)
        if text is not None:
            return text
    elif isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidKey(KIND, source, f"the {attribute} value has a lone surrogate") from None
    else:
        raise InvalidKey(KIND, source, f"the {attribute} value is not str or bytes")
    if not value:
        raise InvalidKey(KIND, source, f"the {attribute} value is empty")
    return value


def _ava_key(ava: AVA) -> tuple[str, bool, Value]:
    return (ava[0], isinstance(ava[1], bytes), ava[1])


def _rdn(avas: Iterable[tuple[str, Value]], source: Any) -> RDN:
    """Validate and normalise AVAs (type, raw value) into a sorted RDN."""
    normal = []
    for ava in avas:
        if not isinstance(ava, tuple) or len(ava) != 2 or not isinstance(ava[0], str):
            raise InvalidKey(KIND, source, f"{shorten(ava)} is not a (type, value) pair")
        attribute = _attribute_type(ava[0], source)
        normal.append((attribute, _value(ava[1], attribute, source)))
    if not normal:
        raise InvalidKey(KIND, source, "an RDN has no attribute")
    normal.sort(key=_ava_key)
    for first, second in pairwise(normal):
        if first == second:
            raise InvalidKey(KIND, source, f"an RDN repeats {_ava_text(first)}")
    return tuple(normal)


def _parse(text: str) -> tuple[RDN, ...]:
    """Parse RFC 4514 *text* into RDNs (leaf first), raising InvalidKey."""
    if not isinstance(text, str):
        raise InvalidKey(KIND, text, "expected text")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise InvalidKey(KIND, text, f"position {error.start} holds a lone surrogate") from None
    if not text.strip(" "):
        return ()
    rdns: list[RDN] = []
    avas: list[tuple[str, Value]] = []
    i, n = 0, len(text)
    end = len(text.rstrip(" "))  # text[end:] is only spaces
    while True:
        start = i
        while i < n and text[i] not in "=,+":
            i += 1
        if i == n or text[i] != "=":
            if not text[start:i].strip(" "):
                raise InvalidKey(KIND, text, f"an RDN or attribute is empty at position {start}")
            raise InvalidKey(KIND, text, f"{shorten(text[start:i].strip(' '))} is not followed "
                                         "by '='")
        attribute = _attribute_type(text[start:i].strip(" "), text)
        i += 1
        while i < n and text[i] == " ":
            i += 1
        if i < n and text[i] == "#":
            i, value = _hex_value(text, i, attribute)
        else:
            i, value = _string_value(text, i, attribute)
        avas.append((attribute, value))
        if i == n or text[i] == ",":
            rdns.append(_rdn(avas, text))
            avas = []
        if i == n:
            return tuple(rdns)
        i += 1
        if i >= end:
            raise InvalidKey(KIND, text, f"the text ends with the separator {text[i - 1]!r}")


def _hex_value(text: str, i: int, attribute: str) -> tuple[int, Value]:
    """Read ``#hexpairs`` at *i*; return the end position and the value."""
    end = i + 1
    while end < len(text) and text[end] in _HEX:
        end += 1
    digits = text[i + 1 : end]
    while end < len(text) and text[end] == " ":
        end += 1
    if end < len(text) and text[end] not in ",+":
        raise InvalidKey(KIND, text, f"position {end} of the {attribute} value is not hex")
    if not digits or len(digits) % 2:
        raise InvalidKey(KIND, text, f"the {attribute} value {shorten(text[i:end])} is not hex "
                                     "pairs")
    return end, _value(bytes.fromhex(digits), attribute, text)


def _string_value(text: str, i: int, attribute: str) -> tuple[int, Value]:
    """Read an escaped string at *i*; return the end position and the value."""
    n = len(text)
    raw = bytearray()
    keep = 0  # length of raw up to its last escaped or non-space character
    while i < n and text[i] not in ",+":
        char = text[i]
        if char == "\\":
            pair = text[i + 1 : i + 3]
            if not pair:
                raise InvalidKey(KIND, text, "the text ends inside an escape")
            if pair[0] in _PAIRED:
                raw += pair[0].encode("utf-8")
                i += 2
            elif len(pair) == 2 and pair[0] in _HEX and pair[1] in _HEX:
                raw.append(int(pair, 16))
                i += 3
            else:
                raise InvalidKey(KIND, text, f"'\\{pair}' at position {i} is not a valid escape")
            keep = len(raw)
            continue
        if char in _UNESCAPED_BAD:
            raise InvalidKey(KIND, text, f"{char!r} at position {i} must be escaped")
        raw += char.encode("utf-8")
        if char != " ":
            keep = len(raw)
        i += 1
    del raw[keep:]
    try:
        value = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidKey(KIND, text, f"the escaped {attribute} value is not UTF-8") from None
    return i, _value(value, attribute, text)


def _escape(value: Value) -> str:
    """Return the canonical RFC 4514 text of an attribute value."""
    if isinstance(value, bytes):
        return "#" + value.hex()
    return _TO_ESCAPE.sub(lambda m: "\\00" if m[0] == "\x00" else "\\" + m[0], value)


def _ava_text(ava: AVA) -> str:
    return f"{ava[0]}={_escape(ava[1])}"


def _escape_bytes(data: bytes) -> bytes:
    return re.sub(rb"[\x00-\x04]", lambda m: bytes([_ESC, m[0][0] + 5]), data)


def _unescape_bytes(data: bytes) -> bytes:
    return re.sub(rb"\x04([\x05-\x09])", lambda m: bytes([m[1][0] - 5]), data)


def _encode_rdn(rdn: RDN) -> bytes:
    parts = []
    for attribute, value in rdn:
        tag = _BER if isinstance(value, bytes) else _TEXT
        data = value if isinstance(value, bytes) else value.encode("utf-8")
        parts.append(_escape_bytes(attribute.encode("ascii")) + bytes([tag]) + _escape_bytes(data))
    return bytes([_AND]).join(parts) + bytes([_END])


def _decode(data: bytes) -> list[list[tuple[str, Value]]]:
    """Split encoded bytes into RDNs (root first); DnKind.decode checks the result."""
    if data and data[-1] != _END:
        raise InvalidKey(KIND, data, "the bytes end inside an RDN")
    rdns = []
    for rdn in data[:-1].split(bytes([_END])) if data else ():
        avas: list[tuple[str, Value]] = []
        for ava in rdn.split(bytes([_AND])):
            fields = re.split(rb"([\x02\x03])", ava, maxsplit=1)
            if len(fields) != 3:
                raise InvalidKey(KIND, data, f"the AVA {shorten(ava)} has no type/value separator")
            attribute, tag, value = fields[0], fields[1][0], _unescape_bytes(fields[2])
            try:
                text = _unescape_bytes(attribute).decode("ascii")
                avas.append((text, value.decode("utf-8") if tag == _TEXT else value))
            except UnicodeDecodeError:
                raise InvalidKey(KIND, data, f"the AVA {shorten(ava)} is not valid text") from None
        rdns.append(avas)
    return rdns


@total_ordering
class DN:
    """An immutable, hashable, ordered distinguished name.

    ``DN(text)`` parses RFC 4514 text (see the module docstring);
    :meth:`from_rdns` builds one from ``(type, value)`` pairs.  ``rdns`` runs
    from the leaf to the root like the text; order compares from the root.
    The root DN (``DN("")``) has length 0.
    """

    __slots__ = ("_hash", "_key", "_rdns")

    def __init__(self, text: str = "") -> None:
        self._set(_parse(text))

    @classmethod
    def from_rdns(cls, rdns: Iterable[Iterable[tuple[str, Value]]]) -> DN:
        """Return the DN of *rdns*, leaf first, each an iterable of (type, value)."""
        dn, source = cls.__new__(cls), list(rdns)
        dn._set(tuple(_rdn(rdn, source) for rdn in source))
        return dn

    def _set(self, rdns: tuple[RDN, ...]) -> None:
        key = tuple(tuple(_ava_key(ava) for ava in rdn) for rdn in reversed(rdns))
        object.__setattr__(self, "_rdns", rdns)
        object.__setattr__(self, "_key", key)
        object.__setattr__(self, "_hash", hash(key))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"DN {self} is immutable; {name!r} cannot be set.")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"DN {self} is immutable; {name!r} cannot be deleted.")

    def __reduce__(self) -> tuple[Any, ...]:
        return (DN, (str(self),))

    @property
    def rdns(self) -> tuple[RDN, ...]:
        """The RDNs, leaf first; each a sorted tuple of (type, value) pairs."""
        return self._rdns

    @property
    def rdn(self) -> RDN | None:
        """The leaf RDN, or None for the root DN."""
        return self._rdns[0] if self._rdns else None

    @property
    def parent(self) -> DN | None:
        """The DN one level up, or None for the root DN."""
        return DN.from_rdns(self._rdns[1:]) if self._rdns else None

    def child(self, rdn: str | Iterable[tuple[str, Value]]) -> DN:
        """Return the DN of the entry named *rdn* (text or pairs) below this one."""
        if isinstance(rdn, str):
            parsed = _parse(rdn)
            if len(parsed) != 1:
                raise InvalidKey(KIND, rdn, f"expected one RDN, got {len(parsed)}")
            new = parsed[0]
        elif isinstance(rdn, Iterable) and not isinstance(rdn, (bytes, bytearray)):
            new = _rdn(rdn, rdn)
        else:
            raise InvalidKey(KIND, rdn, "an RDN is text or (type, value) pairs")
        return DN.from_rdns((new, *self._rdns))

    def is_descendant_of(self, other: DN | str, strict: bool = True) -> bool:
        """Whether this DN is below *other* (or equal to it when not *strict*)."""
        ancestor = other if isinstance(other, DN) else DN(other)
        depth = len(ancestor._rdns)
        if len(self._rdns) < depth + (1 if strict else 0):
            return False
        return depth == 0 or self._rdns[-depth:] == ancestor._rdns

    def __len__(self) -> int:
        return len(self._rdns)

    def __str__(self) -> str:
        return ",".join("+".join(_ava_text(ava) for ava in rdn) for rdn in self._rdns)

    def __repr__(self) -> str:
        return f"DN({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return self._key == other._key if isinstance(other, DN) else NotImplemented

    def __hash__(self) -> int:
        return self._hash

    def __lt__(self, other: object) -> bool:
        return self._key < other._key if isinstance(other, DN) else NotImplemented


class DnKind:
    """Distinguished-name keys.  See :class:`federation.interfaces.KeyKind`."""

    name = KIND

    def parse(self, text: str) -> DN:
        """Return the DN named by RFC 4514 *text*."""
        return DN(text)

    def coerce(self, value: Any) -> DN:
        """Return *value* (a :class:`DN` or its text) as a key."""
        if isinstance(value, DN):
            return value
        if isinstance(value, str):
            return DN(value)
        raise InvalidKey(KIND, value, "expected a DN or text")

    def format(self, key: Any) -> str:
        """Return the canonical RFC 4514 text of *key*."""
        return str(self.coerce(key))

    def encode(self, key: Any) -> bytes:
        """Return the hierarchical, order-preserving bytes of *key*."""
        return b"".join(_encode_rdn(rdn) for rdn in reversed(self.coerce(key).rdns))

    def decode(self, data: bytes) -> DN:
        """Return the DN whose canonical encoding is *data*."""
        if not isinstance(data, (bytes, bytearray)):
            raise InvalidKey(KIND, data, "expected bytes")
        data = bytes(data)
        try:
            dn = DN.from_rdns(reversed(_decode(data)))
        except InvalidKey as error:
            raise InvalidKey(KIND, data, error.reason) from None
        if self.encode(dn) != data:
            raise InvalidKey(KIND, data, "the bytes are not the canonical encoding of a DN")
        return dn

    def issue(self, parent: DN | str, rdn: str | Iterable[tuple[str, Value]]) -> DN:
        """Return the DN of a new entry named *rdn* below *parent*."""
        return self.coerce(parent).child(rdn)

    def subtree_range(self, dn: DN | str) -> tuple[bytes, bytes]:
        """Return ``(lo, hi)``: the encodings of the strict descendants of *dn*
        are exactly the keys ``k`` with ``lo <= k < hi``."""
        encoded = self.encode(dn)
        if not encoded:
            return b"\x00", b"\xff"
        return encoded + b"\x00", encoded[:-1] + b"\x01"

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}()"
