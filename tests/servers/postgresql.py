"""A throwaway PostgreSQL server on a free loopback port.

`running_postgresql(base_dir)` runs `initdb` into a temporary directory with
trust authentication, starts `postgres` listening on 127.0.0.1 only (its Unix
socket in the same directory), waits for `pg_isready`, creates a database and
yields a `PostgresServer`. `max_prepared_transactions` is set so that
`PREPARE TRANSACTION` (two-phase commit) works; fsync is off for speed.

PostgreSQL refuses to run as root. As root, its programs run as the
unprivileged user `zfedtest` (created by `.ci/install-system-packages`; set
`ZFED_TEST_USER` for another) through `setpriv`, and the cluster lives in a
fresh directory of the system temporary folder that the user owns, because
pytest's own temporary folders are private to root.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.servers import (
    PORT_ATTEMPTS,
    PROBE_TIMEOUT,
    PortTaken,
    ServerError,
    free_port,
    missing,
    run,
    wait_ready,
)

PROGRAMS = ("initdb", "pg_ctl", "postgres", "pg_isready", "createdb")
SUPERUSER = "postgres"
DBNAME = "zfed"

SETTINGS = """
# Written by tests/servers/postgresql.py.
listen_addresses = '127.0.0.1'
unix_socket_directories = '{socket_dir}'
max_prepared_transactions = 20
max_connections = 50
fsync = off
synchronous_commit = off
full_page_writes = off
logging_collector = off
"""


@dataclass
class PostgresServer:
    """A running PostgreSQL server; `dsn` is a libpq conninfo string for its database."""

    host: str
    port: int
    user: str
    dbname: str
    data_dir: Path
    _bin_dir: Path = field(repr=False)
    _prefix: list[str] = field(repr=False)
    _process: subprocess.Popen[bytes] = field(repr=False)
    _cleanup: Path | None = field(default=None, repr=False)

    @property
    def dsn(self) -> str:
        """The libpq connection string of the server's database."""
        return f"host={self.host} port={self.port} user={self.user} dbname={self.dbname}"

    def stop(self) -> None:
        """Stop the server with `pg_ctl stop -m fast`; calling it again does nothing."""
        if self._process.poll() is None:
            subprocess.run(
                [*self._prefix, str(self._bin_dir / "pg_ctl"), "stop", "-m", "fast", "-w",
                 "-D", str(self.data_dir)],
                capture_output=True, check=False, cwd=self.data_dir.parent,
            )
            try:
                self._process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=30)
        if self._cleanup is not None:
            shutil.rmtree(self._cleanup, ignore_errors=True)
            self._cleanup = None


def _version_key(path: Path) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", path.parent.name))


def find_bin_dir() -> Path | None:
    """The newest /usr/lib/postgresql/*/bin holding the server programs, else one on PATH."""
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_version_key, reverse=True)
    for bin_dir in candidates:
        if all((bin_dir / program).exists() for program in PROGRAMS):
            return bin_dir
    initdb = shutil.which("initdb")
    if initdb is not None:
        bin_dir = Path(initdb).resolve().parent
        if all((bin_dir / program).exists() for program in PROGRAMS):
            return bin_dir
    return None


def _privilege_drop() -> tuple[list[str], pwd.struct_passwd | None]:
    """The command prefix running a program as the unprivileged user when we are root."""
    if os.geteuid() != 0:
        return [], None
    name = os.environ.get("ZFED_TEST_USER", "zfedtest")
    try:
        user = pwd.getpwnam(name)
    except KeyError:
        missing(f"PostgreSQL refuses to run as root and the unprivileged user {name!r} "
                "does not exist.")
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        missing("PostgreSQL refuses to run as root and setpriv (util-linux) is not installed.")
    prefix = [setpriv, f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups",
              "--reset-env", "--"]
    return prefix, user


@contextmanager
def running_postgresql(base_dir: Path) -> Iterator[PostgresServer]:
    """Start a PostgreSQL server under `base_dir` (see the module docstring); stop it on exit."""
    bin_dir = find_bin_dir()
    if bin_dir is None:
        missing("PostgreSQL's server programs (initdb, pg_ctl, postgres) were not found "
                "under /usr/lib/postgresql/*/bin or on PATH.")
    prefix, user = _privilege_drop()
    cleanup = None
    if user is not None:
        cleanup = root = Path(tempfile.mkdtemp(prefix="zfed-pg-"))
        os.chown(root, user.pw_uid, user.pw_gid)
    else:
        root = Path(base_dir)
        root.mkdir(parents=True, exist_ok=True)
    try:
        server = _start(bin_dir, prefix, root)
    except BaseException:
        if cleanup is not None:
            shutil.rmtree(cleanup, ignore_errors=True)
        raise
    server._cleanup = cleanup
    try:
        yield server
    finally:
        server.stop()


def _start(bin_dir: Path, prefix: list[str], root: Path) -> PostgresServer:
    data_dir = root / "data"
    run([*prefix, str(bin_dir / "initdb"), "-D", str(data_dir), f"--username={SUPERUSER}",
         "--auth=trust", "--encoding=UTF8", "--no-locale", "--no-sync"],
        "initdb", cwd=root)
    with (data_dir / "postgresql.conf").open("a") as conf:
        conf.write(SETTINGS.format(socket_dir=root))
    log = root / "postgres.log"
    for _ in range(PORT_ATTEMPTS):
        port = free_port()
        with log.open("wb") as out:
            process = subprocess.Popen(
                [*prefix, str(bin_dir / "postgres"), "-D", str(data_dir), "-p", str(port)],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=root,
            )
        server = PostgresServer("127.0.0.1", port, SUPERUSER, DBNAME, data_dir,
                                bin_dir, prefix, process)
        try:
            wait_ready("postgres", process, lambda port=port: _is_ready(bin_dir, port), log)
        except PortTaken:
            continue
        except BaseException:
            server.stop()
            raise
        try:
            run([str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port),
                 "-U", SUPERUSER, DBNAME], "createdb")
        except BaseException:
            server.stop()
            raise
        return server
    raise ServerError(f"postgres could not bind a free loopback port in {PORT_ATTEMPTS} tries.")


def _is_ready(bin_dir: Path, port: int) -> bool:
    """Whether `pg_isready` says the server accepts connections."""
    try:
        result = subprocess.run(
            [str(bin_dir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(port),
             "-U", SUPERUSER, "-d", "postgres", "-t", "1"],
            capture_output=True, check=False, timeout=PROBE_TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        return False
    return result.returncode == 0
