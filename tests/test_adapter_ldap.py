"""The LDAP adapter against a real slapd: conformance, keys, binds, TLS, failures, transactions.

Values and converters are tested in tests/test_ldap_values.py, renamed and
moved entries in tests/test_ldap_renames.py; the helpers they share are in
tests/ldap_helpers.py.
"""

from __future__ import annotations

import math
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import transaction
from persistent import Persistent

import federation
from federation.adapters.ldap import Attribute, Directory, Entries
from federation.resolvers.dn import DN
from tests.conformance import AdapterConformance, ForeignFixture
from tests.helpers import run_docs_page
from tests.ldap_helpers import (  # noqa: F401 - fixture ou
    Account,
    admin,
    directory,
    make_ou,
    ou_fixture,
    people_entries,
    raw_entry,
    remove_tree,
    searches,
    seeder,
)
from tests.models import Item, Person
from tests.servers.slapd import SlapdServer, running_slapd

pytestmark = pytest.mark.server


# -- conformance ------------------------------------------------------------------

class TestLdap(AdapterConformance):
    """OpenLDAP: the last resource of a transaction, keyed by DN."""

    @pytest.fixture
    def foreign(self, slapd_server, ou):
        others = make_ou(slapd_server)
        yield ForeignFixture(
            spec=directory(slapd_server, "people", people_entries(ou), batch_size=10),
            seed=seeder(slapd_server, ou), two_phase=False, batch_size=10,
            bad_record={"name": ""},
            second_spec=directory(slapd_server, "others", people_entries(others)),
            kind="dn", key=lambda n: DN(f"uid=p{n},{ou}"),
        )
        with admin(slapd_server) as conn:
            remove_tree(conn, others)


# -- batches, escaping, keys ------------------------------------------------------------

def test_batched_loads_cost_one_search_per_batch(slapd_server, ou, tmp_path):
    """Following N references costs ceil(N / batch) LDAP searches, and none on a warm cache."""
    seed = seeder(slapd_server, ou)
    count, batch = 13, 5
    for n in range(1, count + 1):
        seed(n, {"name": f"P{n}"})
    members = {"main": (tmp_path / "main.fs").as_uri(),
               "people": directory(slapd_server, "people", people_entries(ou), batch_size=batch)}
    with federation.open(members) as fed:
        with fed.open() as conn:
            people = conn.jar("people")
            for n in range(1, count + 1):
                oid = federation.Ref("people", "dn", f"uid=p{n},{ou}").encoded_key
                conn.root("main")[f"r{n}"] = Item(f"r{n}", people.ghost(oid))
            transaction.commit()
        with fed.open() as conn:
            before = searches(conn)
            names = [conn.root("main")[f"r{n}"].link.name for n in range(1, count + 1)]
            assert names == [f"P{n}" for n in range(1, count + 1)]
            assert searches(conn) - before == math.ceil(count / batch)
            assert [conn.root("main")[f"r{n}"].link.name for n in range(1, count + 1)] == names
            assert searches(conn) - before == math.ceil(count / batch)
            transaction.abort()


class Named(Persistent):
    """A person named by the RDN cn=<name>."""

    def __init__(self, name: str) -> None:
        self.name = name


NAMES = ["a,b", "a\\b", "a+b", "#start", " lead", "trail ", "x=y", "cn=a\\,b", '"q"<>;',
         "*)(uid=*", "Zoë"]


def named_members(server: SlapdServer, base: str, tmp_path: Path) -> dict[str, Any]:
    """'main' and a member 'people' of Named entries below ``base``, named by their cn."""
    entries = Entries(Named, base=base, object_classes=("inetOrgPerson",), rdn="cn",
                      attributes={"name": "cn"}, on_create={"sn": "-"})
    return {"main": (tmp_path / "main.fs").as_uri(),
            "people": directory(server, "people", entries)}


def test_rdn_values_are_escaped_and_round_trip(slapd_server, ou, tmp_path):
    """Entries named by values with DN syntax in them are created, reopened and found by Ref."""
    members = named_members(slapd_server, ou, tmp_path)
    with federation.open(members) as fed, fed.open() as conn:
        refs = {}
        for name in NAMES:
            obj = Named(name)
            conn.add(obj, "people")
            refs[name] = str(conn.ref(obj))
        transaction.commit()
    assert refs["a,b"] == f"people:dn:cn=a\\,b,{ou}"
    assert refs["cn=a\\,b"] == f"people:dn:cn=cn\\=a\\\\\\,b,{ou}"
    assert refs[" lead"].startswith("people:dn:cn=\\ lead,")
    with federation.open(members) as fed, fed.open() as conn:
        for name, ref in refs.items():
            assert conn.get(ref).name == name
            assert conn.jar("people").find("name", name) == [conn.get(ref)]
        transaction.abort()


