"""A model-based test of a federation: random interleavings checked against a model.

Three members: ``a`` and ``b`` (FileStorage) and ``s`` (SQLite rows).  Two
managers on two transaction managers share one federation (as two threads
of one application; ZODB's MVCC invalidations reach each from the other),
and *reopen* closes the federation and opens a second one on the same
files.  A FileStorage can be open once per process, so the second
federation is opened after the first is closed, not beside it; the two
managers are the concurrent writers.

Rules create objects in any member (attached to a root entry or to another
object, across members), link and unlink them (root entries included),
commit, abort, take and roll back savepoints, pack, reindex, close and
reopen a manager, reopen the federation, undo the last transaction of a
ZODB member when it changed that member only and nothing wrote since (the
other manager undoes it, as ZODB's ``DB.undo`` does, and the model returns
to the state before it), and rename a member: the
federation is closed and reopened with one member under a new name (same
file), so that stubs, SQL rows and the objects' refs must follow it (the
model names members ``a``, ``b`` and ``s`` and maps them to their current
names).  The model keeps, per
manager, what it sees (its snapshot plus its own changes) and the
committed state.  After every step:

- every object reachable in committed state, read through a new manager
  and through each long-lived manager that has no pending change (after
  ``begin()``), has the link it was last set to, and so has every root
  entry (a SQL row is written only where its attributes differ from what
  the transaction loaded, as foreign members have no snapshots: the model
  follows that);
- no member keeps two stubs for one target.

:class:`FederationModel` runs in the test suite with a small budget
(``tests/test_model.py``) and with a large one from ``benchmarks/model.py``.
"""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import transaction
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from transaction.interfaces import TransientError
from ZODB.POSException import ConflictError, ReadConflictError

import federation
from federation.adapters import sql
from federation.catalog import target_key
from federation.connection import Unreachable
from tests.models import Item, Person
from tests.test_adapter_sqlite import SCHEMA, TABLE

ZODB_MEMBERS = ("a", "b")
SQL_MEMBER = "s"
ROOT_KEYS = ("r0", "r1", "r2")



@dataclass
class State:
    """Objects (by title), their members and refs, their links, and the roots' entries."""

    member: dict[str, str] = field(default_factory=dict)
    ref: dict[str, federation.Ref] = field(default_factory=dict)
    link: dict[str, str | None] = field(default_factory=dict)
    roots: dict[str, dict[str, str]] = field(
        default_factory=lambda: {name: {} for name in ZODB_MEMBERS})

    def copy(self) -> State:
        return State(dict(self.member), dict(self.ref), dict(self.link),
                     {name: dict(entries) for name, entries in self.roots.items()})

    def live(self) -> set[str]:
        """Titles reachable from the roots and from every SQL row (foreign records are roots)."""
        todo = [title for entries in self.roots.values() for title in entries.values()]
        todo += [title for title, member in self.member.items() if member == SQL_MEMBER]
        seen: set[str] = set()
        while todo:
            title = todo.pop()
            if title in seen:
                continue
            seen.add(title)
            target = self.link.get(title)
            if target is not None:
                todo.append(target)
        return seen


def _pick(data: st.DataObject, items: Any) -> Any:
    """One of ``items`` (None if there are none), drawn the same way whatever the state.

    Commit outcomes may differ between runs of the same steps (journal ids
    are random, so BTree conflict resolution may decide otherwise), and a
    draw whose bounds depend on them would make hypothesis refuse the run.
    """
    number = data.draw(st.integers(min_value=0, max_value=1023))
    return items[number % len(items)] if len(items) else None


def _attribute(member: str) -> str:
    return "owner" if member == SQL_MEMBER else "link"


def _title(obj: Any) -> str:
    return obj.name if isinstance(obj, Person) else obj.title


managers = st.integers(min_value=0, max_value=1)

#: What the runs did (steps by kind, objects checked), for ``benchmarks/model.py``.
STATS: Counter[str] = Counter()


