"""zodb-federation: several databases used as one graph of persistent objects.

::

    import federation, transaction
    fed = federation.open({"main": "file:///srv/main.fs", "notes": notes_db})
    conn = fed.open()
    conn.root("notes")["about"] = note
    note.subject = conn.root("main")["page"]      # a cross-member reference
    transaction.commit()
"""

from federation.config import open_config, read_config
from federation.databases import manager_of
from federation.errors import (
    AmbiguousPlacement,
    CollectionRefused,
    CommitFenced,
    ConfigurationError,
    CorruptRecord,
    DanglingStub,
    FederationError,
    InDoubtTransactions,
    InvalidKey,
    KeyNotFound,
    MemberBusy,
    MemberOpenError,
    MemberUnavailable,
    MigrationError,
    NoZodbDatabase,
    ReadOnlyMember,
    UnknownKind,
    UnknownMember,
)
from federation.federation import Federation, open
from federation.manager import Manager, StubInfo
from federation.ref import Ref
from federation.split import Split, SplitObject

__all__ = [
    "AmbiguousPlacement",
    "CollectionRefused",
    "CommitFenced",
    "ConfigurationError",
    "CorruptRecord",
    "DanglingStub",
    "Federation",
    "FederationError",
    "InDoubtTransactions",
    "InvalidKey",
    "KeyNotFound",
    "Manager",
    "MemberBusy",
    "MemberOpenError",
    "MemberUnavailable",
    "MigrationError",
    "NoZodbDatabase",
    "ReadOnlyMember",
    "Ref",
    "Split",
    "SplitObject",
    "StubInfo",
    "UnknownKind",
    "UnknownMember",
    "manager_of",
    "open",
    "open_config",
    "read_config",
]
