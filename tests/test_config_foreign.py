"""Configuration files: foreign members (entry points, dotted paths, options), relative paths."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import transaction

import federation
from federation.adapters import ldap, sql
from federation.adapters.memory import MemoryDatabase
from tests.models import Item, Person


def memory_members(member: str, options: dict[str, Any]) -> MemoryDatabase:
    """An adapter factory named by a dotted path in a test configuration."""
    return MemoryDatabase(member, Person, kind=options["kind"])


def person_table(folder: Path) -> None:
    with contextlib.closing(sqlite3.connect(folder / "people.sqlite")) as db, db:
        db.execute("CREATE TABLE person "
                   "(id INTEGER PRIMARY KEY, name TEXT, email TEXT, owner TEXT)")


SQLITE_MEMBER = """
[members.main]
path = "main.fs"
create = true

[members.people]
adapter = "sqlite"

[members.people.options]
path = "people.sqlite"
table = "person"
class = "tests.models.Person"
columns = { name = "name", email = "email" }
refs = { owner = "owner" }
"""


def test_sqlite_member_in_toml_resolves_against_the_file(tmp_path, monkeypatch):
    """A SQLite member named by entry point opens its file beside the configuration."""
    folder = tmp_path / "conf"
    folder.mkdir()
    person_table(folder)
    config = folder / "federation.toml"
    config.write_text(SQLITE_MEMBER)
    monkeypatch.chdir(tmp_path)  # not the configuration's directory
    with federation.open_config("conf/federation.toml") as fed, fed.open() as conn:
        page = conn.root("main")["page"] = Item("page")
        conn.add(page, "main")
        grace = Person("Grace")
        grace.owner = page
        conn.add(grace, "people")
        transaction.commit()
        ref = conn.ref(grace)
    with federation.open_config(config) as fed, fed.open() as conn:
        assert conn.get(ref).owner is conn.root("main")["page"]
    with contextlib.closing(sqlite3.connect(folder / "people.sqlite")) as db:
        assert db.execute("SELECT name FROM person").fetchall() == [("Grace",)]
    assert not (tmp_path / "people.sqlite").exists() and not (tmp_path / "main.fs").exists()


def test_read_config_makes_adapter_paths_absolute(tmp_path):
    """read_config keeps a foreign member as data: adapter name, options, absolute paths."""
    config = tmp_path / "federation.toml"
    config.write_text(SQLITE_MEMBER)
    members, _placement = federation.read_config(config)
    assert members["people"] == {
        "adapter": "sqlite",
        "options": {"path": str(tmp_path / "people.sqlite"), "table": "person",
                    "class": "tests.models.Person",
                    "columns": {"name": "name", "email": "email"},
                    "refs": {"owner": "owner"}},
    }


def test_adapter_by_dotted_path(tmp_path):
    """``adapter = "package.module:callable"`` calls that factory with the member's options."""
    config = tmp_path / "federation.toml"
    config.write_text('[members.main]\npath = "m.fs"\ncreate = true\n'
                      '[members.people]\nadapter = "tests.test_config_foreign:memory_members"\n'
                      'read_only = true\noptions = { kind = "uuid" }\n')
    with federation.open_config(config) as fed:
        assert fed.member("people").kind == "uuid" and fed.member("people").read_only


def test_federation_open_takes_an_adapter_name():
    """federation.open accepts the same member table as a configuration file."""
    members = {"people": {"adapter": "tests.test_config_foreign:memory_members",
                          "options": {"kind": "integer"}}}
    with federation.open(members) as fed:
        assert fed.member("people").kind == "integer"


OPTIONS = 'path = "p.sqlite"\ntable = "person"\nclass = "tests.models.Person"\n'


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('adapter = "nope"', r"Member 'people': the setting 'adapter' names 'nope', which is "
                             r"neither an installed adapter \(.*sqlite.*\) nor"),
        ('adapter = "no.such:thing"', r"'people'.*'no\.such:thing', which cannot be imported"),
        ('adapter = 3', r"'people': the setting 'adapter' must name an adapter, not 3"),
        ('adapter = "sqlite"\noptions = 3', r"'people': the setting 'options' must be a table"),
        ('adapter = "sqlite"\nkey = "uuid"', r"Member 'people' has unknown settings: key"),
        ('adapter = "sqlite"\npath = "p.sqlite"',
         r"Member 'people': a foreign member's 'path' goes in its adapter's options"),
        ('adapter = "sqlite"\n[members.people.options]\ntable = "person"\n'
         'class = "tests.models.Person"', r"'people': the option 'path' is required"),
        ('adapter = "sqlite"\n[members.people.options]\n' + OPTIONS + 'colour = "red"',
         r"Member 'people' has unknown adapter options: colour"),
        ('adapter = "sqlite"\n[members.people.options]\n' + OPTIONS + 'batch_size = 0',
         r"'people': the option 'batch_size' must be an integer of at least 1, not 0"),
        ('adapter = "sqlite"\n[members.people.options]\n' + OPTIONS + 'columns = { a = 1 }',
         r"'people': the option 'columns' must map names to strings"),
        ('adapter = "sqlite"\n[members.people.options]\n' + OPTIONS + 'kind = "dn"',
         r"'people': Table 'person': key kind 'dn'"),
        ('adapter = "sqlite"\n[members.people.options]\npath = "p.sqlite"\ntable = "person"\n'
         'class = "tests.models.Nobody"', r"'people': the option 'class' names "
                                          r"'tests.models.Nobody', which cannot be imported"),
        ('adapter = "sqlite"\n[members.people.options]\npath = "p.sqlite"\ntable = "person"\n'
         'class = "tests.models.Item.__init__"', r"'class' names .*, which is not a class"),
        ('adapter = "postgresql"\n[members.people.options]\nconninfo = "dbname=x"\n'
         'password_env = "ZFED_TEST_UNSET"\ntable = "t"\nclass = "tests.models.Person"',
         r"'people': the option 'password_env' names the environment variable "
         r"'ZFED_TEST_UNSET', which is not set"),
        ('adapter = "ldap"\n[members.people.options]\nuri = "ldap://h"\nbase = "dc=x"\n'
         'class = "tests.models.Person"\nobject_classes = ["person"]\nrdn = "cn"\n'
         'attributes = { name = { name = "cn", type = "float" } }',
         r"'people': the option 'attributes.name.type' is 'float', not one of str"),
    ],
)
def test_bad_foreign_member_is_refused_naming_member_and_setting(tmp_path, table, message):
    """Each mistake in a foreign member's table is one ConfigurationError sentence."""
    config = tmp_path / "federation.toml"
    config.write_text(f"[members.people]\n{table}\n")
    with pytest.raises(federation.ConfigurationError, match=message) as raised:
        federation.open_config(config)
    assert "\n" not in str(raised.value)


