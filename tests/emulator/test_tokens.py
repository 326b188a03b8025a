"""Which bearer tokens the emulator's services accept, as Azure's: the audience of the service (with or
without a trailing slash), the emulator's tenant, and now within nbf..exp give or take a minute; anything
else is 401 with the challenge the SDKs read, through the real SDKs sync and async. The login endpoint gives
tokens only for the resources the emulator serves; ``hsmcert emulator token`` makes expired and not yet
valid tokens."""

from __future__ import annotations

import http.client
import ssl
import subprocess
import sys
import time
from typing import Any
from urllib.parse import urlsplit

import pytest
from azure.core.exceptions import ClientAuthenticationError

from hsmcert.emulator import auth
from tests.emulator.conftest import Token, unique
from tests.emulator.test_async_sdk_more import AsyncToken

HSM_AUD = "https://managedhsm.azure.net"
VAULT_AUD = "https://vault.azure.net"


def _forged(emulator: Any, **claims: Any) -> str:
    """An emulator-signed token of the administrator with some claims changed."""
    secret = (emulator.data_dir / "token.key").read_bytes()
    good = auth.read_jwt(secret, auth.issue(secret))
    return auth.sign_jwt(secret, {**good, **claims})


def _raw(emulator: Any, url: str, token: str | None) -> tuple[int, str, str]:
    """GET /keys on ``url`` with ``token``: status, WWW-Authenticate, body."""
    parts = urlsplit(url)
    context = ssl.create_default_context(cafile=str(emulator.ca))
    conn = http.client.HTTPSConnection(parts.hostname or "", parts.port, context=context, timeout=10)
    try:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        conn.request("GET", "/keys?api-version=7.5", headers=headers)
        response = conn.getresponse()
        return response.status, response.getheader("WWW-Authenticate") or "", response.read().decode()
    finally:
        conn.close()


def _refused_sync(url: str, token: str, ca: str) -> ClientAuthenticationError:
    from azure.keyvault.keys import KeyClient

    with pytest.raises(ClientAuthenticationError) as refused:
        KeyClient(url, Token(token), connection_verify=ca).get_key(unique("absent"))
    return refused.value


async def _refused_async(url: str, token: str, ca: str) -> ClientAuthenticationError:
    from azure.keyvault.keys.aio import KeyClient

    async with KeyClient(url, AsyncToken(token), connection_verify=ca) as client:
        with pytest.raises(ClientAuthenticationError) as refused:
            await client.get_key(unique("absent"))
    return refused.value


def _accepted_sync(url: str, token: str, ca: str) -> None:
    from azure.core.exceptions import ResourceNotFoundError
    from azure.keyvault.keys import KeyClient

    with pytest.raises(ResourceNotFoundError):  # past the token check: the key is not there
        KeyClient(url, Token(token), connection_verify=ca).get_key(unique("absent"))


def test_each_service_accepts_its_own_audience_only(emulator: Any, hsm_url: str, vault_url: str) -> None:
    ca = str(emulator.ca)
    for aud in (HSM_AUD, HSM_AUD + "/"):
        _accepted_sync(hsm_url, emulator.token(audience=aud), ca)
        error = _refused_sync(vault_url, emulator.token(audience=aud), ca)
        assert error.status_code == 401 and "AKV10022" in str(error)
    for aud in (VAULT_AUD, VAULT_AUD + "/"):
        _accepted_sync(vault_url, emulator.token(audience=aud), ca)
        assert _refused_sync(hsm_url, emulator.token(audience=aud), ca).status_code == 401
    for aud in ("https://management.azure.com", "https://storage.azure.com/", "https://0.0.1:1"):
        assert _refused_sync(hsm_url, emulator.token(audience=aud), ca).status_code == 401
    # the resource a service's challenge names is its own audience, not another service's
    hsm_resource = "https://0.0.1:" + str(urlsplit(hsm_url).port)
    _accepted_sync(hsm_url, emulator.token(audience=hsm_resource), ca)
    assert _refused_sync(vault_url, emulator.token(audience=hsm_resource), ca).status_code == 401


async def test_the_async_sdk_is_refused_a_wrong_audience(emulator: Any, hsm_url: str, vault_url: str) -> None:
    ca = str(emulator.ca)
    error = await _refused_async(hsm_url, emulator.token(audience=VAULT_AUD), ca)
    assert error.status_code == 401 and "AKV10022" in str(error)
    error = await _refused_async(vault_url, emulator.token(audience=HSM_AUD), ca)
    assert error.status_code == 401


def test_a_refused_token_gets_the_challenge_of_a_missing_one(emulator: Any, hsm_url: str) -> None:
    status, missing, _ = _raw(emulator, hsm_url, None)
    assert status == 401 and missing.startswith("Bearer authorization=")
    for token in (
        emulator.token(audience=VAULT_AUD),
        _forged(emulator, tid="72f988bf-86f1-41af-91ab-2d7cd011db47"),
        _forged(emulator, exp=int(time.time()) - 3600),
    ):
        status, challenge, body = _raw(emulator, hsm_url, token)
        assert status == 401 and challenge == missing + ', error="invalid_token"', (challenge, body)
        assert '"Unauthorized"' in body


