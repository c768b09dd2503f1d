"""Configuration files in ZODB's ZConfig format: plain ZODB files, federation settings."""

from __future__ import annotations

import contextlib
import sqlite3

import pytest
import transaction
import ZODB
import ZODB.config
from ZODB.FileStorage import FileStorage

import federation
from tests.models import Item, Person

PLAIN = """\
# A multi-database configuration as ZODB.config.databaseFromFile reads it.
<zodb main>
  <filestorage>
    path var/main.fs
  </filestorage>
</zodb>
<zodb catalog>
  cache-size 1234
  <filestorage>
    path var/catalog.fs
  </filestorage>
</zodb>
"""

FEDERATED = """\
%import federation

<zodb main>
  <filestorage>
    path var/main.fs
  </filestorage>
</zodb>

<zodb>
  database-name people
  <filestorage>
    path var/people.fs
  </filestorage>
</zodb>

<federation>
  <member main>
    create on
  </member>
  <member people>
    key uuid
    create on
  </member>
  placement tests.models.Item people
  <foreign readers>
    adapter sqlite
    path var/readers.sqlite
    table person
    class tests.models.Person
    batch-size 10
    <mapping columns>
      name name
      email email
    </mapping>
    <mapping refs>
      owner owner
    </mapping>
  </foreign>
</federation>
"""


def existing_files(*paths):
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        ZODB.DB(FileStorage(str(path))).close()


def test_plain_zodb_file_opens_unchanged(tmp_path, monkeypatch):
    """Each <zodb NAME> section is a member; relative paths are the file's; DB settings hold."""
    existing_files(tmp_path / "var" / "main.fs", tmp_path / "var" / "catalog.fs")
    config = tmp_path / "zodb.conf"
    config.write_text(PLAIN)
    monkeypatch.chdir(tmp_path.parent)
    with federation.open_config(config) as fed, fed.open() as conn:
        assert list(fed.members) == ["main", "catalog"]
        assert conn.jar("catalog").db().getCacheSize() == 1234
        item = conn.root("main")["item"] = Item("item")
        conn.add(item, "main")
        conn.root("catalog")["entry"] = Item("entry", link=item)
        transaction.commit()
    with federation.open_config(config) as fed, fed.open() as conn:
        assert conn.root("catalog")["entry"].link is conn.root("main")["item"]
    monkeypatch.chdir(tmp_path)  # ZODB reads relative paths from the current directory
    db = ZODB.config.databaseFromFile(config.open())
    assert sorted(db.databases) == ["catalog", "main"]
    for each in list(db.databases.values()):
        each.close()


def test_federation_section_sets_kinds_placement_and_foreign_members(tmp_path):
    """<federation>: key kinds, create, placement and a foreign member with options."""
    (tmp_path / "var").mkdir()
    with contextlib.closing(sqlite3.connect(tmp_path / "var" / "readers.sqlite")) as db, db:
        db.execute("CREATE TABLE person (id INTEGER PRIMARY KEY, name TEXT, email TEXT, "
                   "owner TEXT)")
    config = tmp_path / "federation.conf"
    config.write_text(FEDERATED)
    with federation.open_config(config) as fed, fed.open() as conn:
        assert list(fed.members) == ["main", "people", "readers"]
        assert fed.member("people").kind == "uuid"
        item = Item("placed")
        conn.root("main")["item"] = item
        reader = Person("Ada")
        reader.owner = item
        conn.add(reader, "readers")
        transaction.commit()
        assert conn.ref(item).member == "people"
        ref = conn.ref(reader)
    with federation.open_config(config) as fed, fed.open() as conn:
        assert conn.get(ref).owner is conn.root("main")["item"]
    members, placement = federation.read_config(config)
    assert placement == {"tests.models.Item": "people"}
    assert members["readers"]["options"]["batch_size"] == "10"
    assert members["readers"]["options"]["path"] == str(tmp_path / "var" / "readers.sqlite")


