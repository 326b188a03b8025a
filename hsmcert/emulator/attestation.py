"""Key attestation of a Managed HSM (``GET /keys/{name}/{version}/attestation``, api-version 2025-07-01): the
key bundle with ``attributes.attestation`` as azure-keyvault-keys' ``get_key_attestation`` reads it.

Azure's attestation blobs come from the HSM's vendor firmware; the emulator's are its own: a compact JWS
(ES256) signed by the emulator's CA key whose payload names the key version, its type and public key and which
part of it (``private`` or ``public``) is attested; ``certificatePemFile`` is the CA certificate that verifies
them.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from hsmcert.emulator.api import Request, Response, b64u
from hsmcert.emulator.keys import addressed_version

if TYPE_CHECKING:
    from hsmcert.emulator.keys import KeyVersion
    from hsmcert.emulator.service import Service

VERSION = "1.0"


def _statement(kv: KeyVersion, kid: str, part: str, ca_key: Any) -> str:
    """A compact JWS of the CA key attesting one part (``private`` / ``public``) of a key version."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, utils

    header = {"alg": "ES256", "typ": "JWT"}
    claims = {"kid": kid, "kty": kv.kty, "attested": part, "key": kv.public, "iat": int(time.time())}
    signing_input = f"{b64u(json.dumps(header).encode())}.{b64u(json.dumps(claims).encode())}"
    r, s = utils.decode_dss_signature(ca_key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
    return f"{signing_input}.{b64u(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def get_attestation(service: Service, req: Request) -> Response:
    from cryptography.hazmat.primitives import serialization

    name = req.params["name"]
    kv = service.version(name, addressed_version(req))
    if not kv.enabled:
        kv.check_usable("get")
    data_dir = service.store.path.parent
    ca_key = serialization.load_pem_private_key((data_dir / "ca.key").read_bytes(), None)
    kid = kv.kid(req.base_url)
    attestation = {
        "certificatePemFile": b64u((data_dir / "ca.pem").read_bytes()),
        "privateKeyAttestation": b64u(_statement(kv, kid, "private", ca_key).encode()),
        "version": VERSION,
    }
    if kv.base_kty != "oct":
        attestation["publicKeyAttestation"] = b64u(_statement(kv, kid, "public", ca_key).encode())
    bundle = kv.bundle(service, req.base_url)
    bundle["attributes"]["attestation"] = attestation
    return Response(200, bundle, audit={"key": name, "version": kv.version})
