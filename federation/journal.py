"""The commit journal: what recovery needs to finish a transaction over several members.

Journal format
==============

The journal lives in the catalogs of the federation's ZODB members, in the
index ``catalog.journal`` (``global transaction id -> entry``), so
it is exactly as durable and as shared as the members themselves: a file
of an embedded federation, a ZEO or RelStorage database that every process
of the site reaches.  Any process that opens the federation finds it; no
file of the machine that crashed is needed.

An entry is bytes: a pickle of plain Python values only (so ``zfed recover``
reads it without the application's classes, and two commits that add
entries to one index bucket are merged by the bucket's conflict
resolution)::

    {"gid": "zfed-<decider member id>-<32 hex digits>",
     "state": "committed" | "prepared" | "aborted",
     "created": <time.time()>,
     "last_resource": None | {"member_id", "name"},
     "branches": [
        {"kind": "zodb", "member_id", "name", "marker": <8-byte oid>,
         "records": [(oid, serial, data), ...]},
        {"kind": "prepared", "member_id", "name", "xid": <prepared transaction id>},
     ]}

- ``committed``: the entry was written *in the same storage transaction*
  as the decider member's own changes, after every other member voted;
  that member's ``tpc_finish`` is the commit point.  Its existence is the
  decision (presumed abort: no entry, no commit).
- ``prepared``: written by its own transaction before a transaction with a
  last resource (a member without two-phase commit) took any lock.  The
  last resource records the global id in its own local transaction when it
  commits; that commit is the decision, and recovery asks the last resource
  for it.
- ``aborted``: a tombstone.  Recovery writes one before it rolls back a
  prepared branch that no entry decides, so that a coordinator still
  running elsewhere cannot decide to commit afterwards (its journal insert
  conflicts with the tombstone).

A ZODB branch whose prepared state is not durable (FileStorage and ZEO drop
a voted, unfinished transaction) is kept as redo records: the oid, the
serial the object had when the transaction read it, and the new data.  The
branch also stores a *marker*, a small unreferenced record of class
:class:`Marker` whose state is the global id, at an oid named in the entry:
the marker exists exactly when the branch was applied.  Recovery redoes a
branch whose marker is missing by storing its records against their old
serials (so a change another writer made meanwhile is a conflict, resolved
by the class's conflict resolution or reported, never overwritten).
Markers are garbage for pack once the entry is gone.
"""

from __future__ import annotations

import pickle
import time
import uuid as _uuid
from typing import Any

from persistent import Persistent
from ZODB._compat import _protocol

from federation.errors import FederationError


class Marker(Persistent):
    """The record proving that one member applied its branch of a journaled transaction.

    Its state is the global id (ASCII bytes); plain ZODB loads it too.
    """

    gid = ""

    def __getstate__(self) -> bytes:
        return self.gid.encode("ascii")

    def __setstate__(self, state: bytes) -> None:
        self.__dict__["gid"] = state.decode("ascii")


def new_gid(decider_id: str) -> str:
    """A new global transaction id, naming the member whose journal decides it."""
    return f"zfed-{decider_id}-{_uuid.uuid4().hex}"


def single_xid() -> str:
    """A branch id for a one-phase commit (never prepared, so never recovered)."""
    return f"zfed-single-{_uuid.uuid4().hex}"


def decider_of(gid: str) -> str | None:
    """The member id a global id names as its decider, or None if it is not ours."""
    parts = gid.split("-")
    if len(parts) < 3 or parts[0] != "zfed":
        return None
    return "-".join(parts[1:-1]) or None


def gid_of_xid(xid: str) -> str:
    """The global id of a foreign member's branch id (``<gid>.<n>``)."""
    return xid.rpartition(".")[0] or xid


def encode(gid: str, state: str, branches: list[dict[str, Any]],
           last_resource: dict[str, str] | None = None) -> bytes:
    """A journal entry (see the module docstring)."""
    return pickle.dumps({"gid": gid, "state": state, "created": time.time(),
                         "last_resource": last_resource, "branches": branches}, _protocol)


def decode(data: bytes) -> dict[str, Any]:
    """Read what :func:`encode` wrote; a damaged entry is a :class:`FederationError`."""
    try:
        entry = pickle.loads(data)  # written by this module: plain data only
    except Exception as error:
        raise FederationError(f"A commit journal entry cannot be read: {error}.") from error
    if not isinstance(entry, dict) or "gid" not in entry:
        raise FederationError("A commit journal entry has an unknown format.")
    return entry


#: The class part of a marker record, as ZODB's ObjectWriter pickles it.
_MARKER_CLASS_PICKLE = pickle.dumps(Marker, _protocol)


def marker_record(gid: str) -> bytes:
    """The ZODB data record of the marker of ``gid``."""
    return _MARKER_CLASS_PICKLE + pickle.dumps(gid.encode("ascii"), _protocol)


def is_marker_of(record: bytes, gid: str) -> bool:
    """True if ``record`` is the marker of ``gid`` (an oid reused by another object is not)."""
    return record == marker_record(gid)
