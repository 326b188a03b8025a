"""The provider in the real openssl binary, with the agent and the emulator behind it.

Every signature is proved remote by the emulator's audit log (operation ``sign`` on the key), and the
public key in each CSR/certificate is the HSM key's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.native.conftest import HsmKeys, hsm_signs, ok, run, s_client, s_server, served


@pytest.fixture
def env(native: Any, agent: Any) -> dict[str, str]:
    return native.openssl_env(agent.socket)


def _pubkey(env: dict[str, str], key: str | Path, out: Path) -> Path:
    ok(["openssl", "pkey", "-in", str(key), "-pubout", "-out", str(out)], env)
    return out


@pytest.mark.parametrize(
    ("kind", "sigopts", "alg"),
    [
        ("rsa", [], "RS256"),
        ("rsa", ["-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:digest"], "PS256"),
        ("ec", [], "ES256"),
        ("ec384", [], "ES384"),
    ],
)
def test_req_new_and_x509_signed_in_the_hsm(
    env: dict[str, str], emulator: Any, agent: Any, hsm_keys: HsmKeys, tmp_path: Path,
    kind: str, sigopts: list[str], alg: str,
) -> None:  # fmt: skip
    ref = getattr(hsm_keys, kind)
    before = hsm_signs(emulator, ref)
    csr, crt = tmp_path / "req.csr", tmp_path / "self.crt"
    ok(["openssl", "req", "-new", "-key", ref, "-subj", "/CN=req.example", *sigopts, "-out", str(csr)], env)
    ok(["openssl", "req", "-x509", "-key", ref, "-subj", "/CN=self.example", "-days", "2", *sigopts,
        "-out", str(crt)], env)  # fmt: skip
    plain = {"PATH": "/usr/bin:/bin", "OPENSSL_CONF": "/dev/null"}
    assert "verify OK" in ok(["openssl", "req", "-in", str(csr), "-verify", "-noout"], plain).stderr
    assert ok(["openssl", "verify", "-CAfile", str(crt), str(crt)], plain).stdout.strip().endswith("OK")
    pub = _pubkey(env, ref, tmp_path / "pub.pem").read_text()
    assert ok(["openssl", "req", "-in", str(csr), "-pubkey", "-noout"], plain).stdout == pub
    if alg.startswith("PS"):
        text = ok(["openssl", "x509", "-in", str(crt), "-noout", "-text"], plain).stdout
        assert "rsassaPss" in text and "Salt Length: 0x20" in text
    assert hsm_signs(emulator, ref) == before + 2
    records = [r for r in agent.audit() if r["op"] == "sign" and r["key"] == ref]
    assert records[-1]["alg"] == alg and records[-1]["client"].startswith("hsmcert-provider/")


def test_x509_req_with_an_hsm_ca_key(
    env: dict[str, str], emulator: Any, hsm_keys: HsmKeys, tmp_path: Path
) -> None:
    plain = {"PATH": "/usr/bin:/bin", "OPENSSL_CONF": "/dev/null"}
    ca = tmp_path / "ca.crt"
    ok(["openssl", "req", "-x509", "-key", hsm_keys.ec, "-subj", "/CN=HSM CA", "-days", "5",
        "-addext", "basicConstraints=critical,CA:true", "-addext", "keyUsage=critical,keyCertSign",
        "-out", str(ca)], env)  # fmt: skip
    leaf_key, csr, leaf = tmp_path / "leaf.key", tmp_path / "leaf.csr", tmp_path / "leaf.crt"
    ok(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", str(leaf_key), "-subj", "/CN=leaf.example", "-out", str(csr)], plain)  # fmt: skip
    before = hsm_signs(emulator, hsm_keys.ec)
    ok(["openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", hsm_keys.ec,
        "-CAcreateserial", "-days", "2", "-out", str(leaf)], env, cwd=tmp_path)  # fmt: skip
    assert hsm_signs(emulator, hsm_keys.ec) == before + 1
    assert ok(["openssl", "verify", "-CAfile", str(ca), str(leaf)], plain).stdout.strip().endswith("OK")


def test_dgst_sign_then_verify_with_the_public_key(
    env: dict[str, str], emulator: Any, hsm_keys: HsmKeys, tmp_path: Path
) -> None:
    plain = {"PATH": "/usr/bin:/bin", "OPENSSL_CONF": "/dev/null"}
    data = tmp_path / "artifact.bin"
    data.write_bytes(b"release artifact\n" * 1000)
    for ref, digest in ((hsm_keys.rsa, "-sha512"), (hsm_keys.ec, "-sha256")):
        sig = tmp_path / "artifact.sig"
        before = hsm_signs(emulator, ref)
        ok(["openssl", "dgst", digest, "-sign", ref, "-out", str(sig), str(data)], env)
        assert hsm_signs(emulator, ref) == before + 1
        pub = _pubkey(env, ref, tmp_path / "pub.pem")
        result = ok(
            ["openssl", "dgst", digest, "-verify", str(pub), "-signature", str(sig), str(data)], plain
        )
        assert "Verified OK" in result.stdout


def test_pkeyutl_decrypts_oaep_in_the_hsm(
    env: dict[str, str], emulator: Any, hsm_keys: HsmKeys, tmp_path: Path
) -> None:
    plain = {"PATH": "/usr/bin:/bin", "OPENSSL_CONF": "/dev/null"}
    pub = _pubkey(env, hsm_keys.rsa, tmp_path / "pub.pem")
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"the session key\n")
    for md in ("sha1", "sha256"):
        enc = tmp_path / f"secret.{md}.enc"
        opts = ["-pkeyopt", "rsa_padding_mode:oaep", "-pkeyopt", f"rsa_oaep_md:{md}"]
        ok(["openssl", "pkeyutl", "-encrypt", "-pubin", "-inkey", str(pub), *opts, "-in", str(secret),
            "-out", str(enc)], plain)  # fmt: skip
        result = ok(["openssl", "pkeyutl", "-decrypt", "-inkey", hsm_keys.rsa, *opts, "-in", str(enc)], env)
        assert result.stdout == "the session key\n"
    key = HsmKeys.name(hsm_keys.rsa)
    assert sum(1 for e in emulator.audit() if e.get("operation") == "decrypt" and e.get("key") == key) >= 2


def test_private_key_export_is_refused(env: dict[str, str], hsm_keys: HsmKeys) -> None:
    result = run(["openssl", "pkey", "-in", hsm_keys.rsa], env)
    assert result.returncode != 0
    assert "stays in the HSM" in result.stderr
    assert "PRIVATE KEY" not in result.stdout


def test_unsupported_choices_are_refused_clearly(
    env: dict[str, str], hsm_keys: HsmKeys, tmp_path: Path
) -> None:
    csr = tmp_path / "x.csr"
    result = run(
        ["openssl", "req", "-new", "-key", hsm_keys.rsa, "-subj", "/CN=x", "-sha1", "-out", str(csr)], env
    )
    assert result.returncode != 0 and "SHA-256, SHA-384 or SHA-512" in result.stderr
    result = run(["openssl", "req", "-new", "-key", hsm_keys.rsa, "-subj", "/CN=x", "-sigopt",
                  "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:max", "-out", str(csr)], env)  # fmt: skip
    assert result.returncode != 0 and "salt as long as the digest" in result.stderr


@pytest.mark.parametrize("kind", ["rsa", "ec"])
@pytest.mark.parametrize("version", ["-tls1_2", "-tls1_3"])
def test_s_server_with_a_pem_reference_key(
    env: dict[str, str],
    native: Any,
    emulator: Any,
    hsm_keys: HsmKeys,
    tmp_path: Path,
    kind: str,
    version: str,
) -> None:
    from hsmcert.provider import pem_ref

    ref = getattr(hsm_keys, kind)
    key = tmp_path / "server.key"
    key.write_bytes(pem_ref(ref))
    crt = tmp_path / "server.crt"
    ok(["openssl", "req", "-x509", "-key", str(key), "-subj", "/CN=localhost", "-addext",
        "subjectAltName=DNS:localhost", "-days", "2", "-out", str(crt)], env)  # fmt: skip
    before = hsm_signs(emulator, ref)
    with s_server(env, crt, key) as port:
        result = s_client(port, crt, version)
    assert served(result), result.stdout
    assert ("TLSv1.3" if version == "-tls1_3" else "TLSv1.2") in result.stdout
    assert hsm_signs(emulator, ref) >= before + 1


def test_s_server_with_a_store_uri_key(
    env: dict[str, str], emulator: Any, hsm_keys: HsmKeys, tmp_path: Path
) -> None:
    crt = tmp_path / "server.crt"
    ok(["openssl", "req", "-x509", "-key", hsm_keys.ec, "-subj", "/CN=localhost", "-days", "2",
        "-out", str(crt)], env)  # fmt: skip
    before = hsm_signs(emulator, hsm_keys.ec)
    with s_server(env, crt, hsm_keys.ec) as port:
        result = s_client(port, crt, "-tls1_3")
    assert served(result), result.stdout
    assert hsm_signs(emulator, hsm_keys.ec) == before + 1


def test_sanitizer_build_in_openssl_has_no_memory_errors_or_leaks(
    native: Any, agent: Any, hsm_keys: HsmKeys, tmp_path: Path
) -> None:
    """The ASAN+UBSan build inside the real openssl binary (which frees everything at exit)."""
    from hsmcert.provider import pem_ref

    env = native.asan_openssl_env(agent.socket)
    pem = tmp_path / "ec.key"
    pem.write_bytes(pem_ref(hsm_keys.ec))
    secret = tmp_path / "secret"
    secret.write_bytes(b"x" * 20)
    pub = _pubkey(env, hsm_keys.rsa, tmp_path / "rsa.pub")
    enc = tmp_path / "secret.enc"
    oaep = ["-pkeyopt", "rsa_padding_mode:oaep", "-pkeyopt", "rsa_oaep_md:sha256"]
    ok(["openssl", "pkeyutl", "-encrypt", "-pubin", "-inkey", str(pub), *oaep, "-in", str(secret),
        "-out", str(enc)], env)  # fmt: skip
    commands = [
        ["openssl", "req", "-new", "-key", hsm_keys.rsa, "-subj", "/CN=a", "-sigopt", "rsa_padding_mode:pss",
         "-out", str(tmp_path / "a.csr")],
        ["openssl", "req", "-x509", "-key", str(pem), "-subj", "/CN=b", "-out", str(tmp_path / "b.crt")],
        ["openssl", "pkeyutl", "-decrypt", "-inkey", hsm_keys.rsa, *oaep, "-in", str(enc)],
        ["openssl", "dgst", "-sha384", "-sign", hsm_keys.rsa, "-out", str(tmp_path / "s.sig"), str(secret)],
    ]  # fmt: skip
    for command in commands:
        result = run(command, env)
        assert result.returncode == 0, result.stderr
        assert "Sanitizer" not in result.stderr and "runtime error" not in result.stderr, result.stderr
    # error paths: an unknown key, a refused algorithm, an agent that is not there
    failing = [
        (env, ["openssl", "req", "-new", "-key", hsm_keys.rsa + "-missing", "-subj", "/CN=a", "-noout"]),
        (env, ["openssl", "req", "-new", "-key", hsm_keys.ec, "-sha1", "-subj", "/CN=a", "-noout"]),
        (env, ["openssl", "pkey", "-in", hsm_keys.ec]),
    ]
    down = dict(env)
    down["OPENSSL_CONF"] = str(native.openssl_cnf(tmp_path / "none.sock", module=native.asan_path))
    failing.append((down, ["openssl", "req", "-new", "-key", hsm_keys.ec, "-subj", "/CN=a", "-noout"]))
    for command_env, command in failing:
        result = run(command, command_env)
        assert result.returncode not in (0, 23), result.stderr
        assert "Sanitizer" not in result.stderr and "runtime error" not in result.stderr, result.stderr


@pytest.mark.parametrize("kind", ["ec", "ec384"])
@pytest.mark.parametrize("digest", ["-sha256", "-sha384", "-sha512"])
def test_ecdsa_with_any_sha2_on_any_curve(
    env: dict[str, str], hsm_keys: HsmKeys, tmp_path: Path, kind: str, digest: str
) -> None:
    """The HSM signs ES256 on P-256 and ES384 on P-384 only; the agent fits other SHA-2 digests to the
    curve (ECDSA's own truncation) so that the signature verifies as ECDSA with the hash asked for."""
    plain = {"PATH": "/usr/bin:/bin", "OPENSSL_CONF": "/dev/null"}
    ref = getattr(hsm_keys, kind)
    data, sig = tmp_path / "data", tmp_path / "data.sig"
    data.write_bytes(b"payload")
    ok(["openssl", "dgst", digest, "-sign", ref, "-out", str(sig), str(data)], env)
    pub = _pubkey(env, ref, tmp_path / "pub.pem")
    result = ok(["openssl", "dgst", digest, "-verify", str(pub), "-signature", str(sig), str(data)], plain)
    assert "Verified OK" in result.stdout


def test_tls12_client_preferring_sha384_with_a_p256_server_key(
    env: dict[str, str], hsm_keys: HsmKeys, tmp_path: Path
) -> None:
    from hsmcert.provider import pem_ref

    key, crt = tmp_path / "server.key", tmp_path / "server.crt"
    key.write_bytes(pem_ref(hsm_keys.ec))
    ok(
        [
            "openssl",
            "req",
            "-x509",
            "-key",
            str(key),
            "-subj",
            "/CN=localhost",
            "-days",
            "2",
            "-out",
            str(crt),
        ],
        env,
    )
    with s_server(env, crt, key) as port:
        result = s_client(port, crt, "-tls1_2", "-sigalgs", "ECDSA+SHA384:ECDSA+SHA256")
    assert served(result), result.stdout
    assert "Peer signing digest: SHA384" in result.stdout
