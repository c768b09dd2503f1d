"""Small steps many tests share."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path
from typing import Any

import pytest
import transaction

from tests.models import Item


def page_and_note(conn: Any, page_member: str = "main",
                  note_member: str = "notes") -> tuple[Item, Item]:
    """Commit a page in one member, then a note in another that references it."""
    page = conn.root(page_member)["page"] = Item("page")
    transaction.commit()
    note = conn.root(note_member)["note"] = Item("note", link=page)
    transaction.commit()
    return page, note


DOCS = Path(__file__).resolve().parent.parent / "docs"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


def run_docs_page(page: str, monkeypatch: pytest.MonkeyPatch, directory: Path,
                  **preset: Any) -> None:
    """Run every Python block of ``docs/<page>``, in order, in one module namespace.

    The blocks run in ``directory``; ``preset`` names are defined first (a
    server's URI, for instance).  The namespace is registered as a module,
    so classes the page defines pickle by name.
    """
    monkeypatch.chdir(directory)
    name = f"docs_{page.removesuffix('.md').replace('-', '_')}"
    module = types.ModuleType(name)
    monkeypatch.setitem(sys.modules, name, module)
    module.__dict__.update(preset)
    blocks = BLOCK.findall((DOCS / page).read_text())
    assert blocks, f"{page} has no Python block"
    try:
        for number, code in enumerate(blocks, start=1):
            exec(compile(code, f"{page}, block {number}", "exec"), module.__dict__)
    finally:
        transaction.abort()


def journal_entries(conn, member: str) -> list[str]:
    """The global ids in ``member``'s commit journal, as ``conn`` sees them."""
    catalog = conn.root(member).zodb_federation
    return list(getattr(catalog, "journal", {}))
