"""Errors raised by zodb-federation.

Every error derives from :class:`FederationError`.  Like ZODB's
``POSException`` module, subclasses also inherit the built-in behaviour
callers already rely on: :class:`InvalidKey` is a ``ValueError``,
:class:`UnknownMember` and :class:`KeyNotFound` are ``KeyError``s, and
:class:`MemberUnavailable` is a ``transaction`` ``TransientError`` so that
``transaction.attempts()`` retries it.

Each message is a full sentence that names the member, the key or the
offending input; inputs are quoted by :func:`shorten`, so that a message
about a megabyte of bad input stays one readable line.  Messages never
contain a password: :func:`federation.redact.redact` removes them.
"""

from __future__ import annotations

from typing import Any

from transaction.interfaces import TransientError

from federation.redact import redact

#: How many characters of an input a message quotes at most.
QUOTE_LIMIT = 100


def shorten(value: Any, limit: int = QUOTE_LIMIT) -> str:
    """``repr(value)``, cut to about ``limit`` characters (saying how long it was)."""
    try:
        text = repr(value)
    except Exception:  # a broken __repr__ must not hide the error being reported
        text = f"<{type(value).__qualname__} object>"
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


class FederationError(Exception):
    """Root of every error raised by zodb-federation."""

    def __str__(self) -> str:
        # KeyError.__str__ would repr() the message; keep sentences readable.
        return str(self.args[0]) if self.args else self.__class__.__name__


class ConfigurationError(FederationError, ValueError):
    """A federation or member configuration is invalid."""


class InvalidKey(FederationError, ValueError):
    """Text or a value is not a valid key of a key kind."""

    def __init__(self, kind: str, value: Any, reason: str) -> None:
        self.kind = kind
        self.value = value
        self.reason = reason
        if len(reason) > 2 * QUOTE_LIMIT:
            reason = f"{reason[:2 * QUOTE_LIMIT]}..."
        super().__init__(f"{shorten(value)} is not a valid {kind} key: {reason}.")


class UnknownKind(FederationError, LookupError):
    """No key kind is registered under a name."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        super().__init__(f"No key kind named {shorten(kind)} is registered.")


class UnknownMember(FederationError, KeyError):
    """A member name is not part of the federation."""

    def __init__(self, member: str, known: list[str] | None = None) -> None:
        self.member = member
        hint = f" Known members: {', '.join(sorted(known))}." if known else ""
        super().__init__(f"The federation has no member named {shorten(member)}.{hint}")


class NoZodbDatabase(FederationError, KeyError):
    """A foreign member was asked for its ZODB database or connection, which it has not."""

    def __init__(self, member: str) -> None:
        self.member = member
        super().__init__(
            f"Member {shorten(member)} is a foreign member and has no ZODB database or "
            "connection; reach its objects through references or the manager's get()."
        )


class KeyNotFound(FederationError, KeyError):
    """A key names no object in a member."""

    def __init__(self, member: str | None, kind: str, key: Any) -> None:
        self.member = member
        self.kind = kind
        self.key = key
        where = f"member {member!r}" if member else "any member"
        super().__init__(f"No object with {kind} key {key!s} exists in {where}.")


class AmbiguousPlacement(FederationError):
    """A new object has no single member it clearly belongs to."""


class MemberUnavailable(FederationError, TransientError):
    """A member's database cannot be reached right now."""

    def __init__(self, member: str, key: Any = None, cause: BaseException | None = None) -> None:
        self.member = member
        self.key = key
        what = f" to load key {key!s}" if key is not None else ""
        why = f": {describe(cause)}" if cause is not None else ""
        super().__init__(f"Member {member!r} cannot be reached{what}{why}.")


class MemberBusy(FederationError, TransientError):
    """A member's database refused a change for now (locked, serialization
    failure, deadlock, lock timeout): ``transaction.attempts()`` retries it."""

    def __init__(self, member: str, cause: BaseException | None = None) -> None:
        self.member = member
        why = f": {describe(cause)}" if cause is not None else ""
        super().__init__(f"Member {member!r} is busy; try the transaction again{why}.")


class CorruptRecord(FederationError):
    """A record zodb-federation keeps in a member (its catalog, a stub, an index
    entry) is not what it wrote: changed by other software, or damaged.

    ``member`` and ``record`` (an oid) name it when known.
    """

    def __init__(self, message: str, member: str | None = None,
                 record: bytes | None = None) -> None:
        self.member = member
        self.record = record
        super().__init__(message)


class MemberOpenError(FederationError):
    """A member cannot be opened: its storage is locked by another process, is
    not a database of its kind or cannot be read, or its adapter failed."""


class DanglingStub(FederationError, KeyError):
    """A stub record is missing or names an object that no longer exists."""


class ReadOnlyMember(FederationError):
    """A change was made to an object of a member opened read-only."""


class MigrationError(FederationError):
    """``zfed migrate`` cannot rewrite a member's records (a bad batch size, a
    read-only member, a record whose pickle cannot be rebuilt)."""


class CommitFenced(FederationError, TransientError):
    """Recovery in another process settled a transaction before this one could commit it."""


class InDoubtTransactions(FederationError):
    """Recovery found transactions it cannot settle without an operator's decision."""

    def __init__(self, in_doubt: list[Any]) -> None:
        self.in_doubt = in_doubt
        listed = "; ".join(str(item) for item in in_doubt[:5])
        more = f" (and {len(in_doubt) - 5} more)" if len(in_doubt) > 5 else ""
        super().__init__(
            f"{len(in_doubt)} transaction(s) over several members are in doubt: {listed}{more}. "
            "Run 'zfed recover CONFIG' to see them and settle each with --commit or --abort."
        )

class CollectionRefused(FederationError):
    """Garbage collection cannot see a member that may hold references; nothing was collected."""


def describe(error: BaseException) -> str:
    """The text of ``error`` for a message: its first line, shortened, no passwords."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    text = redact(text)
    if len(text) > 2 * QUOTE_LIMIT:
        text = f"{text[:2 * QUOTE_LIMIT]}..."
    return text.rstrip(".")
