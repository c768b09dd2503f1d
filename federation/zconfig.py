"""ZODB's configuration format (ZConfig) as a federation configuration.

A file that ``ZODB.config.databaseFromFile`` reads, with several ``<zodb
NAME>`` sections (as Zope and zodbshootout write them), opens unchanged:
each section is a member, named by its ``database-name``, else its section
name (an unnamed one is ``main``).  Storages are ZODB's (``filestorage``,
``zeoclient``, ``mappingstorage``, ``demostorage``, ``blobstorage``) and
any a ``%import`` adds (``%import relstorage`` for ``<relstorage>``, when
RelStorage is installed).  Relative paths (``path``, ``blob-dir``) resolve
against the file's directory (``path``, ``blob-dir``, a ZEO client's
``var``).

Federation settings go in one ``<federation>`` section, defined by the
component ``federation/component.xml`` (``%import federation``)::

    %import federation

    <zodb main>
      <filestorage>
        path main.fs
      </filestorage>
    </zodb>

    <federation>
      # key: integer (the default) or uuid; create: the file may be created
      <member main>
        key uuid
        read-only off
        create on
      </member>
      placement myapp.Note main
      # adapter: an installed adapter, or package.module:callable
      <foreign readers>
        adapter sqlite
        read-only off
        path readers.sqlite
        table reader
        class myapp.Reader
        <mapping columns>
          name name
        </mapping>
      </foreign>
    </federation>

The federation section implements ``ZODB.database`` and opens to nothing,
so ZODB's own tools still read the file (they ignore the federation and
its foreign members).  A ZConfig member is opened through the zodburi
scheme ``zfedconfig://FILE#MEMBER`` (:func:`resolve_uri`), which reads
the file the same way.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

import ZConfig
import ZConfig.datatypes
import ZConfig.loader
from ZODB.config import FileStorage, ZODBDatabase

from federation import plugins
from federation.errors import ConfigurationError, describe, shorten

#: The zodburi scheme of members read from a ZConfig file.
SCHEME = "zfedconfig"
#: The name of a ``<zodb>`` section without a name.
UNNAMED = "main"
#: ZConfig's datatypes that are paths, resolved against the configuration file.
PATH_TYPES = ("existing-dirpath", "existing-directory", "existing-path", "existing-file")
SCHEMA = Path(__file__).with_name("schema.xml")


class FederationSection:
    """The ``<federation>`` section: settings the federation reads; ZODB opens nothing."""

    def __init__(self, config: Any) -> None:
        self.config = config
        self.name = config.getSectionName()

    def open(self, databases: Any = None) -> None:
        """What ``ZODB.config.databaseFromConfig`` calls: there is no database to open."""
        return None


def is_zconfig(data: bytes) -> bool:
    """Whether a configuration file's content is ZConfig (its first line is a section or
    a directive), not TOML."""
    for line in data.splitlines():
        line = line.strip()
        if line and not line.startswith(b"#"):
            return line.startswith((b"<", b"%"))
    return False


def read_zconfig(path: Path) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """The member specifications and placement of the ZConfig file ``path``."""
    where = shorten(str(path))
    config = _load(path)
    databases = [db for db in config.databases if isinstance(db, ZODBDatabase)]
    sections = [db for db in config.databases if isinstance(db, FederationSection)]
    if not databases:
        raise ConfigurationError(f"{where} has no <zodb NAME> sections.")
    if len(sections) > 1:
        raise ConfigurationError(f"{where} has {len(sections)} <federation> sections; keep one.")
    settings = sections[0].config if sections else None
    specs: dict[str, dict[str, Any]] = {}
    for database in databases:
        name = member_name(database)
        if name in specs:
            raise ConfigurationError(f"{where} has two <zodb> sections named {name!r}.")
        specs[name] = {}
    for member in settings.members if settings else []:
        _member_settings(where, specs, member, databases)
    for name, spec in specs.items():
        spec.setdefault("key", "integer")
        spec.setdefault("read_only", False)
        spec.setdefault("create", False)
        _require_files(name, spec, _database(databases, name))
        spec["uri"] = zodb_uri(path, name, read_only=spec["read_only"])
    for foreign in settings.foreign if settings else []:
        name = foreign.getSectionName()
        if name in specs:
            raise ConfigurationError(f"{where}: the member {name!r} is defined twice.")
        specs[name] = _foreign_spec(name, foreign, path.parent)
    return specs, _placement(where, settings.placement if settings else [])


def member_name(database: ZODBDatabase) -> str:
    """A ``<zodb>`` section's member name: its database-name, section name, or ``main``."""
    return database.config.database_name or database.name or UNNAMED


