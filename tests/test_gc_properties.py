"""Property: after a federation pack, every reachable object loads and every other one is gone.

Random object graphs over three members (two FileStorage, one SQLite table
whose rows reference ZODB objects), with cycles inside and across members.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import transaction
from hypothesis import given, settings
from hypothesis import strategies as st
from persistent import Persistent
from persistent.list import PersistentList
from ZODB.POSException import POSKeyError

import federation
from tests.models import Person
from tests.test_adapter_sqlite import make_member

ZODB_MEMBERS = ("a", "b")


class Node(Persistent):
    """A vertex of the random graph: a title and references to other vertices."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.links: list[Node] = []


@st.composite
def graphs(draw: st.DrawFn) -> dict:
    """Nodes (their member), edges, root entries and SQL rows' references."""
    members = draw(st.lists(st.sampled_from(ZODB_MEMBERS), min_size=1, max_size=9))
    node = st.integers(0, len(members) - 1)
    return {
        "members": members,
        "edges": draw(st.lists(st.tuples(node, node), max_size=14)),
        "roots": draw(st.lists(st.tuples(st.sampled_from(ZODB_MEMBERS), node), max_size=3)),
        "rows": draw(st.lists(node, max_size=3)),
    }


def _reachable(graph: dict) -> set[int]:
    todo = [n for _member, n in graph["roots"]] + list(graph["rows"])
    seen: set[int] = set()
    while todo:
        n = todo.pop()
        if n not in seen:
            seen.add(n)
            todo.extend(dst for src, dst in graph["edges"] if src == n)
    return seen


def _build(fed: federation.Federation, graph: dict) -> tuple[list[bytes], list]:
    """Commit the graph, everything held by a temporary root list first; the oids and row refs."""
    with fed.open() as conn:
        nodes = [Node(f"n{i}") for i in range(len(graph["members"]))]
        for n, member in zip(nodes, graph["members"], strict=True):
            conn.add(n, member)
        for src, dst in graph["edges"]:
            nodes[src].links.append(nodes[dst])
        for member, n in graph["roots"]:
            conn.root(member)[f"r{n}"] = nodes[n]
        rows = []
        for n in graph["rows"]:
            row = Person(f"row of n{n}", owner=nodes[n])
            conn.add(row, "s")
            rows.append(row)
        conn.root("a")["tmp"] = PersistentList(nodes)  # all live for the first pack
        transaction.commit()
        refs = [conn.ref(row) for row in rows]
        oids = [n._p_oid for n in nodes]
    fed.pack()
    with fed.open() as conn:
        del conn.root("a")["tmp"]
        transaction.commit()
    return oids, refs


@settings(max_examples=15, deadline=None)
@given(graphs())
def test_pack_keeps_exactly_what_is_reachable(graph):
    """Reachable objects load through every reference; unreachable ones are gone."""
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory)
        sql_member, _ = make_member(path, "s")
        members = {name: (path / f"{name}.fs").as_uri() for name in ZODB_MEMBERS}
        with federation.open({**members, "s": sql_member}) as fed:
            oids, refs = _build(fed, graph)
            fed.pack()
            live = _reachable(graph)
            with fed.open() as conn:
                for member, n in graph["roots"]:
                    _check_node(conn.root(member)[f"r{n}"], n, graph)
                for ref, n in zip(refs, graph["rows"], strict=True):
                    _check_node(conn.get(ref).owner, n, graph)
                for member in ZODB_MEMBERS:  # garbage stubs went too
                    assert len(conn.stubs(member)) == len(_stub_targets(graph, live, member))
                transaction.abort()
            for n, (oid, member) in enumerate(zip(oids, graph["members"], strict=True)):
                storage = fed.member(member).db.storage
                if n in live:
                    storage.load(oid)
                else:
                    try:
                        storage.load(oid)
                    except POSKeyError:
                        continue
                    raise AssertionError(f"unreachable node n{n} of {member} survived")


