"""Example-based tests of the key kinds and their registry."""

from __future__ import annotations

import pickle
import uuid
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from ZODB.utils import oid_repr, p64

from federation import resolvers
from federation.errors import ConfigurationError, InvalidKey, UnknownKind, shorten
from federation.interfaces import KeyKind

with warnings.catch_warnings():
    # ldap3 2.9.1 reads pyasn1's deprecated tagMap/typeMap at import (pyasn1 >= 0.6.1).
    warnings.filterwarnings("ignore", "(tagMap|typeMap) is deprecated", DeprecationWarning)
    from ldap3.utils.dn import escape_rdn, parse_dn

# Imported through the package: ruff cannot see federation.resolvers (package-dir mapping).
DN, DnKind, IntegerKind = resolvers.DN, resolvers.DnKind, resolvers.IntegerKind
UidKind, UuidKind = resolvers.UidKind, resolvers.UuidKind

integer = IntegerKind()
uuids = UuidKind()
dn = DnKind()
uid = UidKind()

U = uuid.UUID("0123abcd-4567-89ef-0123-456789abcdef")


def rejects(kind: Any, method: str, value: Any, reason: str = "") -> InvalidKey:
    """Call kind.method(value), expecting an InvalidKey that names *value* (shortened)."""
    with pytest.raises(InvalidKey) as caught:
        getattr(kind, method)(value)
    error = caught.value
    assert isinstance(error, ValueError)
    assert error.kind == kind.name
    assert shorten(value) in str(error)
    assert reason in str(error)
    return error


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A private copy of the registry, restored after the test."""
    monkeypatch.setattr(resolvers, "_KINDS", dict(resolvers._KINDS))
    yield


# -- integer ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("0", 0),
        ("42", 42),
        ("007", 7),
        ("  42\n", 42),
        ("0x2a", 42),
        ("0X2A", 42),
        ("0x0000000000000001", 1),
        (oid_repr(p64(0)), 0),
        (oid_repr(p64(256)), 256),
        ("18446744073709551615", 2**64 - 1),
        ("0xffffffffffffffff", 2**64 - 1),
    ],
)
def test_integer_parse_accepts(text: str, key: int) -> None:
    """Decimal and 0x hex text (oid_repr style) parse to the integer, whitespace stripped."""
    assert integer.parse(text) == key


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "-1",
        "+1",
        "1_000",
        "0x_1",
        "\u0661\u0662",
        "\uff11\uff12",
        "1.0",
        "12a",
        "0x",
        "0b1",
        "0x-1",
        "18446744073709551616",
        "0x10000000000000000",
        "9" * 5000,
    ],
)
def test_integer_parse_rejects(text: str) -> None:
    """Signs, underscores, non-ASCII digits, empty and out-of-range text are InvalidKey."""
    rejects(integer, "parse", text)


def test_integer_coerce() -> None:
    """coerce takes in-range ints and text; bools, floats, bytes and out-of-range ints fail."""
    assert integer.coerce(5) == 5
    assert integer.coerce("0x05") == 5
    for bad in (True, -1, 2**64, 1.0, None, b"1"):
        rejects(integer, "coerce", bad)


def test_integer_format_and_encode_match_zodb() -> None:
    """format is decimal and encode is ZODB's p64, decoding back to the same integer."""
    for key in (0, 1, 255, 2**63, 2**64 - 1):
        assert integer.format(key) == str(key)
        assert integer.encode(key) == p64(key)
        assert integer.decode(p64(key)) == key
    assert integer.decode(bytearray(8)) == 0


def test_integer_decode_rejects() -> None:
    """decode wants exactly 8 bytes."""
    rejects(integer, "decode", b"\x00" * 7, "got 7")
    rejects(integer, "decode", b"\x00" * 9, "got 9")
    rejects(integer, "decode", "00000000", "expected bytes")


