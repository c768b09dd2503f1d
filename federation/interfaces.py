"""Contracts of zodb-federation.

The prose lives here; implementations say "See :class:`KeyKind`".
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class KeyKind(Protocol):
    """An oid factory: one kind of key by which objects are named.

    A key kind turns text into keys and keys into bytes.  Keys are plain,
    hashable, immutable Python values (``int``, ``uuid.UUID``,
    :class:`federation.resolvers.dn.DN`, ``str``).

    Contract:

    - ``parse(text)`` validates and normalises text, returning the key;
      bad input raises :class:`federation.InvalidKey` naming the kind and
      the text.
    - ``coerce(value)`` accepts a key value or its text and returns the
      canonical key (``parse`` for ``str`` input where that is not itself
      the key type); wrong types raise :class:`federation.InvalidKey`.
    - ``format(key)`` is the canonical text; ``parse(format(k)) == k``.
    - ``encode(key)`` returns bytes whose byte order is the key order, so
      encoded keys can be BTree keys scanned by range;
      ``decode(encode(k)) == k``.
    - ``issue(**hints)`` makes a key for a new object (a fresh UUID, the
      next integer after ``after``, a DN under ``parent``...).
    """

    name: str

    def parse(self, text: str) -> Any: ...

    def coerce(self, value: Any) -> Any: ...

    def format(self, key: Any) -> str: ...

    def encode(self, key: Any) -> bytes: ...

    def decode(self, data: bytes) -> Any: ...

    def issue(self, **hints: Any) -> Any: ...


@runtime_checkable
class Adapter(Protocol):
    """How a foreign (non-ZODB) member reads and writes its records.

    The generic jar (:class:`federation.foreign.ForeignJar`) drives an
    adapter; an adapter never sees persistent objects.  A *record state* is
    a dict of attribute names to plain values; attributes named in
    ``ref_attributes`` hold references to objects of other members as
    :class:`federation.Ref` text (``member:kind:key``), which the jar turns
    into objects and back.

    Reading:

    - ``load(key) -> state`` raises :class:`federation.KeyNotFound`.
    - ``load_many(keys) -> {key: state}`` loads at most ``batch_size`` keys
      in **one** round trip; keys with no record are left out.
    - ``find(attribute, value) -> [key, ...]`` searches by an attribute
      (values are data, never query syntax).

    Writing happens between ``begin(xid)`` and ``commit()``/``abort()``, in
    the order the jar calls: ``create(key, state)``, ``store(key, state)``
    (the attributes that changed), ``delete(key)``.  ``new_key(state)``
    issues the key of a new record.  With ``two_phase``, ``prepare()`` makes
    the writes durable but invisible (``PREPARE TRANSACTION``) and
    ``commit()`` finishes them; ``commit()`` without ``prepare()`` is a
    one-phase commit (a transaction that changes no other member);
    ``release()`` ends the session's part in a transaction whose outcome
    recovery decides: a prepared transaction stays prepared (without two-phase
    commit, it is ``abort()``);
    ``recover(older_than)`` lists the ids of this project's prepared
    transactions older than ``older_than`` seconds, and
    ``finish_prepared(xid, commit)`` settles one (recovery calls them, see
    :mod:`federation.recovery`).
    Without ``two_phase`` the adapter takes part in a transaction as its
    single last resource.

    Bad input (a value a column rejects, a key of the wrong kind) raises a
    :class:`federation.FederationError` naming the member and key; a
    server that went away raises :class:`federation.MemberUnavailable`.

    Capability flags: ``two_phase``, ``can_rename``, ``can_range``.  The
    conformance suite (``tests/conformance.py``) skips what an adapter does
    not claim.  An adapter that ``can_rename`` (its records' keys may change
    under it, like an LDAP entry's DN) also provides :class:`Renaming`; one
    that accepts other key kinds for lookups provides :class:`KeyLookup`;
    one with ``ref_attributes`` provides :class:`ReferenceHolder`, so that
    garbage collection counts the references its records hold.
    """

    kind: str
    klass: type
    ref_attributes: frozenset[str]
    batch_size: int
    two_phase: bool
    can_rename: bool
    can_range: bool

    def load(self, key: Any) -> dict[str, Any]: ...

    def load_many(self, keys: list[Any]) -> dict[Any, dict[str, Any]]: ...

    def find(self, attribute: str, value: Any) -> list[Any]: ...

    def new_key(self, state: dict[str, Any]) -> Any: ...

    def begin(self, xid: str) -> None: ...

    def create(self, key: Any, state: dict[str, Any]) -> None: ...

    def store(self, key: Any, state: dict[str, Any]) -> None: ...

    def delete(self, key: Any) -> None: ...

    def prepare(self) -> None: ...

    def commit(self) -> None: ...

    def abort(self) -> None: ...

    def release(self) -> None: ...

    def recover(self, older_than: float = 0.0) -> list[str]: ...

    def finish_prepared(self, xid: str, commit: bool) -> None: ...

    def close(self) -> None: ...


@runtime_checkable
class AdapterFactory(Protocol):
    """How a configuration file makes a foreign member: the callable its ``adapter`` names.

    A member table such as ::

        [members.readers]
        adapter = "sqlite"             # an entry point, or "package.module:callable"
        [members.readers.options]
        path = "readers.sqlite"
        table = "reader"

    is opened by calling the factory the ``adapter`` setting names (see
    :mod:`federation.plugins`) as ``factory(member, options)``:

    - ``member`` is the member's name (for messages);
    - ``options`` is a plain dict of the options table: TOML values, or,
      from a ZConfig file, text (a repeated key is a list of texts, a
      ``<mapping NAME>`` sub-section a dict).  Options the factory lists in
      its optional ``path_options`` attribute have already been made
      absolute against the configuration file's directory;
    - it returns a zero-argument callable that opens one adapter session
      (an :class:`Adapter`) per call, such as
      :class:`federation.adapters.sql.SqlDatabase` or
      :class:`federation.adapters.ldap.Directory`;
    - bad options raise :class:`federation.ConfigurationError`, one
      sentence naming the member and the option
      (:class:`federation.options.Options` does the checking); the factory
      neither connects nor writes, and never puts a password in a message;
      a password comes from the environment (``password_env``), not from
      the file.

    The built-in factories are registered in the entry point group
    ``zodb_federation.adapters``: ``sqlite``, ``postgresql``
    (:func:`federation.adapters.sql.sqlite_from_options`,
    :func:`~federation.adapters.sql.postgresql_from_options`) and ``ldap``
    (:func:`federation.adapters.ldap.directory_from_options`).
    """

    def __call__(self, member: str, options: dict[str, Any]) -> Callable[[], Adapter]: ...


@runtime_checkable
class Renaming(Protocol):
    """What an adapter with ``can_rename`` adds: records followed by a stable id.

    - ``stable_id(key)`` is the stable id (text, such as an LDAP entry's
      ``entryUUID``) of a record this session loaded, found or followed,
      without a round trip; None when it is not known.  Stubs naming the
      record keep it.
    - ``follow(stable_ids)`` finds, in **one** round trip, the records with
      these stable ids wherever their keys now are: ``{stable id: (key,
      state)}``; records that no longer exist are left out.  The jar calls
      it when a batch load misses keys, moves the objects to their new keys
      and rewrites the stubs.
    """

    def stable_id(self, key: Any) -> str | None: ...

    def follow(self, stable_ids: list[str]) -> dict[str, tuple[Any, dict[str, Any]]]: ...


@runtime_checkable
class KeyLookup(Protocol):
    """What an adapter that accepts other key kinds adds (``uid`` for an LDAP member).

    ``lookup_kinds`` names the kinds; ``resolve(kind, value)`` returns the
    key of the one record that ``value`` names (a search), raising
    :class:`federation.KeyNotFound` when none does and a
    :class:`federation.FederationError` naming the value when several do.
    ``Manager.get`` and ``Manager.lookup`` use it for references such as
    ``people:uid:alice``.
    """

    lookup_kinds: frozenset[str]

    def resolve(self, kind: str, value: Any) -> Any: ...


@runtime_checkable
class MemberRecord(Protocol):
    """What an adapter adds to keep its member's stable id and names in its own store.

    Stubs in ZODB members and reference text in foreign records name a
    member by its id, so that renaming the member in the configuration
    breaks nothing; the names it had resolve references written under them
    before it had an id.

    - ``member_record()`` returns ``(id or None, names)`` as stored, reading
      only (it runs when the federation opens, which never writes);
    - ``record_member(name, member_id)`` stores ``member_id`` unless an id is
      stored already, and ``name`` among the names, and returns
      ``(stored id, durable)``: durable is False when the write had to join
      the session's own open write transaction (it is then stored only if
      that transaction commits, and is recorded again next time).

    SQL members keep them in a table ``zfed_members`` created by the first
    such write.  Without it (LDAP), a member is named ``name:<name>`` unless
    the configuration gives it a ``member_id``.
    """

    def member_record(self) -> tuple[str | None, list[str]]: ...

    def record_member(self, name: str, member_id: str) -> tuple[str, bool]: ...


@runtime_checkable
class OutcomeRecording(Protocol):
    """What an adapter without two-phase commit adds to be a recoverable last resource.

    In a transaction over several members, the last resource commits after
    every other member voted, and its commit is the decision.  So that
    recovery can tell afterwards whether it happened:

    - ``record_outcome(gid)`` records the global transaction id as
      committed *inside* the adapter's open write transaction (the one
      ``commit()`` commits), so the record exists exactly when the changes
      do; a gid already fenced makes it raise
      :class:`federation.MemberBusy` (retryable) and nothing commits;
    - ``outcome(gid)`` is True if ``gid`` committed, False if it was
      fenced, None if nothing is recorded;
    - ``fence(gid)`` records ``gid`` as aborted unless it committed, in a
      transaction of its own, and returns whether it had committed.

    SQLite keeps these records in a table ``zfed_commits``.  An adapter
    without them (LDAP) can still be a last resource; a crash between its
    commit and the end of the transaction then leaves the transaction in
    doubt for an operator (``zfed recover``).
    """

    def record_outcome(self, gid: str) -> None: ...

    def outcome(self, gid: str) -> bool | None: ...

    def fence(self, gid: str) -> bool: ...


@runtime_checkable
class Participant(Protocol):
    """One member's jar, as the commit coordinator drives it.

    Both kinds of jar provide it: the ZODB connection
    (:class:`federation.connection.FederatedConnection`) and the foreign
    jar (:class:`federation.foreign.ForeignJar`).  Jars never join a
    ``transaction`` themselves; they join their manager's
    :class:`federation.coordinator.Coordinator`, the only resource manager
    of the transaction, which calls, in this order:

    1. ``tpc_begin(txn)``: the commit starts; nothing is locked or written.
    2. ``collect(txn) -> bool`` until no jar returns True, then
       ``apply_index_ops(txn) -> bool`` likewise: serialize the changes
       into the jar's buffer (records, rows), including what serializing
       other jars added to this one.  Nothing reaches the database yet.
    3. ``has_writes()``: whether the jar takes part in the commit at all;
       ``branch_size()`` (bytes buffered) and ``journal_branch(txn, gid,
       xid)`` (what the commit journal keeps so that recovery can finish
       this branch) when several members take part.
    4. ``begin_branch(txn, xid)``, in the global order of ``lock_key()``:
       take the member's commit lock or open its write transaction, and
       write the buffer.
    5. ``vote_one_phase(txn)`` when the jar is the only participant;
       otherwise ``prepare(txn)`` (``commit_style`` ``zodb`` or
       ``two_phase``) or, for the one ``last_resource``,
       ``commit_last(txn, gid)``.
    6. ``tpc_finish(txn)``: the decider (the last resource's
       ``commit_last(txn, gid)``, else the ZODB participant holding the
       journal entry) first, which is the decision, then the others; or
       ``tpc_abort(txn)`` at any point before the decision, which rolls back
       whatever was begun.  Once the decision may have happened, a jar that
       cannot finish is given up with ``tpc_abandon(txn)``: nothing is
       rolled back, and recovery finishes the branch from the journal.

    ``abort(txn)`` (a transaction aborted before its commit) and
    ``savepoint()`` are as in ``transaction``'s ``IDataManager``;
    ``forget_resolutions()`` drops what the jar resolved from stub entries;
    ``reload_referrers()``, called at a transaction boundary when stub
    entries or stub records changed, turns the unchanged objects whose state
    holds targets resolved through them back into ghosts;
    ``read_member_id()`` reads again the member id the member's store keeps,
    which another process may have stored first since the federation opened
    (a stub naming an id the federation does not know).
    """

    member: Any
    member_name: str
    commit_style: str  # "zodb", "two_phase" or "last_resource"

    def lock_key(self) -> str: ...

    def tpc_begin(self, txn: Any) -> None: ...

    def collect(self, txn: Any) -> bool: ...

    def apply_index_ops(self, txn: Any) -> bool: ...

    def has_writes(self) -> bool: ...

    def branch_size(self) -> int: ...

    def journal_branch(self, txn: Any, gid: str, xid: str) -> dict[str, Any]: ...

    def begin_branch(self, txn: Any, xid: str) -> None: ...

    def vote_one_phase(self, txn: Any) -> None: ...

    def prepare(self, txn: Any) -> None: ...

    def commit_last(self, txn: Any, gid: str) -> None: ...

    def tpc_finish(self, txn: Any) -> None: ...

    def tpc_abort(self, txn: Any) -> None: ...

    def tpc_abandon(self, txn: Any) -> None: ...

    def abort(self, txn: Any) -> None: ...

    def savepoint(self) -> Any: ...

    def forget_resolutions(self) -> None: ...

    def reload_referrers(self) -> None: ...

    def read_member_id(self) -> None: ...


@runtime_checkable
class ReferenceHolder(Protocol):
    """What an adapter whose records can hold references adds: listing them.

    An adapter with ``ref_attributes`` keeps references to objects of other
    members as :class:`federation.Ref` text in its records (SQL ``refs``
    columns, LDAP reference attributes).  A ZODB member's object that only
    such a record references is live: the federation's garbage collector
    (:func:`federation.gc.collect`) and ``check`` read them all with
    ``references()``.

    - ``references()`` yields ``(key, text)`` for every reference held by
      every record of the member: the record's key and the reference text
      (``member@id:kind:key``, or ``member:kind:key`` without an id; see
      :func:`federation.ref.ref_text`).  Empty values are left out.  It reads the
      committed records, in as few round trips as the backend allows, and
      raises :class:`federation.MemberUnavailable` when the server cannot be
      reached.

    An adapter with ``ref_attributes`` that does not provide it makes
    ``pack`` refuse to run (it cannot know what the member references).
    """

    def references(self) -> Iterator[tuple[Any, str]]: ...


class FederationView(Protocol):
    """What managers, the commit coordinator and recovery use of a federation.

    :class:`federation.Federation` provides it; the lower layers name this
    contract rather than the class, so that dependencies point one way.
    """

    members: dict[str, Any]
    members_by_id: dict[str, Any]
    native_names: dict[str, str]  # database name of native references -> member name
    placement_targets: frozenset[str]
    journal_queue: Any

    def member(self, name: str) -> Any: ...

    def member_of_id(self, member_id: str, name: str) -> Any:
        """The member of stable id ``member_id`` (written with ``name``), or None.

        Unlike ``members_by_id``, it finds an id a foreign member's store
        kept since the federation opened (another process stored it).
        """
        ...

    def ref_of_text(self, text: str) -> Any: ...

    def journal_member(self, avoid: Any = ()) -> Any: ...

    def check_journals(self) -> None: ...

    def coordinator_for(self, transaction_manager: Any, manager: Any) -> Any: ...

    def release_coordinator(self, coordinator: Any, manager: Any) -> None: ...

    def placement_for(self, cls: type) -> str | None: ...

    def release(self, jars: dict[str, Any]) -> None: ...


class JarManager(Protocol):
    """What member jars and split objects use of their manager (:class:`federation.Manager`).

    - ``coordinator`` is the commit coordinator jars join when they change;
    - ``placement_for``, ``add``, ``ref``, ``get`` and ``jar`` are the
      manager's public calls (see its docstrings);
    - ``resolve_stub_data(data)`` and ``resolve_entry(*entry)`` turn a stub
      entry into ``(jar, oid, class)`` of its target;
    - ``stable_id_of_target`` and ``retarget_stubs`` let a foreign jar follow
      a renamed record and rewrite the stubs that name it;
    - ``member_of_id(member_id, member_name)`` is the member of a stable id,
      found also when the member got it after the federation opened;
    - ``forget_resolutions`` makes every jar drop its stub resolutions (a
      member's indexes changed);
    - ``connection(member)`` is what a ZODB connection's ``get_connection``
      returns, and ``close_connection(jar)`` what its ``close()`` does: one
      handle handed out by ``DB.open()`` goes back (see :class:`Database`).
    """

    federation: FederationView
    coordinator: Any
    transaction_manager: Any

    def placement_for(self, cls: type) -> str | None: ...

    def add(self, obj: Any, member: str) -> None: ...

    def ref(self, obj: Any) -> Any: ...

    def get(self, ref: Any) -> Any: ...

    def jar(self, member: str) -> Any: ...

    @property
    def jars(self) -> dict[str, Any]: ...

    def resolve_stub_data(self, data: bytes) -> tuple[Any, bytes, type | None]: ...

    def resolve_entry(self, member_id: str, member_name: str, kind: str, key: bytes,
                      module: str, name: str) -> tuple[Any, bytes, type | None]: ...

    def stable_id_of_target(self, member: Any, oid: bytes) -> str | None: ...

    def retarget_stubs(self, member: Any, old: bytes, new: bytes) -> None: ...

    def member_of_id(self, member_id: str, member_name: str) -> Any: ...

    def forget_resolutions(self) -> None: ...

    def connection(self, member: str) -> Any: ...

    def close_connection(self, jar: Any) -> None: ...


@runtime_checkable
class Database(Protocol):
    """A ZODB member as a ``ZODB.DB``, for applications that call ``db.open()``.

    ``Federation.databases`` maps each ZODB member's name to one
    (:class:`federation.databases.FederatedDatabase`).  They make the
    federation look like a native multi-database to code that only knows
    ``ZODB.DB`` (Zope, pyramid_zodbconn, scripts):

    - ``open(transaction_manager=None)`` returns the member's connection
      of *the* manager of that transaction manager (the thread's by
      default): every database opened on one transaction manager hands out
      connections of one manager, so an object reached through two of them
      is one object, and ``transaction.commit()`` is one two-phase commit
      over them.  The manager is opened by the first ``open()`` and each
      ``open()`` is one handle: ``conn.close()`` gives one back, and the
      last one closes the manager (its connections go back to the
      federation's pool, to be reused with their caches).  A second
      ``open()`` of a member on the same transaction manager returns the
      same connection.  ``at`` and ``before`` (historical connections) are
      refused.
    - On such a connection, ``get_connection(name)`` is the manager's
      connection of member ``name`` (no new handle), ``root()`` is the
      member's root, and closing it with changes in the current
      transaction is refused, as in ZODB.  Close each connection once per
      ``open()``: a closed one may already serve another manager.
      ``conn.db()`` stays the member's own ``ZODB.DB`` (ZODB's writer reads
      it); connections it opens have no manager.
    - ``transaction(note=None)`` is ``DB.transaction``: a context manager
      that opens a connection on a transaction manager of its own, commits
      on success (aborts on an error) and closes.
    - ``database_name`` is the member's name; ``databases`` the mapping of
      every member's database; ``storage`` the member's storage (writing to
      it directly bypasses the federation).
    - ``pack(t=None, days=0)`` packs *the federation* (``Federation.pack``):
      a member packed alone would lose the objects that only other members
      reference.  ``close()`` closes the federation, every member with it;
      closing a closed one does nothing.

    A member that cannot be reached, a foreign member (it has no ZODB
    database) and a closed federation each raise a
    :class:`federation.FederationError` saying so.
    """

    database_name: str

    @property
    def databases(self) -> Any: ...

    @property
    def storage(self) -> Any: ...

    def open(self, transaction_manager: Any = None, at: Any = None,
             before: Any = None) -> Any: ...

    def transaction(self, note: str | None = None) -> Any: ...

    def pack(self, t: float | None = None, days: float = 0.0) -> Any: ...

    def close(self) -> None: ...
