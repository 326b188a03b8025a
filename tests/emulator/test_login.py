"""The emulator's Entra-ID-compatible login endpoint over HTTPS: discovery, client secrets, federated client
assertions, Entra-shaped refusals (forged assertions included), a port kept across restarts, and a fuzzed
token request body that never gets a 500."""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import ssl
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hsmcert.emulator import auth, control, login
from tests.fixtures.emulator import start_emulator

ASSERTION = login.ASSERTION_TYPE
SCOPE = "https://managedhsm.azure.net/.default"


class Login:
    """A small HTTPS client of the session emulator's login endpoint."""

    def __init__(self, emulator: Any) -> None:
        running = control.require_running(emulator.data_dir)
        assert running.login_url is not None
        self.url = running.login_url
        self.secret = (emulator.data_dir / "token.key").read_bytes()
        self._ssl = ssl.create_default_context(cafile=str(emulator.ca))

    def request(
        self, method: str, path: str, body: bytes | None = None, tenant: str = auth.TENANT_ID
    ) -> tuple[int, dict[str, Any]]:
        parts = urlsplit(self.url)
        conn = http.client.HTTPSConnection(parts.hostname or "", parts.port, context=self._ssl, timeout=10)
        try:
            headers = {"Content-Type": "application/x-www-form-urlencoded"} if body is not None else {}
            conn.request(method, f"/{tenant}{path}", body=body, headers=headers)
            response = conn.getresponse()
            return response.status, json.loads(response.read())
        finally:
            conn.close()

    def token(self, tenant: str = auth.TENANT_ID, **form: str) -> tuple[int, dict[str, Any]]:
        return self.request("POST", "/oauth2/v2.0/token", urlencode(form).encode(), tenant)


@pytest.fixture(scope="module")
def entra(emulator: Any) -> Login:
    return Login(emulator)


def _claims(token: str) -> dict[str, Any]:
    body = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))))


def test_tenant_discovery_names_the_endpoints_msal_reads(entra: Login) -> None:
    status, config = entra.request("GET", "/v2.0/.well-known/openid-configuration")
    assert status == 200
    root = f"{entra.url}/{auth.TENANT_ID}"
    assert config["token_endpoint"] == f"{root}/oauth2/v2.0/token"
    assert config["authorization_endpoint"] == f"{root}/oauth2/v2.0/authorize"
    assert config["issuer"] == f"{root}/v2.0"
    status, error = entra.request("GET", "/v2.0/.well-known/openid-configuration", tenant="contoso")
    assert (
        status == 400 and error["error"] == "invalid_tenant" and "AADSTS90002" in error["error_description"]
    )


def test_a_client_secret_gets_a_token_the_hsm_accepts(emulator: Any, entra: Login) -> None:
    client_id = auth.principal_id("login-sp")
    secret = login.client_secret(entra.secret, client_id)
    status, answer = entra.token(
        grant_type="client_credentials", client_id=client_id, client_secret=secret, scope=SCOPE
    )
    assert status == 200, answer
    assert answer["token_type"] == "Bearer"
    assert answer["expires_in"] == answer["ext_expires_in"] == auth.TOKEN_LIFETIME
    claims = _claims(answer["access_token"])
    assert claims["oid"] == client_id and claims["tid"] == auth.TENANT_ID
    assert claims["aud"] == "https://managedhsm.azure.net"
    caller = auth.TokenVerifier(entra.secret).verify(answer["access_token"])
    assert caller is not None and caller.object_id == client_id


def test_a_federated_token_is_a_client_assertion(entra: Login) -> None:
    client_id = auth.principal_id("login-wi")
    status, answer = entra.token(
        grant_type="client_credentials",
        client_id=client_id,
        client_assertion=login.federated_token(entra.secret, client_id),
        client_assertion_type=ASSERTION,
        scope="https://vault.azure.net/.default",
    )
    assert status == 200, answer
    assert _claims(answer["access_token"])["aud"] == "https://vault.azure.net"


