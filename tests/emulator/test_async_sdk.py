"""The async SDKs (aiohttp transport) against the emulator: keys, crypto, RBAC, managed identity."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, utils

from hsmcert.azure import roles
from tests.emulator.conftest import unique


async def test_async_keys_crypto_and_rbac(emulator: Any, hsm_url: str) -> None:
    from azure.identity.aio import ManagedIdentityCredential
    from azure.keyvault.administration.aio import KeyVaultAccessControlClient
    from azure.keyvault.keys.aio import KeyClient
    from azure.keyvault.keys.crypto.aio import CryptographyClient

    ca = str(emulator.ca)
    async with ManagedIdentityCredential() as credential:
        async with KeyClient(hsm_url, credential, connection_verify=ca) as keys:
            name = unique("async")
            key = await keys.create_ec_key(name, curve="P-256", hardware_protected=True)
            assert (await keys.get_key(name)).id == key.id
            digest = hashlib.sha256(b"async").digest()
            async with CryptographyClient(key, credential, connection_verify=ca) as crypto:
                signatures = await asyncio.gather(*(crypto.sign("ES256", digest) for _ in range(8)))
            public = ec.EllipticCurvePublicNumbers(
                int.from_bytes(key.key.x, "big"), int.from_bytes(key.key.y, "big"), ec.SECP256R1()
            ).public_key()
            for result in signatures:
                sig = result.signature
                der = utils.encode_dss_signature(
                    int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")
                )
                public.verify(der, digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
            names = [k.name async for k in keys.list_properties_of_keys()]
            assert name in names
            await keys.delete_key(name)
            assert (await keys.get_deleted_key(name)).name == name
        async with KeyVaultAccessControlClient(hsm_url, credential, connection_verify=ca) as access:
            listed = [d.name async for d in access.list_role_definitions("/")]
            assert {r.id for r in roles.BUILTIN_ROLES} <= set(listed)
    entries = [e for e in emulator.audit() if e.get("key") == name and e.get("operation") == "sign"]
    assert len(entries) == 8
