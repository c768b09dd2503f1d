"""ZODB members: any ZODB storage, given as a zodburi URI, a storage or a ``ZODB.DB``."""

from __future__ import annotations

import contextlib
import logging
import os
from types import TracebackType
from typing import Any, NoReturn
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import zodburi
from zc.lockfile import LockError
from ZODB.DB import DB
from ZODB.FileStorage import FileStorage
from ZODB.FileStorage.FileStorage import FileStorageFormatError
from ZODB.interfaces import IStorage
from ZODB.utils import z64

from federation.adapters import relstorage
from federation.catalog import CATALOG_ATTRIBUTE, Catalog
from federation.connection import UNREACHABLE_ERRORS, FederatedConnection
from federation.errors import (
    ConfigurationError,
    CorruptRecord,
    FederationError,
    MemberOpenError,
    MemberUnavailable,
    describe,
    shorten,
)
from federation.redact import redact
from federation.ref import MEMBER_ID

log = logging.getLogger(__name__)

#: zodburi schemes whose storages take a ``read_only`` argument (``postgres``: RelStorage).
READ_ONLY_SCHEMES = {"file", "zeo", "postgres"}

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

    ``database_name`` is the name ZODB's native multi-database references
    (``['m', (database_name, oid, class)]``) give this member's database.

    A member whose storage cannot be reached when the federation opens is
    kept, unavailable: the other members work, and using this one raises
    :class:`federation.MemberUnavailable`.
    """

    def __init__(self, name: str, source: Any, *, kind: str = "integer",
                 read_only: bool = False, database_name: str | None = None,
                 former_names: tuple[str, ...] = ()) -> None:
        if kind not in ZODB_KINDS:
            raise ConfigurationError(
                f"Member {name!r}: a ZODB member is referred to by {' or '.join(ZODB_KINDS)} "
                f"keys, not {kind!r}."
            )
        self.name = name
        self.kind = kind
        #: What ZODB's native multi-database references call this member's database
        #: (``federation.native``): the setting, else an adopted ``ZODB.DB``'s own
        #: ``database_name`` (unless it is ZODB's default for a lone database), else a
        #: URI's ``database_name``, else the member name.
        self.database_name = database_name or _database_name(source) or name
        self.lookup_kinds: frozenset[str] = frozenset()  # ZODB members know only their own kind
        self.read_only = read_only
        self.writable = False  # may get a catalog (see _setup_catalog)
        self.member_id = f"name:{name}"
        #: Names the member had: those its catalog recorded (see ``Catalog.names``), and
        #: the setting ``former_names``.
        self.former_names: tuple[str, ...] = tuple(former_names)
        self.name_recorded = False  # the catalog has this name (else the next write adds it)
        #: The federation's ``members_by_id``, kept current by :meth:`catalog_found`.
        self.federation_ids: dict[str, Any] | None = None
        self._fresh = False  # the storage had no transaction before we opened it
        self.error: BaseException | None = None
        self.db: DB | None = None
        self._owns_db = not isinstance(source, DB)
        self._adopted_klass: type | None = None
        try:
            self.db = self._open_db(source)
        except (MemberUnavailable, *UNREACHABLE_ERRORS) as error:
            if isinstance(error, MemberUnavailable) and error.__cause__ is not None:
                error = error.__cause__  # the root's load, as the connection reported it
            log.warning("Member %r is unavailable: %s", name, describe(error))
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
            where = shorten(redact(source))
            try:
                factory, dbkw = zodburi.resolve_uri(self._uri(source))
            except Exception as error:  # zodburi raises KeyError, ValueError, TypeError...
                raise ConfigurationError(
                    f"Member {self.name!r}: cannot use the URI {where}: {describe(error)}."
                ) from error
            dbkw.pop("database_name", None)
            return self._db_on(self._storage(factory, where), dbkw, where)
        if IStorage.providedBy(source):
            return self._db_on(source, {}, shorten(source))
        raise ConfigurationError(
            f"Member {self.name!r}: {shorten(source)} is not a zodburi URI, a storage or a "
            "ZODB.DB."
        )

    def _storage(self, factory: Any, where: str) -> Any:
        """The storage ``factory`` opens; its failures become ``MemberOpenError``."""
        try:
            return factory()
        except FederationError:
            raise
        except Exception as error:
            if relstorage.refused(error):  # its server answered: a login or database error
                self._storage_error(error, where)
            if isinstance(error, UNREACHABLE_ERRORS):
                raise
            _release_half_open(error.__traceback__)
            self._storage_error(error, where)

    def _storage_error(self, error: Exception, where: str) -> NoReturn:
        """Raise the ``MemberOpenError`` for a storage that failed to open."""
        if isinstance(error, FileStorageFormatError):
            raise MemberOpenError(
                f"Member {self.name!r}: the storage {where} is not a FileStorage file."
            ) from error
        if isinstance(error, FileNotFoundError) and isinstance(error.filename, str):
            raise MemberOpenError(
                f"Member {self.name!r}: cannot open the storage {where}: the folder "
                f"{shorten(os.path.dirname(error.filename))} does not exist."
            ) from error
        if isinstance(error, LockError):
            raise MemberOpenError(
                f"Member {self.name!r}: the storage {where} is locked by another process (a "
                f"zfed serve, say: use the client configuration it wrote) or another member "
                f"of this federation ({describe(error)})."
            ) from error
        raise MemberOpenError(
            f"Member {self.name!r}: cannot open the storage {where}: "
            f"{type(error).__name__}: {describe(error)}."
        ) from error

    def _db_on(self, storage: Any, dbkw: dict[str, Any], where: str) -> DB:
        relstorage.give_stable_name(storage)
        try:
            self._fresh = storage.lastTransaction() == z64
            return FederatedDB(storage, self, database_name=self.database_name, **dbkw)
        except BaseException as error:
            storage.close()
            if isinstance(error, (*UNREACHABLE_ERRORS, FederationError)) or not isinstance(
                    error, Exception):
                raise
            raise MemberOpenError(
                f"Member {self.name!r}: cannot open a database on the storage {where}: "
                f"{type(error).__name__}: {describe(error)}."
            ) from error

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
        """The member id, from the catalog; opening writes only to a new database.

        A database that existed without a catalog keeps none until a
        transaction writes (see ``FederatedConnection.ensure_catalog``):
        its id is chosen now, kept in memory, and stored with the catalog.  A
        read-only one is named ``name:<member name>``.
        """
        self.writable = not (self.read_only or self.db.storage.isReadOnly())
        with self.db.transaction() as conn:
            catalog = getattr(conn.root(), CATALOG_ATTRIBUTE, None)
            if catalog is not None or not self.writable:
                member_id = check_catalog(self.name, catalog)
                self._read_names(catalog)
                return member_id
            self.member_id = Catalog.new_member_id()
            if self._fresh:
                conn.ensure_catalog()  # a new database: the catalog comes with its root
            else:
                log.info("Member %r has no federation catalog yet; the first transaction that "
                         "writes will add one.", self.name)
            return self.member_id

    def _read_names(self, catalog: Any) -> None:
        """Take the names the catalog recorded (a damaged record is ignored, and logged)."""
        names = getattr(catalog, "names", None)
        try:
            recorded = [name for name in names or () if isinstance(name, str)]
        except Exception as error:  # a damaged names index: old names then resolve no more
            log.warning("Member %r: the catalog's names index cannot be read: %s", self.name,
                        describe(error))
            return
        self.former_names = (*(name for name in recorded
                               if name != self.name and name not in self.former_names),
                             *self.former_names)
        self.name_recorded = self.name in recorded

    def catalog_found(self, catalog: Any) -> None:
        """A connection read ``catalog``: check it, and take its member id if it differs.

        It differs when another process stored a catalog between our open and
        our first write (ours was then refused with a ConflictError).
        """
        member_id = check_catalog(self.name, catalog)
        if member_id != self.member_id:
            ids = self.federation_ids
            if ids is not None:
                ids.pop(self.member_id, None)
                ids[member_id] = self
            self.member_id = member_id

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


#: The database name ``ZODB.DB`` gives a database when it is told none.
ZODB_DEFAULT_NAME = "unnamed"


def _database_name(source: Any) -> str | None:
    """The database name a ``ZODB.DB`` or a zodburi URI (``?database_name=``) gives.

    A ``ZODB.DB`` of no multi-database still called by ZODB's default name
    gives none: no native reference names it, and two such would clash.
    """
    if isinstance(source, DB):
        if source.database_name == ZODB_DEFAULT_NAME and len(source.databases) <= 1:
            return None
        return source.database_name
    if isinstance(source, str):
        return dict(parse_qsl(urlsplit(source).query)).get("database_name") or None
    return None


def _release_half_open(traceback: TracebackType | None) -> None:
    """Close the files of a FileStorage whose ``__init__`` failed.

    FileStorage opens its lock file, its ``.tmp`` file and the data file
    before it reads the header or the index; when that fails, it keeps them
    open (and the lock taken) until the garbage collector finds them.
    """
    while traceback is not None:
        storage = traceback.tb_frame.f_locals.get("self")
        if isinstance(storage, FileStorage):
            for name in ("_file", "_tfile"):
                with contextlib.suppress(Exception):
                    getattr(storage, name).close()
            with contextlib.suppress(Exception):
                storage._lock_file.close()
            return
        traceback = traceback.tb_next


def check_catalog(member: str, catalog: Any) -> str:
    """The member id ``catalog`` (the root's ``zodb_federation``) holds, checking its type."""
    if catalog is None:
        return f"name:{member}"
    member_id = getattr(catalog, "member_id", None) if isinstance(catalog, Catalog) else None
    if not isinstance(member_id, str) or not MEMBER_ID.fullmatch(member_id):
        what = (f"a Catalog whose member_id is {shorten(member_id)}"
                if isinstance(catalog, Catalog) else f"{shorten(catalog)}")
        raise CorruptRecord(
            f"Member {member!r}: the federation catalog (the root's {CATALOG_ATTRIBUTE!r} "
            f"attribute) is {what}, not a federation Catalog; other software changed or "
            "damaged it. Restore it from a backup, or remove the attribute to start a new "
            "catalog (references into this member then become dangling)."
        )
    return member_id
