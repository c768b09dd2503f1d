"""``zfed serve``: a federation's file members served over ZEO to several processes.

One ZEO server (``ZEO.StorageServer``) listens on one address and serves
one storage per file member (``path =``, ``file://``, or a ZConfig
``<filestorage>`` section), named after the
member.  :meth:`FederationServer.client_config` is the configuration its
clients use: the same members, each with a ``zeo://host:port?storage=NAME``
URI, its key kind and read-only flag, and the same placement.  Members that
are not files (a ``zeo://`` member already served elsewhere, RelStorage, a
foreign member such as a SQLite table) are not served: they are copied as
they are, their paths absolute, and each client opens them itself.

A member that is read-only in the configuration is served read-only.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import threading
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import ZODB.config
import zodburi
from ZEO.asyncio.server import Acceptor
from ZEO.StorageServer import StorageServer

from federation import zconfig
from federation.config import read_config
from federation.errors import ConfigurationError, FederationError
from federation.federation import Federation, literal_file_uri
from federation.redact import MASK, has_secret, redact

#: Hosts that mean "every interface": clients are told the machine's name instead.
WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::"})

#: Member settings a client configuration keeps, in the order it writes them.
CLIENT_SETTINGS = ("uri", "key", "read_only")


class FederationServer:
    """The file members of the federation ``config`` names, served over ZEO.

    Nothing runs until :meth:`start`; :meth:`close` stops the server and
    closes the storages.
    """

    def __init__(self, config: str | Path, host: str = "127.0.0.1", port: int = 0) -> None:
        self.config = Path(config)
        self.host = host
        self.port = port
        self.members, self.placement = read_config(self.config)
        self.served = sorted(name for name, table in self.members.items() if _is_file(table))
        if not self.served:
            raise ConfigurationError(
                f"{str(self.config)!r} has no file members (path =, file:// or a ZConfig "
                "<filestorage>) to serve."
            )
        self.address: tuple[str, int] | None = None
        self._server: StorageServer | None = None

    def start(self) -> tuple[str, int]:
        """Check the members, open their storages and listen; return the address served."""
        # Opening the members once checks them as every command does (a missing
        # file, a bad key kind) and writes the catalog of a new member.
        Federation({name: self.members[name] for name in self.served}).close()
        storages: dict[str, Any] = {}
        try:
            for name in self.served:
                storages[name] = _open_storage(name, self.members[name])
            try:
                self._server = StorageServer((self.host, self.port), storages,
                                             Acceptor=_Acceptor)
            except OSError as error:
                raise FederationError(
                    f"Cannot serve on {self.host}:{self.port}: {error.strerror or error}."
                ) from error
        except BaseException:
            for storage in storages.values():
                storage.close()
            raise
        host, port = self._server.acceptor.addr[:2]
        self.address = (socket.getfqdn() if self.host in WILDCARD_HOSTS else host, port)
        self._server.start_thread()
        return self.address

    def client_config(self, *, hide_secrets: bool = True) -> str:
        """The TOML configuration of the served federation (see the module docstring).

        With ``hide_secrets``, passwords in the URIs of members copied as
        they are become ``***`` (for printing); without, they are kept (for
        a file only its owner reads).
        """
        if self.address is None:
            raise FederationError("The federation is not served yet; call start() first.")
        host, port = self.address
        lines = [
            f"# Client configuration of {self.config.name}, written by zfed serve.",
            f"# Served at {host}:{port}: one ZEO server, one storage per file member.",
        ]
        for name in sorted(self.members):
            table = dict(self.members[name])
            if not table.get("create") or name in self.served:
                table.pop("create", None)  # served members exist; False is the default
            if "adapter" not in table:
                table.setdefault("key", "integer")
            lines.append("")
            if name in self.served:
                table["uri"] = f"zeo://{_host_text(host)}:{port}?storage={name}"
            else:
                lines.append(f"# Not served by zfed serve: copied from {self.config.name}.")
                if hide_secrets and _carries_secret(table):
                    lines.append(f"# The password is shown as {MASK}: write this "
                                 "configuration with --client-config FILE to keep it.")
            lines.append(f"[members.{_toml_key(name)}]")
            for setting in (*CLIENT_SETTINGS, *sorted(set(table) - set(CLIENT_SETTINGS))):
                if setting in table:
                    line = f"{_toml_key(setting)} = {_toml_value(table[setting])}"
                    lines.append(redact(line) if hide_secrets and name not in self.served
                                 else line)
        if self.placement:
            lines.extend(["", "[placement]"])
            for cls, member in sorted(self.placement.items()):
                lines.append(f"{_toml_key(cls)} = {_toml_value(member)}")
        return "\n".join(lines) + "\n"

    def write_client_config(self, path: str | Path) -> None:
        """Write :meth:`client_config`, secrets kept, to ``path`` whole (never half a file).

        A configuration that carries a password is readable by its owner only.
        """
        path = Path(path)
        partial = path.with_name(f".{path.name}.partial")
        mode = 0o600 if self.has_secrets() else 0o644
        try:
            partial.unlink(missing_ok=True)  # a leftover would keep its own mode
            with os.fdopen(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode),
                           "w") as stream:
                stream.write(self.client_config(hide_secrets=False))
            os.replace(partial, path)
        except OSError as error:
            raise FederationError(
                f"Cannot write the client configuration to {str(path)!r}: "
                f"{error.strerror or error}."
            ) from error

    def has_secrets(self) -> bool:
        """Whether the client configuration carries a password (of a copied member)."""
        return any(_carries_secret(table)
                   for name, table in self.members.items() if name not in self.served)

    def close(self) -> None:
        """Stop listening, disconnect the clients and close the storages."""
        server, self._server = self._server, None
        if server is not None:
            server.close()


class StopSignals:
    """SIGINT (Ctrl-C) and SIGTERM, caught while the ``with`` block runs.

    Enter it before announcing that the server is ready, so that a signal
    sent as soon as the announcement is read stops the server cleanly.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self._stopped = threading.Event()
        self._received: list[str] = []
        self._previous: dict[int, Any] = {}

    def _handler(self, signum: int, _frame: FrameType | None) -> None:
        self._received.append(signal.Signals(signum).name)
        self._stopped.set()

    def __enter__(self) -> StopSignals:
        self._previous = {sig: signal.signal(sig, self._handler) for sig in self.SIGNALS}
        return self

    def wait(self) -> str:
        """Block until one of the signals arrives; return its name (``SIGTERM``)."""
        while not self._stopped.wait(timeout=1.0):
            pass
        return self._received[0]

    def __exit__(self, *exc: object) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)


