"""Configuration: TOML files, member specifications, read-only members, bad input."""

from __future__ import annotations

import pytest
import transaction
import ZODB
from ZODB.FileStorage import FileStorage
from ZODB.MappingStorage import MappingStorage

import federation
from tests.models import Item


def test_open_config_reads_members_and_placement(tmp_path):
    """A TOML file with relative paths, key kinds and placement opens the federation."""
    config = tmp_path / "federation.toml"
    config.write_text(
        '[members.main]\npath = "main.fs"\ncreate = true\n\n'
        '[members.people]\npath = "people.fs"\nkey = "uuid"\ncreate = true\n\n'
        '[placement]\n"tests.models.Item" = "people"\n'
    )
    with federation.open_config(config) as fed, fed.open() as conn:
        assert fed.member("people").kind == "uuid"
        item = Item("x")
        conn.root("main")["x"] = item
        transaction.commit()
        assert conn.ref(item).member == "people"
    assert (tmp_path / "main.fs").exists()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no \\[members.NAME\\] tables"),
        ('[members.main]\nkey = "integer"\n', "has no 'uri'"),
        ('[members.main]\npath = "m.fs"\ncolour = "red"\n', "unknown settings: colour"),
        ('[members.main]\npath = "m.fs"\nkey = "dn"\n', "not 'dn'"),
        ('[members.main]\npath = "m.fs"\nkey = "nope"\n',
         "Member 'main': the setting 'key' names 'nope', which is no registered key kind"),
        ('[members."bad name"]\npath = "m.fs"\n', "member names start"),
        ("[members.main\n", "Cannot read"),
    ],
)
def test_bad_configuration_is_refused_clearly(tmp_path, text, message):
    """Each configuration mistake raises a FederationError that names the problem."""
    config = tmp_path / "federation.toml"
    config.write_text(text)
    with pytest.raises(federation.FederationError, match=message):
        federation.open_config(config)


@pytest.mark.parametrize("spelling", ['path = "mian.fs"', "uri = 'file://{directory}/mian.fs'"])
def test_missing_member_file_is_refused_and_not_created(tmp_path, spelling):
    """A member file that does not exist is an error naming it; nothing is created."""
    config = tmp_path / "federation.toml"
    config.write_text("[members.main]\n" + spelling.format(directory=tmp_path) + "\n")
    with pytest.raises(federation.ConfigurationError, match=r"'main'.*mian.fs.*create = true"):
        federation.open_config(config)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["federation.toml"]


def test_missing_configuration_file(tmp_path):
    """A configuration file that does not exist is a ConfigurationError naming it."""
    with pytest.raises(federation.ConfigurationError, match=r"nowhere.toml"):
        federation.open_config(tmp_path / "nowhere.toml")


def test_bad_uri_names_the_member(tmp_path):
    """A URI zodburi cannot use is refused naming the member and the URI."""
    with pytest.raises(federation.ConfigurationError, match=r"'main'.*bogus://x"):
        federation.open({"main": "bogus://x"})


def test_members_from_storage_and_existing_db(tmp_path):
    """Members can be given as an opened storage or an existing ZODB.DB."""
    db = ZODB.DB(FileStorage(str(tmp_path / "existing.fs")))
    with db.transaction() as plain:
        plain.root()["old"] = Item("from before the federation")
    fed = federation.open({"existing": db, "scratch": MappingStorage()})
    try:
        with fed.open() as conn:
            old = conn.root("existing")["old"]
            conn.root("scratch")["note"] = Item("note", link=old)
            transaction.commit()
            assert conn.root("scratch")["note"].link is old
    finally:
        fed.close()
    # The federation left the user's DB open, and plain again.
    with db.transaction() as plain:
        assert type(plain).__name__ == "Connection"
        assert plain.root()["old"].title == "from before the federation"
    db.close()


def test_same_database_twice_is_refused(tmp_path):
    """Two member names for one database are refused (their ids collide)."""
    db = ZODB.DB(MappingStorage())
    with pytest.raises(federation.ConfigurationError, match=r"already serves|same database"):
        federation.open({"a": db, "b": db})
    db.close()


