"""``zfed shell``: an interactive Python session on a federation.

The session's namespace binds ``fed`` (the :class:`~federation.Federation`),
``conn`` (a :class:`~federation.Manager` on the thread's transaction
manager), ``roots`` (member name to root mapping), and the modules
``transaction`` and ``federation``.  Changes are saved by
``transaction.commit()``; what the session has not committed when it ends
is aborted.

As in ``python``, modules of the current directory can be imported (the
application's persistent classes, say).

On a served federation (``zeo://`` members) the ZEO clients are made to
sync with their servers (``server_sync``): after another process commits,
``conn.sync()`` or the next transaction sees its changes.
"""

from __future__ import annotations

import code
import importlib.util
import sys
import traceback
from typing import Any

import transaction

import federation
from federation.federation import Federation
from federation.manager import Manager

#: The names a session starts with, and what they are (the banner lists them).
NAMES = {
    "fed": "the federation",
    "conn": "a manager: conn.root(member), conn.get(ref), conn.sync()",
    "roots": "each ZODB member's root mapping, by member name",
    "transaction": "transaction.commit() saves, transaction.abort() drops changes",
    "federation": "the federation package",
}


def sync_with_servers(fed: Federation) -> None:
    """Make each ZEO member's ``sync()`` a round trip, so it sees other clients' commits."""
    for member in fed.members.values():
        storage = getattr(getattr(member, "db", None), "storage", None)
        if not hasattr(storage, "server_sync"):
            continue
        # What ClientStorage(server_sync=True) does when it connects, done on the
        # connected storage; the flag makes it so again after a reconnection.
        storage.server_sync = True
        ping = getattr(storage, "ping", None)
        if ping is not None:
            storage.sync = ping


def namespace(fed: Federation, conn: Manager) -> dict[str, Any]:
    """The names a session starts with (see :data:`NAMES`)."""
    roots = {name: conn.root(name) for name in sorted(fed.members)
             if fed.members[name].db is not None}  # available ZODB members: foreign have no root
    return {"fed": fed, "conn": conn, "roots": roots, "transaction": transaction,
            "federation": federation, "__name__": "__zfed_shell__"}


def banner(fed: Federation, where: str) -> str:
    """What an interactive session prints first."""
    members = ", ".join(
        name if member.available else f"{name} (unavailable)"
        for name, member in sorted(fed.members.items())
    )
    lines = [f"zfed shell on {where}: members {members}."]
    lines += [f"  {name:<12} {what}" for name, what in NAMES.items()]
    return "\n".join(lines)


def run(fed: Federation, source: str | None = None, *, where: str = "the federation") -> int:
    """Run ``source`` (or an interactive session when None) on ``fed``; return the exit status.

    Source that raises prints the traceback to stderr and gives status 1;
    ``SystemExit`` gives its own status.  Whatever the session left
    uncommitted is aborted.
    """
    sync_with_servers(fed)
    if "" not in sys.path:
        sys.path.insert(0, "")  # the current directory, as ``python`` has it
    conn = fed.open()
    try:
        names = namespace(fed, conn)
        if source is None:
            interact(names, banner(fed, where))
            return 0
        return run_source(source, names)
    finally:
        transaction.abort()
        conn.close()


def run_source(source: str, names: dict[str, Any]) -> int:
    """Execute ``source`` in ``names``; the exit status it asks for (0, or 1 on an error)."""
    try:
        exec(compile(source, "<zfed shell -c>", "exec"), names)
    except SystemExit as stop:
        if stop.code is None or isinstance(stop.code, int):
            return stop.code or 0
        print(stop.code, file=sys.stderr)
        return 1
    except Exception as error:
        # The traceback starts in the user's code, not in this function.
        traceback.print_exception(type(error), error, error.__traceback__.tb_next)
        return 1
    return 0


def ipython_available() -> bool:
    """Whether IPython is installed (the session then uses it)."""
    return importlib.util.find_spec("IPython") is not None


def interact(names: dict[str, Any], greeting: str) -> None:
    """An interactive console on ``names``: IPython if installed, else Python's own."""
    if ipython_available():
        from IPython import start_ipython

        print(greeting)
        start_ipython(argv=[], user_ns=names, display_banner=False)
        return
    try:
        import readline
        import rlcompleter

        readline.set_completer(rlcompleter.Completer(names).complete)
        readline.parse_and_bind("tab: complete")
    except ImportError:  # pragma: no cover - Python built without readline
        pass
    code.interact(banner=greeting, local=names, exitmsg="")
