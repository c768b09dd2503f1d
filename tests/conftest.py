"""Shared fixtures: federations of real FileStorage members in a temporary folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import transaction

import federation

pytest_plugins = ["tests.servers.fixtures"]


@pytest.fixture
def uris(tmp_path: Path) -> dict[str, str]:
    """zodburi URIs of three FileStorage members in a temporary folder."""
    return {name: (tmp_path / f"{name}.fs").as_uri() for name in ("main", "notes", "people")}


@pytest.fixture
def fed(uris: dict[str, str]) -> Iterator[federation.Federation]:
    """An open federation of three FileStorage members."""
    opened = federation.open(uris)
    yield opened
    transaction.abort()
    opened.close()


@pytest.fixture
def conn(fed: federation.Federation) -> Iterator[federation.Manager]:
    """A manager on the thread's transaction manager."""
    manager = fed.open()
    yield manager
    transaction.abort()
    manager.close()
