"""No password in any message, repr, log record or zfed output.

Each test makes members fail in the ways a user meets (server gone,
malformed connection string, wrong password) and searches everything the
federation says about them for the password.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import transaction
import ZEO
from click.testing import CliRunner

import federation
from federation.adapters import sql
from federation.adapters.ldap import Directory
from federation.cli import main
from tests.ldap_helpers import Account
from tests.models import Person

SECRET = "Sw0rdf1sh-Secret"

pytestmark = pytest.mark.server


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _texts(error: BaseException | None) -> Iterator[str]:
    """The message and repr of ``error`` and of every error it was raised from."""
    while error is not None:
        yield str(error)
        yield repr(error)
        error = error.__cause__ if error.__cause__ is not None else (
            None if error.__suppress_context__ else error.__context__)


def _assert_hidden(*texts: Any, caplog: pytest.LogCaptureFixture | None = None) -> None:
    everything = [str(text) for text in texts]
    if caplog is not None:
        everything += [record.getMessage() for record in caplog.records]
        everything += [caplog.text]
    for text in everything:
        assert SECRET not in text, text


def _failure(function: Any) -> list[str]:
    """The texts of the FederationError ``function`` raises (it must raise one)."""
    with pytest.raises(federation.FederationError) as caught:
        function()
    return list(_texts(caught.value))


# -- ZEO -------------------------------------------------------------------------


@pytest.fixture
def zeo_uri(tmp_path: Path) -> Iterator[str]:
    """A running ZEO server's URI, with a username and password."""
    (host, port), stop = ZEO.server(path=str(tmp_path / "zeo.fs"), port=("127.0.0.1", 0))
    yield f"zeo://{host}:{port}?wait_timeout=5&username=app&password={SECRET}"
    stop()


@pytest.mark.parametrize("uri", [
    f"zeo://127.0.0.1:notaport?password={SECRET}",
    f"zeo://app:{SECRET}@127.0.0.1:99999999",
    f"zeo://127.0.0.1:1?password={SECRET}&wait_timeout=soon",
    f"file:///nonexistent/dir/x.fs?password={SECRET}",
])
def test_bad_zeo_uris_hide_the_password(uri, caplog):
    """A malformed URI with a password is refused without quoting the password."""
    caplog.set_level(logging.DEBUG)
    texts = _failure(lambda: federation.open({"main": uri}))
    _assert_hidden(*texts, caplog=caplog)


def test_unreachable_zeo_server_hides_the_password(caplog):
    """A ZEO member that cannot be reached is logged and reported without its password."""
    caplog.set_level(logging.DEBUG)
    uri = f"zeo://127.0.0.1:{_free_port()}?wait=false&username=app&password={SECRET}"
    with federation.open({"main": uri, "notes": "memory://"}) as fed:
        member = fed.member("main")
        assert not member.available
        with fed.open(transaction.TransactionManager()) as conn:
            texts = _failure(lambda: conn.root("main"))
        _assert_hidden(*texts, repr(fed), repr(member), member.error, caplog=caplog)


def test_zfed_output_hides_zeo_passwords(zeo_uri, tmp_path):
    """zfed's output, success or failure, never shows the password of a zeo:// URI."""
    runner = CliRunner()
    good = tmp_path / "good.toml"
    good.write_text(f'[members.main]\nuri = "{zeo_uri}"\n')
    unreachable = tmp_path / "unreachable.toml"
    unreachable.write_text(
        f'[members.main]\nuri = "zeo://127.0.0.1:{_free_port()}?wait=false&password={SECRET}"\n')
    malformed = tmp_path / "malformed.toml"
    malformed.write_text(f'[members.main]\nuri = "zeo://app:{SECRET}@127.0.0.1:notaport"\n')
    for config, code in [(good, 0), (unreachable, 1), (malformed, 1)]:
        for command in (["stubs", str(config), "main"], ["reindex", str(config), "main"],
                        ["stubs", str(config), "nope"]):
            result = runner.invoke(main, command)
            assert not isinstance(result.exception, AssertionError)
            _assert_hidden(result.output, *_texts(result.exception))
        assert runner.invoke(main, ["stubs", str(config), "main"]).exit_code == code


