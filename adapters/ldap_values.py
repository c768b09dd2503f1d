"""LDAP values: how Python attributes map to LDAP attributes and entries.

This module's one role is the mapping and conversion of values, with no
connection to a server: :class:`Attribute` (one attribute, its type and
converter, :data:`CONVERTERS`), :class:`Entries` (the entries under a base
mapped to a persistent class) and GeneralizedTime text (:func:`parse_time`,
:func:`format_time`).  Sessions on a directory are in
:mod:`federation.adapters.ldap`, which re-exports these names.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from federation import resolvers
from federation.errors import ConfigurationError, InvalidKey
from federation.resolvers.dn import DN

__all__ = ["CONVERTERS", "DESCRIPTOR", "Attribute", "Entries", "format_time", "parse_time",
           "texts"]

#: An LDAP attribute or object class name: a descriptor or a numeric OID.
DESCRIPTOR = re.compile(r"[A-Za-z][A-Za-z0-9-]*|[0-9]+(?:\.[0-9]+)+")
_TIME = re.compile(r"(\d{4})(\d\d)(\d\d)(\d\d)(\d\d)?(\d\d)?(?:[.,](\d+))?(Z|[+-]\d\d(?:\d\d)?)")


def parse_time(text: str) -> datetime:
    """A GeneralizedTime value (``20240131235959.5Z``, ``2024013112+0100``) as aware UTC."""
    match = _TIME.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} is not a GeneralizedTime value")
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    offset = timedelta(hours=int(zone[1:3] or 0), minutes=int(zone[3:5] or 0))
    moment = datetime(int(year), int(month), int(day), int(hour), int(minute or 0),
                      int(second or 0), tzinfo=timezone(-offset if zone[0] == "-" else offset))
    unit = 1 if second else 60 if minute else 3600  # a fraction is of the last unit given
    moment += timedelta(seconds=float(Decimal(f"0.{fraction or 0}") * unit))
    return moment.astimezone(timezone.utc)


def format_time(value: datetime) -> str:
    """The GeneralizedTime text (UTC, ``Z``) of a timezone-aware datetime."""
    if not isinstance(value, datetime) or value.utcoffset() is None:
        raise TypeError(f"{value!r} is not a timezone-aware datetime")
    moment = value.astimezone(timezone.utc)
    fraction = f".{moment.microsecond:06d}".rstrip("0") if moment.microsecond else ""
    return moment.strftime("%Y%m%d%H%M%S") + fraction + "Z"


def _only(kind: type | tuple[type, ...], what: str, value: Any) -> Any:
    """``value`` if it is a ``kind`` (and no bool posing as an int), else a TypeError."""
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise TypeError(f"{value!r} is not {what}")
    return value


def _matching(pattern: str, what: str, raw: bytes) -> str:
    """The ASCII text of an LDAP value matching ``pattern``, else a ValueError."""
    text = raw.decode("ascii", "replace")
    if re.fullmatch(pattern, text) is None:
        raise ValueError(f"{text!r} is not {what}")
    return text


#: Python type -> (LDAP value bytes -> Python value, Python value -> LDAP str or bytes).
CONVERTERS: dict[type, tuple[Callable[[bytes], Any], Callable[[Any], str | bytes]]] = {
    str: (lambda raw: raw.decode("utf-8"), lambda value: _only(str, "text", value)),
    bytes: (bytes, lambda value: bytes(_only((bytes, bytearray), "bytes", value))),
    int: (lambda raw: int(_matching(r"-?[0-9]+", "an INTEGER value", raw)),
          lambda value: str(_only(int, "an int", value))),
    bool: (lambda raw: _matching("TRUE|FALSE", "a Boolean value", raw) == "TRUE",
           lambda value: "TRUE" if _only(bool, "a bool", value) else "FALSE"),
    datetime: (lambda raw: parse_time(raw.decode("ascii", "replace")), format_time),
}


@dataclass(frozen=True)
class Attribute:
    """How a Python attribute maps to the LDAP attribute ``name``.

    ``type`` is ``str`` (UTF-8), ``bytes``, ``int`` (INTEGER), ``bool``
    (Boolean ``TRUE``/``FALSE``) or ``datetime`` (GeneralizedTime, as aware
    datetimes in UTC).  A ``multi`` attribute is a tuple of values (empty
    when there are none); a single one a value or None, the first value,
    replacing all values when written.  ``read_only`` attributes (operational
    ones such as ``createTimestamp``) are never written.
    """

    name: str
    type: type = str
    multi: bool = False
    read_only: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or DESCRIPTOR.fullmatch(self.name) is None:
            raise ConfigurationError(f"{self.name!r} is not an LDAP attribute name.")
        if self.type not in CONVERTERS:
            raise ConfigurationError(f"LDAP attribute {self.name!r}: type {self.type!r} is not "
                                     f"one of {', '.join(t.__name__ for t in CONVERTERS)}.")

    def load(self, raw: list[bytes]) -> Any:
        """The Python value of the LDAP values ``raw``."""
        read = CONVERTERS[self.type][0]
        return tuple(map(read, raw)) if self.multi else read(raw[0]) if raw else None

    def dump(self, value: Any) -> list[str | bytes]:
        """The LDAP values of the Python value ``value`` (none for None)."""
        write = CONVERTERS[self.type][1]
        if value is None or not self.multi:
            return [] if value is None else [write(value)]
        return [write(item) for item in _only((list, tuple, set, frozenset), "a list", value)]


def texts(value: Any) -> list[str]:
    """The LDAP values of an ``on_create`` value: text (or int), a list of them, or None."""
    values = [] if value is None else value if isinstance(value, (list, tuple)) else [value]
    return [str(_only((str, int), "text", item)) for item in values]


@dataclass(frozen=True)
class Entries:
    """How the entries under ``base`` map to ``klass``.

    ``object_classes`` are written on create; searches find only entries
    having them all.  ``attributes`` maps Python attribute names to LDAP
    attribute names or :class:`Attribute` declarations; ``refs`` maps
    attributes holding objects of other members to LDAP text attributes
    keeping their :class:`federation.Ref`.  A new entry is ``rdn=value,base``,
    the value that of the attribute mapped to ``rdn``, else ``on_create[rdn]``.
    ``on_create`` gives LDAP attributes the class does not map a value when
    an entry is created: text, or a function of the record's state.
    """

    klass: type
    base: str | DN
    object_classes: Sequence[str]
    rdn: str
    attributes: Mapping[str, str | Attribute]
    refs: Mapping[str, str] = field(default_factory=dict)
    on_create: Mapping[str, Any] = field(default_factory=dict)
    #: Every mapped Python attribute, refs included (as text attributes).
    mapping: Mapping[str, Attribute] = field(init=False, repr=False, compare=False)
    #: The Python attribute mapped to the RDN attribute, or None.
    rdn_attribute: str | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            base = resolvers.get("dn").coerce(self.base)
        except InvalidKey as error:
            raise ConfigurationError(f"The base {self.base!r} is not a DN: {error}") from None
        classes = tuple([self.object_classes] if isinstance(self.object_classes, str)
                        else self.object_classes)
        attributes = {name: value if isinstance(value, Attribute) else Attribute(value)
                      for name, value in self.attributes.items()}
        for name in (*classes, self.rdn, *self.on_create):
            if not isinstance(name, str) or DESCRIPTOR.fullmatch(name) is None:
                raise ConfigurationError(f"{name!r} is not an LDAP object class or attribute name.")
        mapping = {**attributes, **{name: Attribute(ldap) for name, ldap in self.refs.items()}}
        names = [attribute.name.lower() for attribute in mapping.values()]
        twice = sorted({n for n in names if names.count(n) > 1}
                       | (set(attributes) & set(self.refs)))
        naming = [name for name, a in attributes.items() if a.name.lower() == self.rdn.lower()]
        constants = [value for value in self.on_create.values() if not callable(value)]
        for bad, problem in [
            (not classes, "object_classes is empty"),
            (not all(isinstance(v, (str, int, list, tuple)) for v in constants),
             "on_create values are text, int, lists of them or functions of the state"),
            (twice, f"{', '.join(twice)} is mapped more than once"),
            (any(attributes[n].multi or attributes[n].read_only or attributes[n].type
                 not in (str, int) for n in naming),
             f"the attribute naming new entries by {self.rdn!r} must be single and writable "
             "text or int"),
        ]:
            if bad:
                raise ConfigurationError(f"Entries under {base}: {problem}.")
        for name, value in (("base", base), ("object_classes", classes), ("refs", dict(self.refs)),
                            ("attributes", attributes), ("on_create", dict(self.on_create)),
                            ("mapping", mapping), ("rdn_attribute", (naming or [None])[0])):
            object.__setattr__(self, name, value)

    @property
    def ldap_attributes(self) -> list[str]:
        """Every LDAP attribute a load requests: the mapped ones and ``entryUUID``."""
        return [*(attribute.name for attribute in self.mapping.values()), "entryUUID"]
