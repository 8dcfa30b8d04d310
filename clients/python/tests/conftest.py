"""Fixtures shared by every test module: gateways (open, with an auth file,
over TLS, over mTLS), a throwaway PKI and an auth file. The machinery is in
gatewaykit.py."""

import datetime
import hashlib
import subprocess
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

import loggate
from gatewaykit import (
    CERT_PRINCIPAL,
    CERT_SERVICES,
    CLIENT_CN,
    CLIENT_DIR,
    LOGGATE_BIN,
    WRITER,
    WRITER_SERVICES,
    running_gateway,
    without_loggate_variables,
)


def pytest_report_header(config):
    return f"loggate {loggate.__version__} from {Path(loggate.__file__).parent}"


def pytest_sessionstart(session):
    # The tests are of the package as installed, never of ./src.
    where = Path(loggate.__file__).resolve()
    assert (
        CLIENT_DIR / "src" not in where.parents
    ), f"loggate imported from the source tree: {where}"


@pytest.fixture(scope="module")
def gateway():
    with running_gateway() as gateway:
        yield gateway


@dataclass
class Pki:
    """A throwaway CA, a server certificate it signed for localhost and
    127.0.0.1, and a client certificate with CN `CLIENT_CN`. All PEM files."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path

    def server_args(self):
        return ["--tls-cert", str(self.server_cert), "--tls-key", str(self.server_key)]

    def client_args(self):
        return ["--tls-cert", str(self.client_cert), "--tls-key", str(self.client_key)]

    def credentials(self, client_certificate=False):
        """Channel credentials trusting the CA (and presenting the client
        certificate, for mTLS)."""
        if not client_certificate:
            return grpc.ssl_channel_credentials(root_certificates=self.ca.read_bytes())
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca.read_bytes(),
            private_key=self.client_key.read_bytes(),
            certificate_chain=self.client_cert.read_bytes(),
        )


def make_pki(directory):
    # Imported here: only these tests need it.
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def named(common_name):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])

    def key_usage(ca):
        return x509.KeyUsage(
            digital_signature=True,
            content_commitment=False,
            key_encipherment=not ca,
            data_encipherment=False,
            key_agreement=False,
            key_cert_sign=ca,
            crl_sign=ca,
            encipher_only=False,
            decipher_only=False,
        )

    def builder(subject, issuer, public_key):
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        )

    def write(stem, certificate, key):
        cert_path = directory / f"{stem}.pem"
        key_path = directory / f"{stem}.key"
        cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return cert_path, key_path

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = named("loggate pytest CA")
    ca_cert = (
        builder(ca_name, ca_name, ca_key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(key_usage(ca=True), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    ca_path, _ = write("ca", ca_cert, ca_key)
    authority = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key())

    def leaf(stem, common_name, usage, names):
        key = ec.generate_private_key(ec.SECP256R1())
        request = (
            builder(named(common_name), ca_name, key.public_key())
            .add_extension(authority, critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(key_usage(ca=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if names:
            request = request.add_extension(x509.SubjectAlternativeName(names), critical=False)
        return write(stem, request.sign(ca_key, hashes.SHA256()), key)

    server_cert, server_key = leaf(
        "server",
        "localhost",
        ExtendedKeyUsageOID.SERVER_AUTH,
        [
            x509.DNSName("localhost"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        ],
    )
    client_cert, client_key = leaf("client", CLIENT_CN, ExtendedKeyUsageOID.CLIENT_AUTH, [])
    return Pki(ca_path, server_cert, server_key, client_cert, client_key)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


@dataclass
class AuthFile:
    path: Path
    token: str  # the writer's bearer token


@pytest.fixture(scope="module")
def auth_file(tmp_path_factory):
    """An auth file with the writer (a fresh token from `loggate token new`,
    scoped to WRITER_SERVICES) and the certificate principal."""
    made = subprocess.run(
        [
            LOGGATE_BIN,
            "token",
            "new",
            "--name",
            WRITER,
            "--log",
            WRITER_SERVICES,
            "--tail",
            WRITER_SERVICES,
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
        env=without_loggate_variables(),
    )
    # The output is comments, among them `# <token>` (the one that is a
    # single word), then the `[[principal]]` block. The file gets the block
    # only: the token itself goes to the caller, never into the file.
    lines = made.stdout.splitlines()
    (token,) = [line[2:] for line in lines if line.startswith("# ") and " " not in line[2:]]
    block = "\n".join(line for line in lines if not line.startswith("#"))
    path = tmp_path_factory.mktemp("auth") / "principals.toml"
    path.write_text(block + f"""
[[principal]]
name = "{CERT_PRINCIPAL}"
cert_subject_cn = "{CLIENT_CN}"
log = ["{CERT_SERVICES}"]
tail = ["{CERT_SERVICES}"]
""")
    # Only the hash is in the file, never the token.
    assert token not in path.read_text()
    assert hashlib.sha256(token.encode()).hexdigest() in path.read_text()
    return AuthFile(path=path, token=token)


@pytest.fixture(scope="module")
def auth_gateway(auth_file):
    with running_gateway("--auth-file", str(auth_file.path)) as gateway:
        yield gateway


@pytest.fixture(scope="module")
def tls_gateway(auth_file, pki):
    with running_gateway(
        "--auth-file",
        str(auth_file.path),
        *pki.server_args(),
        credentials=pki.credentials(),
    ) as gateway:
        yield gateway


@pytest.fixture(scope="module")
def mtls_gateway(auth_file, pki):
    with running_gateway(
        "--auth-file",
        str(auth_file.path),
        *pki.server_args(),
        "--tls-client-ca",
        str(pki.ca),
        credentials=pki.credentials(client_certificate=True),
    ) as gateway:
        yield gateway
