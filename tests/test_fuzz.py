"""Fuzzing the inputs a user gives: only typed FederationErrors (or success) come out.

Configurations (TOML and ZConfig text, parsed tables, foreign members with
adapter options), member specifications given
to ``federation.open`` and the text of every key kind are drawn at random;
whatever happens, the only exceptions allowed are :class:`FederationError`
subclasses whose message is one readable sentence.
"""

from __future__ import annotations

import contextlib
import json
import math
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import transaction
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ZODB.MappingStorage import MappingStorage

import federation
from federation import resolvers
from federation.adapters import sql
from federation.cli import main
from tests.models import Person

FUZZ = settings(max_examples=60, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])

# -- values -----------------------------------------------------------------

scalars = (st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False)
           | st.text(max_size=20))
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=3),
    max_leaves=6,
)
member_names = st.sampled_from(["main", "notes", "a.b-c", "_x", "bad name", "", "1st", "é"]) \
    | st.sampled_from(["main", "notes", "people"]) | st.text(max_size=10)

# Paths inside the test's folder (never outside it), good and bad.
path_names = (
    st.sampled_from(["m.fs", "n.fs", "dir", "missing/x.fs", "garbage.fs", "empty.fs",
                     "nul\x00.fs", "x" * 300 + ".fs", "config.toml", "."])
    | st.text(st.characters(exclude_characters="/\\", codec="utf-8"), min_size=1,
              max_size=12).filter(lambda name: name not in {".", ".."})
)


def uris(folder: Path) -> st.SearchStrategy[str]:
    """zodburi URIs, good and bad, that never reach the network or leave ``folder``
    (relative ones are relative to the working directory: tests run in ``folder``)."""
    in_folder = path_names.map(lambda name: "file://" + str(folder) + "/" + name)
    return (
        in_folder
        | path_names.map(lambda name: "zconfig://" + str(folder) + "/" + name)
        | st.sampled_from([
            "memory://", "memory://x?database_name=y", "file://", "file:///",
            "file://relative.fs", "zeo://", "zeo://host:port:extra", "zeo://[::1",
            "zeo://127.0.0.1:notaport", "zeo://127.0.0.1:99999999", "nope://x", "",
            "://", "file://%ff%fe", "memory://?cache_size=many", "file:///?read_only=maybe",
            "postgres://u:secret@/db", "demo:memory://", "zconfig://",
        ])
        | st.text(max_size=30)
    )


def weighted(usual: st.SearchStrategy[Any], rare: st.SearchStrategy[Any],
             odds: int) -> st.SearchStrategy[Any]:
    """``usual``, except once in ``odds`` draws ``rare``."""
    return st.integers(0, odds - 1).flatmap(lambda i: rare if i == 0 else usual)


def toml_value(value: Any) -> str:
    """``value`` as TOML text (strings as JSON, which TOML's basic strings accept)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    return "{" + ", ".join(f"{json.dumps(k, ensure_ascii=False)} = {toml_value(v)}"
                           for k, v in value.items()) + "}"


#: Option values of the built-in adapters that never reach the network (port 1 is closed).
SERVERS = st.sampled_from([
    "host=127.0.0.1 port=1 dbname=x connect_timeout=1",
    "postgresql://u:secret@127.0.0.1:1/x?connect_timeout=1", "not a conninfo ===",
    "ldap://127.0.0.1:1", "ldaps://127.0.0.1:1", "http://127.0.0.1:1", ""])
names_to_names = st.dictionaries(
    st.sampled_from(["name", "email", "owner", "login", "Name"]) | st.text(max_size=6),
    st.sampled_from(["name", "email", "owner", "cn", "uid", "bad column", ""])
    | st.fixed_dictionaries({"name": st.sampled_from(["cn", "uid", "1bad"])}, optional={
        "type": st.sampled_from(["str", "int", "bool", "float"]) | values,
        "multi": st.booleans() | values}) | values,
    max_size=3)


def foreign_tables() -> st.SearchStrategy[dict[str, Any]]:
    """A foreign member's table: an adapter named somehow, and options good and bad."""
    options = st.fixed_dictionaries({}, optional={
        "path": path_names | values,
        "table": st.sampled_from(["person", "missing", "sqlite_master", "1bad"]) | values,
        "class": st.sampled_from(["tests.models.Person", "tests.models.Nobody", "tests.models",
                                  "tests.models:Person", "os.path.join", "x", ""]) | values,
        "key": st.sampled_from(["id", "name", "bad key"]) | values,
        "columns": names_to_names, "refs": names_to_names, "attributes": names_to_names,
        "kind": st.sampled_from(["integer", "uuid", "uid", "dn"]) | values,
        "key_attribute": st.sampled_from(["name", ""]) | values,
        "batch_size": st.integers(-1, 3) | st.sampled_from(["2", "two"]) | values,
        "timeout": st.sampled_from([0, 0.1, -1, "0", "soon", float("inf")]) | values,
        "conninfo": SERVERS | values, "uri": SERVERS | values,
        "password_env": st.sampled_from(["ZFED_FUZZ_PASSWORD", "ZFED_FUZZ_UNSET", ""]) | values,
        "base": st.sampled_from(["dc=example,dc=org", "not a dn", ""]) | values,
        "object_classes": st.sampled_from([["person"], [], "person", [""]]) | values,
        "rdn": st.sampled_from(["uid", "cn", "1x"]) | values,
        "start_tls": st.booleans() | st.sampled_from(["yes", "maybe"]),
        "colour": values,
    })
    return st.fixed_dictionaries(
        {"adapter": st.sampled_from(["sqlite", "postgresql", "ldap", "nope", "",
                                     "tests.test_fuzz:no_such_factory", "os.path:join",
                                     "tests.models:Person"]) | values},
        optional={"options": options | values, "read_only": st.booleans() | values,
                  "key": values},
    )