def _database(databases: list[ZODBDatabase], name: str) -> ZODBDatabase:
    return next(database for database in databases if member_name(database) == name)


def _load(path: Path) -> Any:
    """The parsed file, relative paths resolved against its directory."""
    try:
        config, _handler = ZConfig.loadConfig(_schema(str(path.resolve().parent)), str(path))
    except Exception as error:  # ZConfig's errors, and a %import or datatype's own
        line = getattr(error, "lineno", None)
        where = f" (line {line})" if isinstance(line, int) and f"line {line}" not in str(
            error) else ""
        raise ConfigurationError(
            f"Cannot read federation configuration {shorten(str(path))}: "
            f"{type(error).__name__}: {describe(error)}{where}."
        ) from error
    for database in config.databases:
        if isinstance(database, ZODBDatabase):
            if database.config.storage is None:
                raise ConfigurationError(
                    f"Member {member_name(database)!r}: its <zodb> section in "
                    f"{shorten(str(path))} has no storage section (<filestorage>...)."
                )
            for storage in _storages(database.config.storage):
                _resolve_paths(storage.config, path.resolve().parent)
    return config


#: Storage settings that are paths but plain text to ZConfig (a blobstorage's or a ZEO
#: client's blob-dir, a ZEO client's cache directory var).
TEXT_PATHS = ("blob_dir", "var")


def _resolve_paths(section: Any, base: Path) -> None:
    for setting in TEXT_PATHS:
        value = getattr(section, setting, None)
        if isinstance(value, str) and value and not os.path.isabs(os.path.expanduser(value)):
            setattr(section, setting, str(base / value))


@functools.lru_cache(maxsize=32)
def _schema(base: str) -> Any:
    """Our schema, with ZConfig's path datatypes resolving against ``base``."""
    stock = dict(ZConfig.datatypes.stock_datatypes)
    for name in PATH_TYPES:
        stock[name] = _relative_to(base, stock[name])
    loader = ZConfig.loader.SchemaLoader(ZConfig.datatypes.Registry(stock))
    return loader.loadURL(SCHEMA.as_uri())


def _relative_to(base: str, check: Callable[[str], Any]) -> Callable[[str], Any]:
    def convert(value: str) -> Any:
        return check(os.path.join(base, os.path.expanduser(value)))
    return convert


def _member_settings(where: str, specs: dict[str, dict[str, Any]], member: Any,
                     databases: list[ZODBDatabase]) -> None:
    name = member.getSectionName()
    if name not in specs:  # ZConfig folds section names to lower case, not database names
        folded = [each for each in specs if each.lower() == name]
        name = folded[0] if len(folded) == 1 else name
    if name not in specs:
        raise ConfigurationError(
            f"{where}: <member {name}> names no <zodb> section (members: "
            f"{', '.join(specs)})."
        )
    specs[name].update(key=member.key, read_only=member.read_only, create=member.create)
    if member.former_names:
        specs[name]["former_names"] = list(member.former_names)


def _require_files(name: str, spec: dict[str, Any], database: ZODBDatabase) -> None:
    """Refuse a FileStorage whose file does not exist, unless the member may create it."""
    storage = next((each for each in _storages(database.config.storage)
                    if isinstance(each, FileStorage)), None)
    if storage is None or (spec["create"] and not spec["read_only"]):
        return
    if storage.config.create or os.path.exists(storage.config.path):
        return
    remedy = ("a read-only member is never created" if spec["read_only"] else
              f"fix the path, or write <member {name}> create on </member> in the "
              "<federation> section to create it")
    raise ConfigurationError(
        f"Member {name!r}: the file {storage.config.path!r} does not exist; {remedy}."
    )


