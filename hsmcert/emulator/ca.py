"""The emulator's own certificate authority and the server certificate it issues for 127.0.0.1 / localhost."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

from hsmcert.emulator.files import write_private


def ensure_ca(data_dir: Path) -> tuple[Path, Path, Path]:
    """Make (once) the CA and a server certificate in ``data_dir``; returns (ca.pem, server.pem, server.key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    ca_pem, server_pem, server_key = data_dir / "ca.pem", data_dir / "server.pem", data_dir / "server.key"
    if ca_pem.exists() and server_pem.exists() and server_key.exists():
        return ca_pem, server_pem, server_key
    now = datetime.datetime.now(datetime.timezone.utc)
    start = now - datetime.timedelta(hours=1)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "hsmcert emulator"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"hsmcert emulator CA ({data_dir.name})"),
        ]
    )
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [
        x509.DNSName("localhost"),
        x509.DNSName("*.localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
    ]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(now + datetime.timedelta(days=825))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pkcs8 = serialization.PrivateFormat.PKCS8
    write_private(
        data_dir / "ca.key",
        ca_key.private_bytes(serialization.Encoding.PEM, pkcs8, serialization.NoEncryption()),
    )
    write_private(
        server_key, key.private_bytes(serialization.Encoding.PEM, pkcs8, serialization.NoEncryption())
    )
    server_pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    ca_pem.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    return ca_pem, server_pem, server_key
