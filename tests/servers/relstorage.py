"""RelStorage databases on a test PostgreSQL server, reached as a password-protected role.

`RelStorageDatabases(server)` creates, once, the login role `ROLE` with the
password `PASSWORD` and a `pg_hba.conf` rule that makes the server ask that
role for it (scram-sha-256; the other roles keep the trust the test server
starts with), then creates a fresh database owned by the role for each
`uri()` call, holding RelStorage's tables (copied from a template database
where RelStorage made them once per history mode).

A RelStorage member needs a database of its own: RelStorage's table names
are fixed, so two members cannot share one.
"""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass, field

import zodburi

from tests.servers.postgresql import PostgresServer

ROLE = "zfed_relstorage"
PASSWORD = "rel-Secret-7f3a"
HBA_RULE = f"host all {ROLE} 127.0.0.1/32 scram-sha-256\n"


@dataclass
class RelStorageDatabases:
    """Fresh RelStorage databases on `server`, owned by the role `ROLE`."""

    server: PostgresServer
    prefix: str = field(default_factory=lambda: f"rs_{uuid.uuid4().hex[:8]}")
    _counter: itertools.count = field(default_factory=itertools.count, repr=False)
    _ready: bool = field(default=False, repr=False)
    _templates: set[str] = field(default_factory=set, repr=False)

    def _admin(self):
        import psycopg
        return psycopg.connect(self.server.dsn, autocommit=True)

    def _setup(self) -> None:
        """Create the role and require its password (done once per server)."""
        if self._ready:
            return
        hba = self.server.data_dir / "pg_hba.conf"
        rules = hba.read_text()
        if HBA_RULE not in rules:
            with hba.open("r+") as out:  # rewritten in place: the file keeps its owner
                out.write(HBA_RULE + rules)
        with self._admin() as admin:
            exists = admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %s",
                                   (ROLE,)).fetchone()
            if exists is None:
                admin.execute(f"CREATE ROLE {ROLE} LOGIN PASSWORD '{PASSWORD}'")
            admin.execute("SELECT pg_reload_conf()")
        self._ready = True

    def create(self, history: bool | None = None) -> str:
        """The name of a new database owned by `ROLE`: empty, or with RelStorage's tables for
        `history` (True: history-preserving), copied from a template (much faster than
        RelStorage creating them)."""
        self._setup()
        name = f"{self.prefix}_{next(self._counter)}"
        template = "" if history is None else f" TEMPLATE {self._template(history)}"
        with self._admin() as admin:
            admin.execute(f"CREATE DATABASE {name}{template} OWNER {ROLE}")
        return name

    def _template(self, history: bool) -> str:
        """A database where RelStorage made its tables (once per history mode)."""
        name = f"{self.prefix}_template_{'hp' if history else 'hf'}"
        if name not in self._templates:
            with self._admin() as admin:
                admin.execute(f"CREATE DATABASE {name} OWNER {ROLE}")
            factory, _options = zodburi.resolve_uri(self.uri(history=history, database=name))
            factory().close()  # RelStorage creates its schema on first open
            self._templates.add(name)
        return name

    def uri(self, *, history: bool, database: str | None = None, **options: str) -> str:
        """A `postgres://` zodburi URI of a new database (or of `database`), with the password.

        `history` selects history-preserving (True) or history-free storage;
        `options` are added to the query (RelStorage's URI options).
        """
        name = database if database is not None else self.create(history)
        query = "&".join([f"keep_history={'true' if history else 'false'}",
                          *(f"{key}={value}" for key, value in options.items())])
        return (f"postgres://{ROLE}:{PASSWORD}@{self.server.host}:{self.server.port}/{name}"
                f"?{query}")