def _storages(storage: Any) -> list[Any]:
    """A storage section and the sections it wraps (a blobstorage's base, a demostorage's)."""
    found = [storage]
    base = getattr(storage.config, "base", None)
    if base is not None:
        found += _storages(base)
    for factory in getattr(storage.config, "factories", None) or ():
        found += _storages(factory)
    return found


def _foreign_spec(name: str, foreign: Any, base: Path) -> dict[str, Any]:
    """A ``<foreign>`` section as a member specification (see federation.plugins)."""
    options: dict[str, Any] = {key.replace("-", "_"): _value(values)
                               for key, values in foreign.options.items()}
    for table in foreign.tables:
        key = table.getSectionName().replace("-", "_")
        if key in options:
            raise ConfigurationError(f"Member {name!r}: the option {key!r} is given twice.")
        options[key] = {item: _value(values) for item, values in table.items.items()}
    factory = plugins.factory_named(name, foreign.adapter)
    spec = {"adapter": foreign.adapter, "read_only": foreign.read_only,
            "options": plugins.resolve_paths(name, factory, options, base)}
    if foreign.member_id is not None:
        spec["member_id"] = foreign.member_id
    if foreign.former_names:
        spec["former_names"] = list(foreign.former_names)
    return spec


def _value(values: list[str]) -> str | list[str]:
    """A key's text, or the list of texts of a key given several times."""
    return values[0] if len(values) == 1 else list(values)


def _placement(where: str, lines: list[str]) -> dict[str, str]:
    placement = {}
    for line in lines:
        words = line.split()
        if len(words) != 2:
            raise ConfigurationError(
                f"{where}: the placement {shorten(line)} is not a dotted class name and a "
                "member name."
            )
        placement[words[0]] = words[1]
    return placement


def resolve_uri(uri: str) -> tuple[Callable[[], Any], dict[str, Any]]:
    """zodburi's resolver of ``zfedconfig://FILE[?read_only=1]#MEMBER``: the storage of the
    ``<zodb>`` section that is the member ``MEMBER`` of the ZConfig file ``FILE``."""
    section = _section(uri)
    if dict(parse_qsl(urlsplit(uri).query)).get("read_only") == "1":
        for storage in _storages(section.storage):
            if hasattr(storage.config, "read_only"):
                storage.config.read_only = True
    dbkw = {f"connection_{setting}": getattr(section, setting)
            for setting in ("pool_size", "pool_timeout", "cache_size", "cache_size_bytes",
                            "historical_pool_size", "historical_cache_size",
                            "historical_cache_size_bytes", "historical_timeout",
                            "large_record_size")
            if getattr(section, setting, None) is not None}
    return section.storage.open, dbkw


def storage_section(uri: str) -> Any:
    """The storage section (a ``ZODB.config`` opener such as ``FileStorage``) of the
    member a ``zfedconfig://`` URI names; read afresh, nothing is opened."""
    return _section(uri).storage


def _section(uri: str) -> Any:
    """The ``<zodb>`` section of the member a ``zfedconfig://`` URI names."""
    parts = urlsplit(uri)
    path = Path(unquote(parts.path))
    name = unquote(parts.fragment)
    found = [db for db in _load(path).databases
             if isinstance(db, ZODBDatabase) and member_name(db) == name]
    if not found:
        raise ConfigurationError(f"{shorten(str(path))} has no <zodb> section named {name!r}.")
    return found[0].config


def zodb_uri(path: Path, member: str, *, read_only: bool = False) -> str:
    """The ``zfedconfig://`` URI of member ``member`` of the ZConfig file ``path``."""
    query = f"?{urlencode({'read_only': 1})}" if read_only else ""
    return f"{SCHEME}://{quote(str(path.resolve()))}{query}#{quote(member)}"
