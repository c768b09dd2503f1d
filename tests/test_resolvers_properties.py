"""Property-based tests of the key kinds: round trips, byte order, DN hierarchy."""

from __future__ import annotations

import uuid
import warnings
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from federation import resolvers
from federation.errors import InvalidKey, shorten

with warnings.catch_warnings():
    # ldap3 2.9.1 reads pyasn1's deprecated tagMap/typeMap at import (pyasn1 >= 0.6.1).
    warnings.filterwarnings("ignore", "(tagMap|typeMap) is deprecated", DeprecationWarning)
    from ldap3.utils.dn import parse_dn

# Imported through the package: ruff cannot see federation.resolvers (package-dir mapping).
DN = resolvers.DN
dn_kind = resolvers.get("dn")

SPECIALS = ',+"\\<>;=# \x00'

# Lowercase names and OIDs that are not aliases of names, so distinct inputs stay distinct.
attribute_types = st.sampled_from(["cn", "sn", "ou", "dc", "uid", "x-a", "1.2.3", "2.5.4.4"])
text_values = st.text(
    st.sampled_from(SPECIALS) | st.characters(codec="utf-8"), min_size=1, max_size=12
)
# Binary values not tagged as BER strings stay bytes (tagged ones may turn into text).
binary_values = st.binary(min_size=1, max_size=6).filter(lambda b: b[0] not in (4, 12, 19, 22))
avas = st.tuples(attribute_types, text_values | binary_values)
rdns = st.lists(avas, min_size=1, max_size=3, unique=True)
dns = st.lists(rdns, max_size=4).map(DN.from_rdns)

# A small pool of RDNs, so that drawn DNs often share ancestors and RDNs.
small_avas = st.tuples(
    st.sampled_from(["c", "cn", "sn"]),
    st.text(st.sampled_from("a\x00\x01\x04 ,"), min_size=1, max_size=2)
    | st.sampled_from([b"\x00", b"\x30\x00"]),
)
small_rdns = st.lists(small_avas, min_size=1, max_size=2, unique=True)
related_dns = st.lists(small_rdns, max_size=3).map(DN.from_rdns)

KEYS = {
    "integer": st.integers(min_value=0, max_value=2**64 - 1),
    "uuid": st.uuids(),
    "dn": dns,
    "uid": st.from_regex(r"[A-Za-z0-9._][A-Za-z0-9._-]{0,31}", fullmatch=True),
}
ORDERED_KEYS = {**KEYS, "dn": related_dns}


def sort_key(kind: str, key: Any) -> Any:
    """The natural order of a kind's keys (UUIDs by their bytes)."""
    return key.bytes if isinstance(key, uuid.UUID) else key


@pytest.mark.parametrize("kind", sorted(KEYS))
@given(data=st.data())
def test_text_round_trip(kind: str, data: st.DataObject) -> None:
    """parse(format(k)) == k for every kind."""
    resolver = resolvers.get(kind)
    key = data.draw(KEYS[kind])
    assert resolver.parse(resolver.format(key)) == key


@pytest.mark.parametrize("kind", sorted(KEYS))
@given(data=st.data())
def test_bytes_round_trip(kind: str, data: st.DataObject) -> None:
    """decode(encode(k)) == k for every kind."""
    resolver = resolvers.get(kind)
    key = data.draw(KEYS[kind])
    assert resolver.decode(resolver.encode(key)) == key


@pytest.mark.parametrize("kind", sorted(ORDERED_KEYS))
@given(data=st.data())
def test_encoding_preserves_order(kind: str, data: st.DataObject) -> None:
    """encode(a) < encode(b) iff a < b, and equal bytes iff equal keys."""
    resolver = resolvers.get(kind)
    a, b = data.draw(ORDERED_KEYS[kind]), data.draw(ORDERED_KEYS[kind])
    encoded_a, encoded_b = resolver.encode(a), resolver.encode(b)
    assert (encoded_a < encoded_b) == (sort_key(kind, a) < sort_key(kind, b))
    assert (encoded_a == encoded_b) == (a == b)


