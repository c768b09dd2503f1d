"""LDAP values: GeneralizedTime text, the converters through a real slapd, wrong Python types."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest
import transaction

import federation
from federation.adapters.ldap_values import Attribute, Entries, format_time, parse_time
from tests.ldap_helpers import Account, directory, ou_fixture, raw_entry  # noqa: F401 - fixture ou


def account_entries(base: str) -> Entries:
    """Accounts with a value of every converter: int, bool, timestamps, multi-valued."""
    return Entries(
        Account, base=base, object_classes=("inetOrgPerson", "posixAccount", "zfedAccount"),
        rdn="uid", attributes={
            "login": "uid", "name": "cn", "home": "homeDirectory",
            "number": Attribute("uidNumber", int), "group": Attribute("gidNumber", int),
            "phones": Attribute("telephoneNumber", multi=True),
            "active": Attribute("zfedActive", bool), "expires": Attribute("zfedExpires", datetime),
            "created": Attribute("createTimestamp", datetime, read_only=True)},
        on_create={"sn": lambda state: state["name"]})


@pytest.fixture
def accounts(slapd_server, ou, tmp_path) -> Iterator[federation.Federation]:
    """A federation of a ZODB 'main' and a directory member 'accounts' in a fresh OU."""
    members = {"main": (tmp_path / "main.fs").as_uri(),
               "accounts": directory(slapd_server, "accounts", account_entries(ou))}
    with federation.open(members) as fed:
        yield fed
        transaction.abort()


@pytest.mark.parametrize(("text", "expected"), [
    ("20300101120000Z", datetime(2030, 1, 1, 12, tzinfo=timezone.utc)),
    ("20300101120000.5Z", datetime(2030, 1, 1, 12, 0, 0, 500000, tzinfo=timezone.utc)),
    ("203001011200,25Z", datetime(2030, 1, 1, 12, 0, 15, tzinfo=timezone.utc)),
    ("2030010112.5+0130", datetime(2030, 1, 1, 11, 0, tzinfo=timezone.utc)),
    ("20300101120000-05", datetime(2030, 1, 1, 17, tzinfo=timezone.utc)),
])
def test_generalized_time_is_read_as_utc(text, expected):
    """GeneralizedTime with fractions of a second, minute or hour and offsets is read as UTC."""
    value = parse_time(text)
    assert value == expected and value.tzinfo == timezone.utc


def test_generalized_time_rejects_bad_values():
    """Text that is not GeneralizedTime, and naive datetimes, are refused with the value named."""
    with pytest.raises(ValueError, match="'2030-01-01'"):
        parse_time("2030-01-01")
    with pytest.raises(TypeError, match="timezone-aware"):
        format_time(datetime(2030, 1, 1))
    paris = timezone(timedelta(hours=1))
    assert format_time(datetime(2030, 1, 1, 13, 0, 0, 250000, tzinfo=paris)) == "20300101120000.25Z"


@pytest.mark.server
def test_converters_round_trip_through_the_server(slapd_server, ou, accounts):
    """int, bool, datetime and multi-valued attributes are written, validated and read back."""
    expires = datetime(2030, 1, 1, 14, 0, 0, 500000, tzinfo=timezone(timedelta(hours=2)))
    with accounts.open() as conn:
        ada = Account(login="ada", name="Ada Lovelace", home="/home/ada", number=10042, group=100,
                      phones=("+44 1", "+44 2"), active=True, expires=expires, created=None)
        conn.add(ada, "accounts")
        ref = conn.ref(ada)
        transaction.commit()
    assert str(ref.key) == f"uid=ada,{ou}"
    raw = raw_entry(slapd_server, str(ref.key), "uidNumber", "zfedActive", "zfedExpires",
                    "telephoneNumber")
    assert raw == {"uidNumber": [b"10042"], "zfedActive": [b"TRUE"],
                   "zfedExpires": [b"20300101120000.5Z"], "telephoneNumber": [b"+44 1", b"+44 2"]}
    with accounts.open() as conn:
        ada = conn.get(ref)
        assert (ada.number, ada.group, ada.active, ada.expires) == (10042, 100, True, expires)
        assert ada.expires.tzinfo == timezone.utc and sorted(ada.phones) == ["+44 1", "+44 2"]
        assert abs(ada.created - datetime.now(timezone.utc)) < timedelta(minutes=5)
        ada.active, ada.expires, ada.phones = False, None, ["+44 3"]
        transaction.commit()
    raw = raw_entry(slapd_server, str(ref.key))
    assert raw["zfedActive"] == [b"FALSE"] and raw["telephoneNumber"] == [b"+44 3"]
    assert "zfedExpires" not in raw


@pytest.mark.server
def test_wrong_python_types_are_refused_before_writing(slapd_server, ou, accounts):
    """A value of a wrong type fails the commit naming member, attribute and DN; none is written."""
    with accounts.open() as conn:
        conn.add(Account(login="bob", name="Bob", home="/home/bob", number=1, group=1), "accounts")
        transaction.commit()
        bob = conn.get(f"accounts:dn:uid=bob,{ou}")
        bob.number, bob.active = "2", "yes"
        with pytest.raises(federation.FederationError, match=r"'accounts'.*'number'.*uid=bob"):
            transaction.commit()
        transaction.abort()
        with pytest.raises(federation.FederationError, match=r"read-only attribute 'created'"):
            conn.get(f"accounts:dn:uid=bob,{ou}").created = datetime.now(timezone.utc)
            transaction.commit()
        transaction.abort()
    assert raw_entry(slapd_server, f"uid=bob,{ou}", "uidNumber")["uidNumber"] == [b"1"]

