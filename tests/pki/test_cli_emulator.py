"""hsmcert csr / selfsign / issue / inspect / verify end to end against the emulator.

Every signature happens in the emulator (its audit log shows it); openssl, pkilint and cryptography's path
validation check what was written. Errors: one line, the documented exit code, no file left behind.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from cryptography import x509

from tests.hsm.conftest import CliResult, run_cli

from .helpers import assert_chain_verifies, assert_csr_verifies, assert_lint_clean

HSM = "local-hsm"
KEYS = {
    "rsa2048": ("RSA", 2048, None),
    "rsa3072": ("RSA", 3072, None),
    "rsa4096": ("RSA", 4096, None),
    "p256": ("EC", None, "P-256"),
    "p384": ("EC", None, "P-384"),
    "p521": ("EC", None, "P-521"),
    "p256k": ("EC", None, "P-256K"),
}


@pytest.fixture(scope="module")
def keys(emulator: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """One key of each kind (unique names: the emulator is shared), and a public-key cache of our own."""
    from hsmcert.session import default_session

    old = os.environ.get("HSMCERT_CACHE_DIR")
    os.environ["HSMCERT_CACHE_DIR"] = str(tmp_path_factory.mktemp("pki-cache"))
    refs = {}
    for name, (kty, size, curve) in KEYS.items():
        refs[name] = f"managedhsm:{HSM}:pki-{name}-{uuid4().hex[:8]}"
        default_session().keys.create(refs[name], kty, size=size, curve=curve)
    yield refs
    if old is None:
        os.environ.pop("HSMCERT_CACHE_DIR", None)
    else:
        os.environ["HSMCERT_CACHE_DIR"] = old


def signs(emulator: Any, ref: str) -> list[dict[str, Any]]:
    key = ref.rsplit(":", 1)[1]
    return [e for e in emulator.audit() if e.get("key") == key and e["operation"] == "sign"]


def ok(result: CliResult) -> CliResult:
    assert result.code == 0, result.err
    return result


@pytest.mark.parametrize(
    ("name", "alg", "expected"),
    [
        ("rsa2048", "RS256", "RS256"),
        ("rsa2048", "PS256", "PS256"),
        ("rsa3072", "RS384", "RS384"),
        ("rsa3072", "PS384", "PS384"),
        ("rsa4096", "RS512", "RS512"),
        ("rsa4096", "PS512", "PS512"),
        ("p256", None, "ES256"),
        ("p384", None, "ES384"),
        ("p521", "ES512", "ES512"),
        ("p256k", None, "ES256K"),
    ],
)
def test_csr_and_selfsign_for_each_key_and_algorithm(
    emulator: Any, keys: dict[str, str], tmp_path: Path, name: str, alg: str | None, expected: str
) -> None:
    ref = keys[name]
    before = len(signs(emulator, ref))
    extra = ["--alg", alg] if alg else []
    csr_path, cert_path = tmp_path / "req.csr", tmp_path / "cert.pem"
    out = ok(
        run_cli(
            "csr",
            "--key",
            ref,
            "--subj",
            "/C=US/O=Acme\\, Inc./CN=www.example.com+serialNumber=1",
            "--san",
            "DNS:www.example.com,IP:192.0.2.1",
            "-o",
            str(csr_path),
            *extra,
        )
    )
    assert "wrote CSR" in out.out
    assert_csr_verifies(csr_path)
    data = json.loads(
        ok(
            run_cli(
                "--output",
                "json",
                "selfsign",
                "--key",
                ref,
                "--subj",
                "CN=svc.example.com,O=Acme",
                "--san",
                "DNS:svc.example.com",
                "--days",
                "30",
                "-o",
                str(cert_path),
                *extra,
            )
        ).out
    )
    assert data["algorithm"] == expected and data["kind"] == "certificate" and data["self_signed"]
    assert data["key"].startswith(ref + "?version=") and data["path"] == str(cert_path)
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    assert_chain_verifies(cert_path, cert_path)
    assert_lint_clean(cert)
    new = signs(emulator, ref)[before:]
    assert [e["alg"] for e in new] == [expected, expected] and all(e["result"] == "ok" for e in new)


def test_chain_root_intermediate_leaf(emulator: Any, keys: dict[str, str], tmp_path: Path) -> None:
    root, inter, leaf = (tmp_path / n for n in ("root.pem", "inter.pem", "leaf.pem"))
    inter_csr, leaf_csr = tmp_path / "inter.csr", tmp_path / "leaf.der"
    ok(
        run_cli(
            "selfsign",
            "--key",
            keys["p384"],
            "--subj",
            "/O=Acme/CN=Acme Root",
            "--profile",
            "root-ca",
            "--days",
            "3650",
            "-o",
            str(root),
        )
    )
    ok(run_cli("csr", "--key", keys["rsa3072"], "--subj", "/O=Acme/CN=Acme Issuing", "-o", str(inter_csr)))
    ok(
        run_cli(
            "issue",
            "--ca-key",
            keys["p384"],
            "--ca-cert",
            str(root),
            "--csr",
            str(inter_csr),
            "--profile",
            "intermediate-ca",
            "--days",
            "1825",
            "-o",
            str(inter),
        )
    )
    ok(run_cli("csr", "--key", keys["p256"], "--subj", "/CN=api.example.com", "--der", "-o", str(leaf_csr)))
    assert leaf_csr.read_bytes()[:1] == b"\x30"
    issued = json.loads(
        ok(
            run_cli(
                "--output",
                "json",
                "issue",
                "--ca-key",
                keys["rsa3072"],
                "--ca-cert",
                str(inter),
                "--csr",
                str(leaf_csr),
                "--alg",
                "PS256",
                "-o",
                str(leaf),
            )
        ).out
    )
    assert issued["extensions"]["subject_alt_names"] == ["DNS:api.example.com"]  # the CN, as the note says
    assert issued["issuer"] == "CN=Acme Issuing,O=Acme" and issued["algorithm"] == "PS256"
    assert_chain_verifies(leaf, root, inter)
    for path in (root, inter, leaf):
        assert_lint_clean(x509.load_pem_x509_certificate(path.read_bytes()))
    checked = json.loads(
        run_cli(
            "--output",
            "json",
            "verify",
            str(leaf),
            "--ca",
            str(root),
            "--untrusted",
            str(inter),
            "--key",
            keys["p256"],
            "--csr",
            str(leaf_csr),
        ).out
    )
    assert checked["ok"] and {c["name"] for c in checked["checks"]} >= {"chain", "key", "csr-key", "validity"}
    # the wrong key, or no intermediate: exit 6 and the reason
    bad = run_cli("verify", str(leaf), "--key", keys["p384"])
    assert bad.code == 6 and "key check failed" in bad.err
    # the right key, but no issuer to check the signature with: not a pass
    unchecked = run_cli("verify", str(leaf), "--key", keys["p256"])
    assert unchecked.code == 6 and "signature check failed: not checked" in unchecked.err
    bad = run_cli("verify", str(leaf), "--ca", str(root))
    assert bad.code == 6 and "chain check failed" in bad.err
    alone = run_cli("verify", str(leaf))
    assert alone.code == 2 and "nothing to check its signature against" in alone.err
    shown = json.loads(ok(run_cli("--output", "json", "inspect", str(inter))).out)
    assert shown["extensions"]["basic_constraints"] == {"ca": True, "path_length": 0}
    assert "keyCertSign" in shown["extensions"]["key_usage"]
    linted = ok(run_cli("inspect", "--lint", str(leaf))).out
    assert "lint:       clean" in linted and "rsassaPss (SHA256)" in linted


def test_stdout_der_and_json(keys: dict[str, str]) -> None:
    """Through the real executable: -o - writes PEM (or DER) to stdout; with JSON the PEM is in the document."""
    exe = [sys.executable, "-m", "hsmcert"]
    pem = subprocess.run(
        [*exe, "csr", "--key", keys["p256"], "--subj", "/CN=a.example", "-q"], capture_output=True, timeout=60
    )
    assert pem.returncode == 0 and pem.stdout.startswith(b"-----BEGIN CERTIFICATE REQUEST-----"), pem.stderr
    der = subprocess.run(
        [*exe, "selfsign", "--key", keys["p256"], "--subj", "/CN=a.example", "--format", "der", "-o", "-"],
        capture_output=True,
        timeout=60,
    )
    assert x509.load_der_x509_certificate(der.stdout).subject.rfc4514_string() == "CN=a.example"
    env = {**os.environ, "HSMCERT_OUTPUT": "json", "HSMCERT_CSR_SUBJ": "/CN=env.example"}
    js = subprocess.run(
        [*exe, "csr", "--key", keys["p256"]], capture_output=True, text=True, timeout=60, env=env
    )
    doc = json.loads(js.stdout)
    assert doc["kind"] == "csr" and doc["signature_valid"] and doc["pem"].startswith("-----BEGIN")
    assert doc["subject"] == "CN=env.example"


def _unusable_key(**properties: Any) -> str:
    """A new key whose properties are then changed (enabled=False, expires_on=...)."""
    from hsmcert.azure import keycache
    from hsmcert.session import default_session

    ref = f"managedhsm:{HSM}:pki-off-{uuid4().hex[:8]}"
    session = default_session()
    session.keys.create(ref, "EC", curve="P-256")
    client = session.clients(session.service_endpoint("managedhsm", HSM)).key_client
    client.update_key_properties(ref.rsplit(":", 1)[1], **properties)
    keycache.forget(ref)
    return ref


@pytest.mark.parametrize(
    ("case", "code", "words"),
    [
        ("missing-key", 3, "not found"),
        ("disabled-key", 4, "disabled"),
        ("expired-key", 4, "expired"),
        ("unreachable", 5, "Cannot reach"),
        ("no-role", 4, "hsmcert grant"),
        ("wrong-alg", 2, "needs an EC key"),
        ("bad-subject", 2, "Unknown subject attribute"),
        ("bad-san", 2, "not an IPv4 or IPv6 address"),
        ("exists", 7, "already exists"),
        ("issue-not-a-ca", 2, "not a CA certificate"),
    ],
)
def test_errors_one_line_exit_code_no_file(
    emulator: Any,
    keys: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    case: str,
    code: int,
    words: str,
) -> None:
    out = tmp_path / "out.pem"
    args = ["csr", "--key", keys["rsa2048"], "--subj", "/CN=a.example", "-o", str(out)]
    if case == "missing-key":
        args[2] = f"managedhsm:{HSM}:no-such-{uuid4().hex[:8]}"
    elif case == "disabled-key":
        args[2] = _unusable_key(enabled=False)
    elif case == "expired-key":
        args[2] = _unusable_key(expires_on=dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=1))
    elif case == "unreachable":
        args += ["--endpoint", "https://127.0.0.1:9", "--ca-bundle", str(emulator.ca)]
    elif case == "no-role":
        from hsmcert.azure import keycache

        args[2] = f"managedhsm:{HSM}:pki-noaccess-{uuid4().hex[:8]}"
        from hsmcert.session import default_session

        default_session().keys.create(args[2], "EC", curve="P-256")
        keycache.forget(args[2])
        monkeypatch.setenv("HSMCERT_ACCESS_TOKEN", emulator.token(principal="outsider"))
        args += ["--credential", "env-token"]
    elif case == "wrong-alg":
        args += ["--alg", "ES256"]
    elif case == "bad-subject":
        args[4] = "/CN=a/XX=b"
    elif case == "bad-san":
        args += ["--san", "DNS:a.example,IP:1.2.3"]
    elif case == "exists":
        out.write_bytes(b"keep me")
    elif case == "issue-not-a-ca":
        leaf = tmp_path / "leaf.pem"
        ok(run_cli("selfsign", "--key", keys["p256"], "--subj", "/CN=a.example", "-o", str(leaf)))
        ok(run_cli("csr", "--key", keys["p256"], "--subj", "/CN=b.example", "-o", str(tmp_path / "b.csr")))
        args = [
            "issue",
            "--ca-key",
            keys["p256"],
            "--ca-cert",
            str(leaf),
            "--csr",
            str(tmp_path / "b.csr"),
            "-o",
            str(out),
        ]
    before = sorted(p.name for p in tmp_path.iterdir())
    result = run_cli(*args)
    assert result.code == code, result.err
    lines = result.err.strip().splitlines()
    assert lines[0].startswith("error: ") and words in result.err, result.err
    assert len(lines) <= 2 and "Traceback" not in result.err  # the sentence and the remedy
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written, no temp file left
    if case == "exists":
        assert out.read_bytes() == b"keep me"


def test_inspect_and_verify_a_csr(keys: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / "r.csr"
    ok(
        run_cli(
            "csr",
            "--key",
            keys["p384"],
            "--subj",
            "/CN=x.example",
            "--profile",
            "tls-client",
            "-o",
            str(path),
        )
    )
    text = ok(run_cli("inspect", str(path))).out
    assert "certificate request" in text and "clientAuth" in text and "self-signature: valid" in text
    assert ok(run_cli("verify", str(path), "--key", keys["p384"])).out.count("ok ") == 2
    garbage = tmp_path / "g.pem"
    garbage.write_text("hello")
    bad = run_cli("inspect", str(garbage))
    assert bad.code == 2 and "holds no certificate or CSR" in bad.err
    assert run_cli("inspect", str(tmp_path / "none.pem")).code == 3


@pytest.mark.parametrize("command", ["csr", "selfsign"])
def test_a_wrong_signature_from_the_hsm_writes_nothing(
    keys: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    """The HSM answers with a corrupted signature (the signer test's lying HsmKey): exit 6, no file."""
    from hsmcert import signer
    from tests.hsm.test_hsm_signer import _LyingKey

    def lying(ref: str, session: Any = None) -> Any:
        opened = session.open_key(ref)
        return signer.private_key_for(_LyingKey(opened.ref, opened.info, opened._service))

    monkeypatch.setattr(signer, "load_private_key", lying)
    out = tmp_path / "out.pem"
    result = run_cli(command, "--key", keys["p256"], "--subj", "/CN=a.example", "-o", str(out))
    assert result.code == 6 and "does not verify" in result.err, result.err
    assert list(tmp_path.iterdir()) == []
