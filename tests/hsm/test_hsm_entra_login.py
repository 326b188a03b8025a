"""The service-principal and workload-identity credentials get real tokens end to end: azure-identity (MSAL's
tenant discovery and client-credentials flow, and the workload identity's client assertion) signs in at the
session emulator's Entra-ID-compatible login endpoint, and hsmcert uses those tokens against its Managed HSM."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from hsmcert.azure.credentials import _authority_options
from hsmcert.emulator import control
from tests.hsm.conftest import HSM, run_cli, unique

_VARS = (
    "HSMCERT_CREDENTIAL", "HSMCERT_ACCESS_TOKEN", "AZURE_CLI_ACCESS_TOKEN", "AZURE_CLIENT_ID",
    "AZURE_CLIENT_SECRET", "AZURE_CLIENT_CERTIFICATE_PATH", "AZURE_TENANT_ID", "AZURE_FEDERATED_TOKEN_FILE",
    "MHSM_CLIENT_ID", "MHSM_CLIENT_SECRET", "MHSM_TENANT_ID", "HSMCERT_MANAGED_IDENTITY_CLIENT_ID",
    "AZURE_AUTHORITY_HOST",
)  # fmt: skip


@pytest.fixture
def signed_in(emulator: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    """sign_in(principal, federated=False, mhsm=False): the variables of `hsmcert emulator credentials` set."""
    for name in _VARS:
        monkeypatch.delenv(name, raising=False)

    def sign_in(principal: str, federated: bool = False, mhsm: bool = False) -> dict[str, str]:
        token_file = tmp_path / f"{principal}.jwt" if federated else None
        env = control.credentials(emulator.data_dir, principal, token_file, mhsm)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        return env

    return sign_in


def _whoami(*args: str) -> dict[str, Any]:
    result = run_cli("--output", "json", "whoami", *args)
    assert result.code == 0, result.err
    return dict(json.loads(result.out))


def test_service_principal_with_azure_variables(emulator: Any, signed_in: Any) -> None:
    env = signed_in(unique("sp"))
    who = _whoami("--credential", "service-principal")
    assert who["credential"] == "service-principal"
    assert who["object_id"] == env["AZURE_CLIENT_ID"] and who["tenant_id"] == env["AZURE_TENANT_ID"]


def test_service_principal_with_the_pkcs11_librarys_variables(emulator: Any, signed_in: Any) -> None:
    env = signed_in(unique("mhsm"), mhsm=True)
    assert "AZURE_CLIENT_SECRET" not in env
    who = _whoami("--credential", "service-principal")
    assert who["object_id"] == env["MHSM_CLIENT_ID"] and who["tenant_id"] == env["MHSM_TENANT_ID"]


def test_workload_identity_with_a_federated_token_file(emulator: Any, signed_in: Any) -> None:
    env = signed_in(unique("wi"), federated=True)
    who = _whoami("--credential", "workload-identity", "--scope", "https://vault.azure.net/.default")
    assert who["credential"] == "workload-identity" and who["object_id"] == env["AZURE_CLIENT_ID"]


def test_the_automatic_chain_picks_the_service_principal(emulator: Any, signed_in: Any) -> None:
    env = signed_in(unique("auto"))  # the emulator's managed identity stays configured too
    who = _whoami()
    assert who["credential"] == "service-principal" and who["object_id"] == env["AZURE_CLIENT_ID"]


def test_a_role_grant_lets_the_principal_use_the_key(
    emulator: Any, signed_in: Any, make_key: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ref = make_key("EC", curve="P-256")
    env = signed_in(unique("ci"))
    monkeypatch.setenv("HSMCERT_CREDENTIAL", "service-principal")
    refused = run_cli("key", "show", "--key", ref)
    assert refused.code == 4 and "403" in refused.err and "Traceback" not in refused.err
    assert env["AZURE_CLIENT_ID"] in refused.err  # the remedy's grant command names this principal
    granted = run_cli(
        "grant", "--hsm", HSM, "--principal", env["AZURE_CLIENT_ID"], "--key", ref.rsplit(":", 1)[1],
        "--role", "crypto-user", "--credential", "managed-identity",
    )  # fmt: skip
    assert granted.code == 0, granted.err
    assert run_cli("key", "show", "--key", ref).code == 0
    csr = run_cli("csr", "--key", ref, "--subj", "/CN=ci.example", "-o", str(tmp_path / "ci.csr"))
    assert csr.code == 0, csr.err
    assert (tmp_path / "ci.csr").read_text().startswith("-----BEGIN CERTIFICATE REQUEST-----")
    audit = [e for e in emulator.audit() if e.get("principal") == env["AZURE_CLIENT_ID"]]
    assert {e["operation"] for e in audit if e["result"] == "ok"} >= {"get", "sign"}


@pytest.mark.parametrize("command", [("whoami",), ("key", "list", "--hsm", HSM)])
def test_a_wrong_secret_is_one_clear_line(
    emulator: Any, signed_in: Any, monkeypatch: pytest.MonkeyPatch, command: tuple[str, ...]
) -> None:
    signed_in(unique("wrong"))
    monkeypatch.setenv("AZURE_CLIENT_SECRET", "not-the-secret")
    result = run_cli(*command, "--credential", "service-principal")
    assert result.code == 4, result.err
    assert "Traceback" not in result.err and result.out == ""
    errors = [line for line in result.err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "AADSTS7000215" in errors[0] and "Invalid client secret" in errors[0]


def test_a_forged_federated_token_is_refused(emulator: Any, signed_in: Any) -> None:
    env = signed_in(unique("forged"), federated=True)
    path = Path(env["AZURE_FEDERATED_TOKEN_FILE"])
    header, body, _ = path.read_text().split(".")
    path.write_text(f"{header}.{body}.{'A' * 43}")
    result = run_cli("whoami", "--credential", "workload-identity")
    assert result.code == 4 and "Traceback" not in result.err
    assert "AADSTS700211" in result.err and "signature is invalid" in result.err


def test_a_plain_azure_identity_program_signs_in(emulator: Any, signed_in: Any) -> None:
    """What a program without hsmcert passes: the authority, no instance discovery, the emulator's CA."""
    from azure.identity import ClientSecretCredential

    env = signed_in(unique("plain"))
    credential = ClientSecretCredential(
        env["AZURE_TENANT_ID"],
        env["AZURE_CLIENT_ID"],
        env["AZURE_CLIENT_SECRET"],
        authority=env["AZURE_AUTHORITY_HOST"],
        disable_instance_discovery=True,
        connection_verify=str(emulator.ca),
    )
    assert credential.get_token("https://managedhsm.azure.net/.default").token.count(".") == 2


def test_authority_options(emulator: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    login_url = control.require_running(emulator.data_dir).login_url
    assert login_url is not None
    cases = {
        None: {},
        "https://login.microsoftonline.com": {},
        "login.microsoftonline.us": {},
        "https://login.chinacloudapi.cn/": {},
        "https://login.contoso.example": {},  # MSAL's own check stays on for an unknown host
        "https://127.0.0.1:1": {"disable_instance_discovery": True},  # not the emulator's port
        login_url: {"disable_instance_discovery": True, "connection_verify": str(emulator.ca)},
        login_url + "/": {"disable_instance_discovery": True, "connection_verify": str(emulator.ca)},
    }
    for authority, expected in cases.items():
        if authority is None:
            monkeypatch.delenv("AZURE_AUTHORITY_HOST", raising=False)
        else:
            monkeypatch.setenv("AZURE_AUTHORITY_HOST", authority)
        assert _authority_options() == expected, authority
    # a private authority the user vouches for
    monkeypatch.setenv("AZURE_AUTHORITY_HOST", "https://login.contoso.example")
    monkeypatch.setenv("HSMCERT_TRUST_AUTHORITY", "1")
    assert _authority_options() == {"disable_instance_discovery": True}
