"""The documentation runs: every Python block of the docs pages executes."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import pytest
import transaction

DOCS = Path(__file__).resolve().parent.parent / "docs"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


@pytest.mark.parametrize(
    "page", ["quickstart.md", "operations.md", "split-objects.md", "adapters.md"]
)
def test_docs_page_runs(page, monkeypatch, tmp_path):
    """Each Python block of the page runs, in order, in one module namespace."""
    monkeypatch.chdir(tmp_path)
    name = f"docs_{page.removesuffix('.md')}"
    module = types.ModuleType(name)  # classes the page defines pickle as name.Class
    monkeypatch.setitem(sys.modules, name, module)
    blocks = BLOCK.findall((DOCS / page).read_text())
    assert blocks
    try:
        for number, code in enumerate(blocks, start=1):
            exec(compile(code, f"{page}, block {number}", "exec"), module.__dict__)
    finally:
        transaction.abort()
