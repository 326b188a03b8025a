"""Choosing credentials (no service needed: azure-identity objects are built, no token is asked for)."""

from __future__ import annotations

import base64
import json

import pytest

from hsmcert.azure.credentials import (
    CREDENTIAL_NAMES,
    StaticTokenCredential,
    decode_claims,
    selected_name,
)
from hsmcert.errors import PermissionDeniedError, UsageError
from hsmcert.session import Session, default_session

_VARS = (
    "HSMCERT_CREDENTIAL", "HSMCERT_ACCESS_TOKEN", "AZURE_CLI_ACCESS_TOKEN", "AZURE_CLIENT_ID",
    "AZURE_CLIENT_SECRET", "AZURE_CLIENT_CERTIFICATE_PATH", "AZURE_TENANT_ID", "AZURE_FEDERATED_TOKEN_FILE",
    "MHSM_CLIENT_ID", "MHSM_CLIENT_SECRET", "MHSM_TENANT_ID", "HSMCERT_MANAGED_IDENTITY_CLIENT_ID",
)  # fmt: skip
TENANT = "00000000-0000-0000-0000-0000000000bb"
CLIENT = "00000000-0000-0000-0000-0000000000aa"


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _VARS:
        monkeypatch.delenv(name, raising=False)


def _token(claims: dict[str, object]) -> str:
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    return f"e30.{body}.sig"


def _names(credential: object) -> list[str]:
    return [name for name, _ in credential.candidates]  # type: ignore[attr-defined]


def test_env_token_comes_first_and_keeps_its_expiry(monkeypatch: pytest.MonkeyPatch) -> None:
    token = _token({"oid": "o", "tid": "t", "exp": 2_000_000_000})
    monkeypatch.setenv("AZURE_CLI_ACCESS_TOKEN", token)
    credential = default_session().credential
    assert _names(credential)[0] == "env-token"
    access = credential.get_token("https://managedhsm.azure.net/.default")
    assert access.token == token and access.expires_on == 2_000_000_000
    assert credential.answered == "env-token" and credential.claims["oid"] == "o"


def test_hsmcert_access_token_wins_over_the_cli_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_CLI_ACCESS_TOKEN", _token({"oid": "cli"}))
    monkeypatch.setenv("HSMCERT_ACCESS_TOKEN", _token({"oid": "mine"}))
    assert Session(credential="env-token").credential.get_token("s").token == _token({"oid": "mine"})


@pytest.mark.parametrize(
    ("env", "kind"),
    [
        (
            {"AZURE_CLIENT_ID": CLIENT, "AZURE_CLIENT_SECRET": "x", "AZURE_TENANT_ID": TENANT},
            "ClientSecretCredential",
        ),
        (
            {"MHSM_CLIENT_ID": CLIENT, "MHSM_CLIENT_SECRET": "x", "MHSM_TENANT_ID": TENANT},
            "ClientSecretCredential",
        ),
        (
            {"MHSM_CLIENT_ID": CLIENT, "MHSM_CLIENT_SECRET": "x", "AZURE_TENANT_ID": TENANT},
            "ClientSecretCredential",
        ),
    ],
)
def test_service_principal_variables(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], kind: str) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    credential = Session(credential="service-principal").credential
    assert type(credential.candidates[0][1]).__name__ == kind
    assert "service-principal" in _names(default_session().credential)


def test_workload_identity_in_ci(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    token_file = f"{tmp_path}/federated-token"
    with open(token_file, "w") as fh:
        fh.write("header.payload.sig")
    monkeypatch.setenv("AZURE_FEDERATED_TOKEN_FILE", token_file)
    monkeypatch.setenv("AZURE_CLIENT_ID", CLIENT)
    monkeypatch.setenv("AZURE_TENANT_ID", TENANT)
    assert _names(default_session().credential)[:2] == ["workload-identity", "managed-identity"]


def test_user_assigned_managed_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HSMCERT_MANAGED_IDENTITY_CLIENT_ID", CLIENT)
    credential = Session(credential="managed-identity").credential
    assert _names(credential) == ["managed-identity"]


def test_explicit_choice_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HSMCERT_CREDENTIAL", "Managed-Identity")
    assert selected_name() == "managed-identity"
    assert _names(default_session().credential) == ["managed-identity"]
    assert default_session().credential is default_session().credential  # shared: one token cache per process


def test_an_unconfigured_explicit_choice_says_what_to_set() -> None:
    with pytest.raises(PermissionDeniedError, match="not configured") as info:
        _ = Session(credential="service-principal").credential
    assert "MHSM_CLIENT_ID" in str(info.value.remedy)
    with pytest.raises(UsageError, match="Unknown credential"):
        _ = Session(credential="password").credential
    assert set(CREDENTIAL_NAMES) == {
        "env-token", "service-principal", "workload-identity", "github-actions", "azure-pipelines",
        "managed-identity", "azure-cli",
    }  # fmt: skip


def test_claims_are_decoded_without_the_signature() -> None:
    assert decode_claims(_token({"tid": "t", "oid": "o"})) == {"tid": "t", "oid": "o"}
    assert decode_claims("a.b") == {} and decode_claims("a.!!!.c") == {}
    static = StaticTokenCredential("opaque-token")
    assert static.get_token("s").expires_on > 0
