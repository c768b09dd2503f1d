"""LDAP members: sessions on a directory, reading and writing its entries.

This module's one role is talking to the server: :class:`Directory` (the
member's factory: URI, bind, TLS) and :class:`LdapAdapter` (one session,
one ldap3 connection).  How values and entries map to Python is
:mod:`federation.adapters.ldap_values`, whose :class:`Attribute`,
:class:`Entries`, :func:`parse_time` and :func:`format_time` are
re-exported here.

Entries are named by their DN (key kind ``dn``); ``uid`` keys are resolved
by a search.  Filter values are escaped (RFC 4515) and new DNs built by the
``dn`` key kind (RFC 4514), so values are data, never syntax.  LDAP has no
two-phase commit: a directory is the last resource of a transaction; its
writes are sent when the transaction votes, and undone as far as LDAP
allows if one fails.

::

    people = Directory("people", "ldap://ldap.example.org", Entries(
        Person, base="ou=people,dc=example,dc=org", object_classes=["inetOrgPerson"],
        rdn="uid", attributes={"login": "uid", "name": "cn",
                               "phones": Attribute("telephoneNumber", multi=True)},
        refs={"manager": "description"}, on_create={"sn": lambda state: state["name"]}),
        bind_dn="cn=app,dc=example,dc=org", password=secret, start_tls=True)
    fed = federation.open({"main": "file:///srv/main.fs", "people": people})
"""

from __future__ import annotations

import contextlib
import math
import re
import ssl
import uuid as _uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

with warnings.catch_warnings():
    # ldap3 2.9.1 touches pyasn1 0.6's deprecated tagMap/typeMap at import time.
    warnings.simplefilter("ignore", DeprecationWarning)
    import ldap3
    from ldap3.core import exceptions as ldap_errors
    from ldap3.protocol.rfc4527 import post_read_control, pre_read_control
    from ldap3.utils.conv import escape_bytes, escape_filter_chars

from federation import resolvers
from federation.adapters.ldap_values import (
    CONVERTERS,
    Attribute,
    Entries,
    format_time,
    parse_time,
    texts,
)
from federation.errors import (
    ConfigurationError,
    FederationError,
    InvalidKey,
    KeyNotFound,
    MemberUnavailable,
)
from federation.options import Options
from federation.redact import redact
from federation.ref import Ref
from federation.resolvers.dn import DN

__all__ = ["Attribute", "Directory", "Entries", "LdapAdapter", "directory_from_options",
           "format_time", "parse_time"]

#: Entries a session remembers the entryUUID of (the oldest are forgotten first).
STABLE_IDS_KEPT = 100_000
#: Entries per page of a search that may return many (``find``).
PAGE_SIZE = 500
_PAGED, _PRE_READ, _POST_READ = "1.2.840.113556.1.4.319", "1.3.6.1.1.13.1", "1.3.6.1.1.13.2"
_UNAVAILABLE = (ldap_errors.LDAPCommunicationError, ldap_errors.LDAPResponseTimeoutError,
                ldap_errors.LDAPMaximumRetriesError, OSError)


