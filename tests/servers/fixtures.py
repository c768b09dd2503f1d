"""Session fixtures for the real servers: `postgresql_server` and `slapd_server`.

`relstorage_databases` makes RelStorage databases on the PostgreSQL server
(`tests.servers.relstorage`).

Register with `pytest_plugins = ["tests.servers.fixtures"]` in the root
conftest. Each fixture starts its server once per session in a temporary
directory and stops it at the end; tests must leave the shared server in a
usable state (use their own tables, or their own entries under the base DN).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.servers.postgresql import PostgresServer, running_postgresql
from tests.servers.relstorage import RelStorageDatabases
from tests.servers.slapd import SlapdServer, running_slapd


@pytest.fixture(scope="session")
def postgresql_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    """A PostgreSQL server on a free loopback port, with two-phase commit enabled."""
    with running_postgresql(tmp_path_factory.mktemp("postgresql")) as server:
        yield server


@pytest.fixture(scope="session")
def slapd_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlapdServer]:
    """An OpenLDAP slapd on a free loopback port, holding the sample people and group."""
    with running_slapd(tmp_path_factory.mktemp("slapd")) as server:
        yield server


@pytest.fixture(scope="session")
def relstorage_databases(postgresql_server: PostgresServer) -> RelStorageDatabases:
    """Fresh RelStorage databases on the PostgreSQL server, for a password-protected role."""
    pytest.importorskip("relstorage", reason="RelStorage is not installed (extra relstorage)")
    return RelStorageDatabases(postgresql_server)
