"""zfed serve and zfed shell as an operator runs them: real processes, free ports.

The server is a ``python -m federation serve`` process; readiness is its
"Serving" line, read with a deadline; every process is killed at teardown.
"""

from __future__ import annotations

import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import transaction
from click.testing import CliRunner

import federation
from federation.cli import main
from federation.serve import FederationServer
from tests.models import Item

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

pytestmark = pytest.mark.server

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
#: Seconds a server may take to start, a shell to answer, a process to exit.
DEADLINE = 60.0


class Process:
    """A ``zfed`` child process whose output lines are read with a deadline."""

    def __init__(self, *args: str, stdin: bool = False) -> None:
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "federation", *args], cwd=ROOT,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        self._buffers = {"stdout": b"", "stderr": b""}

    def line(self, stream: str = "stdout", timeout: float = DEADLINE) -> str:
        """The next line the process writes to ``stream``; fails after ``timeout`` seconds."""
        pipe = getattr(self.popen, stream)
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as selector:
            selector.register(pipe, selectors.EVENT_READ)
            while b"\n" not in self._buffers[stream]:
                left = deadline - time.monotonic()
                if left <= 0 or not selector.select(left):
                    pytest.fail(f"No line on {stream} within {timeout} seconds; "
                                f"so far: {self._buffers[stream]!r}")
                chunk = os.read(pipe.fileno(), 65536)
                if not chunk:
                    errors = self.popen.stderr.read().decode() if stream == "stdout" else ""
                    pytest.fail(f"The process closed {stream} after "
                                f"{self._buffers[stream]!r}; stderr: {errors}")
                self._buffers[stream] += chunk
        line, _, self._buffers[stream] = self._buffers[stream].partition(b"\n")
        return line.decode()

    def send(self, text: str) -> None:
        """Write a line to the process's stdin."""
        self.popen.stdin.write(text.encode() + b"\n")
        self.popen.stdin.flush()

    def finish(self, timeout: float = DEADLINE) -> tuple[int, str, str]:
        """Wait for the process to exit: its status and what it wrote after the lines read."""
        out, err = self.popen.communicate(timeout=timeout)
        return (self.popen.returncode, (self._buffers["stdout"] + out).decode(),
                (self._buffers["stderr"] + err).decode())

    def kill(self) -> None:
        """Kill the process if it still runs, and reap it."""
        if self.popen.poll() is None:
            self.popen.kill()
        self.popen.communicate(timeout=DEADLINE)


@pytest.fixture
def processes() -> Iterator[list[Process]]:
    """Processes the test starts; killed at teardown whatever happened."""
    started: list[Process] = []
    yield started
    for process in started:
        process.kill()


def start(processes: list[Process], *args: str, stdin: bool = False) -> Process:
    """Start a ``zfed`` process, registered for teardown."""
    process = Process(*args, stdin=stdin)
    processes.append(process)
    return process


def readme_config() -> str:
    """The federation configuration of the README's client/server walk-through."""
    text = README.read_text()
    block = text.split("```toml\n", 1)[1].split("```", 1)[0]
    assert "[members." in block
    return block


def serve(processes: list[Process], config: Path, client: Path) -> tuple[Process, str]:
    """Start zfed serve on ``config``; once it serves, its process and 'Serving' line."""
    server = start(processes, "serve", str(config), "--client-config", str(client))
    ready = server.line()
    assert ready.startswith("Serving "), ready
    return server, ready


FIRST = """
import sys
from tests.models import Item
page = roots["main"]["page"] = Item("page")
transaction.commit()
roots["notes"]["note"] = Item("note about the page", link=page)
transaction.commit()
print("committed", conn.ref(roots["notes"]["note"]), flush=True)
sys.stdin.readline()                       # the second shell has replied
conn.sync()
reply = roots["main"]["reply"]
print("saw", reply.title, reply.link is roots["notes"]["note"], reply.link.link is page,
      flush=True)
"""