def test_integer_issue() -> None:
    """issue returns 1, or the integer after `after`, and fails at the top of the range."""
    assert integer.issue() == 1
    assert integer.issue(after=41) == 42
    assert integer.issue("0x01") == 2
    rejects(integer, "issue", 2**64 - 1, "used up")


# -- uuid ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "0123abcd-4567-89ef-0123-456789abcdef",
        "0123ABCD-4567-89EF-0123-456789ABCDEF",
        "0123abcd456789ef0123456789abcdef",
        "urn:uuid:0123abcd-4567-89ef-0123-456789abcdef",
        "URN:UUID:0123ABCD-4567-89ef-0123-456789abcdef",
        "{0123abcd-4567-89ef-0123-456789abcdef}",
        " 0123abcd-4567-89ef-0123-456789abcdef\t",
    ],
)
def test_uuid_parse_accepts(text: str) -> None:
    """Canonical (any case), 32-digit, urn:uuid: and braced forms parse to the UUID."""
    assert uuids.parse(text) == U


@pytest.mark.parametrize(
    "text",
    [
        "",
        "0123abcd456789ef0123456789abcde",
        "0123abcd456789ef0123456789abcdef0",
        "0123abcd4567-89ef-0123-456789abcdef",
        "0123-abcd-4567-89ef-0123-456789abcdef",
        "{0123abcd-4567-89ef-0123-456789abcdef",
        "0123abcd-4567-89ef-0123-456789abcdef}",
        "{{0123abcd-4567-89ef-0123-456789abcdef}}",
        "uuid:0123abcd-4567-89ef-0123-456789abcdef",
        "urn:uuid:{0123abcd-4567-89ef-0123-456789abcdef}",
        "0123abcd_456789ef_0123_456789abcdef",
        "0123abcd-4567-89ef-0123-456789abcdeg",
        "\uff10123abcd-4567-89ef-0123-456789abcdef",
    ],
)
def test_uuid_parse_rejects(text: str) -> None:
    """Anything but the four accepted forms is InvalidKey."""
    rejects(uuids, "parse", text)


def test_uuid_format_encode_decode() -> None:
    """format is lowercase hyphenated; encode is the 16 UUID bytes; decode reverses it."""
    assert uuids.format(U) == "0123abcd-4567-89ef-0123-456789abcdef"
    assert uuids.format("{0123ABCD-4567-89EF-0123-456789ABCDEF}") == str(U)
    assert uuids.encode(U) == U.bytes
    assert uuids.decode(U.bytes) == U
    rejects(uuids, "decode", U.bytes[:15], "got 15")
    rejects(uuids, "decode", str(U), "expected bytes")


def test_uuid_coerce_and_issue() -> None:
    """coerce takes UUIDs and text only; issue makes distinct version 4 UUIDs."""
    assert uuids.coerce(U) is U
    for bad in (U.int, U.bytes, None):
        rejects(uuids, "coerce", bad)
    first, second = uuids.issue(), uuids.issue()
    assert first.version == 4
    assert first != second


