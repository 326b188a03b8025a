"""More of the async SDKs against the emulator: RSA-OAEP and AES key wrap, role assignments that take effect
at once, and the Key Vault certificate flows (Self, and Unknown with a CSR merged back)."""

from __future__ import annotations

import datetime as dt
import os
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

from hsmcert.azure import roles
from tests.emulator.conftest import Token, unique


class AsyncToken(Token):
    """The emulator token of one principal, for the async SDKs."""

    async def get_token(self, *scopes: str, **kwargs: Any) -> Any:  # type: ignore[override]
        return Token.get_token(self, *scopes, **kwargs)

    async def close(self) -> None:  # type: ignore[override]
        return None


async def test_async_oaep_decrypt_and_aes_key_wrap(emulator: Any, hsm_url: str) -> None:
    from azure.identity.aio import ManagedIdentityCredential
    from azure.keyvault.keys.aio import KeyClient
    from azure.keyvault.keys.crypto import EncryptionAlgorithm, KeyWrapAlgorithm
    from azure.keyvault.keys.crypto.aio import CryptographyClient

    ca = str(emulator.ca)
    async with (
        ManagedIdentityCredential() as credential,
        KeyClient(hsm_url, credential, connection_verify=ca) as keys,
    ):
        rsa_key = await keys.create_rsa_key(unique("async-oaep"), size=2048, hardware_protected=True)
        public = rsa.RSAPublicNumbers(
            int.from_bytes(rsa_key.key.e, "big"), int.from_bytes(rsa_key.key.n, "big")
        ).public_key()
        secret = os.urandom(32)
        sealed = public.encrypt(
            secret, padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
        )
        async with CryptographyClient(rsa_key, credential, connection_verify=ca) as crypto:
            opened = await crypto.decrypt(EncryptionAlgorithm.rsa_oaep_256, sealed)
        assert opened.plaintext == secret

        aes = await keys.create_oct_key(unique("async-kek"), size=256, hardware_protected=True)
        async with CryptographyClient(aes, credential, connection_verify=ca) as crypto:
            wrapped = await crypto.wrap_key(KeyWrapAlgorithm.aes_256, secret)
            assert len(wrapped.encrypted_key) == len(secret) + 8  # RFC 3394 adds one block
            unwrapped = await crypto.unwrap_key(KeyWrapAlgorithm.aes_256, wrapped.encrypted_key)
        assert unwrapped.key == secret


async def test_async_role_assignment_takes_effect_at_once(emulator: Any, hsm_url: str) -> None:
    from azure.core.exceptions import HttpResponseError
    from azure.identity.aio import ManagedIdentityCredential
    from azure.keyvault.administration.aio import KeyVaultAccessControlClient
    from azure.keyvault.keys.aio import KeyClient

    ca = str(emulator.ca)
    app = unique("async-app")
    name = unique("async-rbac")
    crypto_user = roles.role_by_slug("crypto-user")
    assert crypto_user is not None
    async with ManagedIdentityCredential() as admin:
        async with KeyClient(hsm_url, admin, connection_verify=ca) as keys:
            await keys.create_ec_key(name, curve="P-256", hardware_protected=True)
        async with KeyClient(hsm_url, AsyncToken(emulator.token(app)), connection_verify=ca) as as_app:
            try:
                await as_app.get_key(name)
                raise AssertionError("a principal with no role read the key")
            except HttpResponseError as exc:
                assert exc.status_code == 403
            async with KeyVaultAccessControlClient(hsm_url, admin, connection_verify=ca) as access:
                made = await access.create_role_assignment(
                    f"/keys/{name}", crypto_user.definition_id, emulator.principal_id(app)
                )
                assert (await as_app.get_key(name)).name == name
                await access.delete_role_assignment(f"/keys/{name}", made.name)
            try:
                await as_app.get_key(name)
                raise AssertionError("the removed assignment still let the principal read the key")
            except HttpResponseError as exc:
                assert exc.status_code == 403


async def test_async_certificates_self_and_csr_merge(emulator: Any, vault_url: str) -> None:
    from azure.identity.aio import ManagedIdentityCredential
    from azure.keyvault.certificates import CertificatePolicy
    from azure.keyvault.certificates.aio import CertificateClient

    ca = str(emulator.ca)
    async with (
        ManagedIdentityCredential() as credential,
        CertificateClient(vault_url, credential, connection_verify=ca) as certs,
    ):
        self_name = unique("async-self")
        made = await certs.create_certificate(
            self_name, CertificatePolicy(issuer_name="Self", subject="CN=async.example")
        )
        cert = x509.load_der_x509_certificate(bytes(made.cer))
        assert cert.subject.rfc4514_string() == "CN=async.example"
        cert.public_key().verify(  # type: ignore[union-attr,call-arg]
            cert.signature, cert.tbs_certificate_bytes, *_verify_args(cert)
        )

        pending_name = unique("async-csr")
        await certs.create_certificate(
            pending_name, CertificatePolicy(issuer_name="Unknown", subject="CN=pending.example")
        )
        operation = await certs.get_certificate_operation(pending_name)
        csr = x509.load_der_x509_csr(bytes(operation.csr))
        assert csr.is_signature_valid
        issuer_key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.timezone.utc)
        issued = (
            x509.CertificateBuilder()
            .subject_name(csr.subject)
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "async test CA")]))
            .public_key(csr.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=1))
            .sign(issuer_key, hashes.SHA256())
        )
        merged = await certs.merge_certificate(
            pending_name, [issued.public_bytes(serialization.Encoding.DER)]
        )
        assert x509.load_der_x509_certificate(bytes(merged.cer)) == issued
        assert (await certs.get_certificate(pending_name)).properties.x509_thumbprint


def _verify_args(cert: x509.Certificate) -> tuple[Any, ...]:
    public = cert.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        return (padding.PKCS1v15(), cert.signature_hash_algorithm)
    return (ec.ECDSA(cert.signature_hash_algorithm),)  # type: ignore[arg-type]