SECOND = """
import sys
from tests.models import Item
print("started", sorted(roots["main"]), flush=True)
sys.stdin.readline()                       # the first shell has committed
conn.sync()
note = roots["notes"]["note"]
print("saw", note.title, note.link is roots["main"]["page"], flush=True)
roots["main"]["reply"] = Item("reply", link=note)
transaction.commit()
roots["main"]["forgotten"] = Item("never committed")
print("replied", flush=True)
"""


def test_server_and_two_shells(tmp_path, processes):
    """The README walk-through: two shells link objects across members, see each other's commits."""
    config = tmp_path / "federation.toml"
    config.write_text(readme_config())
    client = tmp_path / "client.toml"
    server, ready = serve(processes, config, client)
    assert ready.endswith(f"client configuration written to {client}. "
                          "Ctrl-C or SIGTERM stops.")
    second = start(processes, "shell", str(client), "-c", SECOND, stdin=True)
    assert second.line() == "started []"
    first = start(processes, "shell", str(client), "-c", FIRST, stdin=True)
    assert first.line().startswith("committed notes:integer:")
    second.send("go")
    assert second.line() == "saw note about the page True"
    assert second.line() == "replied"
    assert second.finish()[0] == 0
    first.send("go")
    assert first.line() == "saw reply True True"
    assert first.finish()[0] == 0

    server.popen.send_signal(signal.SIGTERM)
    status, out, err = server.finish()
    assert status == 0, err
    assert out == "Stopped by SIGTERM; storages closed.\n"
    # The files are closed and hold both shells' commits, not the uncommitted change.
    with federation.open_config(config) as fed, fed.open() as conn:
        reply = conn.root("main")["reply"]
        assert reply.link is conn.root("notes")["note"]
        assert reply.link.link is conn.root("main")["page"]
        assert "forgotten" not in conn.root("main")
        assert len(conn.stubs("main")) == len(conn.stubs("notes")) == 1
        transaction.abort()


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_serve_prints_client_config_and_stops_cleanly(tmp_path, processes, stop):
    """Without --client-config the configuration goes to stdout; a signal stops with status 0."""
    federation.open({"people": (tmp_path / "people.fs").as_uri()}).close()  # read-only: exists
    config = tmp_path / "federation.toml"
    config.write_text(
        '[members.main]\npath = "main.fs"\ncreate = true\n'
        '[members.people]\npath = "people.fs"\ncreate = true\nkey = "uuid"\nread_only = true\n'
        '[members.elsewhere]\nuri = "zeo://127.0.0.1:1?username=u&password=s3cret"\n'
        '[placement]\n"tests.models.Item" = "main"\n'
    )
    server = start(processes, "serve", str(config))
    ready = server.line("stderr")
    assert ready.startswith("Serving main, people at 127.0.0.1:"), ready
    server.popen.send_signal(stop)
    status, out, err = server.finish()
    assert status == 0, err
    assert f"Stopped by {stop.name}; storages closed." in err
    assert "s3cret" not in out + err
    client = tomllib.loads(out)
    port = int(ready.split("127.0.0.1:")[1].split(";")[0])
    assert client["members"] == {
        "main": {"uri": f"zeo://127.0.0.1:{port}?storage=main", "key": "integer"},
        "people": {"uri": f"zeo://127.0.0.1:{port}?storage=people", "key": "uuid",
                   "read_only": True},
        "elsewhere": {"uri": "zeo://127.0.0.1:1?username=u&password=***", "key": "integer"},
    }
    assert client["placement"] == {"tests.models.Item": "main"}
    # The storages were closed: the files open again, in this process.
    with federation.open({name: (tmp_path / f"{name}.fs").as_uri()
                          for name in ("main", "people")}) as fed:
        assert all(member.available for member in fed.members.values())


