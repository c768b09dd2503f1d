"""The federation: named members and the rules that tie them together."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Collection, Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from ZODB.DB import DB
from ZODB.interfaces import IStorage

from federation import check as checking
from federation import gc, migrate, native, plugins, recovery, resolvers
from federation.adapters.zodb import ZODB_KINDS, ZodbMember
from federation.connection import FederatedConnection
from federation.coordinator import Coordinator
from federation.databases import Databases
from federation.errors import (
    ConfigurationError,
    DanglingStub,
    FederationError,
    InDoubtTransactions,
    MemberOpenError,
    MemberUnavailable,
    UnknownMember,
    describe,
    shorten,
)
from federation.foreign import ForeignMember
from federation.interfaces import Adapter
from federation.manager import Manager, thread_transaction_manager
from federation.ref import MEMBER_ID, MEMBER_NAME, Ref, check_member_name, parse_ref_text


class Federation:
    """Several databases used as one graph of persistent objects.

    ``members`` maps member names to sources: a zodburi URI, a storage, a
    ``ZODB.DB``, an adapter factory (a foreign member), or a mapping with
    ``source`` (or ``uri``) and optional ``key`` (``integer`` or ``uuid``),
    ``read_only``, ``create`` (true by default; when false, a ``file://``
    member whose file does not exist is an error) and ``database_name``
    (what native multi-database references call the member's database;
    :mod:`federation.native`); or, for a
    foreign member, a mapping with ``adapter`` (a factory, or the name of
    one with its ``options``: see :mod:`federation.plugins`) and
    ``read_only``.  ``placement`` maps classes (or dotted class names) to the
    member their new instances go to.
    """

    def __init__(self, members: Mapping[str, Any], *,
                 placement: Mapping[type | str, str] | None = None,
                 recover: bool = True) -> None:
        self._closed = False
        if not isinstance(members, Mapping) or not members:
            raise ConfigurationError(
                f"A federation needs a mapping of one or more members, not {shorten(members)}."
            )
        if placement is not None and not isinstance(placement, Mapping):
            raise ConfigurationError(
                f"Placement rules are a mapping of classes to member names, not "
                f"{shorten(placement)}."
            )
        self.members: dict[str, ZodbMember | ForeignMember] = {}
        self._placement: dict[str, str] = {}
        self.journal_queue = recovery.JournalQueue()
        self._coordinators: dict[Any, Coordinator] = {}  # transaction manager -> coordinator
        self._coordinators_lock = threading.Lock()
        self._idle: list[dict[str, FederatedConnection]] = []
        try:
            for name, spec in members.items():
                check_member_name(name)
                self.members[name] = _make_member(name, spec)
            self.members_by_id = self._index_members()
            self.native_names = native.database_names(self.members)
            for cls, member in (placement or {}).items():
                self._add_placement(cls, member)
        except BaseException:
            self.close()
            raise
        self.placement_targets = frozenset(self._placement.values())
        self._placement_cache: dict[type, str | None] = {}
        self.recovery = recovery.RecoveryReport()
        if recover:
            self._recover()
        self.databases = Databases(self)
        """Each ZODB member as a ``ZODB.DB``, for code that calls ``db.open()``.

        See :class:`federation.interfaces.Database` and :mod:`federation.databases`.
        """

    def _recover(self) -> None:
        """Settle what a crash left half-done, before any manager is handed out."""
        try:
            self.recovery = recovery.recover(self)
        except BaseException:
            self.close()
            raise
        if self.recovery.in_doubt:
            self.close()
            raise InDoubtTransactions(self.recovery.in_doubt)

    def recover(self, *, decisions: Mapping[str, bool] | None = None,
                dry_run: bool = False) -> recovery.RecoveryReport:
        """Settle transactions a crash left half-done; see :func:`federation.recovery.recover`.

        ``decisions`` maps the global ids of transactions in doubt to an
        operator's outcome (True: finish them, False: roll back what can be).
        """
        return recovery.recover(self, decisions=decisions, dry_run=dry_run)

    def coordinator_for(self, transaction_manager: Any, manager: Any) -> Coordinator:
        """The commit coordinator of this federation for ``transaction_manager``, for ``manager``.

        Managers opened on one transaction manager share it, so that their
        changes commit as one transaction; it is forgotten when the last of
        them closes (:meth:`release_coordinator`).
        """
        with self._coordinators_lock:
            coordinator = self._coordinators.get(transaction_manager)
            if coordinator is None:  # (a coordinator holds its key: released on close)
                coordinator = self._coordinators[transaction_manager] = Coordinator(
                    self, transaction_manager)
            coordinator.managers.append(manager)
            return coordinator

    def release_coordinator(self, coordinator: Coordinator, manager: Any) -> None:
        """``manager`` closed; a coordinator no manager uses any more is forgotten."""
        with self._coordinators_lock:
            coordinator.managers.remove(manager)
            if not coordinator.managers:
                self._coordinators.pop(coordinator.transaction_manager, None)

    def check_journals(self) -> None:
        """Refuse a commit to ZODB members while a member's journal is unread.

        A member unavailable when the federation opened may keep the entry of
        a transaction that another member lost in a crash; until recovery has
        read it, a new commit could be given the lost objects' oids, and the
        entry's references would then reach the new objects.
        """
        if self.recovery.unread:
            raise MemberUnavailable(self.recovery.unread[0], cause=FederationError(
                "its commit journal could not be read when the federation opened, so the "
                "ZODB members take no commits until the federation is opened again with it "
                "reachable"))

    def journal_status(self) -> dict[str, Any]:
        """The commit journal at a glance; see :func:`federation.recovery.status`."""
        return recovery.status(self)

    def journal_member(self, avoid: Collection[str] = ()) -> ZodbMember | None:
        """The member that keeps the commit journal when no participant can.

        The first writable, available ZODB member in configuration order,
        not one named in ``avoid`` while there is another.
        """
        writable = [member for member in self.members.values()
                    if isinstance(member, ZodbMember) and member.available
                    and not member.read_only and not member.db.storage.isReadOnly()]
        preferred = [member for member in writable if member.name not in avoid]
        return (preferred or writable or [None])[0]

    def _add_placement(self, cls: Any, member: Any) -> None:
        if not isinstance(cls, (str, type)) or not cls:
            raise ConfigurationError(
                f"A placement rule names {shorten(cls)}, which is not a class or a dotted "
                "class name."
            )
        if not isinstance(member, str):
            raise ConfigurationError(
                f"The placement rule for {shorten(cls)} names {shorten(member)}, which is not "
                "a member name."
            )
        self.member(member)
        self._placement[cls if isinstance(cls, str) else _dotted(cls)] = member

    def _index_members(self) -> dict[str, ZodbMember | ForeignMember]:
        """Members by id, by ``name:<name>``, and by ``name:<former name>``.

        Former names (recorded in the member's own store, or given by the
        setting ``former_names``) resolve references written before a
        rename, unless a current member has that name.
        """
        by_id: dict[str, ZodbMember | ForeignMember] = {}
        for member in self.members.values():
            other = by_id.get(member.member_id)
            if other is not None:
                raise ConfigurationError(
                    f"Members {other.name!r} and {member.name!r} are the same database."
                )
            by_id[member.member_id] = member
            by_id.setdefault(f"name:{member.name}", member)
        for member in self.members.values():
            for former in member.former_names:
                other = self.members.get(former)
                if member.member_id.startswith("name:") and other not in (None, member):
                    raise ConfigurationError(
                        f"Member {member.name!r} keeps no stable id and was called {former!r}, "
                        f"the name of member {former!r} now: stubs made under that name cannot "
                        "tell the two apart; give the member a setting member_id, or a name "
                        "no member had."
                    )
                by_id.setdefault(f"name:{former}", member)
            member.federation_ids = by_id  # a member id can change: see catalog_found
        return by_id

    def member_of_id(self, member_id: str, name: str) -> ZodbMember | ForeignMember | None:
        """The member of the stable id ``member_id``, or None; ``name`` is the name it was
        written with.

        A foreign member that had no id when the federation opened is asked
        (reading only) whether another process stored one since: stubs and
        references that process wrote name it by that id.
        """
        by_id = self.members_by_id
        member = by_id.get(member_id)
        if member is None and not member_id.startswith("name:"):
            named = self.members.get(name) or by_id.get(f"name:{name}")
            learn = getattr(named, "learn_member_id", None)
            if learn is not None and named.available and learn():
                member = by_id.get(member_id)
        return member

    def member_for(self, name: str, member_id: str | None = None) -> ZodbMember | ForeignMember:
        """The member a reference names by ``name`` and, if it has one, its stable id.

        The id wins (the member may have been renamed since); without one,
        the member of that name, else the member that had that name.  A
        known name whose member is another database than the id says raises
        :class:`~federation.DanglingStub`; an unknown one :class:`UnknownMember`.
        """
        by_id = self.members_by_id
        if member_id is not None:
            member = self.member_of_id(member_id, name)
            if member is not None:
                return member
        member = self.members.get(name) or by_id.get(f"name:{name}")
        if member is None:
            raise UnknownMember(name, list(self.members))
        if member_id is not None and member.available and not member.member_id.startswith(
                "name:"):
            raise DanglingStub(
                f"A reference names member {name!r} (id {member_id}), but the member of that "
                f"name is another database (id {member.member_id})."
            )
        return member

    def ref_of_text(self, text: str) -> Ref:
        """The :class:`Ref` that reference text of a foreign record names, by current name.

        See :func:`federation.ref.ref_text` for the text.
        """
        ref, member_id = parse_ref_text(text)
        member = self.member_for(ref.member, member_id)
        return ref if member.name == ref.member else Ref(member.name, ref.kind, ref.key)

    def member(self, name: str) -> ZodbMember | ForeignMember:
        """The member called ``name``; ``UnknownMember`` if there is none."""
        try:
            return self.members[name]
        except KeyError:
            raise UnknownMember(name, list(self.members)) from None

    def placement_for(self, cls: type) -> str | None:
        """The member a placement rule sends new ``cls`` objects to, or None."""
        try:
            return self._placement_cache[cls]
        except KeyError:
            pass
        spec = getattr(cls, "__split__", None)
        member = spec.secondary if spec is not None else None
        if member is None and self._placement:
            for base in cls.__mro__:
                member = self._placement.get(_dotted(base))
                if member is not None:
                    break
        self._placement_cache[cls] = member
        return member

    def open(self, transaction_manager: Any = None) -> Manager:
        """Open a :class:`Manager` joined to ``transaction_manager``.

        The thread's by default, and for ``transaction.manager``, which
        stands for each thread's own.
        """
        tm = thread_transaction_manager(transaction_manager)
        names = {member.name for member in self.members.values() if member.available}
        jars = self._idle.pop() if self._idle else {}
        try:
            for name in sorted(names - jars.keys()):
                jars[name] = self.members[name].open_jar(tm)
            for jar in jars.values():
                if jar.opened is None:
                    jar.open(tm, delegate=False)
        except BaseException:
            for jar in jars.values():
                if jar.opened is not None:
                    jar.close(primary=False)
            self.release(jars)  # closed, and kept for the next open, as a manager leaves them
            raise
        return Manager(self, tm, jars)

    def pack(self, days: float = 0.0, *, exclude: Iterable[str] = (), dry_run: bool = False,
             progress: gc.Progress | None = None,
             hook: gc.Hook | None = None) -> gc.CollectionReport:
        """Collect the garbage of the whole federation and pack every writable member.

        Refuses (:class:`~federation.CollectionRefused`) when a member not in
        ``exclude`` cannot be read.  ``dry_run`` only reports what would be
        collected.  See :func:`federation.gc.collect`.
        """
        return gc.collect(self, days=days, exclude=tuple(exclude), dry_run=dry_run,
                          progress=progress, hook=hook)

    def check(self, *, exclude: Iterable[str] = (), repair: bool = False,
              progress: gc.Progress | None = None) -> checking.CheckReport:
        """Read every member and report inconsistencies. See :func:`federation.check.check`."""
        return checking.check(self, exclude=exclude, repair=repair, progress=progress)

    def migrate(self, *, to_native: bool = False, batch: int = migrate.BATCH,
                dry_run: bool = False, members: Iterable[str] | None = None,
                progress: gc.Progress | None = None) -> migrate.MigrationReport:
        """Rewrite native multi-database references into stubs (or, ``to_native``, back).

        See :func:`federation.migrate.migrate`.
        """
        return migrate.migrate(self, to_native=to_native, batch=batch, dry_run=dry_run,
                               members=members, progress=progress)

    def release(self, jars: dict[str, FederatedConnection]) -> None:
        # Member connections are kept together: their caches refer to each other.
        self._idle.append(jars)

    @property
    def closed(self) -> bool:
        """True once :meth:`close` ran."""
        return self._closed

    def close(self) -> None:
        """Close every member database the federation opened."""
        self._closed = True
        self._idle = []
        recovery.delete_finished(self)
        for member in self.members.values():
            member.close()

    def __enter__(self) -> Federation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _dotted(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _make_member(name: str, spec: Any) -> ZodbMember | ForeignMember:
    """The member ``spec`` describes; any failure is a ``FederationError`` naming it."""
    try:
        return _member_of(name, spec)
    except FederationError:
        raise
    except Exception as error:  # a storage or an adapter factory failed in its own way
        raise MemberOpenError(
            f"Member {name!r} cannot be opened: {type(error).__name__}: {describe(error)}."
        ) from error


def _member_of(name: str, spec: Any) -> ZodbMember | ForeignMember:
    if isinstance(spec, Mapping):
        options = dict(spec)
        read_only = _setting(name, options, "read_only", bool, False)
        former = _former_names(name, options)
        if "adapter" in options:
            factory = options.pop("adapter")
            adapter_options = options.pop("options", None)
            member_id = options.pop("member_id", None)
            if member_id is not None and not (isinstance(member_id, str)
                                              and MEMBER_ID.fullmatch(member_id)):
                raise ConfigurationError(
                    f"Member {name!r}: the setting 'member_id' must be 1 to 64 letters, digits, "
                    f"'_', '.' or '-', not {shorten(member_id)}."
                )
            _no_more(name, options)
            if isinstance(factory, str):  # named in a configuration: see federation.plugins
                factory = plugins.configured(name, factory, adapter_options)
            elif not callable(factory):
                raise ConfigurationError(
                    f"Member {name!r}: the setting 'adapter' must be an adapter factory or "
                    f"the name of one, not {shorten(factory)}."
                )
            elif adapter_options is not None:
                raise ConfigurationError(
                    f"Member {name!r}: the setting 'options' goes with an adapter named by "
                    "text; call the adapter factory with its options instead."
                )
            return ForeignMember(name, _checked_factory(name, factory), read_only=read_only,
                                 member_id=member_id, former_names=former)
        source = options.pop("source", None)
        uri = options.pop("uri", None)
        if source is not None and uri is not None:
            raise ConfigurationError(f"Member {name!r} has both 'uri' and 'source'; keep one.")
        source = source if source is not None else uri
        if source is None:
            raise ConfigurationError(f"Member {name!r} has no 'uri' or 'source'.")
        if isinstance(source, str):
            source = literal_file_uri(name, source)
        kind = _setting(name, options, "key", str, "integer")
        create = _setting(name, options, "create", bool, True)
        database_name = _setting(name, options, "database_name", str, "") or None
        _no_more(name, options)
        if kind not in resolvers.kinds():
            raise ConfigurationError(
                f"Member {name!r}: the setting 'key' names {shorten(kind)}, which is no "
                f"registered key kind ({', '.join(resolvers.kinds())})."
            )
        if (not create or read_only) and kind in ZODB_KINDS:  # ZodbMember reports a bad kind
            _require_file(name, source, read_only)
        return ZodbMember(name, source, kind=kind, read_only=read_only,
                          database_name=database_name, former_names=former)
    if callable(spec) and not isinstance(spec, (str, DB)) and not IStorage.providedBy(spec):
        return ForeignMember(name, _checked_factory(name, spec))  # an adapter factory
    return ZodbMember(name, literal_file_uri(name, spec) if isinstance(spec, str) else spec)


def literal_file_uri(name: str, uri: str) -> str:
    """``uri`` as zodburi must read it: a ``file://`` URI's path percent-decoded.

    A ``file://`` URI percent-encodes its path (``Path.as_uri()``,
    ``path =`` in a configuration), but zodburi opens the path as it is
    written: ``my%20data.fs``, a new empty database beside ``my data.fs``.
    A path with ``#`` or ``?`` cannot be written for zodburi at all, and is
    refused.  Other URIs are returned as they are.
    """
    parts = urlsplit(uri)
    if parts.scheme != "file":
        return uri
    path = unquote(parts.netloc + parts.path)  # zodburi: a relative path is the netloc
    if "#" in path or "?" in path:
        raise ConfigurationError(
            f"Member {name!r}: the file {shorten(path)} has a '#' or '?' in its path, which "
            "a file:// URI cannot give to zodburi; rename it, or open its FileStorage "
            "yourself and give the storage."
        )
    return f"file://{path}" + (f"?{parts.query}" if parts.query else "")


def _require_file(name: str, source: Any, read_only: bool) -> None:
    """Refuse a ``file://`` source whose file does not exist, before anything creates it."""
    if not isinstance(source, str):
        return
    parts = urlsplit(source)
    path = parts.netloc + parts.path  # as zodburi opens it (see literal_file_uri)
    if parts.scheme == "file" and not Path(path).exists():
        remedy = ("a read-only member is never created" if read_only else
                  "fix the path, or set 'create = true' for the member to create it")
        raise ConfigurationError(
            f"Member {name!r}: the file {path!r} does not exist; {remedy}."
        )


