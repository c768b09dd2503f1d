"""Reading raw ZODB records without the application's classes.

Garbage collection, ``check`` and ``reindex`` read every record of a
member.  They must work in a process that cannot import the application's
classes (the ``zfed`` console script), and they must be fast, so they never
make objects.  A ZODB data record is two pickles (``ZODB.serialize``): the
class (a global, or ``(global, newargs)``), then the state.  This module
reads:

- the class as ``(module, name)`` text, without importing it;
- the references, with ``ZODB.serialize.referencesf`` (as pack does);
- the state of a stub record (plain bytes and text, see
  :mod:`federation.catalog`);
- the UUID an object of a ``uuid`` member keeps (its ``__dict__`` entry
  ``_federation_uuid``), unpickling the state with unknown globals replaced
  by ``ZODB.broken`` placeholders and references by ``None``.

It also makes references to objects whose classes cannot be imported
(:func:`importable`), so that what the federation writes keeps ZODB's
standard ``(oid, class)`` form.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import pickle
import sys
import threading
import types
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from persistent import Persistent
from ZODB.broken import Broken, find_global
from ZODB.POSException import POSKeyError
from ZODB.utils import p64, u64

from federation.catalog import UUID_ATTRIBUTE, stub_state

#: The greatest oid.
MAX_OID = b"\xff" * 8

#: The class of stub records, as :func:`record_class` spells it.
STUB_CLASS = ("federation.catalog", "Stub")

_UUID_MARK = UUID_ATTRIBUTE.encode()


class _ClassReader(pickle.Unpickler):
    """Reads a record's class pickle as ``(module, name)``; imports nothing."""

    def find_class(self, module: str, name: str) -> Any:
        return _Global(module, name)


class _Global(tuple):
    """A global named in a pickle, not imported: ``(module, name)``."""

    __slots__ = ()

    def __new__(cls, module: str, name: str) -> _Global:
        return super().__new__(cls, (module, name))


def record_class(record: bytes) -> tuple[str, str]:
    """The class of a data record as ``(module, name)``, without importing it."""
    meta = _ClassReader(io.BytesIO(record)).load()
    if isinstance(meta, tuple) and not isinstance(meta, _Global):
        meta = meta[0]  # (class, newargs)
    if isinstance(meta, _Global):
        return meta[0], meta[1]
    raise ValueError(f"The record's class pickle holds {meta!r}, not a class.")


def is_stub(record: bytes) -> bool:
    """True if ``record`` is a stub record (:class:`federation.catalog.Stub`)."""
    return b"Stub" in record[:80] and record_class(record) == STUB_CLASS


class _StateReader(pickle.Unpickler):
    """Reads a record's state; unknown globals become ``ZODB.broken`` classes."""

    def find_class(self, module: str, name: str) -> Any:
        return find_global(module, name, Broken=Broken)

    def persistent_load(self, pid: Any) -> None:
        return None


def _state(record: bytes) -> Any:
    stream = io.BytesIO(record)
    reader = _StateReader(stream, encoding="bytes")
    reader.load()  # the class
    return reader.load()


def stub_data(record: bytes) -> tuple[bytes, str | None]:
    """The encoded entry and stable id (or None) of a stub record."""
    stream = io.BytesIO(record)
    _ClassReader(stream).load()  # the class
    return stub_state(pickle.Unpickler(stream).load())


def record_uuid(record: bytes) -> bytes | None:
    """The UUID (16 bytes) an object's record keeps, or None.

    Records that do not mention the attribute are not unpickled.  A state
    that cannot be read without the application's code counts as no UUID.
    """
    if _UUID_MARK not in record:
        return None
    try:
        state = _state(record)
    except Exception:  # an application's __reduce__ we cannot replay: no uuid to read
        return None
    if isinstance(state, tuple) and state and isinstance(state[0], dict):
        state = state[0]  # (dict, slots)
    if not isinstance(state, dict):
        return None
    value = state.get(UUID_ATTRIBUTE, state.get(_UUID_MARK))
    return value if isinstance(value, bytes) and len(value) == 16 else None


class _RefReader(pickle.Unpickler):
    """Collects a record's references as ``(oid, (module, name))`` (None for the class)."""

    def __init__(self, record: bytes) -> None:
        super().__init__(io.BytesIO(record))
        self.refs: list[tuple[bytes, tuple[str, str] | None]] = []

    def find_class(self, module: str, name: str) -> Any:
        return _Global(module, name)

    def persistent_load(self, pid: Any) -> None:
        if isinstance(pid, tuple) and len(pid) == 2 and isinstance(pid[1], _Global):
            self.refs.append((pid[0], (pid[1][0], pid[1][1])))
        elif isinstance(pid, bytes):
            self.refs.append((pid, None))