def test_client_config_file_keeps_the_password_private(tmp_path):
    """--client-config writes the copied member's password, in a file only its owner reads."""
    config = tmp_path / "federation.toml"
    config.write_text('[members.main]\npath = "main.fs"\ncreate = true\n'
                      '[members.other]\nuri = "zeo://127.0.0.1:1?password=s3cret"\n')
    server = FederationServer(config)
    try:
        host, port = server.start()
        assert host == "127.0.0.1" and port > 0
        assert "password=***" in server.client_config()
        assert server.has_secrets()
        server.write_client_config(tmp_path / "client.toml")
        assert "password=s3cret" in (tmp_path / "client.toml").read_text()
        assert (tmp_path / "client.toml").stat().st_mode & 0o777 == 0o600
    finally:
        server.close()


def test_served_members_work_in_process(tmp_path):
    """The client configuration opens with open_config; commits reach the served files."""
    config = tmp_path / "federation.toml"
    config.write_text('[members.main]\npath = "main.fs"\ncreate = true\n'
                      '[members.notes]\npath = "notes.fs"\ncreate = true\n')
    server = FederationServer(config)
    _commit_through_the_server(server, config, tmp_path / "client.toml")


def test_serve_a_zconfig_file(tmp_path):
    """zfed serve serves the FileStorage sections of a ZConfig file (read-only ones
    read-only), and refuses one that keeps blobs, as for TOML."""
    config = tmp_path / "zodb.conf"
    config.write_text("%import federation\n"
                      "<zodb main>\n<filestorage>\npath main.fs\n</filestorage>\n</zodb>\n"
                      "<zodb notes>\n<filestorage>\npath notes.fs\n</filestorage>\n</zodb>\n"
                      "<zodb temp>\n<mappingstorage>\n</mappingstorage>\n</zodb>\n"
                      "<federation>\n<member main>\ncreate on\n</member>\n"
                      "<member notes>\ncreate on\n</member>\n</federation>\n")
    server = FederationServer(config)
    assert server.served == ["main", "notes"]
    _commit_through_the_server(server, config, tmp_path / "client.toml")
    (tmp_path / "blobs").mkdir()
    config.write_text("<zodb main>\n<filestorage>\npath main.fs\nblob-dir blobs\n"
                      "</filestorage>\n</zodb>\n")
    result = CliRunner().invoke(main, ["serve", str(config)])
    assert result.exit_code == 1
    assert result.output.startswith("Error: Member 'main' keeps blobs"), result.output

def test_serve_a_file_whose_path_has_a_space(tmp_path):
    """zfed serve serves the existing file of a path with a space, not a new one."""
    (tmp_path / "my data").mkdir()
    config = tmp_path / "federation.toml"
    config.write_text('[members.main]\npath = "my data/main.fs"\ncreate = true\n')
    with federation.open_config(config) as fed, fed.open() as conn:
        conn.root("main")["x"] = Item("x")
        transaction.commit()
    server = FederationServer(config)
    client = tmp_path / "client.toml"
    try:
        server.start()
        client.write_text(server.client_config())
        with federation.open_config(client) as fed, fed.open() as conn:
            assert conn.root("main")["x"].title == "x"
            transaction.abort()
    finally:
        server.close()
    assert sorted(path.name for path in (tmp_path / "my data").iterdir()
                  if path.suffix == ".fs") == ["main.fs"]

def test_serve_refuses_a_port_in_use(tmp_path):
    """A port another program listens on is refused in one sentence, exit 1."""
    config = tmp_path / "federation.toml"
    config.write_text('[members.main]\npath = "main.fs"\ncreate = true\n')
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(main, ["serve", str(config), "--port", str(port)])
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: Cannot serve on 127.0.0.1:{port}: ")
    assert result.output.endswith(".\n") and result.output.count("\n") == 1


@pytest.mark.parametrize(("text", "message"), [
    ('[members.main]\nuri = "memory://"\n', "has no file members"),
    ('[members.main]\npath = "mian.fs"\n', "the file .*mian.fs' does not exist"),
    ('[members.main]\npath = "m.fs"\ncreate = true\nkey = "dn"\n', "not 'dn'"),
])
def test_serve_refuses_what_it_cannot_serve(tmp_path, text, message):
    """No file member, a missing file or a bad key kind: exit 1 before listening."""
    config = tmp_path / "federation.toml"
    config.write_text(text)
    result = CliRunner().invoke(main, ["serve", str(config)])
    assert result.exit_code == 1
    assert result.output.startswith("Error: ")
    assert re.search(message, result.output), result.output


