"""A throwaway OpenLDAP slapd on a free loopback port, with sample entries.

`running_slapd(base_dir)` writes a slapd.conf under `base_dir` (schemas core,
cosine, nis and inetorgperson from /etc/ldap/schema, and `TEST_SCHEMA`; one mdb
database for `dc=example,dc=org` with a root DN and password), loads
`SAMPLE_LDIF` with `slapadd` (which also gives every entry its `entryUUID`),
starts `slapd -h ldap://127.0.0.1:PORT/` in the foreground, waits until an
admin bind with `ldapwhoami` succeeds and yields a `SlapdServer`.

StartTLS: unless `tls=False`, a throwaway CA and a server certificate for
`127.0.0.1` and `localhost` are made with the `openssl` command under
`base_dir/tls`, and slapd offers StartTLS on its plain listener;
`SlapdServer.ca_file` is the CA certificate to validate it with (None when
TLS is off, or when `openssl` is missing).

`TEST_SCHEMA` adds the auxiliary class `zfedAccount`, whose attributes have
syntaxes the standard schemas give no user attribute: `zfedActive` (Boolean)
and `zfedExpires` (GeneralizedTime).

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
OPENSSL = "openssl"
BASE_DN = "dc=example,dc=org"
ADMIN_DN = f"cn=admin,{BASE_DN}"
ADMIN_PASSWORD = "admin-secret"

# OIDs under enterprise number 32473, which RFC 5612 reserves for documentation.
TEST_SCHEMA = """\
attributetype ( 1.3.6.1.4.1.32473.1.1.1 NAME 'zfedActive'
	EQUALITY booleanMatch
	SYNTAX 1.3.6.1.4.1.1466.115.121.1.7 SINGLE-VALUE )
attributetype ( 1.3.6.1.4.1.32473.1.1.2 NAME 'zfedExpires'
	EQUALITY generalizedTimeMatch ORDERING generalizedTimeOrderingMatch
	SYNTAX 1.3.6.1.4.1.1466.115.121.1.24 SINGLE-VALUE )
objectclass ( 1.3.6.1.4.1.32473.1.2.1 NAME 'zfedAccount' AUXILIARY
	MAY ( zfedActive $ zfedExpires ) )
"""

CONFIG = """\
# Written by tests/servers/slapd.py.
{schemas}
{tls}
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
    ca_file: Path | None = None

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


def _make_certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1/localhost, made with openssl.

    Returns the CA certificate, the server certificate and the server key.
    """
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = directory / "ca.key", directory / "ca.pem"
    key, request = directory / "server.key", directory / "server.csr"
    cert = directory / "server.pem"
    extensions = directory / "server.ext"
    extensions.write_text(
        "basicConstraints = critical, CA:FALSE\n"
        "keyUsage = critical, digitalSignature, keyEncipherment\n"
        "extendedKeyUsage = serverAuth\n"
        "subjectAltName = IP:127.0.0.1, DNS:localhost\n"
        "subjectKeyIdentifier = hash\n"
        "authorityKeyIdentifier = keyid\n"
    )
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run([OPENSSL, "req", "-x509", *ec, "-keyout", str(ca_key), "-out", str(ca_cert),
         "-days", "2", "-subj", "/CN=zodb-federation test CA",
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign"], "openssl (CA)")
    run([OPENSSL, "req", *ec, "-keyout", str(key), "-out", str(request),
         "-subj", "/CN=127.0.0.1"], "openssl (server request)")
    run([OPENSSL, "x509", "-req", "-in", str(request), "-CA", str(ca_cert),
         "-CAkey", str(ca_key), "-CAcreateserial", "-out", str(cert), "-days", "2",
         "-extfile", str(extensions)], "openssl (server certificate)")
    return ca_cert, cert, key


@contextmanager
def running_slapd(base_dir: Path, *, tls: bool = True) -> Iterator[SlapdServer]:
    """Start slapd with the sample tree under `base_dir` (see the module docstring).

    With `tls` (and the `openssl` command available) slapd offers StartTLS
    with a certificate of a throwaway CA, `SlapdServer.ca_file`.
    """
    if not SLAPD.exists() or not SLAPADD.exists():
        missing(f"OpenLDAP's {SLAPD} or {SLAPADD} was not found (Debian package slapd).")
    if shutil.which("ldapwhoami") is None:
        missing("ldapwhoami was not found (Debian package ldap-utils).")
    absent = [name for name in SCHEMAS if not (SCHEMA_DIR / f"{name}.schema").exists()]
    if absent:
        missing(f"The LDAP schemas {', '.join(absent)} were not found in {SCHEMA_DIR}.")
    server = _start(Path(base_dir), tls=tls and shutil.which(OPENSSL) is not None)
    try:
        yield server
    finally:
        server.stop()


def _start(root: Path, *, tls: bool) -> SlapdServer:
    (root / "data").mkdir(parents=True, exist_ok=True)
    test_schema = root / "zfed-test.schema"
    test_schema.write_text(TEST_SCHEMA)
    schemas = [SCHEMA_DIR / f"{name}.schema" for name in SCHEMAS] + [test_schema]
    ca_file = None
    tls_lines = ""
    if tls:
        ca_file, cert, key = _make_certificates(root / "tls")
        tls_lines = (f"TLSCACertificateFile {ca_file}\nTLSCertificateFile {cert}\n"
                     f"TLSCertificateKeyFile {key}")
    conf = root / "slapd.conf"
    conf.write_text(CONFIG.format(
        schemas="\n".join(f"include {schema}" for schema in schemas), tls=tls_lines,
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
        server = SlapdServer("127.0.0.1", port, BASE_DN, ADMIN_DN, ADMIN_PASSWORD, process,
                             ca_file)
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