class FederationModel(RuleBasedStateMachine):
    """See the module docstring."""

    def __init__(self) -> None:
        super().__init__()
        self.folder = Path(tempfile.mkdtemp(prefix="zfed-model-"))
        with sqlite3.connect(self.folder / "s.sqlite") as db:
            db.execute(SCHEMA)
        db.close()
        self.committed = State()
        self.counter = 0
        #: The current configuration name of each member of the model (see ``rename``).
        self.names = {name: name for name in (*ZODB_MEMBERS, SQL_MEMBER)}
        self.fed: federation.Federation | None = None
        #: The last commit, when it changed one ZODB member only and nothing wrote since:
        #: that member and the committed state before it (see ``_undo``).
        self.undoable: tuple[str, State] | None = None
        self._open()

    # -- set-up -------------------------------------------------------------------

    def _members(self) -> dict[str, Any]:
        names = self.names
        members: dict[str, Any] = {names[name]: (self.folder / f"{name}.fs").as_uri()
                                   for name in ZODB_MEMBERS}
        members[names[SQL_MEMBER]] = sql.sqlite(names[SQL_MEMBER], str(self.folder / "s.sqlite"),
                                                TABLE, batch_size=10)
        return members

    def _open(self) -> None:
        self.fed = federation.open(self._members())
        self.tms = [transaction.TransactionManager(), transaction.TransactionManager()]
        self.managers = [self.fed.open(tm) for tm in self.tms]
        self.views = [self.committed.copy(), self.committed.copy()]
        self.touched: list[set[tuple[str, str]]] = [set(), set()]
        # Per manager, the link each existing SQL row had when the transaction first
        # changed it: a foreign jar writes only the attributes that differ from it.
        self.loaded: list[dict[str, str | None]] = [{}, {}]
        self.savepoints: list[list[tuple[Any, State, set[tuple[str, str]]]]] = [[], []]

    def _close(self) -> None:
        if self.fed is None:
            return
        for tm, manager in zip(self.tms, self.managers, strict=True):
            tm.abort()
            manager.close()
        self.fed.close()
        self.fed = None

    def teardown(self) -> None:
        try:
            self._close()
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)

    # -- helpers ------------------------------------------------------------------

    def _reset(self, i: int) -> None:
        self.views[i] = self.committed.copy()
        self.touched[i] = set()
        self.savepoints[i] = []
        self.loaded[i] = {}

    def _get(self, i: int, title: str) -> Any:
        return self.managers[i].get(_current(self.views[i], self.names, title))

    def _holders(self, i: int) -> list[tuple[str, ...]]:
        view = self.views[i]
        roots = [("root", name, key) for name in ZODB_MEMBERS for key in ROOT_KEYS]
        return roots + [("obj", title) for title in sorted(view.live())]

    def _set(self, i: int, holder: tuple[str, ...], title: str | None) -> None:
        """Make ``holder`` (a root entry or an object) reference ``title`` (None: nothing)."""
        view, manager = self.views[i], self.managers[i]
        target = self._get(i, title) if title is not None else None
        if holder[0] == "root":
            _, name, key = holder
            root = manager.root(self.names[name])
            if title is None:
                root.pop(key, None)
                view.roots[name].pop(key, None)
            else:
                root[key] = target
                view.roots[name][key] = title
            self.touched[i].add(("root", name))
        else:
            source = holder[1]
            obj = self._get(i, source)
            if (view.member[source] == SQL_MEMBER and source in self.committed.member
                    and source not in self.loaded[i]):
                current = obj.owner  # the row as this transaction loaded it
                self.loaded[i][source] = None if current is None else _title(current)
            setattr(obj, _attribute(view.member[source]), target)
            view.link[source] = title
            self.touched[i].add(("obj", source))

    def _set_or_retry(self, i: int, holder: tuple[str, ...], title: str | None) -> None:
        """:meth:`_set`; a read conflict aborts the transaction, as ``attempts()`` would.

        SQL rows are read as they are now and ZODB members at the snapshot: a
        row the other manager linked to a new ZODB object since this
        transaction began names an object this snapshot does not have (its
        placeholder raises ``ReadConflictError``).
        """
        try:
            self._set(i, holder, title)
        except ReadConflictError:
            STATS["read conflicts (transaction aborted)"] += 1
            self.tms[i].abort()
            self._reset(i)

    # -- rules --------------------------------------------------------------------

    @rule(i=managers, member=st.sampled_from((*ZODB_MEMBERS, SQL_MEMBER)), data=st.data())
    def create(self, i: int, member: str, data: st.DataObject) -> None:
        """A new object in ``member``, referenced from a root entry or another object."""
        view, manager = self.views[i], self.managers[i]
        title = f"o{self.counter}"
        self.counter += 1
        obj = Person(title) if member == SQL_MEMBER else Item(title)
        manager.add(obj, self.names[member])
        view.member[title] = member
        view.ref[title] = manager.ref(obj)
        view.link[title] = None
        self.touched[i].add(("obj", title))
        holders = [h for h in self._holders(i) if h != ("obj", title)]
        self._set_or_retry(i, _pick(data, holders), title)

    @rule(i=managers, data=st.data())
    def link(self, i: int, data: st.DataObject) -> None:
        """A root entry or an object now references a live object."""
        holder, target = _pick(data, self._holders(i)), _pick(data, sorted(self.views[i].live()))
        if target is not None:
            self._set_or_retry(i, holder, target)

    @rule(i=managers, data=st.data())
    def unlink(self, i: int, data: st.DataObject) -> None:
        """A root entry or an object references nothing any more."""
        self._set_or_retry(i, _pick(data, self._holders(i)), None)

    @rule(i=managers)
    def commit(self, i: int) -> None:
        view = self.views[i]
        members = {name if what == "root" else view.member[name]
                   for what, name in self.touched[i]}
        before = self.committed.copy()
        self.undoable = None
        try:
            self.tms[i].commit()
        except (ConflictError, TransientError) as error:
            STATS[f"commits failed ({type(error).__name__})"] += 1
            self.tms[i].abort()
        else:
            STATS["commits with changes" if self.touched[i] else "empty commits"] += 1
            if len(members) == 1 and not members.isdisjoint(ZODB_MEMBERS):
                self.undoable = (members.pop(), before)
            for what, name in self.touched[i]:
                if what == "root":
                    self.committed.roots[name] = dict(view.roots[name])
                elif name in self.loaded[i] and self.loaded[i][name] == view.link[name]:
                    # An SQL row set back to what it was loaded with: no write, so a
                    # change committed meanwhile by the other manager stays.
                    continue
                else:
                    self.committed.member[name] = view.member[name]
                    self.committed.ref[name] = view.ref[name]
                    self.committed.link[name] = view.link[name]
        self._reset(i)

    @rule(i=managers)
    def abort(self, i: int) -> None:
        self.tms[i].abort()
        self._reset(i)

    @rule(i=managers)
    def savepoint(self, i: int) -> None:
        savepoint = self.tms[i].savepoint()
        self.savepoints[i].append((savepoint, self.views[i].copy(), set(self.touched[i])))

    @rule(i=managers, data=st.data())
    def rollback(self, i: int, data: st.DataObject) -> None:
        k = _pick(data, range(len(self.savepoints[i])))
        if k is None:
            return
        savepoint, view, touched = self.savepoints[i][k]
        savepoint.rollback()
        self.views[i] = view.copy()
        self.touched[i] = set(touched)
        del self.savepoints[i][k + 1:]

    @rule(action=st.sampled_from(("pack", "reindex a", "reindex b", "reopen manager 0",
                                  "reopen manager 1", "reopen federation", "rename a",
                                  "rename b", "rename s")))
    def maintain(self, action: str) -> None:
        """One of the rarer steps (one rule, so that they are not drawn most of the time)."""
        self.undoable = None
        STATS[action] += 1
        if action == "pack":
            self._pack()
        elif action.startswith("reindex"):
            self._reindex(action[-1])
        elif action.startswith("rename"):
            self._rename(action[-1])
        elif action.startswith("reopen manager"):
            i = int(action[-1])
            self.tms[i].abort()
            self.managers[i].close()  # its connections go back to the pool, caches and all
            self.managers[i] = self.fed.open(self.tms[i])
            self._reset(i)
        else:  # a second federation on the same files
            self._close()
            self._open()

    @rule()
    def undo(self) -> None:
        """Manager 1's transaction undoes the last commit, if it changed one ZODB member
        only and nothing wrote since; both managers' pending changes are aborted first."""
        if self.undoable is None:
            return
        (member, before), self.undoable = self.undoable, None
        STATS["undo"] += 1
        for i, tm in enumerate(self.tms):
            tm.abort()
            self._reset(i)
        db = self.fed.member(self.names[member]).db
        tm = self.tms[1]
        db.undo(db.undoLog(0, 1)[0]["id"], tm.get())
        tm.commit()
        self.committed = before
        for i in range(len(self.tms)):
            self._reset(i)

    def _rename(self, member: str) -> None:
        """Close the federation and open it again with ``member`` under a new name.

        Pending changes are aborted first, as an operator stops every
        process before renaming a member in the configuration.
        """
        self._close()
        self.counter += 1
        self.names[member] = f"{member}_{self.counter}"
        self._open()

    def _pack(self) -> None:
        """The federation's garbage collection, after both managers' changes are settled."""
        for i, tm in enumerate(self.tms):
            tm.abort()
            self._reset(i)
        self.fed.pack()
        for tm in self.tms:
            tm.begin()

    def _reindex(self, member: str) -> None:
        """Manager 0 reindexes ``member`` (its own changes are aborted first) and commits."""
        self.tms[0].abort()
        self._reset(0)
        report = self.managers[0].reindex(self.names[member])
        assert report.duplicate_stubs == 0, report
        try:
            self.tms[0].commit()
        except (ConflictError, TransientError):
            self.tms[0].abort()

    # -- invariants ---------------------------------------------------------------

    @invariant()
    def committed_state_reads_back(self) -> None:
        tm = transaction.TransactionManager()
        manager = self.fed.open(tm)
        try:
            _check(manager, self.committed, self.names, "a new manager")
            for name in ZODB_MEMBERS:
                entries = manager.jar(self.names[name]).stub_entries()
                keys = [target_key(e[0], e[2], e[3]) for _oid, e in entries]
                assert len(keys) == len(set(keys)), f"member {name} has duplicate stubs"
        finally:
            tm.abort()
            manager.close()

    @invariant()
    def long_lived_managers_read_nothing_stale(self) -> None:
        for i, (tm, manager) in enumerate(zip(self.tms, self.managers, strict=True)):
            if self.touched[i] or self.savepoints[i]:
                continue
            tm.begin()
            self._reset(i)
            _check(manager, self.committed, self.names, f"manager {i}")


def _current(state: State, names: dict[str, str], title: str) -> federation.Ref:
    """The ref of ``title`` under its member's current name."""
    ref = state.ref[title]
    return federation.Ref(names[state.member[title]], ref.kind, ref.key)


def _check(manager: Any, state: State, names: dict[str, str], who: str) -> None:
    """Every live object and root entry of ``state`` reads back through ``manager``."""
    for name, entries in state.roots.items():
        root = manager.root(names[name])
        assert sorted(root.keys()) == sorted(entries), (who, name, dict(root), entries)
        for key, title in entries.items():
            assert _title(root[key]) == title, (who, name, key, root[key], title)
    for title in sorted(state.live()):
        STATS["objects checked"] += 1
        ref = _current(state, names, title)
        obj = manager.get(ref)
        assert _title(obj) == title, (who, title, obj)
        assert manager.ref(obj) == ref, (who, title, manager.ref(obj), ref)
        target = getattr(obj, _attribute(state.member[title]))
        expected = state.link[title]
        if expected is None:
            assert target is None, (who, title, target)
        else:
            assert not isinstance(target, Unreachable), (who, title, target)
            assert _title(target) == expected, (who, title, _title(target), expected)
            assert manager.ref(target) == _current(state, names, expected), (who, title)
