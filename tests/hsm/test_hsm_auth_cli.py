"""Credentials, hsmcert whoami and hsmcert doctor."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

from hsmcert.azure.credentials import decode_claims
from hsmcert.session import default_session

from .conftest import HSM


def test_whoami_through_managed_identity(emulator: Any, cli: Any) -> None:
    result = cli("whoami", "--credential", "managed-identity", "--output", "json")
    assert result.code == 0, result.err
    data = json.loads(result.out)
    assert data["credential"] == "managed-identity"
    assert data["object_id"] == emulator.principal_id("admin")
    assert data["tenant_id"]


def test_whoami_with_a_token_from_the_environment_never_prints_it(emulator: Any) -> None:
    token = emulator.token()
    env = {**os.environ, "AZURE_CLI_ACCESS_TOKEN": token}
    env.pop("HSMCERT_ACCESS_TOKEN", None)
    done = subprocess.run(
        [sys.executable, "-m", "hsmcert", "whoami"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "credential: env-token" in done.stdout
    assert decode_claims(token)["oid"] in done.stdout
    assert token not in done.stdout + done.stderr
    assert token.split(".")[1] not in done.stdout + done.stderr


def test_auto_chain_prefers_the_environment_token(emulator: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HSMCERT_ACCESS_TOKEN", emulator.token())
    credential = default_session().credential
    assert credential.name == "auto" and credential.candidates[0][0] == "env-token"
    assert [n for n, _ in credential.candidates][-1] in ("managed-identity", "azure-cli")
    monkeypatch.setenv("HSMCERT_CREDENTIAL", "managed-identity")
    assert [n for n, _ in default_session().credential.candidates] == ["managed-identity"]


def test_doctor_passes_for_a_usable_key(emulator: Any, cli: Any, rsa_ref: str) -> None:
    result = cli("doctor", "--key", rsa_ref, "--output", "json")
    assert result.code == 0, result.out + result.err
    data = json.loads(result.out)
    assert data["ok"] is True
    assert [c["check"] for c in data["checks"]] == [
        "credential configuration", "token", "endpoint", "read key", "sign",
    ]  # fmt: skip
    text = cli("doctor", "--hsm", HSM)
    assert text.code == 0 and "ok   list keys" in text.out


def test_doctor_names_the_fix_for_a_missing_role(
    emulator: Any, cli: Any, rsa_ref: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HSMCERT_ACCESS_TOKEN", emulator.token(principal="stranger"))
    result = cli("doctor", "--key", rsa_ref, "--credential", "env-token")
    assert result.code == 4, result.out + result.err
    assert "FAIL read key" in result.out
    assert "hsmcert grant --hsm local-hsm --principal" in result.out
    assert emulator.principal_id("stranger") in result.out


def test_the_grant_command_in_a_403_remedy_fixes_it(
    emulator: Any, cli: Any, make_key: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shlex

    ref = make_key("EC", curve="P-256")
    monkeypatch.setenv("HSMCERT_ACCESS_TOKEN", emulator.token(principal="newcomer"))
    refused = cli("doctor", "--key", ref, "--credential", "env-token")
    assert refused.code == 4, refused.out
    command = next(line for line in refused.out.splitlines() if "hsmcert grant" in line)
    args = shlex.split(command[command.index("hsmcert grant") :])[1:]
    with monkeypatch.context() as m:
        m.delenv("HSMCERT_ACCESS_TOKEN")
        granted = cli(*args)  # as the administrator (the emulator's managed identity)
    assert granted.code == 0, granted.err
    fixed = cli("doctor", "--key", ref, "--credential", "env-token")
    assert fixed.code == 0, fixed.out + fixed.err


def test_doctor_checks_a_vault_key_with_a_key_vault_token(emulator: Any, cli: Any) -> None:
    from uuid import uuid4

    from hsmcert.azure.credentials import VAULT_SCOPE
    from hsmcert.doctor import run_checks
    from hsmcert.session import Session, default_session

    ref = f"vault:local-vault:doctor-{uuid4().hex[:8]}"
    default_session().keys.create(ref, "EC", curve="P-256")
    result = cli("doctor", "--key", ref, "--output", "json")
    assert result.code == 0, result.out + result.err
    assert json.loads(result.out)["ok"] is True
    with Session() as session:
        assert all(check.ok for check in run_checks(key=ref, session=session))
        assert (VAULT_SCOPE,) in session.credential._tokens  # the token asked for was Key Vault's
