"""References: ``Ref(member, kind, key)`` names one object of the federation."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from federation import resolvers
from federation.errors import InvalidKey

#: Member names: a letter or underscore, then letters, digits, ``_ . -``.
MEMBER_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")


def check_member_name(name: str) -> str:
    """Return ``name`` if it is a valid member name, else raise ``InvalidKey``."""
    if not isinstance(name, str) or not MEMBER_NAME.fullmatch(name):
        raise InvalidKey(
            "member name", name, "member names start with a letter or '_' and contain only "
            "letters, digits, '_', '.' and '-'"
        )
    return name


@dataclass(frozen=True, slots=True)
class Ref:
    """A typed reference to an object: which member, which key kind, which key.

    ``str(ref)`` is ``member:kind:key`` with the key in its kind's canonical
    text, and :meth:`parse` reads it back: ``Ref.parse(str(ref)) == ref``.
    Refs are hashable and compare by value.
    """

    member: str
    kind: str
    key: Any

    def __post_init__(self) -> None:
        check_member_name(self.member)
        object.__setattr__(self, "key", resolvers.get(self.kind).coerce(self.key))

    @classmethod
    def parse(cls, text: str) -> Ref:
        """Parse ``member:kind:key`` text; raise ``InvalidKey`` naming the text."""
        if not isinstance(text, str):
            raise InvalidKey("reference", text, "a reference is text of the form member:kind:key")
        member, sep1, rest = text.partition(":")
        kind, sep2, key = rest.partition(":")
        if not (sep1 and sep2):
            raise InvalidKey("reference", text, "a reference is text of the form member:kind:key")
        return cls(check_member_name(member), kind, resolvers.get(kind).parse(key))

    def __str__(self) -> str:
        return f"{self.member}:{self.kind}:{resolvers.get(self.kind).format(self.key)}"

    @property
    def encoded_key(self) -> bytes:
        """The key in its kind's order-preserving byte encoding."""
        return resolvers.get(self.kind).encode(self.key)


def ref_text(ref: Ref, member_id: str | None = None) -> str:
    """The text a foreign record keeps for ``ref``: ``member@id:kind:key``.

    ``member_id`` is the stable id of the referenced member (its catalog's
    id, or the id a foreign member keeps): a reference found by it survives
    renaming the member in the configuration.  The name stays first, for
    people reading the record.  Without an id (a member that has none yet,
    named ``name:<member>``) the text is the plain ``str(ref)``.
    """
    if member_id is None or member_id.startswith("name:"):
        return str(ref)
    return f"{ref.member}@{member_id}:{ref.kind}:{resolvers.get(ref.kind).format(ref.key)}"


def parse_ref_text(text: str) -> tuple[Ref, str | None]:
    """The ``Ref`` and member id (None in plain text) of :func:`ref_text`'s text.

    The ``Ref`` carries the member name the text was written with, which may
    have changed since; :meth:`federation.Federation.ref_of_text` gives the
    current one.
    """
    if not isinstance(text, str):
        return Ref.parse(text)  # raises InvalidKey naming it
    head, sep, rest = text.partition(":")
    name, at, member_id = head.partition("@")
    if not at:
        return Ref.parse(text), None
    if not sep or not MEMBER_ID.fullmatch(member_id):
        raise InvalidKey("reference", text,
                         "a reference is text of the form member:kind:key or member@id:kind:key")
    return Ref.parse(f"{name}:{rest}"), member_id


#: Stable member ids in reference text: hex or other plain tokens, never ``:`` or ``@``.
MEMBER_ID = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