def test_find_with_filter_syntax_returns_only_the_exact_entry(slapd_server, ou, tmp_path):
    """find() escapes its value: '*)(uid=*' matches the one entry named so, not every entry."""
    seed = seeder(slapd_server, ou)
    for n, name in enumerate(["*)(uid=*", "Ada", "*"], start=1):
        seed(n, {"name": name})
    members = {"main": (tmp_path / "main.fs").as_uri(),
               "people": directory(slapd_server, "people", people_entries(ou))}
    with federation.open(members) as fed, fed.open() as conn:
        jar = conn.jar("people")
        assert [conn.ref(p).key for p in jar.find("name", "*)(uid=*")] == [DN(f"uid=p1,{ou}")]
        assert [p.name for p in jar.find("name", "*")] == ["*"]
        assert [p.name for p in jar.find("email", None)] == ["*)(uid=*", "Ada", "*"]
        with pytest.raises(federation.FederationError, match=r"'people'.*'phone'"):
            jar.find("phone", "1")
        transaction.abort()


def test_changing_the_naming_attribute_is_a_clear_error(slapd_server, ou, tmp_path):
    """Changing the value an entry is named by fails naming member and DN; the entry stays."""
    members = named_members(slapd_server, ou, tmp_path)
    with federation.open(members) as fed, fed.open() as conn:
        with pytest.raises(federation.FederationError, match="'people' cannot name a new entry"):
            conn.add(Named(None), "people")
        conn.add(Named("Ada"), "people")
        transaction.commit()
        conn.get(f"people:dn:cn=Ada,{ou}").name = "Grace"
        with pytest.raises(federation.FederationError,
                           match=f"'people'.*cn=Ada,{ou}.*rename the entry"):
            transaction.commit()
        transaction.abort()
        assert conn.get(f"people:dn:cn=Ada,{ou}").name == "Ada"
        transaction.abort()


def sample_people(server: SlapdServer, **options: Any) -> Directory:
    """The sample tree's people (alice, bob, carol) as Accounts, read by uid, cn and mail."""
    entries = Entries(Account, base=f"ou=people,{server.base_dn}",
                      object_classes=("inetOrgPerson",), rdn="uid",
                      attributes={"login": "uid", "name": "cn", "email": "mail"})
    settings = {"bind_dn": server.admin_dn, "password": server.admin_password, **options}
    return Directory("people", server.uri, entries, **settings)


def test_uid_keys_resolve_to_dns(slapd_server, tmp_path):
    """people:uid:alice costs one search for the DN and one for the entry; unknown uids are
    KeyNotFound."""
    members = {"main": (tmp_path / "main.fs").as_uri(), "people": sample_people(slapd_server)}
    with federation.open(members) as fed, fed.open() as conn:
        before = searches(conn)
        alice = conn.get("people:uid:alice")
        assert alice.name == "Alice Archer"
        assert searches(conn) - before == 2
        assert conn.ref(alice) == federation.Ref(
            "people", "dn", f"uid=alice,ou=people,{slapd_server.base_dn}")
        assert conn.get(conn.ref(alice)) is alice
        assert conn.lookup("bob", kind="uid").email == "bob@example.org"
        with pytest.raises(federation.KeyNotFound, match=r"uid key nobody.*'people'"):
            conn.get("people:uid:nobody")
        transaction.abort()


def test_resolve_by_uid_refuses_ambiguous_and_other_kinds(slapd_server, ou):
    """Two entries with one uid are an error naming both; other key kinds are refused."""
    entries = Entries(Account, base=ou, object_classes=("inetOrgPerson",), rdn="cn",
                      attributes={"login": "uid", "name": "cn"}, on_create={"sn": "-"})
    adapter = directory(slapd_server, "people", entries)()
    try:
        adapter.begin("zfed-test")
        for name in ("One", "Two"):
            adapter.create(adapter.new_key({"name": name}), {"login": "twin", "name": name})
        adapter.commit()
        with pytest.raises(federation.FederationError, match=r"'people' has 2 entries.*'twin'"):
            adapter.resolve("uid", "twin")
        with pytest.raises(federation.InvalidKey, match="'people' resolves only uid"):
            adapter.resolve("uuid", "0" * 32)
        with pytest.raises(federation.InvalidKey):
            adapter.resolve("uid", "*)(uid=*")
    finally:
        adapter.close()