# -- dn: parsing -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("cn=a,dc=b", "cn=a,dc=b"),
        ("cn=a, dc=b", "cn=a,dc=b"),
        (" CN = a ,  DC=b ", "cn=a,dc=b"),
        ("cn=a\\,b", "cn=a\\,b"),
        ('cn=a\\+b\\"c\\\\d\\<e\\>f\\;g\\=h', 'cn=a\\+b\\"c\\\\d\\<e\\>f\\;g\\=h'),
        ("cn=\\#a", "cn=\\#a"),
        ("cn=\\ a\\ ", "cn=\\ a\\ "),
        ("cn=a b", "cn=a b"),
        ("cn=a=b#c", "cn=a\\=b\\#c"),
        ("cn=\\2C\\2b", "cn=\\,\\+"),
        ("cn=\\c3\\a9t\\C3\\A9", "cn=été"),
        ("cn=\\e2\\82\\ac", "cn=€"),
        ("cn=\\f0\\9f\\98\\80", "cn=\U0001f600"),
        ("cn=a\\00b", "cn=a\\00b"),
        ("cn=" + escape_rdn("a\x00b"), "cn=a\\00b"),
        ("cn=#04024869", "cn=Hi"),
        ("cn=#0C024869", "cn=Hi"),
        ("cn=#13024869", "cn=Hi"),
        ("cn=#16024869", "cn=Hi"),
        ("cn=#0481024869", "cn=Hi"),
        ("cn=#0402c3a9", "cn=é"),
        ("cn=#300302017F", "cn=#300302017f"),
        ("cn=#0401FF", "cn=#0401ff"),
        ("cn=#0400", "cn=#0400"),
        ("cn=#13012a", "cn=#13012a"),
        ("cn=#04024869 ,dc=b", "cn=Hi,dc=b"),
        ("sn=b+cn=a,dc=c", "cn=a+sn=b,dc=c"),
        ("cn=a + sn=b", "cn=a+sn=b"),
        ("2.5.4.3=x,0.9.2342.19200300.100.1.25=com", "cn=x,dc=com"),
        ("1.3.6.1.4.1.1466.0=x", "1.3.6.1.4.1.1466.0=x"),
        ("x-Custom-2=y", "x-custom-2=y"),
        ("", ""),
        ("   ", ""),
    ],
)
def test_dn_parse_accepts(text: str, canonical: str) -> None:
    """RFC 4514 escapes, hex values, multi-valued RDNs, OIDs and spaces parse canonically."""
    key = dn.parse(text)
    assert dn.format(key) == canonical
    assert dn.parse(canonical) == key


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("cn=", "empty"),
        ("cn=   ", "empty"),
        ("=x", "missing"),
        ("cn=a,,dc=b", "empty"),
        (",cn=a", "empty"),
        ("cn=a+", "separator"),
        ("cn=a,", "separator"),
        ("cn", "not followed by '='"),
        ("cn=a,dc", "not followed by '='"),
        ("cn=a\\", "escape"),
        ("cn=a\\4", "escape"),
        ("cn=\\zz", "escape"),
        ("cn=\\é", "escape"),
        ("cn=\\c3", "UTF-8"),
        ("cn=\\ff\\fe", "UTF-8"),
        ("cn=\\c3x", "UTF-8"),
        ("c_n=a", "attribute type"),
        ("c n=a", "attribute type"),
        ("1cn=a", "attribute type"),
        ("01.2=a", "attribute type"),
        ("2.=a", "attribute type"),
        ("cé=a", "attribute type"),
        ("cn=a;b", "escaped"),
        ('cn=a"b', "escaped"),
        ("cn=<a>", "escaped"),
        ("cn=a\x00", "escaped"),
        ("cn=#", "hex"),
        ("cn=#0", "hex"),
        ("cn=#zz", "hex"),
        ("cn=#0402 x", "hex"),
        ("cn=a+cn=a", "repeats"),
        ("cn=\ud800", "surrogate"),
    ],
)
def test_dn_parse_rejects(text: str, reason: str) -> None:
    """Malformed DNs are InvalidKey naming the text and the reason."""
    rejects(dn, "parse", text, reason)


def test_dn_attribute_types_fold_case_values_do_not() -> None:
    """Attribute types compare case-insensitively, values exactly."""
    assert DN("CN=x,DC=Y") == DN("cn=x,dc=Y")
    assert DN("cn=x") != DN("cn=X")
    assert DN("2.5.4.3=x") == DN("cn=x")


def test_dn_canonical_text_is_accepted_by_ldap3() -> None:
    """ldap3's parse_dn reads the canonical text back into the same AVAs."""
    key = DN("cn=a\\,b \\+c=d#e+sn=\\ x\\00,dc=example")
    assert [(t, v) for t, v, _sep in parse_dn(str(key))] == [
        ("cn", "a\\,b \\+c\\=d\\#e"),
        ("sn", "\\ x\\00"),
        ("dc", "example"),
    ]


# -- dn: the value class ---------------------------------------------------------------------