def readme_shell_blocks() -> list[str]:
    """The README walk-through's shell sessions (its ``>>>`` Python blocks), in order."""
    blocks = re.findall(r"^```python\n(>>> .*?)^```", README.read_text(), re.DOTALL | re.MULTILINE)
    assert len(blocks) == 2
    return blocks


def doctest_code(session: str) -> str:
    """Code for ``zfed shell -c`` that runs a ``>>>`` session as a doctest in the shell's names."""
    return (
        "import doctest, sys\n"
        f"test = doctest.DocTestParser().get_doctest({session!r}, globals(), 'README', None, 0)\n"
        "runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)\n"
        "sys.exit(1 if runner.run(test, clear_globs=False).failed else 0)\n"
    )


def test_readme_walkthrough_sessions_run(tmp_path, processes):
    """The README's two shell sessions run as written against zfed serve, in that order."""
    config = tmp_path / "federation.toml"
    config.write_text(readme_config())
    client = tmp_path / "client.toml"
    server, _ready = serve(processes, config, client)
    for session in readme_shell_blocks():
        shell = start(processes, "shell", str(client), "-c", doctest_code(session))
        status, out, err = shell.finish()
        assert status == 0, out + err
    check = start(processes, "shell", str(client), "-c",
                  "print(roots['notes']['todo']['about']['title'])")
    assert check.finish()[:2] == (0, "Home\n")
    server.popen.send_signal(signal.SIGINT)
    assert server.finish()[0] == 0


def test_serve_cannot_write_the_client_config(tmp_path):
    """A client configuration path that cannot be written: one sentence, exit 1, server closed."""
    config = tmp_path / "federation.toml"
    config.write_text('[members.main]\npath = "main.fs"\ncreate = true\n')
    target = tmp_path / "missing-directory" / "client.toml"
    result = CliRunner().invoke(main, ["serve", str(config), "--client-config", str(target)])
    assert result.exit_code == 1
    assert result.output == (f"Error: Cannot write the client configuration to {str(target)!r}: "
                             "No such file or directory.\n")
    with federation.open_config(config) as fed:  # the server let go of the file
        assert fed.member("main").available


def test_files_in_use_by_a_server_are_refused_clearly(tmp_path, processes):
    """While zfed serve has the files, commands on them say so in a sentence, exit 1."""
    config = tmp_path / "federation.toml"
    config.write_text('[members.main]\npath = "main.fs"\ncreate = true\n')
    server, _ready = serve(processes, config, tmp_path / "client.toml")
    runner = CliRunner()
    for command in (["info", str(config)], ["serve", str(config)]):
        result = runner.invoke(main, command)
        assert result.exit_code == 1, result.output
        assert result.output.startswith(
            f"Error: Member 'main': the storage {(tmp_path / 'main.fs').as_uri()!r} is "
            "locked by another process (a zfed serve, say: use the client configuration it "
            "wrote)"), result.output
    assert runner.invoke(main, ["info", str(tmp_path / "client.toml")]).exit_code == 0
    server.popen.send_signal(signal.SIGTERM)
    assert server.finish()[0] == 0


def _commit_through_the_server(server: FederationServer, config: Path, client: Path) -> None:
    """Start ``server``; a client of its configuration commits a cross-member reference,
    which the federation of ``config`` (the served files) reads back after the server stops."""
    try:
        server.start()
        client.write_text(server.client_config())
        with federation.open_config(client) as fed, fed.open() as conn:
            assert fed.members["main"].db.storage.__class__.__name__ == "ClientStorage"
            conn.root("notes")["note"] = Item("note", link=Item("page"))
            conn.add(conn.root("notes")["note"].link, "main")
            transaction.commit()
    finally:
        server.close()
    with federation.open_config(config) as fed, fed.open() as conn:
        assert conn.ref(conn.root("notes")["note"].link).member == "main"
        transaction.abort()
