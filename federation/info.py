"""``zfed info``: what each member of a federation is, and how much it holds.

:func:`describe` returns plain data (what ``zfed info --json`` prints):
``{"members": [...]}`` with one dict per member, in member-name order::

    {"name": "main", "storage": "FileStorage", "where": "/srv/main.fs",
     "key": "integer", "read_only": false, "available": true,
     "objects": 12, "stubs": 3, "size": 4711}

``objects`` is the number of records the storage holds (``len(storage)``),
``size`` its size in bytes (``getSize()``), ``stubs`` the stub records the
member keeps; each is ``None`` where the member cannot tell (a foreign
member, an unavailable one).  The commit journal is reported under
``"journal"``: what ``Federation.journal_status()`` returns.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import transaction

from federation.federation import Federation
from federation.manager import Manager
from federation.redact import redact

#: Storage class names and how ``zfed info`` calls them.
STORAGE_KINDS = {
    "FileStorage": "FileStorage",
    "ClientStorage": "ZEO",
    "RelStorage": "RelStorage",
    "MappingStorage": "MappingStorage",
    "DemoStorage": "DemoStorage",
}

#: Foreign adapter factories and how ``zfed info`` calls them.
FOREIGN_KINDS = {"sqlite": "SQLite", "postgresql": "PostgreSQL", "Directory": "LDAP",
                 "MemoryDatabase": "memory"}


def describe(fed: Federation) -> dict[str, Any]:
    """Facts about every member of ``fed`` (see the module docstring)."""
    tm = transaction.TransactionManager()
    manager = fed.open(tm)
    try:
        members = [_member(fed, manager, name) for name in sorted(fed.members)]
    finally:
        tm.abort()
        manager.close()
    facts: dict[str, Any] = {"members": members}
    journal_status: Callable[[], Any] | None = getattr(fed, "journal_status", None)
    if callable(journal_status):
        facts["journal"] = journal_status()
    return facts


def _member(fed: Federation, manager: Manager, name: str) -> dict[str, Any]:
    member = fed.member(name)
    facts: dict[str, Any] = {
        "name": name, "storage": None, "where": None, "key": member.kind,
        "read_only": bool(member.read_only), "available": bool(member.available),
        "objects": None, "stubs": None, "size": None,
    }
    db = getattr(member, "db", None)
    if db is None and hasattr(member, "factory"):
        facts["storage"] = f"foreign ({_foreign_kind(member.factory)})"
        return facts
    if db is None:
        facts["storage"] = "unavailable"
        return facts
    storage = db.storage
    facts["storage"] = STORAGE_KINDS.get(type(storage).__name__, type(storage).__name__)
    facts["where"] = _where(storage)
    facts["objects"] = _call(len, storage)
    facts["size"] = _call(storage.getSize)
    facts["stubs"] = len(manager.stubs(name))
    return facts


def _foreign_kind(factory: Any) -> str:
    dialect = getattr(factory, "dialect", None)
    return FOREIGN_KINDS.get(dialect or type(factory).__name__, type(factory).__name__)


def _where(storage: Any) -> str | None:
    """The file or server a storage uses, without credentials."""
    path = getattr(storage, "_file_name", None)
    if isinstance(path, str):
        return path
    address = getattr(storage, "_addr", None)
    if isinstance(address, list) and address:  # ClientStorage keeps a list of addresses
        address = address[0]
    if isinstance(address, tuple) and len(address) == 2:
        where = f"{address[0]}:{address[1]}"
        name = getattr(storage, "_storage", None)
        return f"{where} storage {name}" if isinstance(name, str) else where
    if isinstance(address, str):
        return redact(address)
    return None


def _call(function: Callable[..., int], *args: Any) -> int | None:
    """``function(*args)`` if the storage supports it, else None."""
    try:
        return int(function(*args))
    except (TypeError, AttributeError, NotImplementedError):
        return None


def render(facts: dict[str, Any]) -> list[str]:
    """The lines ``zfed info`` prints: one block per member, then the journal if any."""
    lines = []
    for member in facts["members"]:
        flags = ", read-only" if member["read_only"] else ""
        where = f" at {member['where']}" if member["where"] else ""
        lines.append(f"{member['name']}: {member['storage']}{where}")
        lines.append(f"  key {member['key']}{flags}; "
                     f"{_count(member['objects'], 'object')}, "
                     f"{_count(member['stubs'], 'stub')}, "
                     f"{_count(member['size'], 'byte')}")
    journal = facts.get("journal")
    if journal is not None:
        lines.append(f"journal: kept in {', '.join(journal['members']) or 'no member'}; "
                     f"{_count(journal['pending'], 'pending entry', 'pending entries')}, "
                     f"{_count(journal['tombstones'], 'tombstone')}")
    return lines


def _count(value: int | None, noun: str, plural: str | None = None) -> str:
    plural = plural or f"{noun}s"
    if value is None:
        return f"{plural} unknown"
    return f"{value} {noun if value == 1 else plural}"