def settings_of(folder: Path) -> st.SearchStrategy[dict[str, Any]]:
    """A member table: mostly plausible settings, sometimes of any type, and strangers."""
    plausible = foreign_tables() | st.fixed_dictionaries(
        {"path": path_names},
        optional={"key": st.sampled_from(["integer", "uuid", "dn", "nope"]),
                  "read_only": st.booleans() | st.sampled_from(["false", "true", 0, 1])},
    ) | st.fixed_dictionaries(
        {"uri": uris(folder)},
        optional={"key": st.sampled_from(["integer", "uuid"]), "read_only": st.booleans()},
    )
    wild = st.fixed_dictionaries({}, optional={
        "path": path_names | values,
        "uri": uris(folder) | values,
        "source": uris(folder) | values,
        "key": st.sampled_from(["integer", "uuid", "dn", "uid", "nope", ""]) | values,
        "read_only": st.booleans() | values,
        "adapter": values,
        "colour": values,
    })
    return weighted(plausible, wild, 4)


def configurations(folder: Path) -> st.SearchStrategy[str]:
    """TOML text of a federation configuration, sometimes broken."""
    def render(members: dict[str, Any], placement: Any, extra: str) -> str:
        lines = [] if placement is None else [f"placement = {toml_value(placement)}"]
        lines.append("[members]")
        lines += [f"{json.dumps(name, ensure_ascii=False)} = {toml_value(table)}"
                  for name, table in members.items()]
        return "\n".join(lines) + "\n" + extra

    tables = st.dictionaries(member_names, weighted(settings_of(folder), values, 5),
                             min_size=1, max_size=3)
    placements = st.none() | st.none() | values | st.dictionaries(
        st.sampled_from(["tests.models.Item", "no.such.Class", "", "x"]) | st.text(max_size=8),
        member_names | values, max_size=2)
    extras = weighted(st.just(""), st.sampled_from([
        "[members]\n", "members = 3\n", "[placement]\nx = 1\n", "\x00", "[[members]]\n",
        "= broken\n"]), 8)
    return weighted(st.builds(render, tables, placements, extras), st.text(max_size=60), 8)


def prepare(folder: Path) -> None:
    """Files the drawn paths may name: a directory, garbage, an empty file, a SQLite file."""
    (folder / "dir").mkdir(exist_ok=True)
    with contextlib.closing(sqlite3.connect(folder / "n.fs")) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS person (id INTEGER PRIMARY KEY, name TEXT)")
    (folder / "garbage.fs").write_bytes(b"not a FileStorage" * 10)
    (folder / "empty.fs").write_bytes(b"")


def check_error(error: Exception) -> None:
    """A typed error with a one-line, readable message."""
    assert isinstance(error, federation.FederationError), repr(error)
    message = str(error)
    assert message and "\n" not in message, repr(message)
    assert len(message) < 1200, len(message)
    assert "secret" not in message