class _Acceptor(Acceptor):
    """ZEO's acceptor, closing its event loop when it cannot listen (the port is taken)."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        try:
            super().__init__(*args, **kw)
        except BaseException:
            loop = getattr(self, "event_loop", None)
            if loop is not None:
                loop.close()
            raise


def _carries_secret(table: dict[str, Any]) -> bool:
    """Whether a member's settings hold a password (in its URI or adapter options)."""
    return any(has_secret(_toml_value(table[setting]))
               for setting in ("uri", "options") if setting in table)


def _is_file(table: dict[str, Any]) -> bool:
    """Whether a member is a FileStorage: a ``file://`` URI, or a ZConfig ``<filestorage>``."""
    uri = table.get("uri", table.get("source"))
    if not isinstance(uri, str):
        return False
    if urlsplit(uri).scheme == zconfig.SCHEME:
        return isinstance(zconfig.storage_section(uri), ZODB.config.FileStorage)
    return urlsplit(uri).scheme == "file"


def _open_storage(name: str, table: dict[str, Any]) -> Any:
    """The storage of a file member, read-only if the member is."""
    uri = literal_file_uri(name, table.get("uri", table.get("source")))
    parts = urlsplit(uri)
    query = dict(parse_qsl(parts.query))
    if parts.scheme == zconfig.SCHEME:
        blobs = getattr(zconfig.storage_section(uri).config, "blob_dir", None)
    else:
        blobs = query.get("blobstorage_dir")
    if blobs:
        raise ConfigurationError(
            f"Member {name!r} keeps blobs, which zfed serve does not serve; serve it with "
            "runzeo and give the federation its zeo:// URI."
        )
    if table.get("read_only"):
        query["read_only"] = "1"
    factory, _dbkw = zodburi.resolve_uri(urlunsplit(parts._replace(query=urlencode(query))))
    return factory()


def _host_text(host: str) -> str:
    return f"[{host}]" if ":" in host else host


BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _toml_key(key: str) -> str:
    return key if BARE_KEY.fullmatch(key) else json.dumps(key)


def _toml_value(value: Any) -> str:
    """A TOML value: JSON's string, number and boolean syntax are TOML's too.

    Lists and tables (a foreign member's options) are written inline.
    """
    if isinstance(value, (bool, int, float, str)):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_toml_key(str(key))} = {_toml_value(item)}"
                               for key, item in value.items()) + "}"
    raise ConfigurationError(f"Cannot write the setting value {value!r} to a configuration.")