def test_password_comes_from_the_environment_and_is_never_shown(tmp_path, monkeypatch):
    """password_env: the password reaches the driver, and no message shows it."""
    monkeypatch.setenv("ZFED_TEST_PASSWORD", "s3cr3t-w0rd")
    config = tmp_path / "federation.toml"
    config.write_text(
        '[members.people]\nadapter = "postgresql"\n[members.people.options]\n'
        'conninfo = "host=127.0.0.1 port=1 dbname=x user=u connect_timeout=2"\n'
        'password_env = "ZFED_TEST_PASSWORD"\ntable = "person"\nclass = "tests.models.Person"\n')
    members, _ = federation.read_config(config)
    assert "s3cr3t" not in repr(members)  # the file names the variable only
    with pytest.raises(federation.FederationError) as raised:
        federation.open_config(config)  # nothing listens on port 1
    assert "s3cr3t" not in str(raised.value) and "s3cr3t" not in repr(raised.value)
    database = sql.postgresql_from_options("people", dict(members["people"]["options"]))
    assert "s3cr3t-w0rd" in database.secrets and "s3cr3t" not in repr(database)


def test_ldap_member_options_build_the_directory(tmp_path, monkeypatch):
    """The ldap adapter's options describe the server and the entries (Attribute tables too)."""
    monkeypatch.setenv("ZFED_LDAP_PASSWORD", "pw-123")
    (tmp_path / "ca.pem").write_text("not checked here")
    directory = ldap.directory_from_options("people", {
        "uri": "ldap://ldap.example.org", "bind_dn": "cn=app,dc=example,dc=org",
        "password_env": "ZFED_LDAP_PASSWORD", "start_tls": "true",
        "ca_file": str(tmp_path / "ca.pem"), "timeout": "5",
        "class": "tests.models.Person", "base": "ou=people,dc=example,dc=org",
        "object_classes": "inetOrgPerson", "rdn": "uid",
        "attributes": {"login": "uid", "name": "cn",
                       "phones": {"name": "telephoneNumber", "multi": True}},
        "refs": {"owner": "description"}, "on_create": {"sn": "unknown"},
    })
    assert directory.password == "pw-123" and directory.start_tls and directory.timeout == 5.0
    assert directory.entries.mapping["phones"].multi
    assert directory.entries.object_classes == ("inetOrgPerson",)
    assert "pw-123" not in repr(directory)


def test_relative_file_uri_resolves_against_the_configuration(tmp_path, monkeypatch):
    """``uri = "file://data/main.fs"`` is the file beside the configuration, not the cwd's."""
    (tmp_path / "conf" / "data").mkdir(parents=True)
    config = tmp_path / "conf" / "federation.toml"
    config.write_text('[members.main]\nuri = "file://data/main.fs?blobstorage_dir=blobs"\n'
                      "create = true\n")
    monkeypatch.chdir(tmp_path)
    members, _ = federation.read_config(config)
    data = tmp_path / "conf" / "data"
    blobs = quote(str(tmp_path / "conf" / "blobs"), safe="")
    assert members["main"]["uri"] == f"file://{data / 'main.fs'}?blobstorage_dir={blobs}"
    with federation.open_config(config):
        pass
    assert (data / "main.fs").exists() and not (tmp_path / "data").exists()


def test_foreign_member_id_and_former_names_in_toml(tmp_path):
    """A foreign member's table takes member_id and former_names (see Renaming members)."""
    person_table(tmp_path)
    config = tmp_path / "federation.toml"
    config.write_text(SQLITE_MEMBER.replace(
        'adapter = "sqlite"\n',
        'adapter = "sqlite"\nmember_id = "people-1"\nformer_names = ["persons"]\n'))
    with federation.open_config(config) as fed:
        assert fed.member("people").member_id == "people-1"
        assert "persons" in fed.member("people").former_names
