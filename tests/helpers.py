"""Small steps many tests share."""

from __future__ import annotations

import re
import shlex
import sys
import types
from pathlib import Path
from typing import Any

import pytest
import transaction

from federation.catalog import journal_items
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
BLOCK = re.compile(r"^```(python|console)\n(.*?)^```", re.DOTALL | re.MULTILINE)
PROMPT = "$ "


def run_console_block(block: str, where: str) -> None:
    """Run each ``$ zfed ...`` command of a console block; check what it prints.

    The expected output is the lines up to the next prompt; ``...`` stands for
    any text.  An expected output starting with ``Error:`` expects status 1,
    any other status 0.
    """
    from click.testing import CliRunner

    from federation.cli import main

    commands = block.split(f"\n{PROMPT}")
    commands[0] = commands[0].removeprefix(PROMPT)
    for command in commands:
        line, _, expected = command.partition("\n")
        argv = shlex.split(line)
        assert argv[0] == "zfed", f"{where}: {line!r} is not a zfed command"
        result = CliRunner().invoke(main, argv[1:], prog_name="zfed", terminal_width=80)
        status = 1 if expected.startswith("Error:") else 0
        pattern = ".*?".join(re.escape(part) for part in expected.rstrip("\n").split("..."))
        assert result.exit_code == status, f"{where}: {line}\n{result.output}"
        assert re.fullmatch(pattern, result.output.rstrip("\n"), re.DOTALL), (
            f"{where}: {line} printed\n{result.output}")


def run_docs_page(page: str, monkeypatch: pytest.MonkeyPatch, directory: Path,
                  **preset: Any) -> None:
    """Run every Python and console block of ``docs/<page>``, in order.

    Python blocks run in one module namespace; console blocks run their
    ``zfed`` commands (:func:`run_console_block`); ``sh`` blocks are not
    run.  The blocks run in ``directory``; ``preset`` names are defined
    first (a server's URI, for instance).  The namespace is registered as a
    module, so classes the page defines pickle by name.
    """
    monkeypatch.chdir(directory)
    name = f"docs_{page.removesuffix('.md').replace('-', '_')}"
    module = types.ModuleType(name)
    monkeypatch.setitem(sys.modules, name, module)
    module.__dict__.update(preset)
    blocks = BLOCK.findall((DOCS / page).read_text())
    assert blocks, f"{page} has no Python block"
    try:
        for number, (language, code) in enumerate(blocks, start=1):
            if language == "console":
                run_console_block(code, f"{page}, block {number}")
            else:
                exec(compile(code, f"{page}, block {number}", "exec"), module.__dict__)
    finally:
        transaction.abort()


def journal_entries(conn, member: str) -> list[str]:
    """The global ids in ``member``'s commit journal, as ``conn`` sees them."""
    catalog = conn.root(member).zodb_federation
    return [gid for gid, _entry in journal_items(getattr(catalog, "journal", None))]


def change_page_and_row(conn: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Commit a page in ``main``; then, in the open transaction, change it and row 1 of the
    PostgreSQL member ``people``, whose session will send no rollback (its process "dies").
    """
    conn.root("main")["page"] = Item("page")
    transaction.commit()
    conn.get("people:integer:1").name = "Ada Lovelace"
    conn.root("main")["page"].title = "changed"
    adapter = conn.jar("people").adapter
    monkeypatch.setattr(adapter, "abort", adapter._close_writer)
