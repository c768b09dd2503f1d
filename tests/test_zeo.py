"""ZEO members: real servers on free loopback ports, two processes, a server that goes away."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import transaction
import ZEO
from ZEO.ClientStorage import ClientStorage

import federation
from tests.helpers import page_and_note
from tests.models import Item

pytestmark = pytest.mark.server

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def zeo(tmp_path):
    """Start ZEO servers on free loopback ports; returns a function name -> (uri, stop)."""
    running = {}

    def start(name: str, *, own_process: bool = False) -> tuple[str, object]:
        # A server in its own process closes its clients' sockets when it stops,
        # as a real server going away does; an in-process one may not.
        (host, port), stop_server = ZEO.server(
            path=str(tmp_path / f"{name}.fs"), port=("127.0.0.1", 0), threaded=not own_process
        )
        running[name] = stop_server

        def stop() -> None:
            running.pop(name)()

        return f"zeo://{host}:{port}?wait_timeout=2", stop

    yield start
    for stop_server in running.values():
        stop_server()


CHILD = textwrap.dedent(
    """
    import sys, transaction, federation
    from ZEO.ClientStorage import ClientStorage
    from tests.models import Item

    def client(port):  # server_sync: sync() makes a round trip, so invalidations are in
        return ClientStorage(("127.0.0.1", int(port)), server_sync=True, wait_timeout=30)

    fed = federation.open({"main": client(sys.argv[1]), "notes": client(sys.argv[2])})
    conn = fed.open()
    print("ready", flush=True)
    sys.stdin.readline()                 # the parent has committed
    conn.sync()
    note = conn.root("notes")["from-parent"]
    print("saw", note.link.title, note.link is conn.root("main")["page"], flush=True)
    conn.root("main")["reply"] = Item("reply", link=conn.root("notes")["from-parent"])
    transaction.commit()
    print("committed", flush=True)
    conn.close()
    fed.close()
    """
)


def test_two_processes_see_each_others_references(zeo):
    """Two managers in two processes see each other's cross-member references after a sync."""
    ports = [urlsplit(zeo(name)[0].replace("zeo", "http", 1)).port for name in ("main", "notes")]
    fed = federation.open({
        name: ClientStorage(("127.0.0.1", port), server_sync=True, wait_timeout=30)
        for name, port in zip(("main", "notes"), ports, strict=True)
    })
    conn = fed.open()
    try:
        conn.root("main")["page"] = Item("page")
        transaction.commit()
        with subprocess.Popen(
            [sys.executable, "-c", CHILD, *map(str, ports)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT,
        ) as child:
            try:
                assert child.stdout.readline().split() == ["ready"]
                page = conn.root("main")["page"]
                conn.root("notes")["from-parent"] = Item("from parent", link=page)
                transaction.commit()
                child.stdin.write("go\n")
                child.stdin.flush()
                assert child.stdout.readline().split() == ["saw", "page", "True"]
                assert child.stdout.readline().split() == ["committed"]
                assert child.wait(timeout=60) == 0
            finally:
                if child.poll() is None:
                    child.kill()
        conn.sync()
        reply = conn.root("main")["reply"]
        assert reply.link is conn.root("notes")["from-parent"]
        assert reply.link.link is conn.root("main")["page"]
        assert len(conn.stubs("main")) == len(conn.stubs("notes")) == 1
    finally:
        transaction.abort()
        conn.close()
        fed.close()


def test_member_unreachable_at_open(zeo, tmp_path):
    """With one member's server down, the others load; touching its objects names member and key."""
    main_uri, stop = zeo("main")
    notes_uri = (tmp_path / "notes.fs").as_uri()
    fed = federation.open({"main": main_uri, "notes": notes_uri})
    conn = fed.open()
    page, _note = page_and_note(conn)
    key = conn.ref(page).key
    conn.close()
    fed.close()
    stop()

    fed = federation.open({"main": main_uri, "notes": notes_uri})
    conn = fed.open()
    try:
        assert not fed.member("main").available
        note = conn.root("notes")["note"]
        assert note.title == "note"
        with pytest.raises(federation.MemberUnavailable) as caught:
            note.link.title  # noqa: B018 - touching the attribute is the test
        assert "'main'" in str(caught.value) and str(key) in str(caught.value)
        with pytest.raises(federation.MemberUnavailable, match="main"):
            conn.root("main")
        # Its commit journal is unread: no ZODB member takes commits (a crash may have
        # left it deciding a transaction whose oids a new commit would reuse).
        note.title = "edited"
        with pytest.raises(federation.MemberUnavailable, match=r"'main'.*commit journal"):
            transaction.commit()
    finally:
        transaction.abort()
        conn.close()
        fed.close()


def test_server_going_away_mid_session(zeo):
    """A member whose server stops while open raises MemberUnavailable, a transient error."""
    main_uri, stop = zeo("main", own_process=True)
    notes_uri, _ = zeo("notes")
    uris = {"main": main_uri, "notes": notes_uri}
    with federation.open(uris) as writer_fed, writer_fed.open() as writer:
        page = writer.root("main")["page"] = Item("page")
        transaction.commit()
        writer.root("notes")["note"] = Item("note", link=page)
        transaction.commit()

    fed = federation.open(uris)
    conn = fed.open()
    try:
        note = conn.root("notes")["note"]
        stop()
        with pytest.raises(federation.MemberUnavailable, match="main") as caught:
            note.link.title  # noqa: B018 - never loaded by this client: needs the server
        assert isinstance(caught.value, transaction.interfaces.TransientError)
        assert note.title == "note"
    finally:
        transaction.abort()
        conn.close()
        fed.close()
