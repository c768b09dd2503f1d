"""Configuration files: a federation described in TOML or in ZODB's ZConfig format.

:func:`read_config` turns a file into member specifications (what
:class:`federation.Federation` takes) and placement rules, opening
nothing; :func:`open_config` opens them.  The format is told by the
content: a file whose first line that is neither blank nor a ``#``
comment starts with ``<`` or ``%`` is ZConfig (:mod:`federation.zconfig`),
anything else TOML.  A TOML file::

    [members.main]
    path = "main.fs"                 # a FileStorage, relative to this file
    create = true                    # may be created (else a missing file is an error)

    [members.people]
    uri = "zeo://127.0.0.1:8100"     # any zodburi URI
    key = "uuid"
    read_only = true

    [members.readers]                # a foreign member
    adapter = "sqlite"               # an installed adapter, or "package.module:callable"
    [members.readers.options]        # the adapter's options (see federation.plugins)
    path = "readers.sqlite"
    table = "reader"
    class = "myapp.Reader"

    [placement]
    "myapp.notes.Note" = "main"

Relative paths resolve against the configuration file's directory, not
the current one: ``path``, ``file://`` and ``zconfig://`` URIs (with their
``blobstorage_dir``), and the options an adapter declares as paths.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

from federation import plugins, zconfig
from federation.errors import ConfigurationError, describe, shorten
from federation.federation import Federation

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

#: URI schemes whose path is a file, resolved against the configuration file.
FILE_SCHEMES = ("file://", "zconfig://")


def open_config(path: str | Path, *, recover: bool = True) -> Federation:
    """Open the federation a configuration file describes (see the module docstring).

    A ``path`` or ``file://`` member whose file does not exist is a
    :class:`~federation.ConfigurationError` (a typo must not create an
    empty member), unless its table says ``create = true``.  Unless
    ``recover`` is false, transactions a crash left half-done are settled
    first (see :func:`federation.open`).
    """
    members, placement = read_config(path)
    return Federation(members, placement=placement, recover=recover)


def read_config(path: str | Path) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """The member specifications and the placement of a configuration file.

    Each ``path`` is turned into an absolute ``file://`` ``uri``, relative
    URIs and adapter paths are made absolute, and ``create`` is made
    explicit; nothing is opened.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise ConfigurationError(f"{shorten(path)} is not the path of a configuration file.")
    path = Path(path)
    where = shorten(str(path))
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ConfigurationError(
            f"Cannot read federation configuration {where}: {describe(error)}."
        ) from error
    if zconfig.is_zconfig(data):
        return zconfig.read_zconfig(path)
    return _read_toml(path, data)


def _read_toml(path: Path, data: bytes) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    where = shorten(str(path))
    try:
        config = tomllib.loads(data.decode("utf-8"))
    except ValueError as error:  # TOMLDecodeError and UnicodeDecodeError included
        raise ConfigurationError(
            f"Cannot read federation configuration {where}: {describe(error)}."
        ) from error
    except RecursionError:  # tomllib recurses once per level of nested arrays and tables
        raise ConfigurationError(
            f"Cannot read federation configuration {where}: it nests arrays or tables too "
            "deeply."
        ) from None
    members = config.get("members")
    if not isinstance(members, dict) or not members:
        raise ConfigurationError(
            f"{where} has no [members.NAME] tables (nor <zodb NAME> sections, for a ZConfig "
            "file)."
        )
    placement = config.get("placement")
    if placement is not None and not isinstance(placement, dict):
        raise ConfigurationError(f"{where}: [placement] must be a table of class = member.")
    specs = {}
    for name, table in members.items():
        if not isinstance(table, dict):
            raise ConfigurationError(
                f"{where}: members.{shorten(name)} must be a table of settings, not "
                f"{shorten(table)}."
            )
        specs[name] = member_spec(name, table, path.parent)
    return specs, placement or {}


def member_spec(name: str, table: dict[str, Any], base: Path) -> dict[str, Any]:
    """A member's settings with its relative paths resolved against ``base``."""
    table = dict(table)
    misplaced = sorted({"path", "uri"} & table.keys()) if "adapter" in table else []
    if misplaced:
        raise ConfigurationError(
            f"Member {shorten(name)}: a foreign member's {misplaced[0]!r} goes in its "
            "adapter's options ([members.NAME.options])."
        )
    relative = table.pop("path", None)
    if relative is not None:
        table["uri"] = _path_uri(name, base, relative, "uri" in table)
    elif isinstance(table.get("uri"), str):
        table["uri"] = resolve_uri(name, table["uri"], base)
    if "adapter" not in table:
        table.setdefault("create", False)
        return table
    factory = plugins.factory_named(name, table["adapter"])
    if isinstance(table.get("options"), dict):
        table["options"] = plugins.resolve_paths(name, factory, table["options"], base)
    return table


def _path_uri(name: str, base: Path, relative: Any, has_uri: bool) -> str:
    """The ``file://`` URI of a member's ``path`` setting, relative to the configuration."""
    if has_uri:
        raise ConfigurationError(f"Member {shorten(name)} has both 'path' and 'uri'; keep one.")
    if not isinstance(relative, str) or not relative:
        raise ConfigurationError(
            f"Member {shorten(name)}: the setting 'path' must be a non-empty string, not "
            f"{shorten(relative)}."
        )
    return _absolute(name, "path", base, relative).as_uri()


def resolve_uri(name: str, uri: str, base: Path) -> str:
    """``uri`` with a relative ``file://`` or ``zconfig://`` path made absolute against ``base``.

    zodburi reads ``file://main.fs`` as the path ``main.fs``; in a
    configuration that path is the file beside the configuration.  So is a
    relative ``blobstorage_dir``.
    """
    scheme = next((scheme for scheme in FILE_SCHEMES if uri.startswith(scheme)), None)
    if scheme is None:
        return uri
    rest, question, query = uri[len(scheme):].partition("?")
    file_part, hash_mark, fragment = rest.partition("#")
    if file_part and not os.path.isabs(file_part):
        file_part = str(_absolute(name, "uri", base, file_part))
    if question and "blobstorage_dir" in query:
        settings = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(key, str(_absolute(name, "uri", base, value))
                            if key == "blobstorage_dir" and value else value)
                           for key, value in settings])
    return f"{scheme}{file_part}{hash_mark}{fragment}{question}{query}"


def _absolute(name: str, setting: str, base: Path, relative: str) -> Path:
    try:
        return (base / relative).resolve()
    except (OSError, ValueError) as error:
        raise ConfigurationError(
            f"Member {shorten(name)}: the {setting} {shorten(relative)} is not usable: "
            f"{describe(error)}."
        ) from error
