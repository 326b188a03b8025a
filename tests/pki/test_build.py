"""CSRs, self-signed and issued certificates from local keys: openssl, pkilint and the issuing rules."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding

from hsmcert.errors import UsageError, VerificationError
from hsmcert.pki.csr import build_csr
from hsmcert.pki.issue import issue_certificate
from hsmcert.pki.profiles import get_profile
from hsmcert.pki.san import parse_sans
from hsmcert.pki.selfsign import build_selfsigned
from hsmcert.pki.subject import parse_subject
from hsmcert.pki.verify import verify

from .helpers import assert_chain_verifies, assert_csr_verifies, assert_lint_clean, write_pem

_KEYS: dict[str, Any] = {}


def key(name: str) -> Any:
    """Keys made once per session (RSA generation is slow)."""
    if name not in _KEYS:
        kind, _, size = name.partition("-")
        curves = {"p256": ec.SECP256R1(), "p384": ec.SECP384R1(), "p521": ec.SECP521R1()}
        _KEYS[name] = (
            rsa.generate_private_key(65537, int(size))
            if kind == "rsa"
            else ec.generate_private_key(curves[kind])
        )
    return _KEYS[name]


def ca_pair(profile: str = "root-ca", **kwargs: Any) -> tuple[Any, x509.Certificate]:
    k = key("p384")
    return k, build_selfsigned(
        k, parse_subject("/O=Test/CN=Test Root"), profile=get_profile(profile), **kwargs
    ).obj


@pytest.mark.parametrize(
    ("name", "alg", "oid"),
    [
        ("rsa-2048", None, "sha256WithRSAEncryption"),
        ("rsa-2048", "PS384", "rsassaPss"),
        ("p256", None, "ecdsa-with-SHA256"),
        ("p384", "ES384", "ecdsa-with-SHA384"),
        ("p521", None, "ecdsa-with-SHA512"),
    ],
)
@pytest.mark.process
def test_csr_for_each_key_type_passes_openssl(tmp_path: Path, name: str, alg: str | None, oid: str) -> None:
    signed = build_csr(
        key(name),
        parse_subject("/C=US/O=Acme\\, Inc./CN=www.example.com"),
        sans=parse_sans("DNS:www.example.com"),
    )
    signed = build_csr(key(name), signed.obj.subject, sans=parse_sans("DNS:www.example.com"), alg=alg)
    assert signed.obj.signature_algorithm_oid._name == oid
    assert_csr_verifies(write_pem(tmp_path / "r.csr", signed.obj))


def test_wrong_algorithm_for_the_key_is_refused() -> None:
    with pytest.raises(UsageError, match="ES256 needs an EC key; this key is an RSA key"):
        build_csr(key("rsa-2048"), parse_subject("/CN=a"), alg="ES256")
    with pytest.raises(UsageError, match="ES384"):
        build_csr(key("p256"), parse_subject("/CN=a"), alg="ES384")


@pytest.mark.process
def test_chain_root_intermediate_leaf(tmp_path: Path) -> None:
    root_key, root = ca_pair(days=3650)
    inter_key = key("rsa-2048")
    inter_csr = build_csr(inter_key, parse_subject("/O=Test/CN=Test Intermediate")).obj
    inter = issue_certificate(
        root_key, root, inter_csr, profile=get_profile("intermediate-ca"), days=1825
    ).obj
    leaf_csr = build_csr(
        key("p256"), parse_subject("/CN=www.example.com"), sans=parse_sans("DNS:www.example.com,IP:192.0.2.7")
    ).obj
    leaf = issue_certificate(inter_key, inter, leaf_csr, profile=get_profile("tls-server"), alg="PS256").obj
    for cert in (root, inter, leaf):
        assert_lint_clean(cert)
    assert_chain_verifies(
        write_pem(tmp_path / "leaf.pem", leaf),
        write_pem(tmp_path / "root.pem", root),
        write_pem(tmp_path / "inter.pem", inter),
    )
    assert all(c.ok for c in verify(leaf, ca_certs=[root], untrusted=[inter], csr=leaf_csr))
    # identifiers link up, the serial is random and at most 159 bits, pathlen 0 for the intermediate
    ski = inter.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    assert leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier == ski
    assert 0 < leaf.serial_number < 2**159 and leaf.serial_number != inter.serial_number
    assert inter.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length == 0
    # an intermediate with path length 0 cannot issue another CA
    with pytest.raises(UsageError, match="path length 0"):
        issue_certificate(inter_key, inter, leaf_csr, profile=get_profile("intermediate-ca"))


@pytest.mark.parametrize("profile", ["tls-server", "tls-client", "code-signing", "root-ca"])
@pytest.mark.process
def test_self_signed_profiles_lint_clean_and_verify(tmp_path: Path, profile: str) -> None:
    cert = build_selfsigned(
        key("p256"), parse_subject("/O=Test/CN=svc.example.com"), profile=get_profile(profile), days=30
    ).obj
    assert_lint_clean(cert)
    path = write_pem(tmp_path / "c.pem", cert)
    assert_chain_verifies(path, path)
    assert cert.not_valid_after_utc - cert.not_valid_before_utc <= dt.timedelta(days=30, minutes=5)


def test_issue_copies_only_what_the_profile_allows() -> None:
    ca_key, ca = ca_pair()
    asked = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(parse_subject("/CN=client-1"))
        .add_extension(x509.SubjectAlternativeName([x509.RFC822Name("c1@example.com")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.OCSPNoCheck(), critical=False)
        .sign(key("p256"), hashes.SHA256())
    )
    signed = issue_certificate(ca_key, ca, asked, profile=get_profile("tls-client"))
    cert = signed.obj
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert list(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value) == [
        x509.RFC822Name("c1@example.com")
    ]
    with pytest.raises(x509.ExtensionNotFound):
        cert.extensions.get_extension_for_class(x509.OCSPNoCheck)
    assert any("ignored" in n and "basicConstraints" in n for n in signed.notes)
    # --subj and --san replace the CSR's
    other = issue_certificate(
        ca_key,
        ca,
        asked,
        profile=get_profile("tls-server"),
        subject=parse_subject("/CN=x.example"),
        sans=parse_sans("DNS:x.example"),
    ).obj
    assert other.subject.rfc4514_string() == "CN=x.example"


def test_validity_is_capped_by_the_ca() -> None:
    ca_key, ca = ca_pair(days=10)
    csr = build_csr(key("p256"), parse_subject("/CN=a.example")).obj
    signed = issue_certificate(ca_key, ca, csr, profile=get_profile("tls-server"), days=365)
    assert signed.obj.not_valid_after_utc == ca.not_valid_after_utc
    assert any("capped" in n for n in signed.notes)


def test_issue_refusals() -> None:
    ca_key, ca = ca_pair()
    csr = build_csr(key("p256"), parse_subject("/CN=a.example")).obj
    leaf_ca = build_selfsigned(
        ca_key, parse_subject("/CN=not-a-ca.example"), profile=get_profile("tls-server")
    ).obj
    with pytest.raises(UsageError, match="not a CA certificate"):
        issue_certificate(ca_key, leaf_ca, csr, profile=get_profile("tls-server"))
    with pytest.raises(UsageError, match="does not match the CA certificate"):
        issue_certificate(key("p256"), ca, csr, profile=get_profile("tls-server"))
    tampered = x509.load_der_x509_csr(csr.public_bytes(Encoding.DER).replace(b"a.example", b"b.example"))
    with pytest.raises(VerificationError, match="CSR's signature does not verify"):
        issue_certificate(ca_key, ca, tampered, profile=get_profile("tls-server"))
    no_name = build_csr(key("p256"), parse_subject("/O=Org")).obj
    with pytest.raises(UsageError, match="needs a subject alternative name"):
        issue_certificate(ca_key, ca, no_name, profile=get_profile("tls-server"))


def test_path_length_below_the_issuers() -> None:
    root_key = key("p384")
    root = build_selfsigned(
        root_key, parse_subject("/CN=R"), profile=get_profile("root-ca"), path_length=2
    ).obj
    csr = build_csr(key("p256"), parse_subject("/CN=I")).obj
    inter = issue_certificate(root_key, root, csr, profile=get_profile("intermediate-ca"), path_length=1).obj
    assert inter.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length == 1
    with pytest.raises(UsageError, match="must be below"):
        issue_certificate(root_key, root, csr, profile=get_profile("intermediate-ca"), path_length=2)


class LyingKey(ec.EllipticCurvePrivateKey):
    """A key adapter whose sign() returns a signature over other bytes (what an unchecked HSM reply can be)."""

    def __init__(self, inner: ec.EllipticCurvePrivateKey) -> None:
        self._inner = inner

    def sign(self, data: Any, signature_algorithm: Any) -> bytes:
        return self._inner.sign(b"something else", signature_algorithm)

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._inner.public_key()

    @property
    def curve(self) -> ec.EllipticCurve:
        return self._inner.curve

    @property
    def key_size(self) -> int:
        return self._inner.key_size

    def exchange(self, *a: Any) -> bytes:
        raise NotImplementedError

    def private_numbers(self) -> Any:
        raise NotImplementedError

    def private_bytes(self, *a: Any) -> bytes:
        raise NotImplementedError

    def __copy__(self) -> LyingKey:
        return self

    def __deepcopy__(self, memo: Any) -> LyingKey:
        return self


def test_a_wrong_signature_is_never_returned() -> None:
    liar = LyingKey(key("p256"))
    with pytest.raises(VerificationError, match="does not verify with the signing key"):
        build_csr(liar, parse_subject("/CN=a"))
    with pytest.raises(VerificationError, match="nothing was written"):
        build_selfsigned(liar, parse_subject("/CN=a.example"), profile=get_profile("tls-server"))