def _stub_targets(graph: dict, live: set[int], member: str) -> set[int]:
    """The live nodes of other members that objects of ``member`` ever referenced.

    A stub is kept while its target lives, referenced or not, so that new
    references reuse it; the temporary list in 'a' referenced every node.
    """
    where = graph["members"]
    targets = {dst for src, dst in graph["edges"] if where[src] == member}
    targets.update(n for root, n in graph["roots"] if root == member)
    if member == "a":
        targets.update(range(len(where)))
    return {n for n in targets if n in live and where[n] != member}


def _check_node(node: Node, n: int, graph: dict) -> None:
    """``node`` is vertex ``n``, and each of its references loads the right vertex."""
    todo, seen = [(node, n)], set()
    while todo:
        obj, index = todo.pop()
        if index in seen:
            continue
        seen.add(index)
        assert obj.title == f"n{index}"
        targets = [dst for src, dst in graph["edges"] if src == index]
        assert [link.title for link in obj.links] == [f"n{dst}" for dst in targets]
        todo.extend(zip(obj.links, targets, strict=True))


STEPS = ["open", "marked", "scanned", "keep_alive", "verified", "pack a", "packed a", "pack b",
         "packed b", "pruned"]


def _path(graph: dict, start: int, goal: int) -> list[int]:
    """Positions in ``links`` leading from node ``start`` to node ``goal`` (breadth first)."""
    paths = {start: []}
    todo = [start]
    while todo:
        n = todo.pop(0)
        if n == goal:
            return paths[n]
        for position, dst in enumerate(dst for src, dst in graph["edges"] if src == n):
            if dst not in paths:
                paths[dst] = [*paths[n], position]
                todo.append(dst)
    raise AssertionError("unreachable goal")


@settings(max_examples=20, deadline=None)
@given(graphs(), st.sampled_from(STEPS), st.sampled_from(ZODB_MEMBERS), st.data())
def test_a_commit_during_pack_loses_nothing_live(graph, step, member, data):
    """A commit at any step moves a root's reference to an object it reaches into a root
    of any member: everything live afterwards loads; what no state reached is gone."""
    if not graph["roots"]:
        graph["roots"] = [("a", 0)]
    root_member, start = graph["roots"][0]
    reachable_from_start = _reachable({**graph, "roots": [(root_member, start)], "rows": []})
    goal = data.draw(st.sampled_from(sorted(reachable_from_start)))
    moved = {**graph, "roots": [*graph["roots"][1:], (member, goal)]}
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory)
        sql_member, _ = make_member(path, "s")
        members = {name: (path / f"{name}.fs").as_uri() for name in ZODB_MEMBERS}
        with federation.open({**members, "s": sql_member}) as fed:
            oids, refs = _build(fed, graph)
            seen = []

            def move(name: str) -> None:
                if name != step or seen:
                    return
                seen.append(name)
                tm = transaction.TransactionManager()
                with fed.open(tm) as conn:
                    obj = conn.root(root_member)[f"r{start}"]
                    for position in _path(graph, start, goal):
                        obj = obj.links[position]
                    if (root_member, start) not in moved["roots"]:
                        del conn.root(root_member)[f"r{start}"]
                    conn.root(member)[f"r{goal}"] = obj
                    tm.commit()

            fed.pack(hook=move)
            assert seen == [step]
            before, after = _reachable(graph), _reachable(moved)
            for final in (False, True):
                with fed.open() as conn:
                    for root, n in moved["roots"]:
                        _check_node(conn.root(root)[f"r{n}"], n, moved)
                    for ref, n in zip(refs, graph["rows"], strict=True):
                        _check_node(conn.get(ref).owner, n, moved)
                    transaction.abort()
                kept = after if final else before | after
                for n, (oid, where) in enumerate(zip(oids, graph["members"], strict=True)):
                    if n not in kept:
                        try:
                            fed.member(where).db.storage.load(oid)
                        except POSKeyError:
                            continue
                        raise AssertionError(f"node n{n} of {where} survived, reached by no state")
                fed.pack()
