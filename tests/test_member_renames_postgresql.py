"""A PostgreSQL member keeps its stable id and names in zfed_members: renaming it keeps stubs."""

from __future__ import annotations

import uuid

import psycopg
import pytest
import transaction

import federation
from federation.adapters import sql
from federation.ref import Ref
from tests.models import Item, Person

pytestmark = pytest.mark.server


@pytest.fixture
def person_table(postgresql_server):
    name = f"person_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgresql_server.dsn, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {name} (id BIGINT PRIMARY KEY, name TEXT NOT NULL, "
                     "email TEXT, owner_ref TEXT)")
        conn.execute(f"INSERT INTO {name} (id, name) VALUES (1, 'Ada')")
    yield sql.Table(name, Person, key="id", columns={"name": "name", "email": "email"},
                    refs={"owner": "owner_ref"})
    with psycopg.connect(postgresql_server.dsn, autocommit=True) as conn:
        conn.execute(f"DROP TABLE {name}")
        if conn.execute("SELECT to_regclass('zfed_members') IS NOT NULL").fetchone()[0]:
            conn.execute("DELETE FROM zfed_members WHERE tbl = %s", (name,))


def _recorded(dsn: str, table: str) -> list[tuple[str, str]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        if not conn.execute("SELECT to_regclass('zfed_members') IS NOT NULL").fetchone()[0]:
            return []
        return sorted(conn.execute("SELECT name, member_id FROM zfed_members WHERE tbl = %s",
                                   (table,)).fetchall())


def test_renamed_postgresql_member_keeps_its_stubs(postgresql_server, person_table, tmp_path):
    dsn, main_uri = postgresql_server.dsn, (tmp_path / "main.fs").as_uri()

    def member(name):
        return sql.postgresql(name, dsn, person_table, batch_size=10)

    with federation.open({"main": main_uri, "people": member("people")}) as fed:
        assert _recorded(dsn, person_table.name) == []  # opening wrote nothing
        with fed.open() as conn:
            conn.root("main")["ada"] = Item("Ada's", link=conn.get("people:integer:1"))
            transaction.commit()
        member_id = fed.member("people").member_id
    assert _recorded(dsn, person_table.name) == [("", member_id), ("people", member_id)]
    with federation.open({"main": main_uri, "staff": member("staff")}) as fed, \
            fed.open() as conn:
        assert fed.member("staff").member_id == member_id
        ada = conn.root("main")["ada"].link
        assert ada.name == "Ada" and conn.ref(ada) == Ref("staff", "integer", 1)
        conn.root("main")["again"] = Item("again", link=ada)
        transaction.commit()
        assert len(conn.stubs("main")) == 1
    assert [name for name, _ in _recorded(dsn, person_table.name)] == ["", "people", "staff"]