class Directory:
    """A factory of :class:`LdapAdapter` sessions on the entries of one directory.

    ``uri`` is ``ldap://host[:port]`` or ``ldaps://...``.  Without ``bind_dn``
    sessions bind anonymously.  ``start_tls`` upgrades the connection before
    binding; the server's certificate must be valid for the URI's host and
    signed by a CA of ``ca_file`` (PEM), or of the system without one.
    ``timeout`` bounds connecting and each answer, in seconds.
    """

    def __init__(self, member: str, uri: str, entries: Entries, *, bind_dn: str | None = None,
                 password: str | None = None, start_tls: bool = False,
                 ca_file: str | Path | None = None, batch_size: int = 100,
                 timeout: float = 10.0) -> None:
        secure = isinstance(uri, str) and uri.lower().startswith("ldaps:")
        for bad, problem in [
            (not re.fullmatch(r"ldaps?://[^/?#]+/?", str(uri), re.IGNORECASE),
             f"{uri!r} is not an ldap:// or ldaps:// URI of a server"),
            (password is not None and bind_dn is None, "a password needs a bind_dn"),
            (start_tls and secure, f"{uri} is TLS already; StartTLS is for ldap:// URIs"),
            (ca_file is not None and not Path(ca_file).is_file(),
             f"the CA file {str(ca_file)!r} does not exist"),
            (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1,
             f"batch_size {batch_size!r} is not a positive int"),
        ]:
            if bad:
                raise ConfigurationError(f"Member {member!r}: {problem}.")
        self.member, self.uri, self.entries = member, uri, entries
        self.bind_dn, self.password, self.start_tls = bind_dn, password, start_tls
        self.ca_file = str(ca_file) if ca_file is not None else None
        self.batch_size, self.timeout, self.tls = batch_size, timeout, start_tls or secure

    def __repr__(self) -> str:
        who = f"as {self.bind_dn!r}" if self.bind_dn else "anonymously"
        return f"<Directory {self.member!r} at {redact(self.uri)} {who}>"

    def __call__(self) -> LdapAdapter:
        return LdapAdapter(self)

    def connect(self) -> Any:
        """A new ldap3 connection: opened, upgraded to TLS if asked, bound."""
        tls = _Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=self.ca_file) if self.tls else None
        server = ldap3.Server(self.uri, connect_timeout=self.timeout, get_info=ldap3.NONE, tls=tls)
        conn = _Connection(server, user=self.bind_dn, password=self.password,
                                receive_timeout=math.ceil(self.timeout), raise_exceptions=False,
                                auto_referrals=False, collect_usage=True)
        try:
            conn.open()
            if self.start_tls:
                conn.start_tls()
            bound = conn.bind()
        except BaseException as error:
            _unbind(conn)
            if isinstance(error, ldap_errors.LDAPStartTLSError) or (
                    isinstance(error, _UNAVAILABLE) and "CERTIFICATE" in str(error)):
                trusted = f"the CA file {self.ca_file!r}" if self.ca_file else "the system CAs"
                raise FederationError(
                    f"Member {self.member!r} cannot set up TLS with {self.uri}: {error}. Does the "
                    f"server offer it, with a certificate {trusted} validates for its name?"
                ) from error
            if isinstance(error, _UNAVAILABLE):
                raise MemberUnavailable(self.member, None, error) from error
            raise
        if not bound:
            result = conn.result or {}
            _unbind(conn)
            who = f"as {self.bind_dn!r}" if self.bind_dn else "anonymously"
            why = " ".join(filter(None, (result.get("description"), result.get("message"))))
            raise FederationError(f"Member {self.member!r} cannot bind to {self.uri} {who}: "
                                  f"{why}.")
        return conn


class _Connection(ldap3.Connection):
    """ldap3's connection, whose ``repr()`` and ``str()`` do not show the bind password."""

    def __repr__(self) -> str:
        return _without_password(super().__repr__(), self.password)

    def __str__(self) -> str:
        return _without_password(super().__str__(), self.password)


def _without_password(text: str, password: Any) -> str:
    if password:
        for form in {str(password), repr(password)}:
            text = text.replace(form, "'***'" if form.startswith(("'", '"')) else "***")
    return redact(text)


class _Tls(ldap3.Tls):
    """TLS with the server's name checked by ``ssl`` (ldap3 2.9 calls a deprecated check)."""

    def wrap_socket(self, connection: Any, do_handshake: bool = False) -> None:
        context = ssl.create_default_context(cafile=self.ca_certs_file)
        connection.socket = context.wrap_socket(
            connection.socket, server_hostname=connection.server.host,
            do_handshake_on_connect=do_handshake)


def _unbind(connection: Any) -> None:
    """Unbind and close ``connection``; a server that went away leaves nothing to close."""
    with contextlib.suppress(ldap_errors.LDAPException, OSError):
        connection.unbind()
    if getattr(connection, "socket", None) is not None:
        connection.socket.close()  # left open by ldap3 when connecting failed


def _loose(dn: DN) -> tuple[Any, ...]:
    """``dn`` as directories compare names: ignoring case and repeated spaces."""
    def fold(value: Any) -> Any:
        return " ".join(value.casefold().split()) if isinstance(value, str) else value
    return tuple(tuple(sorted((kind, fold(value)) for kind, value in rdn)) for rdn in dn.rdns)


Entry = tuple[DN, dict[str, list[bytes]]]
Write = tuple[str, DN, Any]


