"""Rewriting the persistent references of a ZODB record, without the application's classes.

``zfed migrate`` changes the references in records of any class, in a
process that need not import them.  :func:`rewrite` reads both pickles of a
record (``ZODB.serialize``) with every global replaced by a *stand-in*: a
class that records how the pickle used it (called with arguments, made by
``__new__``, given a state, items appended or set) and is written back as
the same global with the same calls.  Persistent ids are handed to a
function that returns the id to write in their place.  Everything else is
written back as it was read, so the new record loads as the old one did,
but for the references changed.

A record this cannot rebuild (an extension-registry code, say) raises
:class:`RewriteError`; nothing is written for it.
"""

from __future__ import annotations

import copyreg
import io
import pickle
from collections.abc import Callable
from typing import Any

from ZODB._compat import PersistentUnpickler

#: The pickle protocol ZODB writes records with.
PROTOCOL = 3


class RewriteError(Exception):
    """A record's pickles cannot be rebuilt (see the module docstring)."""


class _StandIn:
    """An object of a global this process does not import, remembered as the pickle made it."""

    def __new__(cls, *args: Any) -> Any:
        self = object.__new__(cls)
        self.__dict__["_zfed_new"] = args
        return self

    def __init__(self, *args: Any) -> None:
        self.__dict__["_zfed_called"] = True  # REDUCE: the global was called

    def __setstate__(self, state: Any) -> None:
        self.__dict__["_zfed_state"] = state

    def append(self, item: Any) -> None:
        self.__dict__.setdefault("_zfed_items", []).append(item)

    def extend(self, items: Any) -> None:
        self.__dict__.setdefault("_zfed_items", []).extend(items)

    def __setitem__(self, key: Any, value: Any) -> None:
        self.__dict__.setdefault("_zfed_pairs", []).append((key, value))

    def __reduce_ex__(self, protocol: Any) -> Any:
        made = self.__dict__
        state = made.get("_zfed_state")
        items = iter(made["_zfed_items"]) if "_zfed_items" in made else None
        pairs = iter(made["_zfed_pairs"]) if "_zfed_pairs" in made else None
        if "_zfed_called" in made:
            return type(self), made["_zfed_new"], state, items, pairs
        if "_zfed_new" in made:
            return copyreg.__newobj__, (type(self), *made["_zfed_new"]), state, items, pairs
        return copyreg._reconstructor, (type(self), object, None), state, items, pairs


class _Globals:
    """One stand-in class per ``(module, name)`` global, for one record."""

    def __init__(self) -> None:
        self.classes: dict[tuple[str, str], type] = {}

    def __call__(self, module: str, name: str) -> type:
        stand_in = self.classes.get((module, name))
        if stand_in is None:
            stand_in = self.classes[module, name] = type(
                name, (_StandIn,), {"__module__": module, "__qualname__": name,
                                    "_zfed_global": (module, name)})
        return stand_in


def stand_in(module: str, name: str) -> type:
    """A class written as the global ``module.name`` without importing it."""
    return _Globals()(module, name)


class _Pickler(pickle._Pickler):  # the Python pickler: its save_global can be extended
    """Writes stand-in classes as the globals they stand for."""

    def __init__(self, stream: io.BytesIO, persistent_id: Callable[[Any], Any]) -> None:
        super().__init__(stream, PROTOCOL)
        self._zfed_persistent_id = persistent_id

    def persistent_id(self, obj: Any) -> Any:
        return self._zfed_persistent_id(obj)

    def save_global(self, obj: Any, name: str | None = None) -> None:
        spelled = vars(obj).get("_zfed_global") if isinstance(obj, type) else None
        if spelled is None:
            super().save_global(obj, name)
            return
        module, qualname = spelled
        self.write(pickle.GLOBAL + f"{module}\n{qualname}\n".encode())
        self.memoize(obj)


class _Pid:
    """A persistent id read from a record."""

    __slots__ = ("pid",)

    def __init__(self, pid: Any) -> None:
        self.pid = pid


def rewrite(record: bytes, replace: Callable[[Any], Any]) -> bytes | None:
    """``record`` with each persistent id ``pid`` written as ``replace(pid)``.

    ``replace`` returns the id to write (the same object to keep it); when
    it keeps every one, None is returned and nothing needs writing.  Ids are
    read with stand-in classes in place of globals (see :func:`stand_in`).
    """
    changed = False

    def persistent_id(obj: Any) -> Any:
        nonlocal changed
        if type(obj) is not _Pid:
            return None
        new = replace(obj.pid)
        if new is not obj.pid:
            changed = True
        return new

    try:
        unpickler = PersistentUnpickler(_Globals(), _Pid, io.BytesIO(record))
        klass = unpickler.load()
        state = unpickler.load()
        stream = io.BytesIO()
        pickler = _Pickler(stream, persistent_id)
        pickler.dump(klass)
        pickler.dump(state)
    except Exception as error:  # anything the stand-ins cannot replay
        raise RewriteError(f"{type(error).__name__}: {error}") from error
    return stream.getvalue() if changed else None