def test_zodb_still_reads_a_federation_file(tmp_path):
    """With %import federation, ZODB.config opens the zodb sections and ignores the rest."""
    existing_files(tmp_path / "var" / "main.fs", tmp_path / "var" / "people.fs")
    (tmp_path / "var" / "readers.sqlite").touch()
    text = FEDERATED.replace("path var/", f"path {tmp_path}/var/")
    db = ZODB.config.databaseFromString(text)
    try:
        assert sorted(db.databases) == ["main", "people"]
    finally:
        for each in list(db.databases.values()):
            each.close()


def test_zope_style_sections(tmp_path):
    """Zope's <zodb_db NAME> sections (mount-point and all) are members too."""
    existing_files(tmp_path / "var" / "Data.fs")
    config = tmp_path / "zope-databases.conf"
    config.write_text(f"""%define INSTANCE {tmp_path}
<zodb_db main>
  <filestorage>
    path $INSTANCE/var/Data.fs
  </filestorage>
  mount-point /
</zodb_db>
<zodb_db temporary>
  <mappingstorage>
    name Temporary database
  </mappingstorage>
  mount-point /temp_folder
  container-class Products.TemporaryFolder.TemporaryContainer
</zodb_db>
""")
    with federation.open_config(config) as fed:
        assert list(fed.members) == ["main", "temporary"]


def test_format_is_told_by_content(tmp_path):
    """A ZConfig file named .toml is ZConfig; a TOML file named .conf is TOML."""
    existing_files(tmp_path / "var" / "main.fs", tmp_path / "var" / "catalog.fs")
    zconfig = tmp_path / "looks-like.toml"
    zconfig.write_text(PLAIN)
    toml = tmp_path / "looks-like.conf"
    toml.write_text('# TOML\n[members.main]\npath = "var/main.fs"\n')
    assert list(federation.read_config(zconfig)[0]) == ["main", "catalog"]
    assert federation.read_config(toml)[0]["main"]["uri"].startswith("file://")


def test_missing_file_is_refused_unless_created(tmp_path):
    """A FileStorage path that does not exist is an error naming the member; nothing is made."""
    config = tmp_path / "zodb.conf"
    config.write_text(PLAIN)
    (tmp_path / "var").mkdir()
    with pytest.raises(federation.ConfigurationError,
                       match=r"Member 'main': the file .*main.fs' does not exist"):
        federation.open_config(config)
    assert list((tmp_path / "var").iterdir()) == []


def test_missing_file_under_a_blobstorage_is_refused(tmp_path):
    """The file of a FileStorage wrapped in a <blobstorage> must exist too."""
    config = tmp_path / "zodb.conf"
    config.write_text("<zodb main>\n<blobstorage>\nblob-dir blobs\n<filestorage>\n"
                      "path main.fs\n</filestorage>\n</blobstorage>\n</zodb>\n")
    with pytest.raises(federation.ConfigurationError, match=r"'main': the file .*main.fs'"):
        federation.open_config(config)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["zodb.conf"]


def test_read_only_blob_member(tmp_path):
    """read-only on reaches the FileStorage inside a <blobstorage>."""
    existing_files(tmp_path / "main.fs")
    config = tmp_path / "zodb.conf"
    config.write_text("%import federation\n<zodb main>\n<blobstorage>\nblob-dir blobs\n"
                      "<filestorage>\npath main.fs\n</filestorage>\n</blobstorage>\n</zodb>\n"
                      "<federation>\n<member main>\nread-only on\n</member>\n</federation>\n")
    with federation.open_config(config) as fed:
        assert fed.member("main").db.storage.isReadOnly()
        assert fed.member("main").db.storage.fshelper.base_dir.rstrip("/") == str(
            tmp_path / "blobs")


