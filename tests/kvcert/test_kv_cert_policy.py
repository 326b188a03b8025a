"""The certificate policy hsmcert writes (no service): command-line spellings to Key Vault's, checked, and
the same policy back from the SDK; the remedy of a refused certificate operation."""

from __future__ import annotations

import pytest

from hsmcert.azure.kvcert import CertPolicy
from hsmcert.errors import UsageError


def test_spellings_become_key_vaults_and_come_back_unchanged() -> None:
    policy = CertPolicy.build(
        "/C=DE/O=Example/CN=www.example.test",
        ["DNS:www.example.test,IP:192.0.2.1", "email:ops@example.test", "URI:https://example.test/x"],
        kty="ec",
        curve="p-384",
        validity_months=24,
        issuer="unknown",
        profile="tls-client",
    )
    assert policy.subject == "CN=www.example.test,O=Example,C=DE"
    assert policy.kty == "EC-HSM" and policy.curve == "P-384" and policy.size is None
    assert policy.issuer == "Unknown" and policy.exportable is False
    assert policy.ekus == ("1.3.6.1.5.5.7.3.2",) and policy.key_usage == ("digitalSignature",)
    sdk = policy.to_sdk()
    assert sdk.san_ip_addresses == ["192.0.2.1"] and sdk.san_uris == ["https://example.test/x"]
    assert (
        sdk.exportable is False
        and str(sdk.key_type.value if hasattr(sdk.key_type, "value") else sdk.key_type) == "EC-HSM"
    )
    assert CertPolicy.from_sdk(sdk) == policy
    rsa = CertPolicy.build("", ["DNS:only-san.example.test"], kty="RSA-HSM")
    assert rsa.subject == "" and rsa.size == 3072 and rsa.key_usage == ("digitalSignature", "keyEncipherment")


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({"kty": "oct"}, "Unknown key type"),
        ({"kty": "RSA", "curve": "P-256"}, "--curve is for EC-HSM"),
        ({"kty": "RSA", "size": 1024}, "RSA keys are"),
        ({"kty": "EC", "size": 2048}, "--size is for RSA-HSM"),
        ({"kty": "EC", "curve": "P-999"}, "Unknown curve"),
        ({"validity_months": 0}, "1 to 1200 months"),
        ({"issuer": "DigiCert"}, "Unknown issuer"),
        ({"profile": "root-ca"}, "Unknown profile"),
    ],
)
def test_bad_options_are_one_sentence(kwargs: dict[str, object], says: str) -> None:
    with pytest.raises(UsageError, match=says):
        CertPolicy.build("/CN=a.example.test", **kwargs)  # type: ignore[arg-type]


def test_a_subject_or_a_san_is_needed() -> None:
    with pytest.raises(UsageError, match="needs a subject"):
        CertPolicy.build("", [])


def test_a_refused_certificate_operation_names_the_certificate_roles() -> None:
    from hsmcert.azure.errors import permission_remedy

    remedy = permission_remedy("vault", "contoso", None, "certificates/create")
    assert "Key Vault Certificates Officer" in remedy and "contoso" in remedy
    assert "Certificate" not in permission_remedy("vault", "contoso", "k", "sign")