def test_dn_structure() -> None:
    """rdns, rdn, parent and len describe the DN leaf first; the root has none."""
    key = DN("sn=b+cn=a,ou=people,dc=example")
    assert key.rdns == ((("cn", "a"), ("sn", "b")), (("ou", "people"),), (("dc", "example"),))
    assert key.rdn == (("cn", "a"), ("sn", "b"))
    assert len(key) == 3
    assert key.parent == DN("ou=people,dc=example")
    assert key.parent.parent.parent == DN("")
    root = DN()
    assert len(root) == 0
    assert root.rdns == ()
    assert root.rdn is None
    assert root.parent is None


def test_dn_child() -> None:
    """child takes RDN text or (type, value) pairs and rejects anything but one RDN."""
    base = DN("dc=example")
    assert base.child("cn=a") == DN("cn=a,dc=example")
    assert base.child("sn=b+cn=a") == DN("cn=a+sn=b,dc=example")
    assert base.child([("CN", "a,b"), ("sn", "c")]) == DN("cn=a\\,b+sn=c,dc=example")
    assert DN().child("dc=com") == DN("dc=com")
    for bad in ("cn=a,dc=b", "", [], [("cn",)], [("cn", 1)], [("cn", "")], 5, b"cn=a"):
        with pytest.raises(InvalidKey, match="not a valid dn key"):
            base.child(bad)


def test_dn_from_rdns_normalises_values() -> None:
    """from_rdns sorts AVAs, folds types and turns simple BER bytes into text."""
    built = DN.from_rdns([[("SN", "b"), ("cn", b"\x04\x01a")], [("dc", b"\x30\x00")]])
    assert built.rdns == ((("cn", "a"), ("sn", "b")), (("dc", b"\x30\x00"),))
    assert str(built) == "cn=a+sn=b,dc=#3000"
    with pytest.raises(InvalidKey, match="lone surrogate"):
        DN.from_rdns([[("cn", "\udfff")]])


def test_dn_is_descendant_of() -> None:
    """is_descendant_of is strict by default; everything descends from the root."""
    key = DN("cn=a,ou=p,dc=example")
    assert key.is_descendant_of(DN("dc=example"))
    assert key.is_descendant_of("ou=p,dc=example")
    assert not key.is_descendant_of(key)
    assert key.is_descendant_of(key, strict=False)
    assert key.is_descendant_of(DN())
    assert DN().is_descendant_of(DN(), strict=False)
    assert not DN().is_descendant_of(DN())
    assert not key.is_descendant_of("ou=q,dc=example")
    assert not DN("dc=example").is_descendant_of(key)


def test_dn_value_semantics() -> None:
    """DNs are hashable, immutable, picklable and have a readable repr."""
    key = DN("cn=a,dc=b")
    assert {key, DN("CN=a, DC=b")} == {key}
    assert repr(key) == "DN('cn=a,dc=b')"
    assert pickle.loads(pickle.dumps(key)) == key
    with pytest.raises(AttributeError, match="immutable"):
        key._rdns = ()  # type: ignore[misc]
    with pytest.raises(AttributeError, match="immutable"):
        del key._rdns
    assert key != "cn=a,dc=b"


def test_dn_order_is_hierarchical() -> None:
    """DNs sort from the root: a parent, then its whole subtree, then the next sibling."""
    ordered = [
        DN(""),
        DN("dc=a"),
        DN("ou=x,dc=a"),
        DN("cn=z,ou=x,dc=a"),
        DN("ou=y,dc=a"),
        DN("dc=a+o=b"),
        DN("dc=b"),
    ]
    assert sorted(reversed(ordered)) == ordered
    assert [dn.encode(key) for key in ordered] == sorted(dn.encode(key) for key in ordered)
    assert DN("dc=a") <= DN("dc=a") < DN("dc=b") and DN("dc=b") > DN("dc=a")


# -- dn: the kind ----------------------------------------------------------------------------