# -- binds, TLS, failures -----------------------------------------------------------------

def test_wrong_password_names_member_and_bind_dn(slapd_server):
    """A simple bind with a wrong password fails as the member opens, naming member and bind DN."""
    with pytest.raises(federation.FederationError,
                       match=r"'people'.*'cn=admin,dc=example,dc=org'.*invalidCredentials"):
        federation.open({"people": sample_people(slapd_server, password="wrong")})


def test_anonymous_sessions_read_but_cannot_write(slapd_server, tmp_path):
    """Without a bind DN the member binds anonymously: reads work, writes are refused clearly."""
    members = {"main": (tmp_path / "main.fs").as_uri(),
               "people": sample_people(slapd_server, bind_dn=None, password=None)}
    with federation.open(members) as fed, fed.open() as conn:
        alice = conn.get(f"people:dn:uid=alice,ou=people,{slapd_server.base_dn}")
        assert alice.name == "Alice Archer"
        alice.email = "changed@example.org"
        with pytest.raises(federation.FederationError, match=r"'people' rejects.*uid=alice"):
            transaction.commit()
        transaction.abort()
    assert raw_entry(slapd_server, f"uid=alice,ou=people,{slapd_server.base_dn}",
                     "mail")["mail"] == [b"alice@example.org"]


def test_start_tls_validates_the_server_certificate(slapd_server, tmp_path):
    """StartTLS works with the CA that signed the server's certificate, and fails with another."""
    if slapd_server.ca_file is None:
        pytest.skip("the test slapd offers no StartTLS (openssl is missing)")
    adapter = sample_people(slapd_server, start_tls=True, ca_file=slapd_server.ca_file)()
    try:
        assert adapter.connection.tls_started
        assert adapter.load(f"uid=carol,ou=people,{slapd_server.base_dn}")["name"] == "Carol Cooper"
    finally:
        adapter.close()
    other_ca = tmp_path / "other-ca.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(tmp_path / "key"),
                    "-out", str(other_ca), "-days", "1", "-subj", "/CN=Other CA"],
                   check=True, capture_output=True)
    with pytest.raises(federation.FederationError,
                       match=r"'people' cannot set up TLS.*CERTIFICATE"):
        sample_people(slapd_server, start_tls=True, ca_file=other_ca)()


def test_start_tls_not_offered_is_a_clear_error(tmp_path):
    """A server without TLS refuses StartTLS: the error names the member and the URI."""
    with running_slapd(tmp_path / "slapd", tls=False) as server, pytest.raises(
            federation.FederationError,
            match=f"'people' cannot set up TLS with {re.escape(server.uri)}.*protocolError"):
        sample_people(server, start_tls=True)()


def test_server_gone_is_member_unavailable(tmp_path):
    """A directory that went away raises MemberUnavailable naming the member (reads, opening)."""
    with running_slapd(tmp_path / "slapd", tls=False) as server:
        members = {"main": (tmp_path / "main.fs").as_uri(), "people": sample_people(server)}
        with federation.open(members) as fed, fed.open() as conn:
            assert conn.get("people:uid:alice").name == "Alice Archer"
            server.stop()
            conn.sync()
            with pytest.raises(federation.MemberUnavailable, match="'people'"):
                conn.get("people:uid:alice").name  # noqa: B018 - touching it is the test
            with pytest.raises(federation.MemberUnavailable, match="'people'"):
                conn.get(f"people:dn:uid=bob,ou=people,{server.base_dn}").name  # noqa: B018
            transaction.abort()
        with pytest.raises(federation.MemberUnavailable, match=r"'people'.*refused"):
            federation.open(members)


