"""ZODB's native multi-database references, as the federation reads them.

A native multi-database (``ZODB.DB(storage, databases=..., database_name=...)``)
writes a reference to an object of another database of the same
``databases`` mapping as an *extended reference* in the referrer's pickle
(``ZODB.serialize``):

- ``['m', (database_name, oid, class)]``: a persistent reference to
  another database's object (the common form);
- ``['n', (database_name, oid)]``: the same for a class with
  ``__getnewargs__``, whose class is not written;
- ``['w', (oid, database_name)]``: a weak reference (``persistent.wref``);
  ``['w', (oid,)]`` and the legacy ``[oid]`` are weak references within
  the database.

A federation reads ``'m'`` and ``'n'`` references as references to the
member whose *database name* is ``database_name`` (:func:`database_names`;
a member's ``database_name`` setting, by default its ``ZODB.DB``'s own name,
or the member name), and ``'w'`` ones as weak references to it.  ZODB's
``referencesf`` (and so its pack, ``fsrefs`` and ``zc.zodbdgc`` without
``multi-zodb-gc``) skips extended references: :func:`references` returns
them beside the plain ones, so the federation's mark follows them.
"""

from __future__ import annotations

from collections.abc import Mapping
from io import BytesIO
from typing import Any, NamedTuple

from ZODB._compat import PersistentUnpickler

from federation.errors import ConfigurationError


class NativeRef(NamedTuple):
    """One extended reference to another database: its form, the database and the oid."""

    form: str  # "m", "n" or "w"
    database_name: str
    oid: bytes


def references(record: bytes) -> tuple[list[bytes], list[NativeRef]]:
    """The oids a record references in its own database, and its native references.

    The first list is what ``ZODB.serialize.referencesf`` returns; the
    second holds the references to other databases (weak ones included).
    """
    pids: list[Any] = []
    unpickler = PersistentUnpickler(None, pids.append, BytesIO(record))
    unpickler.noload()
    unpickler.noload()
    oids: list[bytes] = []
    natives: list[NativeRef] = []
    for pid in pids:
        oid = local_oid(pid)
        if oid is not None:
            oids.append(oid)
        else:
            native = as_native(pid)
            if native is not None:
                natives.append(native)
    return oids, natives


def local_oid(pid: Any) -> bytes | None:
    """The oid a persistent id names in its own database (``(oid, class)`` or a bare
    oid, as ZODB writes a reference to an object whose class it cannot import), or None."""
    if isinstance(pid, tuple):
        return _oid(pid[0])
    if isinstance(pid, (bytes, str)):
        return _oid(pid)
    return None


def as_native(pid: Any) -> NativeRef | None:
    """The :class:`NativeRef` an extended persistent id names, or None (a local weak one)."""
    if not isinstance(pid, list) or len(pid) != 2 or not isinstance(pid[1], tuple):
        return None
    form, args = pid
    if form in ("m", "n") and len(args) >= 2 and isinstance(args[0], str):
        return NativeRef(form, args[0], _oid(args[1]))
    if form == "w" and len(args) == 2 and isinstance(args[1], str):
        return NativeRef("w", args[1], _oid(args[0]))
    return None


def _oid(value: Any) -> bytes:
    return value.encode("ascii") if isinstance(value, str) else value


def database_names(members: Mapping[str, Any]) -> dict[str, str]:
    """Database name -> member name, for the ZODB members of a federation.

    Two members with one database name are a :class:`ConfigurationError`:
    a native reference could not tell them apart.
    """
    names: dict[str, str] = {}
    for name, member in members.items():
        database_name = getattr(member, "database_name", None)
        if database_name is None:
            continue  # a foreign member: native references never name one
        other = names.setdefault(database_name, name)
        if other != name:
            raise ConfigurationError(
                f"Members {other!r} and {name!r} both have the database name "
                f"{database_name!r}; give one of them another 'database_name' setting."
            )
    return names
