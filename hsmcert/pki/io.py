"""Reading and writing CSRs and certificates as PEM or DER, with errors a user can act on."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from hsmcert.errors import NotFoundError, UsageError

if TYPE_CHECKING:
    from cryptography import x509

_CSR_LABELS = (b"-----BEGIN CERTIFICATE REQUEST-----", b"-----BEGIN NEW CERTIFICATE REQUEST-----")
_CERT_LABEL = b"-----BEGIN CERTIFICATE-----"


def encode(obj: x509.Certificate | x509.CertificateSigningRequest, *, der: bool = False) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return obj.public_bytes(serialization.Encoding.DER if der else serialization.Encoding.PEM)


def read_file(path: str | Path, what: str) -> bytes:
    p = Path(path)
    try:
        return p.read_bytes()
    except FileNotFoundError:
        raise NotFoundError(f"The {what} file {p} does not exist.", "Check the path.") from None
    except IsADirectoryError:
        raise UsageError(f"The {what} path {p} is a directory, not a file.") from None
    except PermissionError:
        raise UsageError(f"The {what} file {p} cannot be read (permission denied).") from None


def parse_any(data: bytes, source: str = "input") -> list[Any]:
    """The certificates or the CSR in ``data`` (PEM, several PEM blocks, or DER)."""
    from cryptography import x509

    try:
        if any(label in data for label in _CSR_LABELS):
            return [x509.load_pem_x509_csr(data)]
        if _CERT_LABEL in data:
            return list(x509.load_pem_x509_certificates(data))
        if data[:1] == b"\x30":
            try:
                return [x509.load_der_x509_certificate(data)]
            except ValueError:
                return [x509.load_der_x509_csr(data)]
    except ValueError as exc:
        raise UsageError(f"{source} is not a valid certificate or CSR: {exc}.") from None
    raise UsageError(
        f"{source} holds no certificate or CSR (expected PEM 'CERTIFICATE' / 'CERTIFICATE REQUEST' or DER).",
        "A private key or a key reference is not a certificate; check the file.",
    )


def load_csr(path: str | Path) -> x509.CertificateSigningRequest:
    from cryptography import x509

    objs = parse_any(read_file(path, "CSR"), str(path))
    if not isinstance(objs[0], x509.CertificateSigningRequest):
        raise UsageError(f"{path} holds a certificate, not a CSR.", "Pass the certificate signing request.")
    return objs[0]


def load_certificates(path: str | Path, what: str = "certificate") -> list[x509.Certificate]:
    from cryptography import x509

    objs = parse_any(read_file(path, what), str(path))
    if not isinstance(objs[0], x509.Certificate):
        raise UsageError(f"{path} holds a CSR, not a {what}.", f"Pass the {what} file.")
    return objs
