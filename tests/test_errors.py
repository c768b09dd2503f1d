"""Errors a user meets while opening a federation: typed, one sentence, nothing left open."""

from __future__ import annotations

from typing import Any

import pytest
import transaction
import zc.lockfile
import ZODB
from ZODB.FileStorage import FileStorage

import federation
from federation import resolvers
from federation.adapters.memory import MemoryDatabase
from federation.catalog import CATALOG_ATTRIBUTE, Catalog
from tests.models import Item


def _config(tmp_path, text: str):
    path = tmp_path / "federation.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("value", ['"false"', '"true"', "0", "1", '["no"]'])
def test_read_only_must_be_a_bool(tmp_path, value):
    """read_only = "false" (a string) is refused, naming member and setting, not read as true."""
    config = _config(tmp_path, f'[members.main]\npath = "main.fs"\nread_only = {value}\n')
    with pytest.raises(federation.ConfigurationError,
                       match=r"Member 'main': the setting 'read_only' must be a bool"):
        federation.open_config(config)


def test_key_must_be_text(tmp_path):
    """A key kind that is not text is refused naming the member and the setting."""
    config = _config(tmp_path, '[members.main]\npath = "main.fs"\nkey = 3\n')
    with pytest.raises(federation.ConfigurationError, match=r"'main'.*'key' must be a str"):
        federation.open_config(config)


@pytest.mark.parametrize("name", [[], {}, None, 3, b"integer"])
def test_resolvers_get_of_a_non_name(name):
    """resolvers.get of something that is not a name is an UnknownKind, not a TypeError."""
    with pytest.raises(federation.UnknownKind):
        resolvers.get(name)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"\xff\xfe[members", "Cannot read federation configuration"),
        (b'[members.main]\npath = 3\n', "the setting 'path' must be a non-empty string"),
        (b"members = 3\n", "no \\[members.NAME\\] tables"),
        (b'members.main = "x.fs"\n', "members.'main' must be a table"),
        (b'placement = 3\n[members.main]\npath = "m.fs"\n', "\\[placement\\] must be a table"),
        (b'[members.main]\npath = "m.fs"\nuri = "memory://"\n', "both 'path' and 'uri'"),
        (b'[members.main]\npath = "m.fs"\ncreate = true\n[placement]\n"x.Y" = 3\n',
         "not a member name"),
        (b'[members.main]\npath = "m.fs"\ncreate = true\n[placement]\n"x.Y" = "nope"\n',
         "no member named"),
        (b"[members.main]\npath = " + b"[" * 100_000, "nests arrays or tables too deeply"),
        (b"members = " + b"{a=" * 100_000, "nests arrays or tables too deeply"),
    ],
)
def test_bad_configuration_files(tmp_path, text, message):
    """Each malformed configuration is one ConfigurationError sentence."""
    path = tmp_path / "federation.toml"
    path.write_bytes(text)
    with pytest.raises(federation.FederationError, match=message):
        federation.open_config(path)


def test_a_directory_as_configuration(tmp_path):
    """A directory given as the configuration file is a ConfigurationError."""
    with pytest.raises(federation.ConfigurationError, match="Cannot read"):
        federation.open_config(tmp_path)


def test_locked_file_storage_names_member_and_file(tmp_path):
    """A FileStorage another process (here: another storage) holds is a clear error."""
    path = tmp_path / "main.fs"
    holder = FileStorage(str(path))
    try:
        with pytest.raises(federation.MemberOpenError) as caught:
            federation.open({"main": path.as_uri()})
        message = str(caught.value)
        assert "Member 'main'" in message and "main.fs" in message and "locked" in message
    finally:
        holder.close()


def test_two_members_on_one_file(tmp_path):
    """Two members naming one file: the second is refused as locked, the first is closed."""
    uri = (tmp_path / "one.fs").as_uri()
    with pytest.raises(federation.MemberOpenError, match=r"Member 'b'.*locked"):
        federation.open({"a": uri, "b": uri})
    federation.open({"a": uri}).close()  # the first member's lock was released