def open_and_close(opener: Any, *args: Any) -> None:
    try:
        fed = opener(*args)
    except Exception as error:  # the check below is the point of the test
        check_error(error)
        return
    try:
        with fed.open(transaction.TransactionManager()) as conn:
            for name, member in fed.members.items():
                try:
                    if member.db is not None:
                        conn.root(name)
                    else:  # a foreign member: load a record
                        conn.get(f"{name}:{member.kind}:1")
                except Exception as error:
                    check_error(error)
    finally:
        fed.close()


# -- the tests --------------------------------------------------------------


@FUZZ
@given(data=st.data())
def test_open_config_raises_only_federation_errors(tmp_path: Path, data: st.DataObject,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Any TOML text as a configuration opens, or raises a FederationError."""
    monkeypatch.chdir(tmp_path)  # relative URIs land here
    monkeypatch.setenv("ZFED_FUZZ_PASSWORD", "secret")  # never in a message
    prepare(tmp_path)
    config = tmp_path / "config.toml"
    config.write_text(data.draw(configurations(tmp_path)), encoding="utf-8", errors="replace")
    open_and_close(federation.open_config, config)


def zconfig_texts(folder: Path) -> st.SearchStrategy[str]:
    """ZConfig text of a federation: <zodb> sections and a <federation> section, often broken."""
    storages = weighted(st.just("<mappingstorage>\n</mappingstorage>\n"),
                        st.sampled_from(["", "<nostorage>\n"]), 6) | (
        path_names | st.just(str(folder / "m.fs"))).map(
        lambda path: f"<filestorage>\npath {path}\n</filestorage>\n")
    section_names = weighted(st.sampled_from(["main", "notes", "people"]),
                             st.sampled_from(["", "bad name", "x y", "é"]), 6)
    lines = st.sampled_from(["cache-size 10", "cache-size many", "database-name notes",
                             "colour red", "", "<", "%define X", "$X", "key uuid", "key dn",
                             "read-only on", "read-only maybe", "create on", "path m.fs",
                             "adapter sqlite", "adapter nope", "table person",
                             "class tests.models.Person", "password-env ZFED_FUZZ_PASSWORD",
                             "placement tests.models.Item main", "placement x"])
    lines = weighted(lines, st.text(max_size=12), 10)
    body = st.lists(lines, max_size=3).map("\n".join)
    zodb = st.builds(lambda name, storage, extra: f"<zodb {name}>\n{extra}\n{storage}</zodb>\n",
                     section_names, storages, body)
    member = st.builds(lambda name, extra: f"<member {name}>\n{extra}\n</member>\n",
                       section_names, body)
    mapping = st.builds(lambda name, extra: f"<mapping {name}>\n{extra}\n</mapping>\n",
                        st.sampled_from(["columns", "refs", "path"]), body)
    foreign = st.builds(lambda name, extra, tables: f"<foreign {name}>\n{extra}\n"
                        f"{''.join(tables)}</foreign>\n",
                        section_names, body, st.lists(mapping, max_size=2))
    federation_section = st.builds(
        lambda parts, extra: f"<federation>\n{extra}\n{''.join(parts)}</federation>\n",
        st.lists(member | foreign, max_size=3), body)
    return st.builds(
        lambda imports, zodbs, sections: imports + "".join(zodbs) + "".join(sections),
        weighted(st.just("%import federation\n"),
                 st.sampled_from(["", "%import nosuchpackage\n"]), 6),
        st.lists(zodb, max_size=3), st.lists(federation_section, max_size=2))


@FUZZ
@given(data=st.data())
def test_open_zconfig_raises_only_federation_errors(tmp_path: Path, data: st.DataObject,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Any ZConfig text as a configuration opens, or raises a FederationError."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ZFED_FUZZ_PASSWORD", "secret")
    prepare(tmp_path)
    config = tmp_path / "config.conf"
    config.write_text(data.draw(zconfig_texts(tmp_path)), encoding="utf-8", errors="replace")
    open_and_close(federation.open_config, config)


@FUZZ
@given(data=st.data())
def test_foreign_member_tables_raise_only_federation_errors(
        tmp_path: Path, data: st.DataObject, monkeypatch: pytest.MonkeyPatch) -> None:
    """A configuration with a foreign member's table of any options opens, or raises a
    FederationError that never shows the password."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ZFED_FUZZ_PASSWORD", "secret")
    prepare(tmp_path)
    table = data.draw(foreign_tables())
    config = tmp_path / "config.toml"
    config.write_text('[members.main]\npath = "main.fs"\ncreate = true\n'
                      f"[members]\npeople = {toml_value(table)}\n", encoding="utf-8")
    open_and_close(federation.open_config, config)