#: The classes of the federation's index records: trees, their inner nodes and buckets.
_INDEX_CLASSES = frozenset({("federation.catalog", "Index"), ("BTrees.OOBTree", "OOBTree"),
                            ("BTrees.OOBTree", "OOBucket")})


def index_records(storage: Any, roots: Iterable[bytes]) -> set[bytes]:
    """The oids of the records that make up the indexes ``roots`` (tree, nodes, buckets).

    Index values may be references; they are not followed (unless they are
    themselves index records, which the federation's indexes never hold).
    """
    found: set[bytes] = set()
    todo = list(roots)
    while todo:
        oid = todo.pop()
        if oid in found:
            continue
        found.add(oid)
        try:
            reader = _RefReader(storage.load(oid)[0])
            reader.load()
            reader.load()
        except Exception:  # a record gone or unreadable: nothing below it to list
            continue
        todo.extend(ref for ref, klass in reader.refs if klass in _INDEX_CLASSES)
    return found


def listed_records(iternext: Callable[[Any], tuple[bytes, bytes, bytes, Any]]
                   ) -> Iterator[tuple[bytes, bytes, bytes]]:
    """``(oid, tid, record)`` of every current record, from a storage's ``record_iternext``.

    An object whose creation was undone stays in a FileStorage's index
    without data, and ``record_iternext`` raises ``POSKeyError`` naming it;
    the listing goes on with the next oid (the cursor of FileStorage, and
    of ZEO, which forwards it, is the next oid to list).
    """
    cursor = None
    skipped = False  # the cursor is ours, past an oid without data
    while True:
        try:
            oid, tid, record, cursor = iternext(cursor)
        except POSKeyError as error:
            gone = error.args[0] if error.args else None
            if type(gone) is not bytes or len(gone) != 8 or (cursor is not None and gone < cursor):
                raise
            if gone == MAX_OID:
                return
            cursor, skipped = p64(u64(gone) + 1), True
            continue
        except ValueError:  # FileStorage: no oid at or after our cursor
            if skipped:
                return
            raise
        skipped = False
        if record:
            yield oid, tid, record
        if cursor is None:
            return


_STAND_IN_LOCK = threading.Lock()


@contextlib.contextmanager
def importable(classes: dict[tuple[str, str], type]) -> Iterator[dict[tuple[str, str], type]]:
    """Classes for ``(module, name)`` pairs that pickle as ``module.name`` globals.

    ``classes`` maps the pairs to the classes ``DB.classFactory`` returned.
    Where that is a ``ZODB.broken`` class (the application's class cannot be
    imported here), a plain persistent stand-in class is made and, for the
    duration of the block, registered in ``sys.modules`` under the
    original module and name, so that ZODB's writer stores the reference as
    the standard ``(oid, class)`` pair rather than the bare oid it writes
    for broken classes.  The stand-ins are unregistered afterwards.
    """
    added: list[tuple[Any, str | None]] = []  # (module object or name, attribute)
    result = dict(classes)
    with _STAND_IN_LOCK:
        try:
            for (module_name, name), klass in classes.items():
                if not (isinstance(klass, type) and issubclass(klass, Broken)):
                    continue
                stand_in = type(name, (Persistent,), {"__module__": module_name,
                                                      "__qualname__": name})
                module = _module(module_name, added)
                if getattr(module, name, None) is None:
                    setattr(module, name, stand_in)
                    added.append((module, name))
                result[module_name, name] = getattr(module, name)
            yield result
        finally:
            for module, name in reversed(added):
                if name is None:
                    sys.modules.pop(module, None)
                else:
                    with contextlib.suppress(AttributeError):
                        delattr(module, name)


def _module(dotted: str, added: list[tuple[Any, str | None]]) -> types.ModuleType:
    """The module ``dotted``, imported, or a stand-in registered in ``sys.modules``."""
    parts = dotted.split(".")
    module: types.ModuleType | None = None
    for end in range(1, len(parts) + 1):
        name = ".".join(parts[:end])
        found = sys.modules.get(name)
        if found is None:
            try:
                found = importlib.import_module(name)
            except Exception:  # any import failure: the module is not available here
                found = types.ModuleType(name)
                sys.modules[name] = found
                added.append((name, None))
        module = found
    assert module is not None
    return module
