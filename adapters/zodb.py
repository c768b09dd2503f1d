"""ZODB members: any ZODB storage, given as a zodburi URI, a storage or a ``ZODB.DB``."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import zodburi
from ZODB.DB import DB
from ZODB.interfaces import IStorage

from federation.catalog import CATALOG_ATTRIBUTE, Catalog
from federation.connection import UNREACHABLE_ERRORS, FederatedConnection
from federation.errors import ConfigurationError, MemberUnavailable
from federation.redact import redact

log = logging.getLogger(__name__)

#: zodburi schemes whose storages take a ``read_only`` argument.
READ_ONLY_SCHEMES = {"file", "zeo"}

#: Key kinds a ZODB member can be referred to by.
ZODB_KINDS = ("integer", "uuid")


class FederatedDB(DB):
    """A ``ZODB.DB`` whose connections are :class:`FederatedConnection` objects."""

    klass = FederatedConnection

    def __init__(self, storage: Any, member: ZodbMember, **kw: Any) -> None:
        self.federation_member = member  # read by connections, the first made in __init__
        super().__init__(storage, **kw)


class ZodbMember:
    """A ZODB database taking part in a federation.

    ``source`` is a zodburi URI (``file://``, ``memory://``, ``zeo://``,
    RelStorage...), an opened storage, or an existing ``ZODB.DB`` (whose
    connections then become federated connections).  ``kind`` is the key kind
    by which other members refer to this member's objects: ``integer`` (the
    oid, the default) or ``uuid`` (kept on the object and indexed, so
    references survive export/import).  A ``read_only`` member refuses
    changes before anything is written.

    A member whose storage cannot be reached when the federation opens is
    kept, unavailable: the other members work, and using this one raises
    :class:`federation.MemberUnavailable`.
    """

    def __init__(self, name: str, source: Any, *, kind: str = "integer",
                 read_only: bool = False) -> None:
        if kind not in ZODB_KINDS:
            raise ConfigurationError(
                f"Member {name!r}: a ZODB member is referred to by {' or '.join(ZODB_KINDS)} "
                f"keys, not {kind!r}."
            )
        self.name = name
        self.kind = kind
        self.lookup_kinds: frozenset[str] = frozenset()  # ZODB members know only their own kind
        self.read_only = read_only
        self.member_id = f"name:{name}"
        self.error: BaseException | None = None
        self.db: DB | None = None
        self._owns_db = not isinstance(source, DB)
        self._adopted_klass: type | None = None
        try:
            self.db = self._open_db(source)
        except UNREACHABLE_ERRORS as error:
            log.warning("Member %r is unavailable: %s", name, error)
            self.error = error
            return
        try:
            self.member_id = self._setup_catalog()
        except BaseException:
            self.close()
            raise

    @property
    def available(self) -> bool:
        """True if the member's database is open."""
        return self.db is not None

    def _open_db(self, source: Any) -> DB:
        if isinstance(source, DB):
            return self._adopt(source)
        if isinstance(source, str):
            try:
                factory, dbkw = zodburi.resolve_uri(self._uri(source))
            except (KeyError, ValueError) as error:
                raise ConfigurationError(
                    f"Member {self.name!r}: cannot use the URI {redact(source)!r}: {error}."
                ) from error
            dbkw.pop("database_name", None)
            return self._db_on(factory(), dbkw)
        if IStorage.providedBy(source):
            return self._db_on(source, {})
        raise ConfigurationError(
            f"Member {self.name!r}: {source!r} is not a zodburi URI, a storage or a ZODB.DB."
        )

    def _db_on(self, storage: Any, dbkw: dict[str, Any]) -> DB:
        try:
            return FederatedDB(storage, self, database_name=self.name, **dbkw)
        except BaseException:
            storage.close()
            raise

    def _uri(self, uri: str) -> str:
        parts = urlsplit(uri)
        if not self.read_only or parts.scheme not in READ_ONLY_SCHEMES:
            return uri
        query = dict(parse_qsl(parts.query))
        query["read_only"] = "1"
        return urlunsplit(parts._replace(query=urlencode(query)))

    def _adopt(self, db: DB) -> DB:
        owner = getattr(db, "federation_member", None)
        if owner is not None and owner is not self:
            raise ConfigurationError(
                f"Member {self.name!r}: this ZODB.DB already serves member {owner.name!r}."
            )
        db.federation_member = self
        self._adopted_klass = db.klass
        db.klass = FederatedConnection
        # Connections made before adoption are of ZODB's class: drop the idle ones.
        db.pool.available[:] = [
            item for item in db.pool.available if isinstance(item[1], FederatedConnection)
        ]
        return db

    def _setup_catalog(self) -> str:
        writable = not (self.read_only or self.db.storage.isReadOnly())
        with self.db.transaction() as conn:
            root = conn.root()
            catalog = getattr(root, CATALOG_ATTRIBUTE, None)
            if catalog is None and writable:
                catalog = Catalog()
                setattr(root, CATALOG_ATTRIBUTE, catalog)
            return catalog.member_id if catalog is not None else f"name:{self.name}"

    def open_jar(self, transaction_manager: Any) -> FederatedConnection:
        """A federated connection to this member (raises ``MemberUnavailable``)."""
        if self.db is None:
            raise MemberUnavailable(self.name, cause=self.error)
        return self.db.open(transaction_manager)

    def close(self) -> None:
        """Close the database if the federation opened it, else give it back as it was."""
        if self.db is None:
            return
        if self._owns_db:
            self.db.close()
        else:
            self.db.klass = self._adopted_klass
            del self.db.federation_member
            self.db.pool.available[:] = [
                item for item in self.db.pool.available
                if not isinstance(item[1], FederatedConnection)
            ]
        self.db = None
