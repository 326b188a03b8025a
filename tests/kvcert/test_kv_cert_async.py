"""The async azure-keyvault-certificates client against the emulator, on the objects hsmcert's (sync) library
makes and the other way round: the same policy, pending CSR, merge, versions and errors through both."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import ResourceNotFoundError
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from hsmcert.azure.kvcert import CertPolicy, KvCertificate, PendingOperation, VaultCertificates
from hsmcert.pki.io import load_certificates
from hsmcert.pki.lint import lint_certificate
from tests.pki.helpers import assert_chain_verifies, assert_csr_verifies

from .conftest import VAULT, issue_for, unique


@pytest.fixture
async def aio_certs(emulator: Any) -> AsyncIterator[Any]:
    from azure.identity.aio import ManagedIdentityCredential
    from azure.keyvault.certificates.aio import CertificateClient

    async with (
        ManagedIdentityCredential() as credential,
        CertificateClient(
            emulator.url("vault", VAULT), credential, connection_verify=str(emulator.ca)
        ) as client,
    ):
        yield client


@pytest.fixture
def vault() -> VaultCertificates:
    from hsmcert.session import default_session

    return VaultCertificates(default_session(), VAULT)


async def test_async_client_creates_with_hsmcerts_policy_and_merges_an_hsm_ca_chain(
    aio_certs: Any, vault: VaultCertificates, hsm_ca: dict[str, Any], tmp_path: Path
) -> None:
    name = unique("aio")
    policy = CertPolicy.build(
        "/CN=aio.example.test", ["DNS:aio.example.test", "IP:2001:db8::7"], kty="EC-HSM", curve="P-384",
        validity_months=2, issuer="Unknown",
    )  # fmt: skip
    operation = await aio_certs.create_certificate(name, policy.to_sdk())
    assert operation.status == "inProgress"

    # the sync library sees the same pending operation and policy
    pending = vault.pending(name)
    assert isinstance(pending, PendingOperation) and pending.waiting
    assert pending.csr_der == bytes((await aio_certs.get_certificate_operation(name)).csr)
    assert vault.policy(name) == policy
    csr_path = tmp_path / "aio.csr"
    csr_path.write_bytes(pending.csr_pem())
    assert_csr_verifies(csr_path)

    chain = load_certificates(issue_for(csr_path, hsm_ca, tmp_path / "chain.pem", days=30))
    merged = await aio_certs.merge_certificate(name, [c.public_bytes(Encoding.DER) for c in chain])
    leaf = x509.load_der_x509_certificate(bytes(merged.cer))
    assert leaf == chain[0] and lint_certificate(bytes(merged.cer)) == []
    out = tmp_path / "leaf.pem"
    out.write_bytes(vault.get(name).encoded())
    assert_chain_verifies(out, Path(hsm_ca["cert"]))

    # merged once: neither client finds a pending operation any more
    with pytest.raises(ResourceNotFoundError):
        await aio_certs.merge_certificate(name, [chain[0].public_bytes(Encoding.DER)])
    assert not vault.pending(name).waiting


async def test_objects_the_library_makes_read_the_same_through_the_async_client(
    aio_certs: Any, vault: VaultCertificates
) -> None:
    name = unique("lib")
    policy = CertPolicy.build("CN=lib.example.test", ["DNS:lib.example.test"], kty="RSA-HSM", size=2048)
    first = vault.create(name, policy)
    second = vault.renew(name)
    assert isinstance(first, KvCertificate) and isinstance(second, KvCertificate)
    assert CertPolicy.from_sdk(await aio_certs.get_certificate_policy(name)) == policy

    versions = [v.version async for v in aio_certs.list_properties_of_certificate_versions(name)]
    assert sorted(versions) == sorted([first.version, second.version])
    assert [c.version for c in vault.versions(name)] == [first.version, second.version]
    latest = await aio_certs.get_certificate(name)
    assert latest.properties.version == second.version and bytes(latest.cer) == second.cer
    older = await aio_certs.get_certificate_version(name, str(first.version))
    assert bytes(older.cer) == first.cer

    listed = {p.name: p async for p in aio_certs.list_properties_of_certificates()}
    mine = [c for c in vault.list() if c.name == name]
    assert len(mine) == 1 and mine[0].expires_on == listed[name].expires_on
    assert mine[0].days_left(dt.datetime.now(dt.timezone.utc)) in range(358, 361)

    # gone through one client, gone for the other
    await aio_certs.delete_certificate(name)
    from hsmcert.errors import NotFoundError

    with pytest.raises(NotFoundError, match="There is no certificate"):
        vault.get(name)
    await aio_certs.purge_deleted_certificate(name)
