"""Test certificates for the TLS tests, made with the openssl command
(EC P-256 keys, so the whole set takes a fraction of a second):

  ca            the test CA; every certificate below is signed by it
                unless said otherwise
  other-ca      an unrelated CA (a peer that trusts it trusts none of ours)
  ca2           a second CA, for CA rotation; ca-both.crt is ca + ca2
  server        SAN DNS:localhost, IP:127.0.0.1, valid 2 days
  server2       the same names, another subject and serial (cert rotation)
  server-ca2    the same names, signed by ca2 (CA rotation)
  noname        CN "noname" and no subjectAltName (tls_verify = ca)
  wrongname     SAN DNS:other.example only (a name mismatch)
  expired       SAN localhost/127.0.0.1, valid 2020-01-01 to 2020-01-02
  selfsigned    SAN localhost/127.0.0.1, self-signed, not a CA
  client        extendedKeyUsage clientAuth only (tls-auth-clients)

The server certificates carry both serverAuth and clientAuth, as Redis
presents its tls-cert-file as a client certificate too (a replica to its
master, a sentinel to the nodes it watches).

make_certs(dir) returns a Certs: a dict from file name ("server.crt") to
path, also read as attributes (certs.server_crt, certs.server_ca2_key,
certs.ca_both_crt). A directory's set is made once and then reused (a
marker file records that it is complete)."""
import pathlib
import subprocess
import threading

SAN = "DNS:localhost, IP:127.0.0.1"
_DONE = "certs.done"
_lock = threading.Lock()
_made = {}                       # resolved dir -> Certs

_CONFIG = f"""\
[req]
distinguished_name = dn
prompt = no

[dn]
CN = unused

[ca_ext]
basicConstraints = critical, CA:true
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash

[server_ext]
basicConstraints = CA:false
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth, clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = {SAN}

[noname_ext]
basicConstraints = CA:false
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth, clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid

[wrongname_ext]
basicConstraints = CA:false
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth, clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = DNS:other.example

[selfsigned_ext]
basicConstraints = CA:false
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth, clientAuth
subjectKeyIdentifier = hash
subjectAltName = {SAN}

[client_ext]
basicConstraints = CA:false
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid

# `openssl ca`, only for the expired certificate (openssl 3.0's req and
# x509 cannot set a start date in the past)
[ca]
default_ca = test_ca

[test_ca]
database = index.txt
new_certs_dir = issued
serial = serial
default_md = sha256
policy = any_name
unique_subject = no
copy_extensions = none

[any_name]
commonName = supplied
"""

# CA name -> subject CN; leaf name -> (issuer, None if self-signed;
# extensions section; subject CN)
_CAS = {"ca": "redis-sidecar test CA", "other-ca": "unrelated test CA",
        "ca2": "redis-sidecar test CA 2"}
_LEAVES = {
    "server": ("ca", "server_ext", "localhost"),
    "server2": ("ca", "server_ext", "server2"),
    "server-ca2": ("ca2", "server_ext", "server-ca2"),
    "noname": ("ca", "noname_ext", "noname"),
    "wrongname": ("ca", "wrongname_ext", "wrongname"),
    "selfsigned": (None, "selfsigned_ext", "selfsigned"),
    "client": ("ca", "client_ext", "client"),
}
_NEWKEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


class Certs(dict):
    """File name -> path (str); certs.server_key is certs["server.key"]
    ("-" in a name is "_" in its attribute)."""

    def __init__(self, d):
        self.dir = pathlib.Path(d)
        names = list(_CAS) + list(_LEAVES) + ["expired"]
        super().__init__({f"{n}.{ext}": str(self.dir / f"{n}.{ext}")
                          for n in names for ext in ("crt", "key")})
        self["ca-both.crt"] = str(self.dir / "ca-both.crt")

    def __getattr__(self, attr):
        stem, _, ext = attr.rpartition("_")
        for name in (f"{stem}.{ext}", f"{stem.replace('_', '-')}.{ext}"):
            if name in self:
                return self[name]
        raise AttributeError(attr)

    def redis_tls(self, name="server", ca="ca", auth_clients="no"):
        """The tls= dict of RedisServer/SentinelServer: the certificate
        `name` (with its key), trusting `ca` (its .crt)."""
        return {"cert": self[f"{name}.crt"], "key": self[f"{name}.key"],
                "ca": self[f"{ca}.crt"], "auth_clients": auth_clients,
                "client_cert": self["client.crt"], "client_key": self["client.key"]}


def _run(cmd, cwd):
    subprocess.run(cmd, cwd=cwd, check=True, stdin=subprocess.DEVNULL,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _parallel(cmds, cwd):
    """Runs the commands at once; raises for the first that failed."""
    procs = [(c, subprocess.Popen(c, cwd=cwd, stdin=subprocess.DEVNULL,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
             for c in cmds]
    failed = None
    for c, p in procs:
        _, err = p.communicate()
        if p.returncode and failed is None:
            failed = subprocess.CalledProcessError(p.returncode, c, stderr=err)
    if failed:
        raise failed


def make_certs(dirpath):
    """Makes the whole set into dirpath (created if need be), or finds it
    made there already; returns its Certs."""
    d = pathlib.Path(dirpath).resolve()
    with _lock:
        if d in _made:
            return _made[d]
        certs = Certs(d)
        if not (d / _DONE).exists():
            _generate(d)
        _made[d] = certs
        return certs


def _generate(d):
    d.mkdir(parents=True, exist_ok=True)
    (d / "issued").mkdir(exist_ok=True)
    (d / "index.txt").write_text("")
    (d / "serial").write_text("1000\n")
    cnf = d / "openssl.cnf"
    cnf.write_text(_CONFIG)
    common = ["-config", str(cnf)]
    _parallel([["openssl", "req", "-x509", *common, *_NEWKEY, "-extensions", "ca_ext",
                "-subj", f"/CN={cn}", "-days", "30", "-keyout", f"{n}.key", "-out", f"{n}.crt"]
               for n, cn in _CAS.items()], d)
    leaves = []
    for n, (issuer, ext, cn) in _LEAVES.items():
        signer = ["-CA", f"{issuer}.crt", "-CAkey", f"{issuer}.key"] if issuer else []
        leaves.append(["openssl", "req", "-x509", *common, *_NEWKEY, *signer,
                       "-extensions", ext, "-subj", f"/CN={cn}", "-days", "2",
                       "-keyout", f"{n}.key", "-out", f"{n}.crt"])
    leaves.append(["openssl", "req", "-new", *common, *_NEWKEY, "-subj", "/CN=expired",
                   "-keyout", "expired.key", "-out", "expired.csr"])
    _parallel(leaves, d)
    _run(["openssl", "ca", "-batch", *common, "-cert", "ca.crt", "-keyfile", "ca.key",
          "-in", "expired.csr", "-out", "expired.crt", "-extensions", "server_ext",
          "-startdate", "20200101000000Z", "-enddate", "20200102000000Z", "-notext"], d)
    (d / "ca-both.crt").write_text((d / "ca.crt").read_text() + (d / "ca2.crt").read_text())
    (d / _DONE).write_text("")
