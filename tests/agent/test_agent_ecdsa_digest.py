"""The agent applies the ECDSA digest rule (hsmcert.jwa): a client that hashed with another hash than the
curve's gets a signature that verifies against its own hash."""

from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from tests.fixtures.agent import AgentProcess

HASHES: dict[str, hashes.HashAlgorithm] = {
    "sha1": hashes.SHA1(),
    "sha256": hashes.SHA256(),
    "sha384": hashes.SHA384(),
}


@pytest.mark.parametrize(
    ("key", "alg", "hash_name"),
    [("p256", "ES256", "sha384"), ("p256", "ES256", "sha1"), ("p384", "ES384", "sha256")],
)
def test_agent_signs_a_digest_of_another_hash(
    agent: AgentProcess, agent_keys: dict[str, str], key: str, alg: str, hash_name: str
) -> None:
    digest = hashlib.new(hash_name, b"agent digest rule").digest()
    with agent.client() as client:
        public = serialization.load_der_public_key(client.pubkey(agent_keys[key]).spki)
        signature = client.sign(agent_keys[key], alg, digest)
    assert isinstance(public, ec.EllipticCurvePublicKey)
    public.verify(signature, digest, ec.ECDSA(Prehashed(HASHES[hash_name])))