class LdapAdapter:
    """One session (one LDAP connection) on a directory. See ``federation.interfaces.Adapter``.

    Also ``stable_id``/``follow`` (entries followed by their ``entryUUID``
    when renamed or moved in the base), ``resolve`` (``uid`` keys to DNs)
    and ``connection``, the ldap3 connection (``usage`` counts what it sent).
    """

    kind = "dn"
    two_phase = False
    can_rename = True
    can_range = False
    lookup_kinds = frozenset({"uid"})

    def __init__(self, directory: Directory) -> None:
        self.directory, self.member, self.entries = directory, directory.member, directory.entries
        self.klass, self.batch_size = self.entries.klass, directory.batch_size
        self.ref_attributes = frozenset(self.entries.refs)
        self._dn = resolvers.get("dn")
        self._stable_ids: dict[DN, str] = {}
        self._writes: list[Write] = []
        self.connection = directory.connect()

    def _call(self, operation: str, *args: Any, key: Any = None, **options: Any) -> Any:
        """Run an ldap3 operation, reconnecting a closed session first."""
        try:
            if self.connection.closed:
                self.connection = self.directory.connect()
            return getattr(self.connection, operation)(*args, **options)
        except _UNAVAILABLE as error:
            raise MemberUnavailable(self.member, key, error) from error
        except ldap_errors.LDAPException as error:
            raise FederationError(f"Member {self.member!r}: the directory request on "
                                  f"{key or self.entries.base} failed: {error}.") from error

    def _rejected(self, doing: str, key: DN | None) -> FederationError:
        """The error for the failed result of the last operation."""
        result = self.connection.result or {}
        code, message = result.get("result"), result.get("message")
        text = f"{result.get('description')}" + (f" ({message})" if message else "")
        if code in (51, 52):  # busy, unavailable
            return MemberUnavailable(self.member, key, ConnectionError(text))
        if code == 32 and key is not None:
            return KeyNotFound(self.member, self.kind, key)
        naming = code in (64, 67)  # namingViolation, notAllowedOnRDN
        hint = " The attribute names the entry; rename the entry instead." if naming else ""
        where = f" of entry {key}" if key is not None else ""
        return FederationError(f"Member {self.member!r} rejects the {doing}{where}: {text}.{hint}")

    def _search(self, condition: str, attributes: list[str], *, key: Any = None,
                paged: bool = False) -> list[Entry]:
        """Entries below the base with the object classes and ``condition``, remembering
        their entryUUIDs: one round trip, unless ``paged``."""
        classes = "".join(f"(objectClass={name})" for name in self.entries.object_classes)
        found: list[Entry] = []
        cookie = None
        while True:
            pages = {"paged_size": PAGE_SIZE, "paged_cookie": cookie} if paged else {}
            self._call("search", str(self.entries.base), f"(&{classes}{condition})",
                       ldap3.SUBTREE, attributes=attributes, key=key, **pages)
            result = self.connection.result or {}
            if result.get("result") != 0:
                raise self._rejected(f"search below {self.entries.base}", None)
            for entry in self.connection.response or ():
                if entry.get("type") == "searchResEntry":  # not a referral
                    values = {name.lower(): raw for name, raw in entry["raw_attributes"].items()}
                    dn = self._dn.coerce(entry["dn"])
                    if values.get("entryuuid"):
                        self._remember(dn, values["entryuuid"][0].decode("ascii"))
                    found.append((dn, values))
            cookie = (result.get("controls") or {}).get(_PAGED, {}).get("value", {}).get("cookie")
            if not (paged and cookie):
                return found

    def _remember(self, key: DN, stable_id: str) -> None:
        self._stable_ids.pop(key, None)
        self._stable_ids[key] = stable_id
        if len(self._stable_ids) > STABLE_IDS_KEPT:
            del self._stable_ids[next(iter(self._stable_ids))]

    def _state(self, key: DN, values: dict[str, list[bytes]]) -> dict[str, Any]:
        """The record state of an entry's LDAP values."""
        state: dict[str, Any] = {}
        for name, attribute in self.entries.mapping.items():
            try:
                state[name] = attribute.load(values.get(attribute.name.lower(), []))
            except (ValueError, UnicodeDecodeError) as error:
                raise FederationError(f"Member {self.member!r}: entry {key} has a value of "
                                      f"{attribute.name} that is not {attribute.type.__name__}: "
                                      f"{error}.") from None
        return state

    def _values(self, key: DN, name: str, value: Any) -> tuple[str, list[str | bytes]]:
        """The LDAP attribute and values to write for the Python attribute ``name``."""
        attribute = self.entries.mapping.get(name)
        if attribute is None or attribute.read_only:
            why = "maps no LDAP attribute to" if attribute is None else "never writes read-only"
            raise FederationError(f"Member {self.member!r} {why} attribute {name!r} (entry {key}).")
        try:
            return attribute.name, attribute.dump(value)
        except (TypeError, ValueError) as error:
            raise FederationError(f"Member {self.member!r} cannot write attribute {name!r} "
                                  f"({attribute.name}) of entry {key}: {error}.") from None

    # -- reading ----------------------------------------------------------

    def load(self, key: Any) -> dict[str, Any]:
        key = self._dn.coerce(key)
        found = self.load_many([key])
        if key not in found:
            raise KeyNotFound(self.member, self.kind, key)
        return found[key]

    def load_many(self, keys: list[Any]) -> dict[Any, dict[str, Any]]:
        """The entries named by ``keys``, by one search on ``entryDN``."""
        wanted: dict[tuple[Any, ...], list[DN]] = {}
        for key in map(self._dn.coerce, keys):
            wanted.setdefault(_loose(key), []).append(key)
        if not wanted:
            return {}
        condition = "".join(f"(entryDN={escape_filter_chars(str(key))})"
                            for same in wanted.values() for key in same)
        states: dict[Any, dict[str, Any]] = {}
        for dn, values in self._search(f"(|{condition})", self.entries.ldap_attributes,
                                       key=keys[0] if len(keys) == 1 else None):
            for key in wanted.get(_loose(dn), ()):  # the directory's spelling may differ
                states[key] = self._state(key, values)
                if values.get("entryuuid"):
                    self._remember(key, values["entryuuid"][0].decode("ascii"))
        return states

    def find(self, attribute: str, value: Any) -> list[Any]:
        """The DNs of the entries whose ``attribute`` has ``value`` (None: no value), sorted."""
        declared = self.entries.mapping.get(attribute)
        if declared is None:
            raise FederationError(f"Member {self.member!r} maps no LDAP attribute to attribute "
                                  f"{attribute!r}, so it cannot search by it.")
        condition = f"(!({declared.name}=*))"
        if value is not None:
            try:
                data = CONVERTERS[declared.type][1](str(value) if isinstance(value, Ref) else value)
            except (TypeError, ValueError) as error:
                raise FederationError(f"Member {self.member!r} cannot search attribute "
                                      f"{attribute!r} for {value!r}: {error}.") from None
            escaped = escape_bytes(data) if isinstance(data, bytes) else escape_filter_chars(data)
            condition = f"({declared.name}={escaped})"
        return sorted(dn for dn, _ in self._search(condition, ["entryUUID"], paged=True))

    def references(self) -> Iterator[tuple[Any, str]]:
        """See ``federation.interfaces.ReferenceHolder``: one paged search of the base."""
        declared = {name: self.entries.mapping[name] for name in sorted(self.ref_attributes)}
        if not declared:
            return
        condition = "(|" + "".join(f"({a.name}=*)" for a in declared.values()) + ")"
        wanted = [a.name for a in declared.values()]
        for dn, values in self._search(condition, wanted, paged=True):
            for attribute in declared.values():
                text = attribute.load(values.get(attribute.name.lower(), []))
                if text:
                    yield dn, str(text)

    def new_key(self, state: dict[str, Any]) -> Any:
        """``rdn=value,base``, the value that of the attribute mapped to ``rdn`` or on_create's."""
        entries = self.entries
        value = state.get(entries.rdn_attribute) if entries.rdn_attribute else None
        if value is None:
            given = {n.lower(): v for n, v in entries.on_create.items()}.get(entries.rdn.lower())
            value = given(state) if callable(given) else given
        try:
            if value is None or value == "":
                raise ValueError("there is no value")
            return self._dn.issue(entries.base, [(entries.rdn, texts(value)[0])])
        except (InvalidKey, TypeError, ValueError) as error:
            raise FederationError(f"Member {self.member!r} cannot name a new entry under "
                                  f"{entries.base} by {entries.rdn} {value!r}: {error}") from None

    def stable_id(self, key: Any) -> str | None:
        """The entryUUID of the entry ``key`` as this session last saw it, or None."""
        return self._stable_ids.get(self._dn.coerce(key))

    def follow(self, stable_ids: list[str]) -> dict[str, tuple[DN, dict[str, Any]]]:
        """The current key and state of the entries with these entryUUIDs, by one search."""
        valid = {}
        for stable_id in stable_ids:
            with contextlib.suppress(ValueError, TypeError, AttributeError):
                valid[str(_uuid.UUID(stable_id))] = stable_id  # others name no entry
        if not valid:
            return {}
        condition = "".join(f"(entryUUID={escape_filter_chars(text)})" for text in valid)
        followed = {}
        for dn, values in self._search(f"(|{condition})", self.entries.ldap_attributes):
            text = values["entryuuid"][0].decode("ascii").lower()
            followed[valid.get(text, text)] = (dn, self._state(dn, values))
        return followed

    def resolve(self, kind: str, value: Any) -> DN:
        """The DN of the one entry a ``uid`` key names (``KeyNotFound`` if none)."""
        if kind not in self.lookup_kinds:
            raise InvalidKey(kind, value, f"member {self.member!r} resolves only "
                             f"{', '.join(sorted(self.lookup_kinds))} keys to DNs")
        text = resolvers.get(kind).format(value)
        found = sorted(dn for dn, _ in self._search(f"(uid={escape_filter_chars(text)})",
                                                    ["entryUUID"]))
        if len(found) > 1:
            raise FederationError(f"Member {self.member!r} has {len(found)} entries with uid "
                                  f"{text!r}: {'; '.join(map(str, found))}.")
        if not found:
            raise KeyNotFound(self.member, kind, text)
        return found[0]

    # -- writing: buffered, sent in commit() ------------------------------

    def begin(self, xid: str) -> None:
        self._writes = []

    def create(self, key: Any, state: dict[str, Any]) -> None:
        key = self._dn.coerce(key)
        values: dict[str, list[Any]] = {"objectClass": list(self.entries.object_classes)}
        for name, given in self.entries.on_create.items():
            if name.lower() == self.entries.rdn.lower():
                continue  # the key holds the value naming the entry
            try:
                values[name] = texts(given(state) if callable(given) else given)
            except TypeError as error:
                raise FederationError(f"Member {self.member!r} cannot create entry {key}: "
                                      f"the on_create value of {name}: {error}.") from None
        for name, value in state.items():
            if not getattr(self.entries.mapping.get(name), "read_only", False):
                ldap_name, data = self._values(key, name, value)
                values[ldap_name] = data
        for ldap_name, value in key.rdn or ():  # an entry holds the values naming it
            present = {name.lower(): name for name in values}.get(ldap_name, ldap_name)
            values[present] = values.get(present) or [value]
        self._writes.append(("add", key, {name: data for name, data in values.items() if data}))

    def store(self, key: Any, state: dict[str, Any]) -> None:
        key = self._dn.coerce(key)
        changes = dict(self._values(key, name, value) for name, value in state.items())
        self._writes.append(("modify", key, changes))

    def delete(self, key: Any) -> None:
        self._writes.append(("delete", self._dn.coerce(key), None))

    def prepare(self) -> None:
        raise FederationError(f"Member {self.member!r} (LDAP) has no two-phase commit; it takes "
                              "part in a transaction as its last resource.")

    def commit(self) -> None:
        """Send the buffered writes in order; if one fails, undo those sent before it."""
        writes, self._writes = self._writes, []
        undo: list[Write | None] = []
        for write in writes:
            try:
                undo.append(self._send(*write))
            except FederationError as error:
                if not undo:
                    raise  # nothing was written
                raise FederationError(f"{error} {self._undo(undo)}") from error

    def _send(self, op: str, key: DN, data: Any, *, undoing: bool = False) -> Write | None:
        """Send one write; return the write that undoes it (None if unknown)."""
        read = None if undoing else [(post_read_control if op == "add" else pre_read_control)(
            ["entryUUID"] if op == "add" else list(data) if op == "modify" else ["*"])]
        options = {"add": {"attributes": data}, "modify": {"changes": {
            name: [(ldap3.MODIFY_REPLACE, values)] for name, values in (data or {}).items()}}}
        if not self._call(op, str(key), controls=read, key=key, **options.get(op, {})):
            raise self._rejected({"add": "creation", "modify": "change"}.get(op, "deletion"), key)
        controls = (self.connection.result or {}).get("controls") or {}
        before = controls.get(_POST_READ if op == "add" else _PRE_READ, {}).get("value", {})
        before = before.get("result")
        if op == "add":
            if before and before.get("entryUUID"):
                self._remember(key, str(before["entryUUID"][0]))
            return ("delete", key, None)
        if before is None:
            return None  # the server sent no pre-read values: this write cannot be undone
        old = {name.lower(): list(values) for name, values in before.items()}
        if op == "modify":
            return ("modify", key, {name: old.get(name.lower(), []) for name in data})
        return ("add", key, {name: list(values) for name, values in before.items()})

    def _undo(self, undo: list[Write | None]) -> str:
        """Undo sent writes, newest first; say what could not be undone."""
        left = []
        for write in reversed(undo):
            if write is None:
                left.append("an entry whose values the server did not send")
                continue
            try:
                self._send(*write, undoing=True)
            except FederationError:
                left.append(str(write[1]))
        if not left:
            return f"The {len(undo)} change(s) sent before it were undone."
        return f"LDAP has no transactions; these entries could not be restored: {'; '.join(left)}."

    def abort(self) -> None:
        self._writes = []

    def release(self) -> None:
        self._writes = []

    def recover(self, older_than: float = 0.0) -> list[str]:
        return []  # nothing is ever prepared

    def finish_prepared(self, xid: str, commit: bool) -> None:
        raise FederationError(f"Member {self.member!r} (LDAP) prepares no transactions; "
                              f"there is no {xid!r} to finish.")

    def close(self) -> None:
        _unbind(self.connection)


