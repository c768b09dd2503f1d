"""Persistent classes the tests store (importable by name, as ZODB needs)."""

from __future__ import annotations

from typing import Any

from persistent import Persistent
from persistent.mapping import PersistentMapping


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
