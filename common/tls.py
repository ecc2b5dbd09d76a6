"""The cluster's TLS: a CA made when the cluster is made, a manager certificate signed by it, and the
gRPC credentials built from them.

Agents and workspace-ctl pin the cluster CA (it is their only trust root), so a manager certificate
that does not chain to it — or a plaintext peer — fails the handshake before any RPC is sent. The
manager's certificate names every address clients dial (IP and DNS SANs): gRPC checks the dialled
host against them, so no name override is needed or allowed.

Keys are created with their final mode (O_CREAT|O_EXCL, 0600 or 0640): no window in which a key
is readable by others.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_VALIDITY = datetime.timedelta(days=3650)
CERT_VALIDITY = datetime.timedelta(days=825)


class TlsError(Exception):
    pass


@dataclass(frozen=True)
class CertFiles:
    cert: Path
    key: Path


def write_private(path: Path, data: bytes, mode: int = 0o600, group: int = -1) -> None:
    """Write a secret file that is never readable beyond `mode`, even for an instant: it is created
    with that mode (a leftover is removed first, so an attacker-made file with looser bits is not reused)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        if group >= 0:
            os.fchown(fd, -1, group)
        os.fchmod(fd, mode)  # the umask may have taken bits the caller asked for (0640)
        os.write(fd, data)
    finally:
        os.close(fd)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def create_ca(directory: Path, cluster_id: str) -> CertFiles:
    """A new cluster CA in `directory` (ca.crt world-readable: it is public; ca.key 0600)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "bench-cluster"),
                      x509.NameAttribute(NameOID.COMMON_NAME, f"bench-cluster CA {cluster_id}")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + CA_VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    files = CertFiles(directory / "ca.crt", directory / "ca.key")
    write_private(files.key, _key_pem(key), 0o600)
    directory.mkdir(parents=True, exist_ok=True)
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.cert.chmod(0o644)
    return files


def _san(address: str) -> x509.GeneralName:
    host = address.strip("[]")
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def issue_server_cert(ca: CertFiles, directory: Path, addresses: list[str], name: str = "manager",
                      key_mode: int = 0o600, key_group: int = -1) -> CertFiles:
    """A server certificate for bench-manager, valid for every host in `addresses` (IPs or DNS names)."""
    if not addresses:
        raise TlsError("a manager certificate needs at least one address (SAN)")
    ca_key = serialization.load_pem_private_key(ca.key.read_bytes(), password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise TlsError(f"{ca.key} is not an EC private key")
    ca_cert = x509.load_pem_x509_certificate(ca.cert.read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    sans = list(dict.fromkeys(_san(a) for a in addresses))
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"bench-{name}")]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + CERT_VALIDITY)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    files = CertFiles(directory / f"{name}.crt", directory / f"{name}.key")
    write_private(files.key, _key_pem(key), key_mode, key_group)
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.cert.chmod(0o644)
    return files


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise TlsError(f"{what} {path} does not exist") from None
    except PermissionError:
        raise TlsError(f"{what} {path} is not readable by this user") from None


def server_credentials(cert: Path, key: Path) -> grpc.ServerCredentials:
    return grpc.ssl_server_credentials([(_read(key, "TLS key"), _read(cert, "TLS certificate"))])


def channel_credentials(ca_cert: Path) -> grpc.ChannelCredentials:
    """Trust exactly the cluster CA (not the system store)."""
    return grpc.ssl_channel_credentials(root_certificates=_read(ca_cert, "cluster CA certificate"))


def certificate_sans(cert: Path) -> list[str]:
    parsed = x509.load_pem_x509_certificate(_read(cert, "TLS certificate"))
    ext = parsed.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return [str(v) for v in ext.get_values_for_type(x509.IPAddress)] + ext.get_values_for_type(x509.DNSName)