# -- members described by a configuration file (see federation.interfaces.AdapterFactory) --

#: The ``type`` of an attribute table in a configuration, by name.
ATTRIBUTE_TYPES = {kind.__name__: kind for kind in CONVERTERS}


def directory_from_options(member: str, options: dict[str, Any]) -> Directory:
    """An LDAP member from configuration options.

    The server: ``uri``, ``bind_dn``, ``password_env`` (the environment
    variable holding the bind password), ``start_tls``, ``ca_file``
    (relative to the configuration file), ``batch_size``, ``timeout``.  The
    entries (:class:`Entries`): ``class`` (a dotted name), ``base``,
    ``object_classes``, ``rdn``, ``attributes`` (Python attribute = LDAP
    attribute name, or a table with ``name``, ``type`` (``str``, ``bytes``,
    ``int``, ``bool``, ``datetime``), ``multi``, ``read_only``), ``refs``,
    ``on_create`` (constant text or lists of text).
    """
    settings = Options(member, options)
    server = {"uri": settings.text("uri"), "bind_dn": settings.text("bind_dn", None),
              "password": settings.password(), "start_tls": settings.flag("start_tls", False),
              "ca_file": settings.path("ca_file", None),
              "batch_size": settings.number("batch_size", int, 100, 1),
              "timeout": settings.number("timeout", float, 10.0, 0)}
    klass = settings.klass("class")
    attributes = {name: _attribute_of(member, name, value)
                  for name, value in settings.table("attributes").items()}
    entries = {"base": settings.text("base"), "object_classes": settings.texts("object_classes"),
               "rdn": settings.text("rdn"), "refs": settings.text_table("refs"),
               "on_create": settings.table("on_create", {})}
    settings.done()
    try:
        return Directory(member, entries=Entries(klass, attributes=attributes, **entries),
                         **server)
    except ConfigurationError as error:
        if str(error).startswith("Member "):
            raise
        raise ConfigurationError(f"Member {member!r}: {error}") from error


directory_from_options.path_options = ("ca_file",)  # type: ignore[attr-defined]


def _attribute_of(member: str, name: str, value: Any) -> str | Attribute:
    """An ``attributes`` entry: an LDAP attribute name, or a table declaring an Attribute."""
    if isinstance(value, str):
        return value
    if not isinstance(value, dict):
        raise ConfigurationError(
            f"Member {member!r}: the option 'attributes' maps {name!r} to {value!r}, not to "
            "an LDAP attribute name or a table with name, type, multi and read_only."
        )
    declared = Options(member, {f"attributes.{name}.{key}": item for key, item in value.items()})
    prefix = f"attributes.{name}."
    kind = declared.text(prefix + "type", "str")
    if kind not in ATTRIBUTE_TYPES:
        raise ConfigurationError(
            f"Member {member!r}: the option {prefix + 'type'!r} is {kind!r}, not one of "
            f"{', '.join(ATTRIBUTE_TYPES)}."
        )
    attribute = Attribute(declared.text(prefix + "name"), type=ATTRIBUTE_TYPES[kind],
                          multi=declared.flag(prefix + "multi", False),
                          read_only=declared.flag(prefix + "read_only", False))
    declared.done()
    return attribute
