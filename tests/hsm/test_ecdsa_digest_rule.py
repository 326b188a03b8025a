"""The ECDSA digest rule against the emulator: a digest of another hash than the curve's is signed in the
HSM and the signature verifies, with cryptography, against the original hash."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from hsmcert.session import default_session
from hsmcert.signer import HsmECPrivateKey, load_private_key

HASHES: dict[str, hashes.HashAlgorithm] = {
    "sha1": hashes.SHA1(),
    "sha256": hashes.SHA256(),
    "sha384": hashes.SHA384(),
    "sha512": hashes.SHA512(),
}


@pytest.mark.parametrize(
    ("curve", "hash_name"),
    [("P-256", "sha384"), ("P-256", "sha1"), ("P-256", "sha512"), ("P-384", "sha256"), ("P-521", "sha256")],
)
def test_hsm_key_signs_another_hash_and_it_verifies(
    ec_refs: dict[str, str], curve: str, hash_name: str
) -> None:
    key = default_session().open_key(ec_refs[curve])
    digest = hashlib.new(hash_name, b"the ECDSA digest rule").digest()
    signature = key.sign_digest(key.default_algorithm(), digest)
    assert isinstance(key.public_key, ec.EllipticCurvePublicKey)
    key.public_key.verify(signature, digest, ec.ECDSA(Prehashed(HASHES[hash_name])))


@pytest.mark.parametrize("hash_name", ["sha384", "sha1"])
def test_cryptography_adapter_signs_with_any_hash(ec_refs: dict[str, str], hash_name: str) -> None:
    key = load_private_key(ec_refs["P-256"])
    assert isinstance(key, HsmECPrivateKey)
    signature = key.sign(b"data", ec.ECDSA(HASHES[hash_name]))
    key.public_key().verify(signature, b"data", ec.ECDSA(HASHES[hash_name]))


def test_the_hsm_receives_the_digest_of_the_rule(emulator: Any, ec_refs: dict[str, str]) -> None:
    """What the emulator signed is the truncated digest: verifying it as SHA-256 also succeeds."""
    key = default_session().open_key(ec_refs["P-256"])
    digest = hashlib.sha384(b"leftmost bytes").digest()
    signature = key.sign_digest("ES256", digest)
    assert isinstance(key.public_key, ec.EllipticCurvePublicKey)
    key.public_key.verify(signature, digest[:32], ec.ECDSA(Prehashed(hashes.SHA256())))