def _forge(claims: dict[str, Any], key: bytes, alg: str = "HS256") -> str:
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    head = b64(json.dumps({"alg": alg, "typ": "JWT"}).encode()) + "." + b64(json.dumps(claims).encode())
    signature = hmac.new(key, head.encode(), hashlib.sha256).digest() if alg == "HS256" else b""
    return head + "." + b64(signature)


def test_forged_and_misused_assertions_are_refused(entra: Login) -> None:
    client_id = auth.principal_id("login-forger")
    now = int(time.time())
    good = {"aud": login.FEDERATED_AUDIENCE, "sub": client_id, "nbf": now - 60, "exp": now + 600}
    federation_key = hmac.new(entra.secret, b"federated-token-key", hashlib.sha256).digest()
    forged = {
        "another key": _forge(good, b"k" * 32),
        "the access-token key": _forge(good, entra.secret),
        "alg none": _forge(good, b"", alg="none"),
        "another client": login.federated_token(entra.secret, "someone-else"),
        "expired": _forge({**good, "exp": now - 1}, federation_key),
        "another audience": _forge({**good, "aud": "https://managedhsm.azure.net"}, federation_key),
        "not a JWT": "abc",
        "an access token": auth.issue(entra.secret, client_id),
    }
    forged["none: the control"] = _forge(good, federation_key)  # the right key makes a valid assertion
    for why, assertion in forged.items():
        status, error = entra.token(
            grant_type="client_credentials",
            client_id=client_id,
            client_assertion=assertion,
            client_assertion_type=ASSERTION,
            scope=SCOPE,
        )
        if why == "none: the control":
            assert status == 200, error
            continue
        assert (status, error["error"]) == (401, "invalid_client"), why
        assert error["error_description"].startswith("AADSTS700211: "), why
        assert "access_token" not in error


@pytest.mark.parametrize(
    ("form", "status", "error", "code"),
    [
        ({"client_secret": "wrong"}, 401, "invalid_client", 7000215),
        ({"client_secret": None}, 401, "invalid_client", 7000218),
        ({"grant_type": "password"}, 400, "unsupported_grant_type", 70003),
        ({"grant_type": None}, 400, "invalid_request", 900144),
        ({"scope": "https://managedhsm.azure.net"}, 400, "invalid_scope", 1002012),
        ({"client_assertion_type": "x", "client_assertion": "a.b.c"}, 400, "invalid_request", 50027),
    ],
)
def test_refusals_have_entras_shape(
    entra: Login, form: dict[str, str | None], status: int, error: str, code: int
) -> None:
    client_id = auth.principal_id("login-refused")
    base: dict[str, str | None] = {
        "grant_type": "client_credentials",
        "client_id": client_id,
        "client_secret": login.client_secret(entra.secret, client_id),
        "scope": SCOPE,
    }
    if "client_assertion" in form:
        base.pop("client_secret")
    sent = {k: v for k, v in {**base, **form}.items() if v is not None}
    got_status, answer = entra.token(**sent)
    assert (got_status, answer["error"], answer["error_codes"]) == (status, error, [code])
    assert answer["error_description"].startswith(f"AADSTS{code}: ")
    assert {"timestamp", "trace_id", "correlation_id"} <= set(answer)


def test_the_secret_of_one_client_is_not_the_secret_of_another(entra: Login) -> None:
    status, _ = entra.token(
        grant_type="client_credentials",
        client_id=auth.principal_id("login-b"),
        client_secret=login.client_secret(entra.secret, "login-a"),
        scope=SCOPE,
    )
    assert status == 401


@pytest.mark.process
def test_the_login_port_is_remembered_and_shown(tmp_path: Path, cli_json: Any) -> None:
    emulator = start_emulator(tmp_path / "emu")
    try:
        port = control.require_running(emulator.data_dir).login_port
        state = json.loads((emulator.data_dir / "state.json").read_text())
        assert state["login_port"] == port
        status = cli_json("emulator", "status", "--data", str(emulator.data_dir))
        assert status["login_url"] == f"https://127.0.0.1:{port}"
        emulator.stop()
        emulator.start()
        assert control.require_running(emulator.data_dir).login_port == port
    finally:
        emulator.stop()


