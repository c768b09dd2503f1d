"""The SQL adapter on SQLite passes the conformance suite (as the last resource)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import transaction

import federation
from federation.adapters import sql
from tests.conformance import AdapterConformance, ForeignFixture
from tests.models import Item, Person

SCHEMA = """CREATE TABLE person (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL CHECK (length(name) > 0),
    email TEXT,
    owner_ref TEXT)"""

TABLE = sql.Table("person", Person, key="id", columns={"name": "name", "email": "email"},
                  refs={"owner": "owner_ref"})


def make_member(directory: Path, name: str) -> tuple[sql.SqlDatabase, Path]:
    """A SQLite member called ``name`` with an empty person table."""
    path = directory / f"{name}.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute(SCHEMA)
    conn.close()
    return sql.sqlite(name, str(path), TABLE, batch_size=10), path


def seeder(path: Path):
    """Write a person row directly, as another program would."""
    def seed(key: int, record: dict) -> None:
        with sqlite3.connect(path) as conn:
            conn.execute(
                "INSERT OR REPLACE INTO person (id, name, email, owner_ref) VALUES (?, ?, ?, ?)",
                (key, record["name"], record.get("email"), record.get("owner")),
            )
        conn.close()
    return seed


class TestSqlite(AdapterConformance):
    """SQLite: the embedded default."""

    @pytest.fixture
    def foreign(self, tmp_path):
        people, path = make_member(tmp_path, "people")
        others, _ = make_member(tmp_path, "others")
        return ForeignFixture(spec=people, seed=seeder(path), two_phase=False, batch_size=10,
                              bad_record={"name": ""}, second_spec=others)


def test_bad_table_configuration_is_refused():
    """Identifiers that are not plain SQL names are refused before any SQL runs."""
    with pytest.raises(federation.ConfigurationError, match="plain SQL identifier"):
        sql.Table("person; DROP TABLE x", Person, key="id", columns={})
    with pytest.raises(federation.ConfigurationError, match="uid keys need"):
        sql.Table("person", Person, key="id", columns={}, kind="uid")


def test_unknown_attribute_is_a_clear_error(tmp_path):
    """Saving an attribute the table has no column for names the member and attribute."""
    people, _ = make_member(tmp_path, "people")
    members = {"main": (tmp_path / "main.fs").as_uri(), "people": people}
    with federation.open(members) as fed, fed.open() as conn:
        person = Person("Ada")
        person.favourite_colour = "green"
        conn.add(person, "people")
        with pytest.raises(federation.FederationError, match=r"'people'.*favourite_colour"):
            transaction.commit()
        transaction.abort()


@pytest.mark.parametrize(
    ("kind", "column_type", "key_attribute"),
    [("uuid", "TEXT", None), ("uid", "TEXT", "login")],
)
def test_uuid_and_uid_keys(tmp_path, kind, column_type, key_attribute):
    """Tables keyed by uuid (issued here) or uid (an attribute) work through commit and reopen."""
    path = tmp_path / "accounts.sqlite"
    with sqlite3.connect(path) as db:
        db.execute(f"CREATE TABLE account (key {column_type} PRIMARY KEY, name TEXT, login TEXT)")
    db.close()
    table = sql.Table("account", Person, key="key", columns={"name": "name", "login": "login"},
                      kind=kind, key_attribute=key_attribute)
    members = {"main": (tmp_path / "main.fs").as_uri(),
               "accounts": sql.sqlite("accounts", str(path), table)}
    with federation.open(members) as fed, fed.open() as conn:
        person = Person.__new__(Person)
        person.name, person.login = "Grace", "ghopper"
        conn.add(person, "accounts")
        conn.root("main")["grace"] = Item("grace", link=person)
        ref = conn.ref(person)
        transaction.commit()
        assert ref.kind == kind
        if kind == "uid":
            assert ref.key == "ghopper"
    with federation.open(members) as fed, fed.open() as conn:
        assert conn.root("main")["grace"].link is conn.get(ref)
        assert conn.get(str(ref)).name == "Grace"
        transaction.abort()


def test_missing_file_is_refused_not_created(tmp_path):
    """A SQLite member whose file does not exist (a typo) is refused when the federation
    opens, naming member and file; no empty database is left behind."""
    typo = tmp_path / "typo.sqlite"
    with pytest.raises(federation.ConfigurationError, match=r"'people'.*typo\.sqlite.*not exist"):
        federation.open({"main": (tmp_path / "main.fs").as_uri(),
                         "people": sql.sqlite("people", str(typo), TABLE)})
    assert not typo.exists()
