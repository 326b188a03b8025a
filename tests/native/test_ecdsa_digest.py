"""ECDSA with a hash of another size than the key's curve (sanitizer build, real openssl and agent).

The provider sends the digest as it is with the curve's algorithm (ES256 on P-256, ES384 on P-384); the
agent brings it to the curve's size by the one ECDSA digest rule (hsmcert/jwa.py: a longer digest keeps its
leftmost bytes, a shorter one is left-padded with zeros), so the signature verifies with the public key and
the hash the caller used.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from tests.native.conftest import HsmKeys, hsm_signs, ok, run

PLAIN = {"PATH": "/usr/bin:/bin", "OPENSSL_CONF": "/dev/null"}


def _clean(result: Any) -> None:
    assert "Sanitizer" not in result.stderr and "runtime error" not in result.stderr, result.stderr[-3000:]


@pytest.mark.parametrize(
    ("kind", "digest", "alg"),
    [
        ("ec", "sha384", "ES256"),
        ("ec384", "sha256", "ES384"),
        ("ec", "sha512", "ES256"),
        ("ec384", "sha512", "ES384"),
    ],
)
def test_a_digest_of_another_size_is_signed_and_verifies(
    native: Any,
    agent: Any,
    emulator: Any,
    hsm_keys: HsmKeys,
    tmp_path: Path,
    kind: str,
    digest: str,
    alg: str,
) -> None:
    env = native.asan_openssl_env(agent.socket)
    ref = getattr(hsm_keys, kind)
    data = tmp_path / "artifact"
    data.write_bytes(b"release artifact\n" * 500)
    pub = tmp_path / "pub.pem"
    ok(["openssl", "pkey", "-in", ref, "-pubout", "-out", str(pub)], env)
    before = hsm_signs(emulator, ref)

    by_dgst = tmp_path / "dgst.sig"
    _clean(ok(["openssl", "dgst", f"-{digest}", "-sign", ref, "-out", str(by_dgst), str(data)], env))
    # pkeyutl signs the digest itself, as TLS does
    raw = tmp_path / "artifact.digest"
    raw.write_bytes(hashlib.new(digest, data.read_bytes()).digest())
    by_pkeyutl = tmp_path / "pkeyutl.sig"
    _clean(ok(["openssl", "pkeyutl", "-sign", "-inkey", ref, "-in", str(raw), "-out", str(by_pkeyutl)], env))

    for sig in (by_dgst, by_pkeyutl):
        verify = ["openssl", "dgst", f"-{digest}", "-verify", str(pub), "-signature", str(sig), str(data)]
        assert "Verified OK" in ok(verify, PLAIN).stdout
    assert hsm_signs(emulator, ref) == before + 2
    signs = [r for r in agent.audit() if r["op"] == "sign" and r["key"] == ref]
    assert [r["alg"] for r in signs[-2:]] == [alg, alg]


def test_the_digest_length_is_the_agents_to_judge(
    native: Any, agent: Any, hsm_keys: HsmKeys, tmp_path: Path
) -> None:
    """A 20-byte (SHA-1 sized) digest reaches the agent, which pads it; 16 bytes are refused by the agent."""
    env = native.asan_openssl_env(agent.socket)
    pub = tmp_path / "pub.pem"
    ok(["openssl", "pkey", "-in", hsm_keys.ec, "-pubout", "-out", str(pub)], env)
    short, sig = tmp_path / "short.digest", tmp_path / "short.sig"
    short.write_bytes(hashlib.sha1(b"legacy").digest())
    _clean(
        ok(["openssl", "pkeyutl", "-sign", "-inkey", hsm_keys.ec, "-in", str(short), "-out", str(sig)], env)
    )
    verify = [
        "openssl",
        "pkeyutl",
        "-verify",
        "-pubin",
        "-inkey",
        str(pub),
        "-in",
        str(short),
        "-sigfile",
        str(sig),
    ]
    assert "Signature Verified Successfully" in ok(verify, PLAIN).stdout

    tiny = tmp_path / "tiny.digest"
    tiny.write_bytes(b"\x01" * 16)
    result = run(
        ["openssl", "pkeyutl", "-sign", "-inkey", hsm_keys.ec, "-in", str(tiny), "-out", str(sig)], env
    )
    _clean(result)
    assert result.returncode != 0
    assert (
        "ES256 signs a digest of 20 to 64 bytes, not 16 bytes. (agent status BAD_REQUEST)" in result.stderr
    ), result.stderr[-3000:]