# -- PostgreSQL ------------------------------------------------------------------

TABLE = sql.Table("person", Person, key="id", columns={"name": "name"})


@pytest.mark.parametrize("conninfo", [
    f"postgresql://app:{SECRET}@[::1/db",
    f"host=127.0.0.1 port=1 password={SECRET} bogus",
    f"host=127.0.0.1 port={{port}} user=nobody password={SECRET} sslmode=bogus",
    f"postgresql://app:{SECRET}@127.0.0.1:{{port}}/db?sslmode=bogus",
    f"host=127.0.0.1 port={{free}} password='{SECRET}' connect_timeout=2",
])
def test_failing_postgresql_members_hide_the_password(postgresql_server, conninfo, caplog):
    """Malformed or unusable connection strings fail without quoting the password."""
    caplog.set_level(logging.DEBUG)
    conninfo = conninfo.format(port=postgresql_server.port, free=_free_port())
    member = sql.postgresql("people", conninfo, TABLE)
    texts = _failure(lambda: federation.open({"people": member}))
    _assert_hidden(*texts, repr(member), caplog=caplog)


def test_working_postgresql_member_hides_the_password(postgresql_server, caplog):
    """A member whose connection string has a password shows it in no repr or log."""
    caplog.set_level(logging.DEBUG)
    conninfo = f"{postgresql_server.dsn} password={SECRET}"
    member = sql.postgresql("people", conninfo, TABLE)
    adapter = member()
    try:
        _assert_hidden(repr(member), repr(adapter), repr(adapter._conn), str(adapter._conn),
                       caplog=caplog)
        texts = _failure(lambda: adapter._call(_raise_with(conninfo)))
        _assert_hidden(*texts)
    finally:
        adapter.close()


def _raise_with(conninfo: str) -> Any:
    """A driver call that fails quoting the connection string (as libpq's URI errors do)."""
    import psycopg

    def call() -> None:
        raise psycopg.ProgrammingError(f"cannot parse {conninfo!r}")
    return call


# -- LDAP ------------------------------------------------------------------------


def _directory(uri: str, bind_dn: str, password: str) -> Directory:
    from federation.adapters.ldap import Entries
    entries = Entries(Account, base="ou=people,dc=example,dc=org",
                      object_classes=("inetOrgPerson",), rdn="uid",
                      attributes={"login": "uid", "name": "cn"})
    return Directory("people", uri, entries, bind_dn=bind_dn, password=password, timeout=2)


def test_ldap_connection_repr_hides_the_password(slapd_server, caplog):
    """repr() and str() of the adapter's ldap3 connection and of the Directory hide it."""
    caplog.set_level(logging.DEBUG)
    # The server's admin password is the secret of this test: put it in the message search.
    password = slapd_server.admin_password
    directory = _directory(slapd_server.uri, slapd_server.admin_dn, password)
    adapter = directory()
    try:
        texts = [repr(adapter.connection), str(adapter.connection), repr(directory),
                 repr(adapter), caplog.text]
        for text in texts:
            assert password not in text, text
    finally:
        adapter.close()


def test_failing_ldap_members_hide_the_password(slapd_server, caplog):
    """A wrong password and an unreachable server fail without quoting the password."""
    caplog.set_level(logging.DEBUG)
    wrong = _directory(slapd_server.uri, slapd_server.admin_dn, SECRET)
    gone = _directory(f"ldap://127.0.0.1:{_free_port()}", slapd_server.admin_dn, SECRET)
    for directory in (wrong, gone):
        texts = _failure(lambda directory=directory: federation.open({"people": directory}))
        _assert_hidden(*texts, repr(directory), caplog=caplog)