def test_dn_encoding() -> None:
    """encode writes RDNs root first with escaped separators; a parent is a prefix."""
    assert dn.encode(DN("")) == b""
    assert dn.encode("cn=a+sn=b,dc=c") == b"dc\x02c\x00cn\x02a\x01sn\x02b\x00"
    assert dn.encode("cn=\\00\\04") == b"cn\x02\x04\x05\x04\x09\x00"
    assert dn.encode("cn=#0401ff") == b"cn\x03\x04\x09\x04\x06\xff\x00"
    assert dn.encode("cn=x,dc=c").startswith(dn.encode("dc=c"))
    for text in ("", "dc=c", "cn=a+sn=b,dc=c", "cn=\\00\\04", "cn=#0401ff"):
        assert dn.decode(dn.encode(text)) == DN(text)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"cn\x02a", "end inside"),
        (b"cn\x02a\x01", "end inside"),
        (b"cn\x00", "no type/value separator"),
        (b"\x00", "no type/value separator"),
        (b"cn\x02a\x01\x00", "no type/value separator"),
        (b"cn\x02a\x02b\x00", "canonical"),
        (b"cn\x02\x04\x00", "canonical"),
        (b"cn\x02\x04\x0a\x00", "canonical"),
        (b"cn\x02\x00", "empty"),
        (b"sn\x02b\x01cn\x02a\x00", "canonical"),
        (b"CN\x02a\x00", "canonical"),
        (b"cn\x03\x04\x09\x04\x06a\x00", "canonical"),
        (b"cn\x02\xff\x00", "not valid text"),
        (b"c_n\x02a\x00", "attribute type"),
    ],
)
def test_dn_decode_rejects(data: bytes, reason: str) -> None:
    """decode accepts only canonical encodings."""
    rejects(dn, "decode", data, reason)


def test_dn_subtree_range() -> None:
    """subtree_range bounds exactly the strict descendants of a DN."""
    keys = [DN(t) for t in ("", "dc=a", "ou=x,dc=a", "cn=z,ou=x,dc=a", "dc=a+o=b", "dc=b")]
    lo, hi = dn.subtree_range("dc=a")
    inside = [key for key in keys if lo <= dn.encode(key) < hi]
    assert inside == [DN("ou=x,dc=a"), DN("cn=z,ou=x,dc=a")]
    lo, hi = dn.subtree_range(DN())
    assert [key for key in keys if lo <= dn.encode(key) < hi] == keys[1:]


def test_dn_coerce_and_issue() -> None:
    """coerce takes DNs and text; issue names a new entry under a parent."""
    key = DN("dc=a")
    assert dn.coerce(key) is key
    assert dn.coerce("DC=a") == key
    rejects(dn, "coerce", 5, "expected a DN")
    rejects(dn, "parse", 5, "expected text")
    assert dn.issue(parent="dc=a", rdn="cn=new") == DN("cn=new,dc=a")
    assert dn.issue(key, [("uid", "x")]) == DN("uid=x,dc=a")


# -- uid -------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["alice", "Alice", "a.b_c-d", "_svc", "0day", ".x", "a" * 32])
def test_uid_parse_accepts(text: str) -> None:
    """Portable user names up to 32 characters parse to themselves."""
    assert uid.parse(text) == text


@pytest.mark.parametrize(
    "text", ["", " alice", "alice ", "-bob", "a b", "a" * 33, "é", "a/b", "a\n", "a@b", "\ud800"]
)
def test_uid_parse_rejects(text: str) -> None:
    """Whitespace, a leading hyphen, other characters and lengths outside 1..32 fail."""
    rejects(uid, "parse", text)


def test_uid_custom_kind() -> None:
    """A case-insensitive kind lowercases; pattern, limit and name are configurable."""
    mail = UidKind(
        name="mail", pattern=r"[a-z0-9.]+@[a-z0-9.]+", max_length=20, case_sensitive=False
    )
    assert mail.parse("Ann@Example.org") == "ann@example.org"
    assert mail.encode("ANN@x.org") == b"ann@x.org"
    rejects(mail, "parse", "ann@example.organisation", "longer than 20")
    rejects(mail, "parse", "ann", "pattern")
    assert "mail" in repr(mail)


