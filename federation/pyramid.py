"""Pyramid: pyramid_zodbconn hands out a federation's connections.

pyramid_zodbconn's ``get_connection(request)`` opens the database it finds
under ``''`` in ``registry._zodb_databases`` on ``request.tm`` (pyramid_tm's
transaction manager) and closes the connection when the request finishes;
``get_connection(request, name)`` is then ``conn.get_connection(name)``.
With a federation's databases there (:meth:`federation.databases.Databases.with_primary`),
every connection of a request is one federation manager's, and pyramid_tm
commits them in one two-phase commit.  Include this module instead of
``pyramid_zodbconn`` itself, with the settings::

    zodbconn.federation = %(here)s/federation.toml
    zodbconn.federation.primary = main

``''`` stays an alias: references name the primary member by its name.
"""

from __future__ import annotations

from typing import Any

from federation.config import open_config
from federation.errors import ConfigurationError, shorten
from federation.federation import Federation

#: The setting naming the federation's configuration file (TOML or ZConfig, see ``open_config``).
SETTING = "zodbconn.federation"
#: The setting naming the member pyramid_zodbconn's primary database is.
PRIMARY_SETTING = "zodbconn.federation.primary"


def includeme(config: Any) -> None:
    """Open the federation the settings name and make pyramid_zodbconn use it."""
    settings = config.registry.settings
    path = settings.get(SETTING)
    if not isinstance(path, str) or not path.strip():
        raise ConfigurationError(
            f"The Pyramid setting {SETTING!r} must name a federation configuration file, not "
            f"{shorten(path)}."
        )
    if settings.get("zodbconn.uri"):
        raise ConfigurationError(
            f"The Pyramid settings have both 'zodbconn.uri' and {SETTING!r}; keep one."
        )
    fed = open_config(path.strip())
    try:
        use_federation(config.registry, fed, settings.get(PRIMARY_SETTING))
    except BaseException:
        fed.close()
        raise


def use_federation(registry: Any, fed: Federation, primary: str | None = None) -> None:
    """Make pyramid_zodbconn hand out ``fed``'s connections, ``primary``'s under ``''``.

    ``primary`` is the first ZODB member by default.  The federation is
    kept as ``registry.zodb_federation``; it stays open for the life of
    the process (close it there when the application stops).
    """
    if primary is None:
        primary = next(iter(fed.databases), None)
        if primary is None:
            raise ConfigurationError(
                "The federation has no ZODB member to be pyramid_zodbconn's primary database."
            )
    registry._zodb_databases = fed.databases.with_primary(primary)
    registry.zodb_federation = fed
