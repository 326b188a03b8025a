"""hsmcert exec: a private agent and an OPENSSL_CONF around one command, with the real openssl."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization


def _hsmcert(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hsmcert", *args], capture_output=True, text=True, timeout=120, cwd=cwd
    )


def test_exec_openssl_req_signs_in_the_hsm(
    emulator: Any, native: Any, agent_keys: dict[str, str], tmp_path: Path
) -> None:
    ref = agent_keys["p256"]
    audit = tmp_path / "audit.jsonl"
    csr_path = tmp_path / "req.pem"
    result = _hsmcert(
        "exec", "--audit", str(audit), "--",
        "openssl", "req", "-new", "-key", ref, "-subj", "/CN=exec.example", "-out", str(csr_path),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    csr = x509.load_pem_x509_csr(csr_path.read_bytes())
    assert csr.is_signature_valid
    records = [json.loads(line) for line in audit.read_text().splitlines()]
    signs = [r for r in records if r["op"] == "sign" and r["result"] == "ok"]
    assert signs and signs[-1]["key"] == ref and signs[-1]["alg"] == "ES256"
    pubkeys = [r for r in records if r["op"] == "pubkey"]
    assert pubkeys
    from hsmcert.session import default_session

    spki = default_session().open_key(ref).spki_der
    assert (
        csr.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        == spki
    )
    key = ref.rsplit(":", 1)[1]
    assert any(e.get("operation") == "sign" and e.get("key") == key for e in emulator.audit())


def test_exec_passes_the_exit_status_and_cleans_up(emulator: Any, native: Any, tmp_path: Path) -> None:
    script = (
        "import os, sys; conf = os.environ['OPENSSL_CONF']; print(conf); "
        "print(os.environ['HSMCERT_AGENT_SOCKET']); sys.exit(3)"
    )
    result = _hsmcert("exec", "--", sys.executable, "-c", script)
    assert result.returncode == 3, result.stderr
    conf, socket_path = result.stdout.split()
    assert not Path(conf).exists() and not Path(socket_path).exists()
    assert "hsmcert" in conf


def test_exec_leaves_the_commands_own_options_alone(emulator: Any, native: Any) -> None:
    """Without ``--``, options after the command's name are the command's: ``-v`` and ``-q`` are not taken
    as hsmcert's --verbose and --quiet."""
    script = "import sys; print(sys.argv[1:])"
    result = _hsmcert("exec", sys.executable, "-c", script, "-v", "-q", "--output", "json")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['-v', '-q', '--output', 'json']"


def test_exec_of_a_missing_command_exits_127_with_one_line(emulator: Any, native: Any) -> None:
    result = _hsmcert("exec", "--", "no-such-command-hsmcert")
    assert result.returncode == 127, result.stderr
    assert "no-such-command-hsmcert" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_exec_of_a_file_that_cannot_run_exits_126(emulator: Any, native: Any, tmp_path: Path) -> None:
    script = tmp_path / "not-executable"
    script.write_text("#!/bin/sh\nexit 0\n")
    result = _hsmcert("exec", "--", str(script))
    assert result.returncode == 126, result.stderr
    assert "Traceback" not in result.stderr


def _exec_environment(env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str], dict[str, str]]:
    """``hsmcert exec`` run with ``env``, and the environment its command saw."""
    script = "import json, os; print(json.dumps(dict(os.environ)))"
    result = subprocess.run(
        [sys.executable, "-m", "hsmcert", "exec", "--", sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    return result, json.loads(result.stdout)


def test_exec_keeps_credentials_from_the_command(emulator: Any, native: Any) -> None:
    from hsmcert.agent.run import CREDENTIAL_VARIABLES

    env = {**os.environ, **{name: f"secret-{i}" for i, name in enumerate(CREDENTIAL_VARIABLES)}}
    env["HSMCERT_EXEC_TEST_KEPT"] = "kept"
    result, child = _exec_environment(env)
    assert not set(child) & set(CREDENTIAL_VARIABLES)
    assert "secret-" not in result.stdout
    assert child["HSMCERT_EXEC_TEST_KEPT"] == "kept" and child["HSMCERT_AGENT_SOCKET"]
    assert "AZURE_CLIENT_SECRET" in CREDENTIAL_VARIABLES and "IDENTITY_HEADER" in CREDENTIAL_VARIABLES


@pytest.mark.process
def test_exec_without_a_command_is_a_usage_error() -> None:
    result = _hsmcert("exec")
    assert result.returncode == 2 and "Traceback" not in result.stderr


def test_exec_openssl_dgst_pss_and_pkeyutl_oaep(
    emulator: Any, native: Any, agent_keys: dict[str, str], tmp_path: Path
) -> None:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    from hsmcert.session import default_session

    ref = agent_keys["rsa"]
    public = default_session().open_key(ref).public_key
    assert isinstance(public, rsa.RSAPublicKey)
    data = tmp_path / "data.txt"
    data.write_bytes(b"signed through hsmcert exec\n")
    signature = tmp_path / "sig.bin"
    result = _hsmcert(
        "exec", "--",
        "openssl", "dgst", "-sha256", "-sign", ref, "-sigopt", "rsa_padding_mode:pss",
        "-sigopt", "rsa_pss_saltlen:digest", "-out", str(signature), str(data),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    public.verify(
        signature.read_bytes(),
        data.read_bytes(),
        padding.PSS(padding.MGF1(hashes.SHA256()), 32),
        hashes.SHA256(),
    )
    secret = os.urandom(24)
    ciphertext = tmp_path / "ct.bin"
    ciphertext.write_bytes(
        public.encrypt(secret, padding.OAEP(padding.MGF1(hashes.SHA256()), hashes.SHA256(), None))
    )
    plain = tmp_path / "plain.bin"
    result = _hsmcert(
        "exec", "--",
        "openssl", "pkeyutl", "-decrypt", "-inkey", ref, "-pkeyopt", "rsa_padding_mode:oaep",
        "-pkeyopt", "rsa_oaep_md:sha256", "-pkeyopt", "rsa_mgf1_md:sha256",
        "-in", str(ciphertext), "-out", str(plain),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert plain.read_bytes() == secret


def test_exec_removes_credential_variables_by_rule_not_only_by_name(emulator: Any, native: Any) -> None:
    secrets = (
        "ARM_CLIENT_SECRET",
        "ARM_CLIENT_CERTIFICATE_PASSWORD",
        "ARM_OIDC_TOKEN",
        "ARM_OIDC_REQUEST_TOKEN",
        "AZURE_CLIENT_ASSERTION",
        "AZURE_CLIENT_CERTIFICATE_PASSWORD",
        "MHSM_PIN_PASSWORD",
        "HSMCERT_SOME_TOKEN",
    )
    kept = {"AZURE_CLIENT_ID": "id", "ARM_TENANT_ID": "tenant", "MY_APP_TOKEN": "the command's own"}
    env = {**os.environ, **{name: "secret-value" for name in secrets}, **kept}
    result, child = _exec_environment(env)
    assert "secret-value" not in result.stdout, sorted(set(child) & set(secrets))
    assert {name: child.get(name) for name in kept} == kept
    assert child["HSMCERT_AGENT_SOCKET"] and child["OPENSSL_CONF"]
