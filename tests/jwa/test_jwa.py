"""The algorithm vocabulary: one compatibility rule, one message, and the ECDSA digest rule's vectors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hsmcert import jwa
from hsmcert.errors import UsageError

VECTORS = json.loads((Path(__file__).parents[1] / "vectors" / "ecdsa_digests.json").read_text())["vectors"]


@pytest.mark.parametrize("case", VECTORS, ids=lambda c: f"{c['curve']}-{c['hash']}")
def test_ecdsa_digest_rule_vectors(case: dict[str, str]) -> None:
    alg = jwa.default_algorithm("EC", case["curve"])
    sent = jwa.ecdsa_digest(alg, bytes.fromhex(case["digest"]))
    assert sent.hex() == case["sent"]
    assert len(sent) == jwa.ALGORITHMS[alg].digest_size
    assert jwa.digest_to_sign(alg, bytes.fromhex(case["digest"])) == sent


@pytest.mark.parametrize("size", [0, 16, 19, 65, 128])
def test_ecdsa_digests_outside_sha1_to_sha512_sizes_are_refused(size: int) -> None:
    with pytest.raises(UsageError, match=f"ES256 signs a digest of 20 to 64 bytes, not {size} bytes"):
        jwa.ecdsa_digest("ES256", bytes(size))
    assert not jwa.digest_size_ok("ES256", size)


def test_rsa_digests_must_match_the_hash() -> None:
    with pytest.raises(UsageError, match="RS384 signs a SHA384 digest of 48 bytes, not 32 bytes"):
        jwa.digest_to_sign("RS384", bytes(32))
    assert jwa.digest_size_ok("PS512", 64) and not jwa.digest_size_ok("PS512", 48)


@pytest.mark.parametrize(
    ("alg", "kty", "curve", "message"),
    [
        ("ES256", "RSA", None, "ES256 needs an EC key; k is an RSA key."),
        ("PS256", "EC", "P-384", "PS256 needs an RSA key; k is an EC key."),
        ("ES384", "EC", "P-256", "ES384 needs a P-384 key; k is on P-256."),
        ("ES256K", "EC", "P-256", "ES256K needs a P-256K key; k is on P-256."),
        ("HS256", "RSA", None, "Unknown or unsupported signature algorithm 'HS256'."),
    ],
)
def test_one_compatibility_rule_and_one_message(alg: str, kty: str, curve: str | None, message: str) -> None:
    with pytest.raises(UsageError) as caught:
        jwa.check_algorithm(alg, kty, curve, key="k")
    assert caught.value.message == message
    assert isinstance(caught.value, jwa.AlgorithmMismatchError) == (alg != "HS256")


def test_defaults_and_lower_case_names() -> None:
    assert [jwa.default_algorithm("EC", c) for c in jwa.CURVES] == ["ES256", "ES384", "ES512", "ES256K"]
    assert jwa.default_algorithm("RSA") == "RS256"
    assert jwa.check_algorithm("ps384", "RSA").name == "PS384"


@pytest.mark.parametrize(
    ("kty", "curve", "pss", "hash_name", "expected"),
    [
        ("RSA", None, False, "sha384", "RS384"),
        ("RSA", None, True, "sha512", "PS512"),
        ("EC", "P-256", False, "sha384", "ES256"),
        ("EC", "P-256", False, "sha1", "ES256"),
        ("EC", "P-384", False, "sha256", "ES384"),
        ("EC", "P-521", False, "sha512", "ES512"),
    ],
)
def test_algorithm_for_a_padding_and_hash(
    kty: str, curve: str | None, pss: bool, hash_name: str, expected: str
) -> None:
    assert jwa.algorithm_for(kty, curve, pss=pss, hash_name=hash_name) == expected


def test_algorithm_for_refusals() -> None:
    with pytest.raises(UsageError, match="SHA1 is too weak"):
        jwa.algorithm_for("RSA", None, pss=False, hash_name="sha1")
    with pytest.raises(UsageError, match="does not sign MD5 digests with ECDSA"):
        jwa.algorithm_for("EC", "P-256", pss=False, hash_name="md5")


def test_curves_round_trip_through_cryptography() -> None:
    for name in jwa.CURVES:
        assert jwa.curve_of(jwa.ec_curve(name)) == name
    with pytest.raises(UsageError, match="P-224"):
        jwa.ec_curve("P-224")
