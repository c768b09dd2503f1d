"""A process without ``federation`` importable rewrites a record holding a stub reference.

Plain ZODB cannot import :class:`federation.catalog.Stub` there, so the stub
loads as a broken object, and ZODB writes a reference to a broken object as
a bare oid, without its class.  The federation must still follow such a
reference to the stub's target, and keep that target through a pack.
"""

from __future__ import annotations

import pickle
import subprocess
import sys
from io import BytesIO
from pathlib import Path

import transaction
from BTrees.OOBTree import OOBTree
from persistent.list import PersistentList
from persistent.mapping import PersistentMapping
from ZODB.FileStorage import FileStorage
from ZODB.utils import p64

import federation
from federation.catalog import Stub
from federation.records import is_stub
from tests.models import Item

#: Rewrites every container of root["holders"] with plain ZODB, ``federation`` unimportable.
PLAIN_WRITER = r"""
import sys

class NoFederation:
    def find_spec(self, name, path=None, target=None):
        if name == "federation" or name.startswith(("federation.", "tests")):
            raise ImportError(f"{name} is not importable in this process")

sys.meta_path.insert(0, NoFederation())
import transaction, ZODB, ZODB.FileStorage

db = ZODB.DB(ZODB.FileStorage.FileStorage(sys.argv[1]))
conn = db.open()
holders = conn.root()["holders"]
print(type(holders["mapping"]["target"]).__name__)
holders["mapping"]["touched"] = True
holders["list"].append("touched")
holders["tree"]["touched"] = True
holders["tree"]._p_changed = True
transaction.commit()
db.close()
"""


def _bare_stub_references(path: Path) -> int:
    """How many records of the file ``path`` name a stub by a bare oid."""
    storage = FileStorage(str(path), read_only=True)
    try:
        stubs = {oid for oid, _ in _records(storage) if is_stub(storage.load(oid)[0])}
        bare = 0
        for _oid, record in _records(storage):
            bare += sum(1 for ref in _bare_oids(record) if ref in stubs)
        return bare
    finally:
        storage.close()


def _records(storage: FileStorage):
    for oid in storage._index:  # a test reads the whole file
        yield oid, storage.load(oid)[0]


def _bare_oids(record: bytes) -> list[bytes]:
    """The references of ``record`` that ZODB wrote without a class (bare oids)."""
    found: list[bytes] = []

    class Reader(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> type:
            return object

        def persistent_load(self, reference: object) -> None:
            if isinstance(reference, bytes):
                found.append(reference)

    reader = Reader(BytesIO(record))
    reader.load()
    reader.load()
    return found


def test_references_rewritten_by_a_plain_zodb_process_still_reach_their_targets(tmp_path):
    uris = {name: (tmp_path / f"{name}.fs").as_uri() for name in ("main", "people")}
    with federation.open(uris) as fed, fed.open() as conn:
        ada = Item("Ada")
        conn.add(ada, "people")
        conn.root("people")["ada"] = ada
        holders = conn.root("main")["holders"] = PersistentMapping()
        holders["mapping"] = PersistentMapping(target=ada)
        holders["list"] = PersistentList([ada])
        holders["tree"] = OOBTree({"target": ada})
        transaction.commit()
    assert _bare_stub_references(tmp_path / "main.fs") == 0

    plain = subprocess.run([sys.executable, "-c", PLAIN_WRITER, str(tmp_path / "main.fs")],
                           capture_output=True, text=True, check=True)
    assert "Broken" in plain.stdout or "Stub" in plain.stdout  # the plain process saw no target
    assert _bare_stub_references(tmp_path / "main.fs") == 3

    with federation.open(uris) as fed, fed.open() as conn:
        holders = conn.root("main")["holders"]
        ada = conn.root("people")["ada"]
        assert holders["mapping"]["target"] is ada
        assert holders["list"][0] is ada
        assert holders["tree"]["target"] is ada
        assert holders["mapping"]["touched"] is True
        assert not any(isinstance(obj, Stub) for obj in
                       (holders["mapping"]["target"], holders["list"][0]))
        assert fed.check().ok
        fed.pack()
    with federation.open(uris) as fed, fed.open() as conn:
        holders = conn.root("main")["holders"]
        assert holders["tree"]["target"].title == "Ada"  # the pack kept the target
        holders["mapping"]["again"] = True  # the federation writes the reference back typed
        transaction.commit()
    assert _bare_stub_references(tmp_path / "main.fs") == 2


def test_a_stub_record_opened_by_oid_is_still_the_record(fed, conn):
    """``conn.jar(member).get(oid)`` of a stub's own oid is the stub record (no substitution)."""
    ada = conn.root("people")["ada"] = Item("Ada")
    conn.add(ada, "people")
    conn.root("main")["ada"] = ada
    transaction.commit()
    [stub] = conn.stubs("main")
    assert isinstance(conn.jar("main").get(p64(stub.oid)), Stub)
