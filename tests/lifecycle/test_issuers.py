"""The issuer registry and the issuers shipped with it, against the emulator."""

from __future__ import annotations

from typing import Any

import pytest
from cryptography import x509

from hsmcert.errors import UsageError
from hsmcert.lifecycle import issuers
from hsmcert.lifecycle.state import ManagedCert
from hsmcert.pki.signing import same_public_key, signature_is_valid
from tests.pki.helpers import assert_lint_clean

from .conftest import Ca, make_key


def test_the_shipped_kinds_are_registered() -> None:
    assert {"self-signed", "hsmcert-ca"} <= set(issuers.kinds())


def test_an_unknown_kind_lists_the_known() -> None:
    with pytest.raises(UsageError) as caught:
        issuers.get("letsencrypt-by-hand")
    assert "self-signed" in str(caught.value.remedy)


def test_params_are_checked() -> None:
    with pytest.raises(UsageError, match="no parameters"):
        issuers.get("self-signed").check({"ca_key": "x"})
    with pytest.raises(UsageError, match="needs ca_key and ca_cert"):
        issuers.get("hsmcert-ca").check({"ca_key": "managedhsm:h:k"})
    checked = issuers.get("hsmcert-ca").check({"ca_key": "managedhsm:Contoso:k", "ca_cert": "ca.pem"})
    assert checked["ca_cert"].startswith("/") and checked["ca_key"] == "managedhsm:contoso:k"


def _record(key: str, issuer: dict[str, Any]) -> ManagedCert:
    return ManagedCert(
        name="www",
        key=key,
        issuer=issuer,
        subject="/O=Test/CN=www.example.com",
        cert="/x.pem",
        sans=["DNS:www.example.com"],
        days=30,
    )


def test_self_signed_issues_for_the_hsm_key(hsm_session: Any) -> None:
    ref = make_key(hsm_session)
    key = hsm_session.private_key(ref)
    issued = issuers.get("self-signed").issue(
        _record(str(key.ref), {"kind": "self-signed"}), hsm_session, key
    )
    assert issued.chain == []
    assert same_public_key(issued.leaf.public_key(), key.public_key())
    assert signature_is_valid(key.public_key(), issued.leaf)
    assert issued.leaf.extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    ).value.get_values_for_type(x509.DNSName) == ["www.example.com"]
    assert_lint_clean(issued.leaf)


def test_hsmcert_ca_issues_from_the_ca_key(hsm_session: Any, ca: Ca) -> None:
    ref = make_key(hsm_session, kty="RSA", size=2048)
    key = hsm_session.private_key(ref)
    record = _record(str(key.ref), {"kind": "hsmcert-ca", "ca_key": ca.key, "ca_cert": str(ca.cert)})
    issued = issuers.get("hsmcert-ca").issue(record, hsm_session, key)
    root = x509.load_pem_x509_certificate(ca.cert.read_bytes())
    assert issued.chain == []  # the root is not sent
    assert issued.leaf.issuer == root.subject
    assert signature_is_valid(root.public_key(), issued.leaf)
    assert same_public_key(issued.leaf.public_key(), key.public_key())
    assert_lint_clean(issued.leaf)
