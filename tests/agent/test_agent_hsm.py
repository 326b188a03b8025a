"""The agent in front of the emulator: every operation over the real socket, checked with cryptography."""

from __future__ import annotations

import hashlib
import os
import threading
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from hsmcert.agent.client import AgentError
from hsmcert.agent.protocol import Status
from tests.fixtures.agent import AgentProcess, wait_until

HASHES = {"256": hashes.SHA256(), "384": hashes.SHA384(), "512": hashes.SHA512()}


def _hsm_signs(emulator: Any, ref: str, version: str | None = None) -> list[dict[str, Any]]:
    key = ref.rsplit(":", 1)[1]
    return [
        e
        for e in emulator.audit()
        if e.get("key") == key and e.get("operation") == "sign" and version in (None, e.get("version"))
    ]


def _verify(spki: bytes, alg: str, digest: bytes, signature: bytes) -> None:
    public = serialization.load_der_public_key(spki)
    hash_alg = HASHES[alg[2:5]]
    if isinstance(public, rsa.RSAPublicKey):
        pad: padding.AsymmetricPadding = (
            padding.PSS(padding.MGF1(hash_alg), hash_alg.digest_size)
            if alg.startswith("PS")
            else padding.PKCS1v15()
        )
        public.verify(signature, digest, pad, Prehashed(hash_alg))
    else:
        assert isinstance(public, ec.EllipticCurvePublicKey)
        public.verify(signature, digest, ec.ECDSA(Prehashed(hash_alg)))  # DER, or this raises


def test_pubkey_returns_spki_type_and_pinned_version(agent: AgentProcess, agent_keys: dict[str, str]) -> None:
    with agent.client() as client:
        rsa_info = client.pubkey(agent_keys["rsa"])
        ec_info = client.pubkey(agent_keys["p256"])
    assert rsa_info.kty == "RSA" and ec_info.kty == "EC"
    assert len(rsa_info.version) == 32
    public = serialization.load_der_public_key(rsa_info.spki)
    assert isinstance(public, rsa.RSAPublicKey) and public.key_size == 2048
    ec_public = serialization.load_der_public_key(ec_info.spki)
    assert isinstance(ec_public, ec.EllipticCurvePublicKey) and ec_public.curve.name == "secp256r1"


@pytest.mark.parametrize(
    ("key", "alg"),
    [
        ("rsa", "RS256"),
        ("rsa", "RS512"),
        ("rsa", "PS256"),
        ("rsa", "PS384"),
        ("p256", "ES256"),
        ("p384", "ES384"),
    ],
)
def test_signatures_are_made_in_the_hsm_and_verify(
    agent: AgentProcess, emulator: Any, agent_keys: dict[str, str], key: str, alg: str
) -> None:
    ref = agent_keys[key]
    digest = hashlib.new(HASHES[alg[2:5]].name, f"message for {alg}".encode()).digest()
    with agent.client() as client:
        info = client.pubkey(ref)
        before = len(_hsm_signs(emulator, ref, info.version))
        signature = client.sign(ref, alg, digest, version=info.version)
    _verify(info.spki, alg, digest, signature)
    assert len(_hsm_signs(emulator, ref, info.version)) == before + 1  # the HSM made it
    wait_until(lambda: any(r["op"] == "sign" and r["alg"] == alg and r["key"] == ref for r in agent.audit()))
    record = [r for r in agent.audit() if r["op"] == "sign" and r["alg"] == alg and r["key"] == ref][-1]
    assert record["result"] == "ok" and record["version"] == info.version
    assert record["uid"] == os.getuid() and record["pid"] == os.getpid()


@pytest.mark.parametrize(
    ("alg", "hash_alg"), [("RSA-OAEP", hashes.SHA1()), ("RSA-OAEP-256", hashes.SHA256())]
)
def test_decrypt_oaep(agent: AgentProcess, agent_keys: dict[str, str], alg: str, hash_alg: Any) -> None:
    with agent.client() as client:
        info = client.pubkey(agent_keys["rsa"])
        public = serialization.load_der_public_key(info.spki)
        assert isinstance(public, rsa.RSAPublicKey)
        secret = os.urandom(32)
        ciphertext = public.encrypt(secret, padding.OAEP(padding.MGF1(hash_alg), hash_alg, None))
        assert client.decrypt(agent_keys["rsa"], alg, ciphertext) == secret
    assert any(r["op"] == "decrypt" and r["result"] == "ok" for r in agent.audit())


def test_errors_have_their_status_and_the_connection_survives(
    agent: AgentProcess, agent_keys: dict[str, str]
) -> None:
    with agent.client() as client:
        cases = [
            (lambda: client.sign(agent_keys["rsa"], "ES256", b"\x01" * 32), Status.UNSUPPORTED),
            (lambda: client.sign(agent_keys["p256"], "ES384", b"\x01" * 48), Status.UNSUPPORTED),
            (lambda: client.decrypt(agent_keys["p256"], "RSA-OAEP", b"\x01" * 64), Status.UNSUPPORTED),
            (lambda: client.pubkey("managedhsm:local-hsm:no-such-key-here"), Status.NOT_FOUND),
            (
                lambda: client.sign(agent_keys["rsa"], "RS256", b"\x01" * 32, version="0" * 32),
                Status.NOT_FOUND,
            ),
            (lambda: client.decrypt(agent_keys["rsa"], "RSA-OAEP", b"\x01" * 10), Status.BAD_REQUEST),
        ]
        for call, status in cases:
            with pytest.raises(AgentError) as caught:
                call()
            assert caught.value.status is status, caught.value.message
            assert caught.value.message
        assert client.hello()[0] == 1


def test_a_restarted_agent_serves_the_same_client(agent: AgentProcess, agent_keys: dict[str, str]) -> None:
    digest = hashlib.sha256(b"across a restart").digest()
    with agent.client() as client:
        info = client.pubkey(agent_keys["p256"])
        client.sign(agent_keys["p256"], "ES256", digest)
        agent.restart()
        signature = client.sign(agent_keys["p256"], "ES256", digest)
    _verify(info.spki, "ES256", digest, signature)


def test_concurrent_clients(agent: AgentProcess, agent_keys: dict[str, str]) -> None:
    errors: list[BaseException] = []
    digest = hashlib.sha256(b"concurrent").digest()

    def work() -> None:
        try:
            with agent.client() as client:
                info = client.pubkey(agent_keys["p256"])
                for _ in range(5):
                    _verify(info.spki, "ES256", digest, client.sign(agent_keys["p256"], "ES256", digest))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