@pytest.mark.parametrize(
    "options", [{"name": ""}, {"max_length": 0}, {"max_length": True}, {"pattern": "("}]
)
def test_uid_bad_configuration(options: dict[str, Any]) -> None:
    """Invalid kind options raise ConfigurationError."""
    with pytest.raises(ConfigurationError):
        UidKind(**options)


def test_uid_encode_decode_issue() -> None:
    """encode is UTF-8, decode validates, issue validates the chosen name."""
    assert uid.encode("alice") == b"alice"
    assert uid.decode(b"alice") == "alice"
    assert uid.format("alice") == "alice"
    assert uid.coerce("alice") == "alice"
    rejects(uid, "decode", b"\xff", "not UTF-8")
    rejects(uid, "decode", b"-x", "pattern")
    rejects(uid, "decode", "alice", "expected bytes")
    rejects(uid, "coerce", 5, "expected text")
    assert uid.issue("bob") == "bob"
    rejects(uid, "issue", "bob smith")


# -- registry --------------------------------------------------------------------------------


def test_builtin_kinds_are_registered() -> None:
    """The four built-in kinds are registered and satisfy the KeyKind protocol."""
    assert resolvers.kinds() == ["dn", "integer", "uid", "uuid"]
    for name, cls in [
        ("dn", DnKind),
        ("integer", IntegerKind),
        ("uid", UidKind),
        ("uuid", UuidKind),
    ]:
        kind = resolvers.get(name)
        assert isinstance(kind, cls)
        assert isinstance(kind, KeyKind)
        assert kind.name == name


def test_get_unknown_kind() -> None:
    """get raises UnknownKind, a LookupError naming the kind."""
    with pytest.raises(UnknownKind, match="'nope'") as caught:
        resolvers.get("nope")
    assert isinstance(caught.value, LookupError)


class Shouting:
    """A custom key kind: upper-case words."""

    name = "shout"

    def parse(self, text: str) -> str:
        if not text.isalpha():
            raise InvalidKey(self.name, text, "expected letters")
        return text.upper()

    def coerce(self, value: Any) -> str:
        return self.parse(value)

    def format(self, key: Any) -> str:
        return self.parse(key)

    def encode(self, key: Any) -> bytes:
        return self.parse(key).encode("ascii")

    def decode(self, data: bytes) -> str:
        return self.parse(data.decode("ascii"))

    def issue(self, word: str = "NEW") -> str:
        return self.parse(word)


def test_register_custom_kind(registry: None) -> None:
    """A custom kind can be registered, looked up and listed."""
    kind = Shouting()
    assert resolvers.register(kind) is kind
    assert resolvers.get("shout") is kind
    assert "shout" in resolvers.kinds()
    assert resolvers.get("shout").parse("hey") == "HEY"


def test_register_taken_name(registry: None) -> None:
    """A taken name is a ConfigurationError unless replace=True."""
    with pytest.raises(ConfigurationError, match="'uid' is already registered"):
        resolvers.register(UidKind())
    logins = UidKind(case_sensitive=False)
    assert resolvers.register(logins, replace=True) is logins
    assert resolvers.get("uid") is logins


class Nameless(Shouting):
    """A kind whose name is not usable."""

    name = " "


class NoName:
    """Every KeyKind method but no name."""

    parse = coerce = format = encode = decode = issue = staticmethod(str)


def test_register_rejects_non_kinds(registry: None) -> None:
    """Objects missing KeyKind members, classes and bad names are ConfigurationErrors."""
    with pytest.raises(ConfigurationError, match="lacks parse, coerce"):
        resolvers.register(object())  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="lacks a name"):
        resolvers.register(NoName())  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="is a class"):
        resolvers.register(Shouting)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="not a non-empty string"):
        resolvers.register(Nameless())
    assert "shout" not in resolvers.kinds()