def test_bad_configuration_is_refused():
    """Invalid names, mappings and URIs are ConfigurationErrors before any connection."""
    base = "ou=people,dc=example,dc=org"
    with pytest.raises(federation.ConfigurationError, match=re.escape("'cn)' is not an LDAP")):
        Entries(Person, base=base, object_classes=("inetOrgPerson",), rdn="cn",
                attributes={"name": "cn)"})
    with pytest.raises(federation.ConfigurationError, match="naming new entries by 'cn' must"):
        Entries(Person, base=base, object_classes=("inetOrgPerson",), rdn="cn",
                attributes={"names": Attribute("cn", multi=True)})
    with pytest.raises(federation.ConfigurationError, match="cn is mapped more than once"):
        Entries(Person, base=base, object_classes=("inetOrgPerson",), rdn="cn",
                attributes={"name": "cn", "other": "CN"})
    with pytest.raises(federation.ConfigurationError, match="type <class 'float'> is not one of"):
        Attribute("uidNumber", float)
    with pytest.raises(federation.ConfigurationError, match="not a DN"):
        Entries(Person, base="not a dn", object_classes=("top",), rdn="cn",
                attributes={"name": "cn"})
    entries = Entries(Person, base=base, object_classes="inetOrgPerson", rdn="cn",
                      attributes={"name": "cn"})
    with pytest.raises(federation.ConfigurationError, match=r"'people'.*'http://x' is not an"):
        Directory("people", "http://x", entries)
    with pytest.raises(federation.ConfigurationError, match=r"'people'.*password needs a bind_dn"):
        Directory("people", "ldap://localhost", entries, password="secret")


# -- transactions -------------------------------------------------------------------------

def test_two_managers_see_each_others_commits_after_a_boundary(slapd_server, ou, tmp_path):
    """Changes committed by one manager are seen by another in its next transaction."""
    seeder(slapd_server, ou)(1, {"name": "Ada", "email": "ada@example.org"})
    members = {"main": (tmp_path / "main.fs").as_uri(),
               "people": directory(slapd_server, "people", people_entries(ou))}
    tm1, tm2 = transaction.TransactionManager(), transaction.TransactionManager()
    ref = f"people:dn:uid=p1,{ou}"
    with federation.open(members) as fed, fed.open(tm1) as one, fed.open(tm2) as two:
        assert two.get(ref).email == "ada@example.org"
        one.get(ref).email = "lovelace@example.org"
        tm1.commit()
        assert two.get(ref).email == "ada@example.org"  # two's transaction began before
        tm2.begin()
        assert two.get(ref).email == "lovelace@example.org"
        one.get(ref).name = "Ada Lovelace"    # different attributes of one entry: both kept
        two.get(ref).email = "ada@lovelace.org"
        tm1.commit()
        tm2.commit()
        tm1.begin()
        assert (one.get(ref).name, one.get(ref).email) == ("Ada Lovelace", "ada@lovelace.org")
        tm1.abort()


def test_rejected_write_undoes_the_writes_before_it(slapd_server, ou, tmp_path):
    """A write the directory rejects undoes the creations, deletions and changes sent before it."""
    seed = seeder(slapd_server, ou)
    for n, name in enumerate(["Ada", "Bob", "Carol"], start=1):
        seed(n, {"name": name, "email": f"{name.lower()}@example.org"})
    members = {"main": (tmp_path / "main.fs").as_uri(),
               "people": directory(slapd_server, "people", people_entries(ou))}
    with federation.open(members) as fed, fed.open() as conn:
        new = Person("New")
        conn.add(new, "people")
        new_dn = str(conn.ref(new).key)
        conn.delete(conn.get(f"people:dn:uid=p3,{ou}"))
        conn.get(f"people:dn:uid=p1,{ou}").email = "changed@example.org"
        conn.get(f"people:dn:uid=p2,{ou}").name = ""  # invalid syntax
        with pytest.raises(federation.FederationError,
                           match=r"'people'.*uid=p2.*invalidAttributeSyntax.*3 change.*undone"):
            transaction.commit()
        transaction.abort()
    assert raw_entry(slapd_server, new_dn) == {}
    assert raw_entry(slapd_server, f"uid=p1,{ou}", "mail")["mail"] == [b"ada@example.org"]
    carol = raw_entry(slapd_server, f"uid=p3,{ou}", "cn", "mail")
    assert carol == {"cn": [b"Carol"], "mail": [b"carol@example.org"]}


# -- the documentation page --------------------------------------------------------------------

def test_docs_page_runs(slapd_server, ou, monkeypatch, tmp_path):
    """docs/ldap.md's Python blocks run in order, with the test directory's URI, admin and base."""
    run_docs_page("ldap.md", monkeypatch, tmp_path, LDAP_URI=slapd_server.uri,
                  ADMIN_DN=slapd_server.admin_dn, ADMIN_PASSWORD=slapd_server.admin_password,
                  BASE_DN=ou)
