"""A throwaway OpenLDAP slapd on a free loopback port, with sample entries.

`running_slapd(base_dir)` writes a slapd.conf under `base_dir` (schemas core,
cosine, nis and inetorgperson from /etc/ldap/schema; one mdb database for
`dc=example,dc=org` with a root DN and password), loads `SAMPLE_LDIF` with
`slapadd` (which also gives every entry its `entryUUID`), starts
`slapd -h ldap://127.0.0.1:PORT/` in the foreground, waits until an admin bind
with `ldapwhoami` succeeds and yields a `SlapdServer`.

The sample tree: `ou=people` with three inetOrgPerson + posixAccount people
(`uid=alice`, `uid=bob`, `uid=carol`) and `ou=groups` with one groupOfNames
(`cn=staff`, members alice and bob).
"""

from __future__ import annotations

import os
import shutil
import subprocess
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
    terminate,
    wait_ready,
)

SLAPD = Path("/usr/sbin/slapd")
SLAPADD = Path("/usr/sbin/slapadd")
SCHEMA_DIR = Path("/etc/ldap/schema")
SCHEMAS = ("core", "cosine", "nis", "inetorgperson")
MODULE_DIR = Path("/usr/lib/ldap")
BASE_DN = "dc=example,dc=org"
ADMIN_DN = f"cn=admin,{BASE_DN}"
ADMIN_PASSWORD = "admin-secret"

CONFIG = """\
# Written by tests/servers/slapd.py.
{schemas}
pidfile {root}/slapd.pid
argsfile {root}/slapd.args
{modules}
database mdb
maxsize 104857600
suffix "{base_dn}"
rootdn "{admin_dn}"
rootpw {admin_password}
directory {root}/data
index objectClass eq
index uid,cn eq
index entryUUID eq
"""

SAMPLE_LDIF = f"""\
dn: {BASE_DN}
objectClass: dcObject
objectClass: organization
dc: example
o: Example

dn: ou=people,{BASE_DN}
objectClass: organizationalUnit
ou: people

dn: ou=groups,{BASE_DN}
objectClass: organizationalUnit
ou: groups

""" + "\n".join(
    f"""\
dn: uid={uid},ou=people,{BASE_DN}
objectClass: inetOrgPerson
objectClass: posixAccount
uid: {uid}
cn: {cn}
sn: {sn}
mail: {uid}@example.org
uidNumber: {number}
gidNumber: 10000
homeDirectory: /home/{uid}
"""
    for uid, cn, sn, number in (
        ("alice", "Alice Archer", "Archer", 10001),
        ("bob", "Bob Baker", "Baker", 10002),
        ("carol", "Carol Cooper", "Cooper", 10003),
    )
) + f"""
dn: cn=staff,ou=groups,{BASE_DN}
objectClass: groupOfNames
cn: staff
member: uid=alice,ou=people,{BASE_DN}
member: uid=bob,ou=people,{BASE_DN}
"""


@dataclass
class SlapdServer:
    """A running slapd holding the sample tree under `base_dn`."""

    host: str
    port: int
    base_dn: str
    admin_dn: str
    admin_password: str
    _process: subprocess.Popen[bytes] = field(repr=False)

    @property
    def uri(self) -> str:
        """The LDAP URI of the server, `ldap://127.0.0.1:PORT`."""
        return f"ldap://{self.host}:{self.port}"

    def stop(self) -> None:
        """Terminate slapd and wait for it; calling it again does nothing."""
        terminate(self._process)


def _module_lines() -> str:
    """`moduleload back_mdb` when mdb is built as a module (as on Debian), else nothing."""
    if (MODULE_DIR / "back_mdb.la").exists() or (MODULE_DIR / "back_mdb.so").exists():
        return f"modulepath {MODULE_DIR}\nmoduleload back_mdb"
    return ""


@contextmanager
def running_slapd(base_dir: Path) -> Iterator[SlapdServer]:
    """Start slapd with the sample tree under `base_dir` (see the module docstring)."""
    if not SLAPD.exists() or not SLAPADD.exists():
        missing(f"OpenLDAP's {SLAPD} or {SLAPADD} was not found (Debian package slapd).")
    if shutil.which("ldapwhoami") is None:
        missing("ldapwhoami was not found (Debian package ldap-utils).")
    absent = [name for name in SCHEMAS if not (SCHEMA_DIR / f"{name}.schema").exists()]
    if absent:
        missing(f"The LDAP schemas {', '.join(absent)} were not found in {SCHEMA_DIR}.")
    server = _start(Path(base_dir))
    try:
        yield server
    finally:
        server.stop()


def _start(root: Path) -> SlapdServer:
    (root / "data").mkdir(parents=True, exist_ok=True)
    conf = root / "slapd.conf"
    conf.write_text(CONFIG.format(
        schemas="\n".join(f"include {SCHEMA_DIR / name}.schema" for name in SCHEMAS),
        modules=_module_lines(), root=root, base_dn=BASE_DN, admin_dn=ADMIN_DN,
        admin_password=ADMIN_PASSWORD,
    ))
    ldif = root / "sample.ldif"
    ldif.write_text(SAMPLE_LDIF)
    run([str(SLAPADD), "-f", str(conf), "-b", BASE_DN, "-l", str(ldif)], "slapadd")
    log = root / "slapd.log"
    for _ in range(PORT_ATTEMPTS):
        port = free_port()
        uri = f"ldap://127.0.0.1:{port}/"
        with log.open("wb") as out:
            # Any -d keeps slapd in the foreground, so this process is slapd itself;
            # "none" logs no debug output yet still writes errors (a taken port) to stderr.
            process = subprocess.Popen(
                [str(SLAPD), "-f", str(conf), "-h", uri, "-d", "none"],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )
        server = SlapdServer("127.0.0.1", port, BASE_DN, ADMIN_DN, ADMIN_PASSWORD, process)
        try:
            wait_ready("slapd", process, lambda uri=uri: _is_ready(uri), log)
        except PortTaken:
            continue
        except BaseException:
            server.stop()
            raise
        return server
    raise ServerError(f"slapd could not bind a free loopback port in {PORT_ATTEMPTS} tries.")


def _is_ready(uri: str) -> bool:
    """Whether a simple bind as the admin succeeds (`ldapwhoami`)."""
    try:
        result = subprocess.run(
            ["ldapwhoami", "-x", "-H", uri, "-D", ADMIN_DN, "-w", ADMIN_PASSWORD,
             "-o", "nettimeout=1"],
            capture_output=True, check=False, env={**os.environ, "LDAPNOINIT": "1"},
            timeout=PROBE_TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        return False
    return result.returncode == 0
