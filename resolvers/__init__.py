"""Key kinds (oid factories) and their registry.

A key kind turns text into keys and keys into order-preserving bytes; see
:class:`federation.interfaces.KeyKind`.  Kinds are looked up by name:

1. :func:`get` returns the kind registered under a name, or raises
   :class:`federation.errors.UnknownKind`.
2. :func:`register` adds a kind object under its ``name``; a taken name is a
   :class:`federation.errors.ConfigurationError` unless ``replace=True``.
3. :func:`kinds` lists the registered names, sorted.

Built in, registered at import: ``"integer"`` (:class:`IntegerKind`),
``"uuid"`` (:class:`UuidKind`), ``"dn"`` (:class:`DnKind`) and ``"uid"``
(:class:`UidKind`).
"""

from __future__ import annotations

from federation.errors import ConfigurationError, UnknownKind
from federation.interfaces import KeyKind

from .dn import DN, DnKind
from .integer import IntegerKind
from .uid import UidKind
from .uuids import UuidKind

__all__ = ["DN", "DnKind", "IntegerKind", "UidKind", "UuidKind", "get", "kinds", "register"]

_METHODS = ("parse", "coerce", "format", "encode", "decode", "issue")
_KINDS: dict[str, KeyKind] = {}


def get(kind: str) -> KeyKind:
    """Return the key kind registered under the name *kind*."""
    found = _KINDS.get(kind) if isinstance(kind, str) else None
    if found is None:
        raise UnknownKind(kind)
    return found


def register(kind: KeyKind, *, replace: bool = False) -> KeyKind:
    """Register the key kind object *kind* under its ``name`` and return it."""
    if isinstance(kind, type):
        raise ConfigurationError(f"{kind!r} is a class; register an instance of it.")
    missing = [method for method in _METHODS if not callable(getattr(kind, method, None))]
    if missing or not isinstance(kind, KeyKind):
        lacks = ", ".join(missing) or "a name"
        raise ConfigurationError(f"{kind!r} is not a key kind: it lacks {lacks}.")
    name = kind.name
    if not isinstance(name, str) or not name or name != name.strip():
        raise ConfigurationError(
            f"The key kind {kind!r} has the name {name!r}, which is not a non-empty string "
            "without surrounding whitespace."
        )
    if name in _KINDS and not replace:
        raise ConfigurationError(
            f"A key kind named {name!r} is already registered; pass replace=True to replace it."
        )
    _KINDS[name] = kind
    return kind


def kinds() -> list[str]:
    """Return the names of the registered key kinds, sorted."""
    return sorted(_KINDS)


for _builtin in (IntegerKind(), UuidKind(), DnKind(), UidKind()):
    register(_builtin)
del _builtin
