"""Where new objects go: explicit add, placement rules, the only referrer, else an error."""

from __future__ import annotations

import pytest
import transaction

import federation
from tests.models import Item, Placed


def test_new_object_goes_to_its_only_referrer(conn):
    """A new object reachable from one member only is stored in that member."""
    item = Item("child")
    conn.root("notes")["parent"] = Item("parent", link=item)
    transaction.commit()
    assert item._p_jar is conn.jar("notes")
    assert conn.stubs("notes") == []


def test_new_object_reachable_from_two_members_is_ambiguous(conn):
    """A new object referenced from two members raises AmbiguousPlacement and writes nothing."""
    shared = Item("shared")
    conn.root("main")["a"] = Item("a", link=shared)
    conn.root("notes")["b"] = Item("b", link=shared)
    with pytest.raises(federation.AmbiguousPlacement, match=r"main.*notes|notes.*main"):
        transaction.commit()
    transaction.abort()
    assert "a" not in conn.root("main")
    assert "b" not in conn.root("notes")
    assert conn.stubs("main") == conn.stubs("notes") == []


def test_explicit_add_resolves_the_ambiguity(conn):
    """Adding the shared object to a member first makes the commit succeed."""
    shared = Item("shared")
    conn.add(shared, "people")
    conn.root("main")["a"] = Item("a", link=shared)
    conn.root("notes")["b"] = Item("b", link=shared)
    transaction.commit()
    assert shared._p_jar is conn.jar("people")
    assert conn.root("main")["a"].link is conn.root("notes")["b"].link is shared


def test_placement_rule_by_class(uris):
    """A placement rule sends new objects of a class to its member, even from elsewhere."""
    fed = federation.open(uris, placement={Placed: "people"})
    conn = fed.open()
    try:
        placed = Placed("by rule")
        conn.root("main")["a"] = Item("a", link=placed)
        conn.root("notes")["b"] = Item("b", link=placed)
        transaction.commit()
        assert placed._p_jar is conn.jar("people")
        assert conn.ref(placed).member == "people"
        assert len(conn.stubs("main")) == len(conn.stubs("notes")) == 1
    finally:
        transaction.abort()
        conn.close()
        fed.close()


def test_placement_rule_names_classes_by_dotted_name(uris):
    """Placement rules also accept dotted class names, as in a configuration file."""
    fed = federation.open(uris, placement={"tests.models.Placed": "notes"})
    conn = fed.open()
    try:
        placed = Placed("by name")
        conn.root("main")["a"] = Item("a", link=placed)
        transaction.commit()
        assert placed._p_jar is conn.jar("notes")
    finally:
        transaction.abort()
        conn.close()
        fed.close()


def test_placement_rule_for_an_unknown_member_is_refused(uris):
    """A placement rule naming a member that does not exist fails at open."""
    with pytest.raises(federation.UnknownMember, match="nowhere"):
        federation.open(uris, placement={Placed: "nowhere"})


def test_ref_of_an_unplaced_object_explains_what_to_do(conn):
    """ref() of a new object that has no member yet says how to place it."""
    with pytest.raises(federation.AmbiguousPlacement, match="add it"):
        conn.ref(Item("loose"))


def test_adding_an_object_of_another_member_is_refused(conn):
    """An object already in one member cannot be added to another."""
    item = conn.root("main")["x"] = Item("x")
    transaction.commit()
    with pytest.raises(federation.AmbiguousPlacement, match="main"):
        conn.add(item, "notes")


def test_unknown_member_is_a_key_error_naming_it(conn):
    """An unknown member name raises UnknownMember, also a KeyError, naming it."""
    with pytest.raises(federation.UnknownMember, match="nope") as caught:
        conn.root("nope")
    assert isinstance(caught.value, KeyError)
    assert "main" in str(caught.value)
