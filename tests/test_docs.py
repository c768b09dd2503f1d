"""The documentation runs: every Python block of the docs pages executes."""

from __future__ import annotations

import pytest

from tests.helpers import run_docs_page


@pytest.mark.parametrize(
    "page", ["quickstart.md", "operations.md", "split-objects.md", "adapters.md",
             "transactions.md", "adopting.md"]
)
def test_docs_page_runs(page, monkeypatch, tmp_path):
    """Each Python block of the page runs, in order, in one module namespace."""
    run_docs_page(page, monkeypatch, tmp_path)