def test_read_only_member(tmp_path):
    """<member NAME> read-only on opens the storage read-only."""
    existing_files(tmp_path / "var" / "main.fs", tmp_path / "var" / "catalog.fs")
    config = tmp_path / "zodb.conf"
    config.write_text("%import federation\n" + PLAIN +
                      "<federation>\n<member catalog>\nread-only on\n</member>\n</federation>\n")
    with federation.open_config(config) as fed:
        assert fed.member("catalog").read_only
        assert fed.member("catalog").db.storage.isReadOnly()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("<zodb main>\n", r"Cannot read federation configuration .*zodb.conf"),
        ("<zodb main>\n<filestorage>\npath nowhere/x.fs\n</filestorage>\n</zodb>\n",
         r"Cannot read .*nowhere"),
        ("%import federation\n<zodb main>\n<mappingstorage>\n</mappingstorage>\n</zodb>\n"
         "<federation>\n<member other>\n</member>\n</federation>\n",
         r"<member other> names no <zodb> section \(members: main\)"),
        ("<zodb main>\n<mappingstorage>\n</mappingstorage>\n</zodb>\n"
         "<zodb>\ndatabase-name main\n<mappingstorage>\n</mappingstorage>\n</zodb>\n",
         r"two <zodb> sections named 'main'"),
        ("%import federation\n<zodb a>\n<mappingstorage>\n</mappingstorage>\n</zodb>\n"
         "<federation>\nplacement x.Y\n</federation>\n",
         r"the placement 'x.Y' is not a dotted class name and a member name"),
        ("%import federation\n<zodb a>\n<mappingstorage>\n</mappingstorage>\n</zodb>\n"
         "<federation>\n<member a>\nkey dn\n</member>\n</federation>\n",
         r"Member 'a': a ZODB member is referred to by integer or uuid keys, not 'dn'"),
        ("%import federation\n<zodb a>\n<mappingstorage>\n</mappingstorage>\n</zodb>\n"
         "<federation>\n<member a>\nkey UUID\n</member>\n</federation>\n",
         r"Member 'a': the setting 'key' names 'UUID', which is no registered key kind"),
        ("%import federation\n<zodb a>\n<mappingstorage>\n</mappingstorage>\n</zodb>\n"
         "<federation>\n<foreign b>\nadapter sqlite\ncolour red\n</foreign>\n</federation>\n",
         r"Member 'b': the option 'path' is required"),
        ("%import federation\n<zodb a>\n<mappingstorage>\n</mappingstorage>\n</zodb>\n"
         "<federation>\n<foreign a>\nadapter sqlite\n</foreign>\n</federation>\n",
         r"the member 'a' is defined twice"),
        ("<zodb>\n</zodb>\n", r"Member 'main': its <zodb> section in .* has no storage "
                               r"section"),
        ("%import nosuchpackage\n<zodb a>\n<mappingstorage>\n</mappingstorage>\n</zodb>\n",
         r"Cannot read federation configuration .*nosuchpackage"),
    ],
)
def test_bad_zconfig_is_refused_clearly(tmp_path, text, message):
    """Each mistake in a ZConfig file is one ConfigurationError sentence naming it."""
    config = tmp_path / "zodb.conf"
    config.write_text(text)
    with pytest.raises(federation.ConfigurationError, match=message) as raised:
        federation.open_config(config)
    assert "\n" not in str(raised.value)


def test_member_settings_of_a_database_name_with_capitals(tmp_path):
    """<member NAME> reaches a <zodb> section whose database-name has capitals (ZConfig
    folds section names to lower case, not database names)."""
    config = tmp_path / "zodb.conf"
    config.write_text("%import federation\n<zodb main>\ndatabase-name Main\n<filestorage>\n"
                      "path Main.fs\n</filestorage>\n</zodb>\n"
                      "<federation>\n<member Main>\ncreate on\nkey uuid\n</member>\n"
                      "</federation>\n")
    with federation.open_config(config) as fed:
        assert list(fed.members) == ["Main"]
        assert fed.member("Main").kind == "uuid"


def test_renamed_members_settings(tmp_path):
    """<member> and <foreign> take the names a member had (former-name) and a foreign
    member's stable id (member-id), as TOML's former_names and member_id."""
    (tmp_path / "var").mkdir()
    config = tmp_path / "federation.conf"
    config.write_text(FEDERATED.replace(
        "  <member people>\n", "  <member people>\n    former-name persons\n    former-name folk\n"
    ).replace(
        "    adapter sqlite\n", "    adapter sqlite\n    member-id readers-1\n"
        "    former-name readers_old\n"))
    members, _placement = federation.read_config(config)
    assert members["people"]["former_names"] == ["persons", "folk"]
    assert members["readers"]["member_id"] == "readers-1"
    assert members["readers"]["former_names"] == ["readers_old"]
    assert "former_names" not in members["main"] and "member_id" not in members["main"]
