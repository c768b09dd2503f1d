"""Persistent classes the tests store (importable by name, as ZODB needs)."""

from __future__ import annotations

from typing import Any

from persistent import Persistent
from persistent.mapping import PersistentMapping

from federation.split import Split, SplitObject


class Item(Persistent):
    """An object with a title and an optional link to another object."""

    def __init__(self, title: str, link: Any = None) -> None:
        self.title = title
        self.link = link

    def __repr__(self) -> str:
        return f"<Item {getattr(self, 'title', '?')}>"


class Placed(Persistent):
    """A class with a placement rule in the tests that use one."""

    def __init__(self, title: str) -> None:
        self.title = title


class Folder(PersistentMapping):
    """A mapping of items."""


def find_by_path(jar: Any, attribute: str, value: Any) -> Any:
    """Search the primary member of Annotated: pages are kept by path in root["pages"]."""
    assert attribute == "path"
    return jar.root()["pages"].get(value)


class Annotated(SplitObject):
    """A page of the shared member, with the local member's annotations."""

    __split__ = Split(
        primary="shared",
        secondary="local",
        key="integer",
        primary_attributes={"title", "path"},
        unique={"path"},
        search=find_by_path,
    )


class Person(Persistent):
    """A record of a foreign member (an SQL row, a memory record)."""

    def __init__(self, name: str, email: str | None = None, owner: Any = None) -> None:
        self.name = name
        self.email = email
        self.owner = owner

    def __repr__(self) -> str:
        return f"<Person {getattr(self, 'name', '?')}>"


class Row(Persistent):
    """A row of a SQL table that split objects use as their primary."""


class AnnotatedRow(SplitObject):
    """A row of the SQL member 'shared', with the local ZODB member's annotations."""

    __split__ = Split(primary="shared", secondary="local", key="integer",
                      primary_attributes={"title", "path"}, unique={"path"})
