"""Small steps many tests share."""

from __future__ import annotations

from typing import Any

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