def root_first(key: Any) -> tuple[Any, ...]:
    """The documented DN order: RDNs from the root, AVAs as (type, is_bytes, value)."""
    return tuple(tuple((t, isinstance(v, bytes), v) for t, v in rdn) for rdn in key.rdns[::-1])


@given(related_dns, related_dns)
def test_dn_order_is_hierarchical(a: Any, b: Any) -> None:
    """DN order compares RDNs from the root; a DN precedes its descendants."""
    assert (a < b) == (root_first(a) < root_first(b))
    assert (a <= b) == (not b < a)
    if b.is_descendant_of(a):
        assert a < b


@given(dns, small_rdns)
def test_dn_parent_encoding_is_prefix_of_child(parent: Any, rdn: Any) -> None:
    """encode(parent) is a strict prefix of encode(child) and child.parent == parent."""
    child = parent.child(rdn)
    assert child.parent == parent
    assert child.is_descendant_of(parent)
    assert len(dn_kind.encode(parent)) < len(dn_kind.encode(child))
    assert dn_kind.encode(child).startswith(dn_kind.encode(parent))


@given(related_dns, st.lists(related_dns, max_size=12))
def test_dn_subtree_range_holds_exactly_the_descendants(base: Any, others: list[Any]) -> None:
    """subtree_range(base) contains the encodings of the strict descendants of base only."""
    lo, hi = dn_kind.subtree_range(base)
    descendants = [base.child(rdn) for rdn in [(("cn", "a"),), (("c", "\x00"),)]]
    for other in [base, *descendants, *others, *(d.child("sn=z") for d in descendants)]:
        inside = lo <= dn_kind.encode(other) < hi
        assert inside == other.is_descendant_of(base), other


@given(attribute_types, text_values, dns)
def test_dn_escaping_round_trip(attribute: str, value: str, parent: Any) -> None:
    """Any unicode value, specials, edge spaces and NULs included, survives str() and parse."""
    key = parent.child([(attribute, value)])
    assert key.rdn == ((attribute, value),)
    parsed = DN(str(key))
    assert parsed == key
    assert parsed.rdn == ((attribute, value),)


name_rdns = st.lists(
    st.tuples(st.sampled_from(["cn", "sn", "dc"]), text_values), min_size=1, max_size=2, unique=True
)


@given(st.lists(name_rdns, min_size=1, max_size=3).map(DN.from_rdns))
def test_dn_canonical_text_is_read_by_ldap3(key: Any) -> None:
    """ldap3's parse_dn splits the canonical text into the same AVAs and separators."""
    parsed = parse_dn(str(key))
    separators: list[str] = []
    for rdn in key.rdns:
        separators += ["+"] * (len(rdn) - 1) + [","]
    separators[-1] = ""
    assert [separator for _t, _v, separator in parsed] == separators
    pairs = [(t, DN(f"{t}={v}").rdn[0][1]) for t, v, _separator in parsed]
    assert pairs == [ava for rdn in key.rdns for ava in rdn]


DN_ALPHABET = st.sampled_from(list('cnsdo=,+\\#"<>; 0123456789abcdefABCDEF.\x00é\ud800'))


@pytest.mark.parametrize("kind", sorted(KEYS))
@given(text=st.text() | st.text(DN_ALPHABET) | st.text(st.characters(exclude_categories=())))
def test_parse_raises_only_invalid_key(kind: str, text: str) -> None:
    """parse of arbitrary text returns a key or raises InvalidKey, nothing else."""
    resolver = resolvers.get(kind)
    try:
        key = resolver.parse(text)
    except InvalidKey as error:
        assert shorten(text) in str(error)
    else:
        assert resolver.parse(resolver.format(key)) == key


@pytest.mark.parametrize("kind", sorted(KEYS))
@given(data=st.binary(max_size=24) | st.binary().map(lambda b: b"cn\x02a\x00" + b))
def test_decode_raises_only_invalid_key(kind: str, data: bytes) -> None:
    """decode of arbitrary bytes returns a key whose encoding is those bytes, or InvalidKey."""
    resolver = resolvers.get(kind)
    try:
        key = resolver.decode(data)
    except InvalidKey as error:
        assert shorten(data) in str(error)
    else:
        assert resolver.encode(key) == data