@FUZZ
@given(data=st.data())
def test_open_config_of_bad_files_raises_only_federation_errors(
        tmp_path: Path, data: st.DataObject, monkeypatch: pytest.MonkeyPatch) -> None:
    """A configuration that is not UTF-8, not a file or missing raises a FederationError."""
    monkeypatch.chdir(tmp_path)
    prepare(tmp_path)
    config = tmp_path / data.draw(st.sampled_from(["config.toml", "dir", "missing.toml"]))
    if config.name == "config.toml":
        config.write_bytes(data.draw(st.binary(max_size=40)))
    open_and_close(federation.open_config, config)


def member_specs(folder: Path) -> st.SearchStrategy[Any]:
    """What ``federation.open`` may be given for a member."""
    def factory_of(result: Any) -> Any:
        return lambda: result

    def failing_factory() -> Any:
        raise RuntimeError("the adapter factory broke")

    def sqlite_member(name: str, table_name: str) -> sql.SqlDatabase:
        table = sql.Table(table_name, Person, key="id", columns={"name": "name"})
        return sql.sqlite("people", str(folder / name), table, timeout=0)

    sqlite_members = st.builds(sqlite_member, path_names,
                               st.sampled_from(["person", "missing", "sqlite_master"]))
    return (
        uris(folder)
        | settings_of(folder)
        | values
        | sqlite_members
        | st.builds(MappingStorage)
        | st.builds(factory_of, values)
        | st.just(failing_factory)
        | st.just(object())
    )


@FUZZ
@given(data=st.data())
def test_open_raises_only_federation_errors(tmp_path: Path, data: st.DataObject,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Any member specifications and placement open, or raise a FederationError."""
    monkeypatch.chdir(tmp_path)  # relative URIs land here
    prepare(tmp_path)
    members = data.draw(st.dictionaries(member_names | st.integers(), member_specs(tmp_path),
                                        max_size=3) | values)
    placement = data.draw(st.none() | values | st.dictionaries(
        st.sampled_from(["tests.models.Item", ""]) | st.just(int) | values.filter(
            lambda v: isinstance(v, (str, int, float))),
        member_names | values, max_size=2))
    open_and_close(lambda: federation.open(members, placement=placement))


KEY_INPUTS = (st.text(max_size=40) | st.binary(max_size=20) | values | st.none()
              | st.sampled_from(["cn=a,dc=b", "0x" + "f" * 40, "urn:uuid:", "\\", "cn=#zz",
                                 "cn=\\ff\\fe", "a=b+a=b", "9" * 5000]))


@pytest.mark.parametrize("kind", sorted(resolvers.kinds()))
@settings(max_examples=200, deadline=None)
@given(value=KEY_INPUTS)
def test_key_kinds_raise_only_invalid_key(kind: str, value: Any) -> None:
    """parse, coerce, format, encode and decode take anything and raise only InvalidKey."""
    resolver = resolvers.get(kind)
    for method in (resolver.parse, resolver.coerce, resolver.format, resolver.encode,
                   resolver.decode):
        try:
            method(value)
        except federation.InvalidKey as error:
            check_error(error)


@settings(max_examples=100, deadline=None)
@given(name=values | st.none())
def test_resolvers_get_raises_only_unknown_kind(name: Any) -> None:
    """resolvers.get of anything is a kind or an UnknownKind, never a TypeError."""
    try:
        resolvers.get(name)
    except federation.UnknownKind as error:
        check_error(error)


@settings(max_examples=100, deadline=None)
@given(text=st.text(max_size=40) | values)
def test_ref_parse_raises_only_invalid_key(text: Any) -> None:
    """Ref.parse of anything is a Ref or an InvalidKey/UnknownKind."""
    try:
        federation.Ref.parse(text)
    except federation.FederationError as error:
        check_error(error)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_zfed_commands_never_crash(tmp_path: Path, data: st.DataObject,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """zfed stubs, reindex and pack on any configuration: output, or one 'Error:' line."""
    monkeypatch.chdir(tmp_path)
    prepare(tmp_path)
    config = tmp_path / "config.toml"
    config.write_text(data.draw(configurations(tmp_path)), encoding="utf-8", errors="replace")
    command = data.draw(st.sampled_from(["stubs", "reindex", "pack"]))
    args = [command, "--", str(config)] + ([] if command == "pack" else [data.draw(member_names)])
    result = CliRunner().invoke(main, args)
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        repr(result.exception))
    if result.exit_code:
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