@pytest.fixture
def cli_json() -> Any:
    from tests.hsm.conftest import run_cli

    def run(*args: str) -> Any:
        result = run_cli("--output", "json", *args)
        assert result.code == 0, result.err
        return json.loads(result.out)

    return run


def test_the_credentials_command_prints_what_signs_in(emulator: Any, cli_json: Any, tmp_path: Path) -> None:
    answer = cli_json("emulator", "credentials", "--principal", "login-cli")
    env, secret = answer["env"], (emulator.data_dir / "token.key").read_bytes()
    assert answer["object_id"] == env["AZURE_CLIENT_ID"] == auth.principal_id("login-cli")
    assert env["AZURE_CLIENT_SECRET"] == login.client_secret(secret, "login-cli")
    assert env["AZURE_TENANT_ID"] == auth.TENANT_ID
    assert env["AZURE_AUTHORITY_HOST"] == control.require_running(emulator.data_dir).login_url
    mhsm = cli_json("emulator", "credentials", "--principal", "login-cli", "--mhsm")["env"]
    assert mhsm["MHSM_CLIENT_SECRET"] == env["AZURE_CLIENT_SECRET"] and "AZURE_CLIENT_ID" not in mhsm
    path = tmp_path / "token"
    wi = cli_json("emulator", "credentials", "--principal", "login-cli", "--federated-token-file", str(path))
    assert wi["env"]["AZURE_FEDERATED_TOKEN_FILE"] == str(path) and "AZURE_CLIENT_SECRET" not in wi["env"]
    assert path.stat().st_mode & 0o777 == 0o600
    assert login.check_assertion(secret, path.read_text(), env["AZURE_CLIENT_ID"]) is None
    from tests.hsm.conftest import run_cli

    again = run_cli("emulator", "credentials", "--principal", "x", "--federated-token-file", str(path))
    assert again.code == 7 and "--force" in again.err  # never replaced without --force (exit 7: exists)


FIELDS = [
    "grant_type",
    "client_id",
    "client_secret",
    "client_assertion",
    "client_assertion_type",
    "scope",
    "claims",
    "",
]
VALUES = [
    "client_credentials",
    "password",
    auth.principal_id("fuzz"),
    SCOPE,
    "/.default",
    ASSERTION,
    "a.b.c",
    "e30.e30.",
    "",
    "%",
    "\x00",
]
form_bodies = st.one_of(
    st.lists(
        st.tuples(
            st.sampled_from(FIELDS) | st.text(max_size=5), st.sampled_from(VALUES) | st.text(max_size=12)
        ),
        max_size=7,
    ).map(lambda pairs: urlencode(pairs).encode()),
    st.binary(max_size=60),
    st.sampled_from([b"&&&", b"=", b"a=%ZZ", b"a=%ff%fe", b"a" * 5000 + b"=", b"&".join([b"x=1"] * 100)]),
    # a complete client-credentials form whose secret is not ASCII
    st.just(
        urlencode(
            {
                "grant_type": "client_credentials",
                "client_id": auth.principal_id("fuzz"),
                "scope": SCOPE,
                "client_secret": "\u00e9",
            }
        ).encode()
    ),
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    body=form_bodies, path=st.sampled_from(["/oauth2/v2.0/token", "/v2.0/.well-known/openid-configuration"])
)
def test_fuzzed_form_bodies_never_fail_the_endpoint(entra: Login, body: bytes, path: str) -> None:
    status, answer = entra.request("POST", path, body)
    assert status < 500, answer
    assert ("access_token" in answer) == (status == 200)
    if status >= 400:
        assert isinstance(answer["error"], str) and answer["error_description"].startswith("AADSTS")
