"""The HSM key and the cryptography adapter, against the emulator through the real Azure SDKs."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.x509.oid import NameOID

from hsmcert.azure import hsm, keycache
from hsmcert.errors import (
    HsmcertError,
    NotFoundError,
    PermissionDeniedError,
    UnreachableError,
    UsageError,
    VerificationError,
)
from hsmcert.session import Session, default_session
from hsmcert.signer import HsmECPrivateKey, HsmRSAPrivateKey, load_private_key

from .conftest import HSM, unique

RSA_ALGS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"]
EC_ALGS = {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}
HASHES = {"256": hashes.SHA256(), "384": hashes.SHA384(), "512": hashes.SHA512()}


def _signs(emulator: Any, key: str, version: str | None = None) -> list[dict[str, Any]]:
    return [
        e
        for e in emulator.audit()
        if e.get("key") == key
        and e.get("operation") == "sign"
        and (version is None or e.get("version") == version)
    ]


def _csr(key: Any, algorithm: Any = None, **kwargs: Any) -> x509.CertificateSigningRequest:
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hsm.example.test")])
    )
    return builder.sign(key, algorithm or hashes.SHA256(), **kwargs)


def test_open_key_pins_the_version_and_exposes_the_public_key(emulator: Any, rsa_ref: str) -> None:
    key = default_session().open_key(rsa_ref)
    assert key.kty == "RSA" and key.key_size == 2048
    assert key.ref.version and len(key.ref.version) == 32
    assert key.ref.key == rsa_ref.rsplit(":", 1)[1]
    loaded = serialization.load_der_public_key(key.spki_der)
    assert loaded.public_numbers() == key.public_key.public_numbers()  # type: ignore[union-attr]


@pytest.mark.parametrize("alg", RSA_ALGS)
def test_rsa_signatures_are_made_in_the_hsm_and_verified(emulator: Any, rsa_ref: str, alg: str) -> None:
    key = default_session().open_key(rsa_ref)
    hash_alg = HASHES[alg[2:]]
    digest = hashlib.new(hash_alg.name, b"to be signed").digest()
    before = len(_signs(emulator, key.ref.key, key.ref.version))
    signature = key.sign_digest(alg, digest)
    pad: padding.AsymmetricPadding = (
        padding.PSS(padding.MGF1(hash_alg), hash_alg.digest_size)
        if alg.startswith("PS")
        else padding.PKCS1v15()
    )
    assert isinstance(key.public_key, rsa.RSAPublicKey)
    key.public_key.verify(signature, digest, pad, Prehashed(hash_alg))
    assert len(_signs(emulator, key.ref.key, key.ref.version)) == before + 1


@pytest.mark.parametrize("curve", list(EC_ALGS))
def test_ecdsa_signatures_are_der_and_verify(emulator: Any, ec_refs: dict[str, str], curve: str) -> None:
    key = default_session().open_key(ec_refs[curve])
    alg = EC_ALGS[curve]
    hash_alg = HASHES[alg[2:]]
    digest = hashlib.new(hash_alg.name, b"data").digest()
    signature = key.sign_digest(alg, digest)
    assert signature[0] == 0x30  # DER SEQUENCE, not raw r||s
    assert isinstance(key.public_key, ec.EllipticCurvePublicKey)
    key.public_key.verify(signature, digest, ec.ECDSA(Prehashed(hash_alg)))


def test_wrong_algorithm_for_the_key_is_a_usage_error(rsa_ref: str, ec_refs: dict[str, str]) -> None:
    with pytest.raises(UsageError, match="needs an EC key"):
        default_session().open_key(rsa_ref).sign_digest("ES256", bytes(32))
    with pytest.raises(UsageError, match="P-384"):
        default_session().open_key(ec_refs["P-256"]).sign_digest("ES384", bytes(48))
    with pytest.raises(UsageError, match="32 bytes"):
        default_session().open_key(rsa_ref).sign_digest("RS256", bytes(20))


@pytest.mark.parametrize(
    "pad",
    [
        padding.PKCS1v15(),
        padding.PSS(padding.MGF1(hashes.SHA256()), padding.PSS.DIGEST_LENGTH),
        padding.PSS(padding.MGF1(hashes.SHA256()), 32),
    ],
    ids=["pkcs1", "pss-digest-length", "pss-32"],
)
def test_cryptography_builds_a_valid_rsa_csr(emulator: Any, rsa_ref: str, pad: Any, tmp_path: Path) -> None:
    key = load_private_key(rsa_ref)
    assert isinstance(key, HsmRSAPrivateKey) and isinstance(key, rsa.RSAPrivateKey)
    csr = _csr(key, rsa_padding=pad)
    assert csr.is_signature_valid
    path = tmp_path / "req.pem"
    path.write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    done = subprocess.run(
        ["openssl", "req", "-verify", "-noout", "-in", str(path)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("curve", list(EC_ALGS))
def test_cryptography_builds_a_valid_ec_csr(emulator: Any, ec_refs: dict[str, str], curve: str) -> None:
    key = load_private_key(ec_refs[curve])
    assert isinstance(key, HsmECPrivateKey) and isinstance(key, ec.EllipticCurvePrivateKey)
    csr = _csr(key, HASHES[EC_ALGS[curve][2:]])
    assert csr.is_signature_valid


def test_prehashed_data_is_sent_as_it_is(rsa_ref: str, ec_refs: dict[str, str]) -> None:
    digest = hashlib.sha256(b"x").digest()
    rsa_key = load_private_key(rsa_ref)
    assert isinstance(rsa_key, HsmRSAPrivateKey)
    sig = rsa_key.sign(digest, padding.PKCS1v15(), Prehashed(hashes.SHA256()))
    rsa_key.public_key().verify(sig, b"x", padding.PKCS1v15(), hashes.SHA256())
    ec_key = load_private_key(ec_refs["P-256"])
    assert isinstance(ec_key, HsmECPrivateKey)
    sig = ec_key.sign(digest, ec.ECDSA(Prehashed(hashes.SHA256())))
    ec_key.public_key().verify(sig, b"x", ec.ECDSA(hashes.SHA256()))


@pytest.mark.parametrize(
    ("pad", "algorithm", "message"),
    [
        (padding.PKCS1v15(), hashes.SHA1(), "SHA1 is too weak"),
        (padding.PKCS1v15(), hashes.SHA3_256(), "cannot sign SHA3-256"),
        (
            padding.PSS(padding.MGF1(hashes.SHA256()), padding.PSS.MAX_LENGTH),
            hashes.SHA256(),
            "not MAX_LENGTH",
        ),
        (padding.PSS(padding.MGF1(hashes.SHA256()), padding.PSS.AUTO), hashes.SHA256(), "not AUTO"),
        (padding.PSS(padding.MGF1(hashes.SHA256()), 20), hashes.SHA256(), "not 20"),
        (padding.PSS(padding.MGF1(hashes.SHA512()), 32), hashes.SHA256(), "MGF1 over the signing hash"),
    ],
)
def test_rsa_refusals_are_clear(emulator: Any, rsa_ref: str, pad: Any, algorithm: Any, message: str) -> None:
    key = load_private_key(rsa_ref)
    before = len(_signs(emulator, rsa_ref.rsplit(":", 1)[1]))
    with pytest.raises(UsageError, match=message):
        key.sign(b"data", pad, algorithm)  # type: ignore[call-arg]
    assert len(_signs(emulator, rsa_ref.rsplit(":", 1)[1])) == before  # refused before any request


def test_ec_refusals_are_clear(ec_refs: dict[str, str]) -> None:
    key = load_private_key(ec_refs["P-256"])
    assert isinstance(key, HsmECPrivateKey)
    with pytest.raises(UsageError, match="deterministic"):
        key.sign(b"data", ec.ECDSA(hashes.SHA256(), deterministic_signing=True))
    with pytest.raises(UsageError, match="MD5"):
        key.sign(b"data", ec.ECDSA(hashes.MD5()))
    with pytest.raises(UsageError, match="ECDH"):
        key.exchange(ec.ECDH(), ec.generate_private_key(ec.SECP256R1()).public_key())


def test_private_parts_cannot_be_exported(rsa_ref: str, ec_refs: dict[str, str]) -> None:
    for ref in (rsa_ref, ec_refs["P-384"]):
        key = load_private_key(ref)
        with pytest.raises(HsmcertError, match="stays in the HSM"):
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        with pytest.raises(HsmcertError, match="stays in the HSM"):
            key.private_numbers()


def test_rsa_decrypt_in_the_hsm(rsa_ref: str) -> None:
    key = load_private_key(rsa_ref)
    assert isinstance(key, HsmRSAPrivateKey)
    for oaep_hash in (hashes.SHA1(), hashes.SHA256()):
        pad = padding.OAEP(padding.MGF1(oaep_hash), oaep_hash, None)
        ciphertext = key.public_key().encrypt(b"session secret", pad)
        assert key.decrypt(ciphertext, pad) == b"session secret"


def test_the_version_stays_pinned_after_rotation(emulator: Any, make_key: Any) -> None:

    ref = make_key("EC", curve="P-256")
    key = load_private_key(ref)
    pinned = key.ref.version
    rotated = default_session().keys.rotate(ref)
    assert rotated.info.version != pinned
    _csr(key)
    name = ref.rsplit(":", 1)[1]
    assert _signs(emulator, name, pinned) and not _signs(emulator, name, rotated.info.version)
    assert (
        default_session().open_key(ref).ref.version == rotated.info.version
    )  # a new open sees the new version


def test_one_csr_costs_one_get_and_one_sign_then_only_the_sign(emulator: Any, make_key: Any) -> None:
    ref = make_key("EC", curve="P-256")
    name = ref.rsplit(":", 1)[1]
    keycache.forget(ref)
    start = len([e for e in emulator.audit() if e.get("key") == name])
    key = load_private_key(ref)
    _csr(key)
    ops = [e["operation"] for e in emulator.audit() if e.get("key") == name][start:]
    assert len(ops) == 2 and ops[1] == "sign", ops  # read the public key, sign
    pinned = str(key.ref)
    with Session() as fresh:  # as a new process: an empty memory cache, the disk cache left
        _csr(load_private_key(pinned, session=fresh))
    ops = [e["operation"] for e in emulator.audit() if e.get("key") == name][start:]
    assert len(ops) == 3 and ops[2] == "sign", ops  # the sign alone


def test_clients_are_shared_within_the_process(rsa_ref: str, ec_refs: dict[str, str]) -> None:
    a, b = default_session().open_key(rsa_ref), default_session().open_key(ec_refs["P-256"])
    assert a._service is b._service
    assert a._service.transport is b._service.transport


def test_missing_key_is_not_found(emulator: Any) -> None:
    with pytest.raises(NotFoundError, match="no key") as info:
        default_session().open_key(f"managedhsm:{HSM}:{unique('missing')}")
    assert "hsmcert key list --hsm local-hsm" in str(info.value.remedy)


def test_disabled_and_expired_keys_say_so(emulator: Any, make_key: Any) -> None:
    import datetime

    disabled = make_key("EC", curve="P-256")
    expired = make_key("EC", curve="P-256")
    session = default_session()
    client = session.clients(session.service_endpoint("managedhsm", HSM)).key_client
    client.update_key_properties(disabled.rsplit(":", 1)[1], enabled=False)
    past = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=1)
    client.update_key_properties(expired.rsplit(":", 1)[1], expires_on=past)
    keycache.forget(disabled)
    keycache.forget(expired)  # as in a new process: nothing cached
    with pytest.raises(PermissionDeniedError, match="is disabled") as info:
        default_session().open_key(disabled)
    assert "--enabled true" in str(info.value.remedy)
    with pytest.raises(PermissionDeniedError, match="expired"):
        default_session().open_key(expired)


def test_a_403_names_the_role_scope_and_grant_command(emulator: Any, rsa_ref: str) -> None:
    from hsmcert.azure.credentials import StaticTokenCredential

    outsider = StaticTokenCredential(emulator.token(principal="outsider"))
    name = rsa_ref.rsplit(":", 1)[1]
    as_outsider = Session(credential=outsider, cache=default_session().key_cache)
    with pytest.raises(PermissionDeniedError) as info:
        as_outsider.open_key(rsa_ref, refresh=True)
    remedy = str(info.value.remedy)
    assert "keys/read/action" in remedy and "Managed HSM Crypto User" in remedy and f"/keys/{name}" in remedy
    assert f"hsmcert grant --hsm {HSM}" in remedy and f"--key {name}" in remedy
    assert info.value.exit_code == 4
    cached = as_outsider.open_key(rsa_ref)  # the public key is cached: the sign is refused
    with pytest.raises(PermissionDeniedError, match="refused sign") as info:
        cached.sign_digest("RS256", bytes(32))
    assert "keys/sign/action" in str(info.value.remedy)


def test_an_unreachable_service_is_reported(emulator: Any) -> None:
    with pytest.raises(UnreachableError, match="Cannot reach"):
        Session(endpoint="https://127.0.0.1:9", ca_bundle=str(emulator.ca)).open_key(f"managedhsm:{HSM}:k")


class _LyingKey(hsm.HsmKey):
    """An HsmKey whose HSM answers with a corrupted signature (a broken service or emulator)."""

    def _crypto_client(self) -> Any:
        real = super()._crypto_client()

        class Liar:
            def sign(self, alg: str, digest: bytes) -> Any:
                result = real.sign(alg, digest)
                sig = bytearray(result.signature)
                sig[len(sig) // 2] ^= 0x01
                return type("R", (), {"signature": bytes(sig)})()

        return Liar()


@pytest.mark.parametrize("which", ["rsa", "ec"])
def test_a_wrong_signature_from_the_hsm_is_never_returned(
    rsa_ref: str, ec_refs: dict[str, str], which: str, tmp_path: Path
) -> None:
    from hsmcert.signer import private_key_for

    opened = default_session().open_key(rsa_ref if which == "rsa" else ec_refs["P-256"])
    liar = _LyingKey(opened.ref, opened.info, opened._service)
    key = private_key_for(liar)
    out = tmp_path / "req.pem"
    with pytest.raises(VerificationError, match="does not verify") as info:
        out.write_bytes(_csr(key).public_bytes(serialization.Encoding.PEM))
    assert info.value.exit_code == 6 and "Nothing was written" in str(info.value.remedy)
    assert not out.exists()


@pytest.mark.parametrize("alg", [None, "PS384", "RS512"])
def test_sign_kwargs_make_the_requested_algorithm(rsa_ref: str, alg: str | None) -> None:
    from hsmcert.pki.signing import sign_kwargs

    key = load_private_key(rsa_ref)
    csr = _csr(key, **sign_kwargs(key, alg)[1])
    assert csr.is_signature_valid
    expected = {None: "sha256WithRSAEncryption", "PS384": "rsassaPss", "RS512": "sha512WithRSAEncryption"}[
        alg
    ]
    assert csr.signature_algorithm_oid._name == expected


def test_sign_kwargs_refuse_an_algorithm_for_another_key_type(ec_refs: dict[str, str]) -> None:
    from hsmcert.pki.signing import sign_kwargs

    key = load_private_key(ec_refs["P-384"])
    assert sign_kwargs(key)[1]["algorithm"].name == "sha384"
    with pytest.raises(UsageError, match="needs an RSA key"):
        sign_kwargs(key, "PS256")
    with pytest.raises(UsageError, match="needs a P-256 key"):
        sign_kwargs(key, "ES256")


def test_throttling_and_unavailability_are_ridden_out(emulator: Any, make_key: Any) -> None:
    ref = make_key("EC", curve="P-256")
    keycache.forget(ref)
    try:
        emulator.set_faults(throttle=0.15, unavailable=0.1, retry_after=0, services=[HSM])
        for _ in range(4):
            keycache.forget(ref)
            key = load_private_key(ref)
            assert _csr(key).is_signature_valid
    finally:
        emulator.set_faults()


def test_key_vault_keys_sign_too(emulator: Any) -> None:

    ref = f"vault:local-vault:{unique('kv')}"
    made = default_session().keys.create(ref, "RSA", size=2048)
    assert made.to_json()["service"] == "vault:local-vault"
    key = load_private_key(ref)
    assert _csr(key, rsa_padding=padding.PSS(padding.MGF1(hashes.SHA256()), 32)).is_signature_valid
    with pytest.raises(UsageError, match="only in Managed HSM"):
        default_session().keys.create(f"vault:local-vault:{unique('aes')}", "oct")