@pytest.mark.parametrize("bad", ["garbage.fs", "folder", "missing/x.fs"])
def test_a_failed_open_closes_every_storage(tmp_path, bad):
    """When one member cannot be opened, the storages already opened are closed again."""
    (tmp_path / "garbage.fs").write_bytes(b"this is not a FileStorage" * 4)
    (tmp_path / "folder").mkdir()
    good = (tmp_path / "good.fs").as_uri()
    with pytest.raises(federation.MemberOpenError, match="Member 'bad'"):
        federation.open({"good": good, "bad": (tmp_path / bad).as_uri()})
    # No file stays locked: the good one opens again, and the bad one's lock is free.
    federation.open({"good": good}).close()
    if bad == "garbage.fs":
        zc.lockfile.LockFile(str(tmp_path / "garbage.fs.lock")).close()


def test_garbage_file_is_named_as_not_a_file_storage(tmp_path):
    """A file that is not a FileStorage is named as such."""
    path = tmp_path / "notes.fs"
    path.write_bytes(b"\x00" * 64)
    with pytest.raises(federation.MemberOpenError, match=r"'notes'.*not a FileStorage file"):
        federation.open({"notes": path.as_uri()})


def test_a_missing_folder_is_named(tmp_path):
    """A FileStorage in a folder that does not exist names member and folder."""
    uri = (tmp_path / "nope" / "main.fs").as_uri()
    with pytest.raises(federation.MemberOpenError,
                       match=r"Member 'main'.*the folder '.*nope' does not exist"):
        federation.open({"main": uri})


def test_adapter_factory_failure_is_typed():
    """An adapter factory that raises its own error gives a FederationError naming the member."""
    def broken() -> None:
        raise RuntimeError("no such table")

    with pytest.raises(federation.MemberOpenError, match=r"'people'.*RuntimeError: no such table"):
        federation.open({"main": "memory://", "people": broken})


@pytest.mark.parametrize("result", [3, None, "people", object()])
def test_adapter_factory_returning_no_adapter(result):
    """A factory that returns something else than an adapter is named with what it returned."""
    with pytest.raises(federation.ConfigurationError,
                       match=r"Member 'people': its adapter factory returned .* not an adapter"):
        federation.open({"people": lambda: result})


@pytest.mark.parametrize("catalog", ["a string", 42, ["list"]])
def test_wrong_typed_catalog_is_a_clear_error(tmp_path, catalog):
    """A catalog replaced by other software gives a CorruptRecord naming member and record."""
    path = tmp_path / "main.fs"
    db = ZODB.DB(str(path))
    with db.transaction() as conn:
        setattr(conn.root(), CATALOG_ATTRIBUTE, catalog)
    db.close()
    other = (tmp_path / "other.fs").as_uri()
    with pytest.raises(federation.CorruptRecord) as caught:
        federation.open({"other": other, "main": path.as_uri()})
    assert "Member 'main'" in str(caught.value) and CATALOG_ATTRIBUTE in str(caught.value)
    federation.open({"other": other}).close()  # nothing was left open or locked
    db = ZODB.DB(str(path))  # nothing was written over the record
    with db.transaction() as conn:
        assert getattr(conn.root(), CATALOG_ATTRIBUTE) == catalog
    db.close()


@pytest.mark.parametrize("member_id", [None, "", "bad:id@x", "with space", "x" * 65])
def test_catalog_without_a_usable_member_id_is_a_clear_error(tmp_path, member_id):
    """A Catalog whose member id is not text, or not text that reference text can carry
    (edited by hand), is refused the same way."""
    path = tmp_path / "main.fs"
    db = ZODB.DB(str(path))
    with db.transaction() as conn:
        catalog = Catalog()
        catalog.member_id = member_id
        setattr(conn.root(), CATALOG_ATTRIBUTE, catalog)
    db.close()
    with pytest.raises(federation.CorruptRecord, match=r"Member 'main'.*member_id is "):
        federation.open({"main": path.as_uri()})


def test_manager_open_failure_closes_the_jars_it_opened(tmp_path):
    """A member whose session cannot be made fails fed.open() and leaves no connection open."""
    people = MemoryDatabase("people", Item)
    failing = []

    def flaky() -> Any:
        if failing:  # the sessions at open work, the first manager's session does not
            failing.pop()
            raise federation.MemberUnavailable("people")
        return people()

    fed = federation.open({"main": (tmp_path / "main.fs").as_uri(), "people": flaky})
    failing.append(True)
    try:
        tm = transaction.TransactionManager()
        with pytest.raises(federation.MemberUnavailable):
            fed.open(tm)
        [jars] = fed._idle
        assert [jar.opened for jar in jars.values()] == [None]  # main's connection was closed
        with fed.open(tm) as conn:  # and is used again
            assert conn.jar("main") is jars["main"]
    finally:
        fed.close()