def test_another_tenant_is_refused(emulator: Any, hsm_url: str) -> None:
    ca = str(emulator.ca)
    error = _refused_sync(hsm_url, _forged(emulator, tid="72f988bf-86f1-41af-91ab-2d7cd011db47"), ca)
    assert error.status_code == 401 and "another tenant" in str(error)
    assert _refused_sync(hsm_url, _forged(emulator, tid=None), ca).status_code == 401


async def test_expired_and_not_yet_valid_tokens_are_refused_sync_and_async(
    emulator: Any, hsm_url: str
) -> None:
    ca = str(emulator.ca)
    now = int(time.time())
    expired = _forged(emulator, nbf=now - 7200, exp=now - auth.CLOCK_SKEW - 5)
    early = _forged(emulator, nbf=now + auth.CLOCK_SKEW + 60, exp=now + 7200)
    assert "expired" in str(_refused_sync(hsm_url, expired, ca))
    assert "not valid before" in str(_refused_sync(hsm_url, early, ca))
    assert "expired" in str(await _refused_async(hsm_url, expired, ca))
    assert "not valid before" in str(await _refused_async(hsm_url, early, ca))
    # within the skew both are still taken: clocks a little apart do not break a client
    _accepted_sync(hsm_url, _forged(emulator, nbf=now - 7200, exp=now - auth.CLOCK_SKEW + 20), ca)
    _accepted_sync(hsm_url, _forged(emulator, nbf=now + auth.CLOCK_SKEW - 20, exp=now + 7200), ca)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hsmcert", "emulator", "token", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_token_command_rehearses_expired_and_early_tokens(emulator: Any, hsm_url: str) -> None:
    ca = str(emulator.ca)
    expired = _cli("--valid-in", "-2h", "--lifetime", "1h")
    early = _cli("--valid-in=10m")
    short = _cli("--lifetime", "30s", "--audience", HSM_AUD + "/")
    assert expired.returncode == early.returncode == short.returncode == 0, expired.stderr + early.stderr
    assert "expired" in str(_refused_sync(hsm_url, expired.stdout.strip(), ca))
    assert "not valid before" in str(_refused_sync(hsm_url, early.stdout.strip(), ca))
    _accepted_sync(hsm_url, short.stdout.strip(), ca)
    claims = auth.read_jwt((emulator.data_dir / "token.key").read_bytes(), short.stdout.strip())
    assert claims["exp"] - claims["nbf"] == 30


@pytest.mark.parametrize(
    "args",
    [
        ("--lifetime", "-1h"),
        ("--lifetime", "0s"),
        ("--lifetime", "31d"),
        ("--valid-in", "soon"),
        ("--lifetime", "1y"),
    ],
)
def test_a_bad_duration_is_one_sentence_and_exit_2(emulator: Any, args: tuple[str, str]) -> None:
    result = _cli(*args)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr


# --- the login endpoint: resources it serves only ----------------------------------------------------------


def _sp_credential(emulator: Any, principal: str) -> Any:
    from azure.identity import ClientSecretCredential

    from hsmcert.emulator import control, login

    running = control.require_running(emulator.data_dir)
    secret = login.client_secret((emulator.data_dir / "token.key").read_bytes(), principal)
    return ClientSecretCredential(
        auth.TENANT_ID,
        auth.principal_id(principal),
        secret,
        authority=running.login_url,
        connection_verify=str(emulator.ca),
        disable_instance_discovery=True,
    )


@pytest.mark.parametrize(
    "scope",
    [
        "https://storage.azure.com/.default",
        "https://graph.microsoft.com/.default",
        "https://0.0.1/.default",
    ],
)
def test_the_login_endpoint_refuses_resources_it_does_not_serve(emulator: Any, scope: str) -> None:
    from tests.emulator.test_login import Login

    status, error = Login(emulator).token(
        grant_type="client_credentials",
        client_id=auth.principal_id("scoped"),
        client_secret=_secret(emulator, "scoped"),
        scope=scope,
    )
    assert status == 400 and error["error"] == "invalid_resource", error
    assert error["error_description"].startswith("AADSTS500011: ") and error["error_codes"] == [500011]
    with pytest.raises(ClientAuthenticationError, match="AADSTS500011"):
        _sp_credential(emulator, "scoped").get_token(scope)


def _secret(emulator: Any, principal: str) -> str:
    from hsmcert.emulator import login

    return login.client_secret((emulator.data_dir / "token.key").read_bytes(), principal)


def test_the_login_endpoint_serves_each_service_audience(emulator: Any, hsm_url: str) -> None:
    credential = _sp_credential(emulator, "scoped")
    port = urlsplit(hsm_url).port
    for resource in (HSM_AUD, HSM_AUD + "/", VAULT_AUD, f"https://0.0.1:{port}"):
        token = credential.get_token(resource + "/.default").token
        claims = auth.read_jwt((emulator.data_dir / "token.key").read_bytes(), token)
        assert claims["aud"] == resource and claims["tid"] == auth.TENANT_ID


def test_the_managed_identity_endpoint_gives_any_resource_a_token(emulator: Any, hsm_url: str) -> None:
    from azure.identity import ManagedIdentityCredential

    token = ManagedIdentityCredential().get_token("https://storage.azure.com/.default").token
    claims = auth.read_jwt((emulator.data_dir / "token.key").read_bytes(), token)
    assert claims["aud"] == "https://storage.azure.com"
    assert _refused_sync(hsm_url, token, str(emulator.ca)).status_code == 401