def test_read_only_member_refuses_changes_before_writing(tmp_path, uris):
    """Changing an object of a read-only member fails the commit; no member is written."""
    with federation.open(uris) as fed, fed.open() as conn:
        conn.root("main")["page"] = Item("page")
        transaction.commit()

    config = {"main": {"uri": uris["main"], "read_only": True}, "notes": uris["notes"]}
    with federation.open(config) as fed, fed.open() as conn:
        page = conn.root("main")["page"]
        conn.root("notes")["note"] = Item("note", link=page)
        transaction.commit()  # referencing a read-only member's object is fine
        size = conn.jar("notes")._storage.getSize()
        page.title = "changed"
        conn.root("notes")["other"] = Item("other")
        with pytest.raises(federation.ReadOnlyMember, match="'main' is read-only"):
            transaction.commit()
        transaction.abort()
        assert conn.jar("notes")._storage.getSize() == size
        assert "other" not in conn.root("notes")
        assert conn.root("notes")["note"].link is page


def test_ref_text_round_trip_and_bad_refs():
    """Ref text round-trips; malformed reference text raises InvalidKey naming it."""
    ref = federation.Ref("main", "integer", 42)
    assert str(ref) == "main:integer:42"
    assert federation.Ref.parse("main:integer:0x2a") == ref
    assert hash(ref) == hash(federation.Ref.parse(str(ref)))
    for text in ["main", "main:integer", ":integer:1", "main:integer:-1", "main:nokind:1"]:
        with pytest.raises(federation.FederationError, match=r"main|integer|nokind|member nam"):
            federation.Ref.parse(text)


def _existing(path):
    """A FileStorage at ``path`` whose root holds ``site``."""
    db = ZODB.DB(FileStorage(str(path)))
    with db.transaction() as conn:
        conn.root()["site"] = "existing"
    db.close()


@pytest.mark.parametrize("setting", ['path = "my data/Data été.fs"',
                                     'uri = "file://my%20data/Data%20%C3%A9t%C3%A9.fs"'])
def test_a_path_with_spaces_and_accents_opens_the_existing_file(tmp_path, setting):
    """A file whose path has a space or an accent opens as the existing database, in
    TOML (``path``, or a percent-encoded ``file://`` URI) and federation.open alike; it
    used to open a new, empty one at the percent-encoded name."""
    (tmp_path / "my data").mkdir()
    _existing(tmp_path / "my data" / "Data été.fs")
    config = tmp_path / "federation.toml"
    config.write_text(f"[members.main]\n{setting}\n")
    with federation.open_config(config) as fed, fed.open() as conn:
        assert conn.root("main")["site"] == "existing"
        transaction.abort()
    with federation.open({"main": (tmp_path / "my data" / "Data été.fs").as_uri()}) as fed, \
            fed.open() as conn:
        assert conn.root("main")["site"] == "existing"
        transaction.abort()
    assert sorted(path.name for path in (tmp_path / "my data").iterdir()
                  if path.suffix == ".fs") == ["Data été.fs"]


def test_a_relative_file_uri_that_does_not_exist_is_refused(tmp_path, monkeypatch):
    """federation.open: a relative file:// URI naming no file, without create, is refused
    (its path was read as empty: the check passed and a new file was created)."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(federation.ConfigurationError, match=r"typo\.fs' does not exist"):
        federation.open({"main": {"uri": "file://typo.fs", "create": False}})
    assert list(tmp_path.iterdir()) == []


def test_a_path_with_a_hash_is_refused(tmp_path):
    """A file path with '#' or '?', which a zodburi file:// URI cannot carry: one sentence
    naming the member, nothing created."""
    config = tmp_path / "federation.toml"
    config.write_text('[members.main]\npath = "a#b.fs"\ncreate = true\n')
    with pytest.raises(federation.ConfigurationError, match=r"Member 'main': the file .*a#b\.fs"):
        federation.open_config(config)
    assert list(tmp_path.iterdir()) == [config]
