"""Key Vault certificates through azure-keyvault-certificates: Self and Unknown issuers, CSR and merge, import,
get, list, versions, delete / recover / purge; checked with pyca/cryptography."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.keyvault.certificates import (
    CertificateClient,
    CertificateContentType,
    CertificatePolicy,
    WellKnownIssuerNames,
)
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, utils
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from tests.emulator.conftest import unique
from tests.fixtures.x509_local import self_signed


@pytest.fixture(scope="module")
def certs(emulator: Any, vault_url: str, credential: Any) -> CertificateClient:
    return CertificateClient(vault_url, credential, connection_verify=str(emulator.ca))


def test_self_signed_completes_at_once_and_its_key_signs(
    certs: CertificateClient, vault_key_client: Any, crypto: Any
) -> None:
    name = unique("self")
    policy = CertificatePolicy(
        issuer_name=WellKnownIssuerNames.self,
        subject="CN=self.example.test",
        san_dns_names=["self.example.test"],
        key_type="EC",
        key_curve_name="P-256",
        validity_in_months=3,
    )
    cert = certs.begin_create_certificate(name, policy).result()
    parsed = x509.load_der_x509_certificate(cert.cer)
    assert parsed.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "self.example.test"
    parsed.verify_directly_issued_by(parsed)
    san = parsed.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["self.example.test"]
    assert cert.properties.version and cert.key_id.endswith(f"/keys/{name}/{cert.properties.version}")
    # the certificate's key is a key of the vault: sign with it, verify with the certificate
    key = vault_key_client.get_key(name)
    assert key.properties.version == cert.properties.version
    sig = crypto(key).sign("ES256", bytes(32)).signature
    der = utils.encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
    parsed.public_key().verify(der, bytes(32), ec.ECDSA(utils.Prehashed(hashes.SHA256())))
    assert certs.get_certificate_policy(name).subject == "CN=self.example.test"


def test_unknown_issuer_gives_a_csr_then_merge(certs: CertificateClient) -> None:
    name = unique("csr")
    policy = CertificatePolicy(
        issuer_name=WellKnownIssuerNames.unknown,
        subject="CN=app.example.test",
        san_dns_names=["app.example.test"],
    )
    operation = certs.begin_create_certificate(name, policy).result()
    assert operation.status == "inProgress" and operation.issuer_name == "Unknown"
    csr = x509.load_der_x509_csr(operation.csr)
    assert csr.is_signature_valid
    assert csr.subject.rfc4514_string() == "CN=app.example.test"
    assert certs.get_certificate_operation(name).csr == operation.csr

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test CA")])
    now = datetime.datetime.now(datetime.timezone.utc)
    leaf = (
        x509.CertificateBuilder()
        .subject_name(csr.subject)
        .issuer_name(ca_name)
        .public_key(csr.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=30))
        .sign(ca_key, hashes.SHA256())
    )
    merged = certs.merge_certificate(name, [leaf.public_bytes(serialization.Encoding.DER)])
    assert merged.cer == leaf.public_bytes(serialization.Encoding.DER)
    assert certs.get_certificate(name).properties.version == merged.properties.version
    assert certs.get_certificate_operation(name).status == "completed"


def test_merge_of_a_foreign_certificate_is_refused(certs: CertificateClient) -> None:
    name = unique("csr")
    certs.begin_create_certificate(name, CertificatePolicy(issuer_name="Unknown", subject="CN=x")).result()
    foreign = self_signed(ec.generate_private_key(ec.SECP256R1()), "x")
    with pytest.raises(HttpResponseError) as info:
        certs.merge_certificate(name, [foreign.public_bytes(serialization.Encoding.DER)])
    assert info.value.status_code == 400


def test_import_pfx_and_pem_list_versions_delete_recover_purge(
    certs: CertificateClient, crypto: Any, vault_key_client: Any
) -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(65537, 2048)
    cert = self_signed(key, "imported.example.test", days=10)
    name = unique("imp")
    pfx = pkcs12.serialize_key_and_certificates(
        b"x", key, cert, None, serialization.BestAvailableEncryption(b"pw")
    )
    imported = certs.import_certificate(name, pfx, password="pw")
    assert imported.cer == cert.public_bytes(serialization.Encoding.DER)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    pem += cert.public_bytes(serialization.Encoding.PEM)
    second = certs.import_certificate(
        name,
        pem,
        policy=CertificatePolicy(subject="CN=imported.example.test", content_type=CertificateContentType.pem),
    )
    versions = {c.version for c in certs.list_properties_of_certificate_versions(name)}
    assert versions == {imported.properties.version, second.properties.version}
    assert name in {c.name for c in certs.list_properties_of_certificates()}
    sig = crypto(vault_key_client.get_key(name)).sign("RS256", bytes(32)).signature
    key.public_key().verify(sig, bytes(32), padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))

    deleted = certs.begin_delete_certificate(name).result()
    assert deleted.recovery_id.endswith(f"/deletedcertificates/{name}")
    with pytest.raises(ResourceNotFoundError):
        certs.get_certificate(name)
    with pytest.raises(ResourceNotFoundError):
        vault_key_client.get_key(name)
    certs.begin_recover_deleted_certificate(name).result()
    assert certs.get_certificate(name).properties.version == second.properties.version
    assert vault_key_client.get_key(name).properties.version == second.properties.version
    certs.begin_delete_certificate(name).result()
    certs.purge_deleted_certificate(name)
    with pytest.raises(ResourceNotFoundError):
        certs.get_deleted_certificate(name)


def test_bad_import_and_policy_are_400(certs: CertificateClient) -> None:
    with pytest.raises(HttpResponseError) as info:
        certs.import_certificate(unique(), b"not a pfx")
    assert info.value.status_code == 400
    with pytest.raises(HttpResponseError) as info:
        certs.begin_create_certificate(unique(), CertificatePolicy(issuer_name="Self", subject="not a name"))
    assert info.value.status_code == 400


def test_managed_hsm_has_no_certificates(emulator: Any, hsm_url: str, credential: Any) -> None:
    client = CertificateClient(hsm_url, credential, connection_verify=str(emulator.ca))
    with pytest.raises(HttpResponseError) as info:
        client.get_certificate("anything")
    assert info.value.status_code == 404
