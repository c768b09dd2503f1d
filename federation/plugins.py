"""Adapters named in configurations: installed entry points and dotted paths.

A member table's ``adapter`` names an :class:`~federation.interfaces.AdapterFactory`:

1. a name registered in the entry point group :data:`ENTRY_POINTS`
   (``sqlite``, ``postgresql`` and ``ldap`` come with zodb-federation;
   another distribution adds its own in its ``pyproject.toml``);
2. else, when it has a ``:``, a dotted path ``package.module:callable``;
3. else it is a :class:`~federation.ConfigurationError` naming the member,
   the setting and the installed names.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from federation.errors import ConfigurationError, describe, shorten
from federation.interfaces import Adapter, AdapterFactory
from federation.options import import_object

#: The entry point group of adapter factories.
ENTRY_POINTS = "zodb_federation.adapters"


def installed() -> list[str]:
    """The names of the adapter factories installed as entry points."""
    return sorted({point.name for point in entry_points(group=ENTRY_POINTS)})


def factory_named(member: str, name: Any) -> AdapterFactory:
    """The adapter factory that ``name`` (a member's ``adapter`` setting) names."""
    if not isinstance(name, str) or not name:
        raise ConfigurationError(
            f"Member {shorten(member)}: the setting 'adapter' must name an adapter, not "
            f"{shorten(name)}."
        )
    points = [point for point in entry_points(group=ENTRY_POINTS) if point.name == name]
    if points:
        try:
            found = points[0].load()
        except Exception as error:  # the distribution that registered it is broken
            raise ConfigurationError(
                f"Member {shorten(member)}: the adapter {name!r} cannot be loaded: "
                f"{type(error).__name__}: {describe(error)}."
            ) from error
    elif ":" in name:
        try:
            found = import_object(name)
        except ConfigurationError as error:
            raise ConfigurationError(
                f"Member {shorten(member)}: the setting 'adapter' names {shorten(name)}, "
                f"which {error}."
            ) from error
    else:
        raise ConfigurationError(
            f"Member {shorten(member)}: the setting 'adapter' names {shorten(name)}, which is "
            f"neither an installed adapter ({', '.join(installed()) or 'none'}) nor a "
            "'package.module:callable' path."
        )
    if not callable(found):
        raise ConfigurationError(
            f"Member {shorten(member)}: the adapter {shorten(name)} is {shorten(found)}, not "
            "an adapter factory."
        )
    return found


def path_options(factory: AdapterFactory) -> tuple[str, ...]:
    """The options of ``factory`` that are file paths (its ``path_options``)."""
    names = getattr(factory, "path_options", ())
    return tuple(name for name in names if isinstance(name, str))


def resolve_paths(member: str, factory: AdapterFactory, options: Mapping[str, Any],
                  base: Path) -> dict[str, Any]:
    """``options`` with the relative paths among its path options made absolute against ``base``."""
    resolved = dict(options)
    for name in path_options(factory):
        value = resolved.get(name)
        if isinstance(value, str) and value:
            try:
                resolved[name] = str((base / value).resolve())
            except (OSError, ValueError) as error:
                raise ConfigurationError(
                    f"Member {shorten(member)}: the option {name!r} names a path that is not "
                    f"usable ({shorten(value)}): {describe(error)}."
                ) from error
    return resolved


def configured(member: str, name: Any, options: Any) -> Callable[[], Adapter]:
    """The sessions factory of member ``member``: ``name``'s factory given ``options``."""
    factory = factory_named(member, name)
    if options is None:
        options = {}
    if not isinstance(options, Mapping):
        raise ConfigurationError(
            f"Member {shorten(member)}: the setting 'options' must be a table of adapter "
            f"options, not {shorten(options)}."
        )
    sessions = factory(member, dict(options))
    if not callable(sessions):
        raise ConfigurationError(
            f"Member {shorten(member)}: the adapter {shorten(name)} returned "
            f"{shorten(sessions)}, not a factory of adapter sessions."
        )
    return sessions