def _checked_factory(name: str, factory: Callable[[], Any]) -> Callable[[], Adapter]:
    """``factory``, refusing what it returns when that is not an adapter."""
    @functools.wraps(factory)
    def make() -> Adapter:
        adapter = factory()
        if not isinstance(adapter, Adapter):
            raise ConfigurationError(
                f"Member {name!r}: its adapter factory returned {shorten(adapter)}, which is not "
                "an adapter (see federation.interfaces.Adapter)."
            )
        return adapter
    return make


def _setting(name: str, options: dict[str, Any], setting: str, kind: type, default: Any) -> Any:
    """Pop ``setting`` from a member's ``options``; it must be of type ``kind``."""
    value = options.pop(setting, default)
    if not isinstance(value, kind):
        raise ConfigurationError(
            f"Member {name!r}: the setting {setting!r} must be a {kind.__name__}, not "
            f"{shorten(value)}."
        )
    return value


def _former_names(name: str, options: dict[str, Any]) -> tuple[str, ...]:
    """The setting ``former_names``: names the member had, that old references use."""
    former = options.pop("former_names", ())
    if isinstance(former, str) or not isinstance(former, (list, tuple)) or not all(
            isinstance(item, str) and MEMBER_NAME.fullmatch(item) for item in former):
        raise ConfigurationError(
            f"Member {name!r}: the setting 'former_names' must be a list of member names, not "
            f"{shorten(former)}."
        )
    return tuple(former)


def _no_more(name: str, options: dict[str, Any]) -> None:
    if options:
        unknown = ", ".join(sorted(shorten(key, 40).strip("'") for key in options))
        raise ConfigurationError(f"Member {name!r} has unknown settings: {unknown}.")


def open(members: Mapping[str, Any], *,
         placement: Mapping[type | str, str] | None = None,
         recover: bool = True) -> Federation:
    """Open a federation of ``members`` (see :class:`Federation`).

    Unless ``recover`` is false, transactions a crash left half-done are
    settled first (:mod:`federation.recovery`); those that cannot be
    settled safely raise :class:`~federation.InDoubtTransactions`.
    """
    return Federation(members, placement=placement, recover=recover)
