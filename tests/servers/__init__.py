"""Real servers for the test suite: PostgreSQL and OpenLDAP's slapd.

Each server is started on a free loopback port in a temporary directory and
stopped at the end; `tests.servers.fixtures` wraps them as session fixtures.
Readiness is polled on the server's own signal (`pg_isready`, an LDAP bind),
bounded in attempts and in time, never a fixed sleep.

When a server's programs are missing the tests skip, except under CI
(`CI=true`), where a missing server is an error: `.ci/install-system-packages`
is expected to have installed it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

import pytest

#: Attempts and seconds allowed for a server to become ready.
READY_ATTEMPTS = 400
READY_SECONDS = 30.0
#: Seconds to wait on the server process between two readiness probes.
PROBE_INTERVAL = 0.05
#: Seconds one readiness probe may take (a foreign listener on the port may never answer).
PROBE_TIMEOUT = 2.0
#: How many fresh ports to try when another process takes the one picked.
PORT_ATTEMPTS = 5


class ServerError(RuntimeError):
    """A test server could not be started or stopped."""


class PortTaken(ServerError):
    """The free port picked for a server was taken before the server bound it."""


def under_ci() -> bool:
    """Whether the tests run under CI, where a missing server is an error."""
    return os.environ.get("CI") == "true"


def missing(message: str) -> NoReturn:
    """Skip the test for a missing server program, or fail under CI."""
    if under_ci():
        pytest.fail(f"{message} Under CI the server is required; "
                    "run .ci/install-system-packages as root.", pytrace=False)
    pytest.skip(message)


def free_port() -> int:
    """Return a loopback TCP port that was free a moment ago.

    The port is released before the server binds it, so another process may
    take it in between; callers retry with a new port on `PortTaken`.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def log_tail(log: Path, lines: int = 20) -> str:
    """The last lines of a server's log file, for error messages."""
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def wait_ready(
    name: str,
    process: subprocess.Popen[bytes],
    probe: Callable[[], bool],
    log: Path,
) -> None:
    """Return once `probe()` is true, polling at most READY_ATTEMPTS times in READY_SECONDS.

    Between two probes the wait is on the server process itself, so a server
    that exits is noticed at once. Raises `PortTaken` when it exited because
    its port was in use, `ServerError` when it exited otherwise or never became
    ready.
    """
    deadline = time.monotonic() + READY_SECONDS
    for _ in range(READY_ATTEMPTS):
        # Polling the process after the probe too keeps a foreign server that
        # answered on our port from passing for ours once ours has exited.
        if process.poll() is None and probe() and process.poll() is None:
            return
        try:
            code = process.wait(timeout=PROBE_INTERVAL)
        except subprocess.TimeoutExpired:
            if time.monotonic() > deadline:
                break
            continue
        tail = log_tail(log)
        if "already in use" in tail:
            raise PortTaken(f"{name} exited because its port was taken:\n{tail}")
        raise ServerError(f"{name} exited with status {code} before it was ready:\n{tail}")
    raise ServerError(
        f"{name} was not ready after {READY_ATTEMPTS} attempts or {READY_SECONDS} seconds:\n"
        f"{log_tail(log)}"
    )


def run(command: list[str], name: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run a setup command to completion; raise `ServerError` with its output if it fails."""
    result = subprocess.run(command, capture_output=True, text=True, check=False, **kwargs)  # type: ignore[call-overload]
    if result.returncode != 0:
        raise ServerError(
            f"{name}: {' '.join(command)} failed with status {result.returncode}:\n"
            f"{result.stdout}{result.stderr}"
        )
    return result


def terminate(process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """Terminate a server process and wait for it; kill it if it does not exit in time."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout)
