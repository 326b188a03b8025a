"""The private Azure SDK internals the agent's pooled transport needs work with the installed SDKs, and no
other module uses them: the CLI and library keep to the SDKs' public API and default transport."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import urllib3
from azure.core.pipeline.policies import HTTPPolicy, SansIOHTTPPolicy
from azure.core.rest import HttpRequest

from hsmcert.agent import sdkcompat

PACKAGE = Path(__file__).resolve().parents[2] / "hsmcert"
PRIVATE = re.compile(r"\._shared\b|_http_response_impl|http_challenge_cache|http_challenge\b")


def test_only_the_compatibility_module_touches_sdk_internals() -> None:
    users = sorted(
        str(path.relative_to(PACKAGE.parent))
        for path in PACKAGE.rglob("*.py")
        if PRIVATE.search(path.read_text())
    )
    assert users == ["hsmcert/agent/sdkcompat.py"]


def test_the_cli_and_library_use_the_sdks_default_transport(agent_keys: dict[str, str]) -> None:
    from azure.core.pipeline.transport import RequestsTransport

    from hsmcert.session import Session

    with Session() as session:
        key = session.open_key(agent_keys["rsa"])
        assert isinstance(key._service.transport, RequestsTransport)


def test_a_urllib3_response_reads_as_an_azure_core_response() -> None:
    body = json.dumps({"value": "abc"}).encode()
    raw = urllib3.HTTPResponse(
        body=body, headers={"Content-Type": "application/json", "x-ms-request-id": "r1"}, status=200,
        reason="OK", preload_content=True,
    )  # fmt: skip
    response = sdkcompat.read_response(HttpRequest("POST", "https://h.example/keys/k/sign"), raw)
    assert response.status_code == 200 and response.headers["x-ms-request-id"] == "r1"
    assert (
        response.json() == {"value": "abc"} and response.read() == body and response.text() == body.decode()
    )
    assert b"".join(response.iter_bytes()) == body
    response.raise_for_status()


def test_the_challenge_policy_is_a_pipeline_policy() -> None:
    class Token:
        def get_token(self, *scopes: str, **kwargs: Any) -> Any:
            raise AssertionError("no token is asked for before a request")

    policy = sdkcompat.challenge_auth_policy(Token())  # type: ignore[arg-type]
    assert isinstance(policy, HTTPPolicy | SansIOHTTPPolicy)


def test_the_agent_remembers_the_challenge_and_a_new_agent_starts_with_it(
    agent_factory: Any, agent_keys: dict[str, str], emulator: Any, tmp_path: Path
) -> None:
    env = dict(os.environ, HSMCERT_CACHE_DIR=str(tmp_path))
    saved = tmp_path / "public-keys" / "challenges.json"
    first = agent_factory(env=env)
    with first.client() as client:
        client.pubkey(agent_keys["p256"])
    challenges = json.loads(saved.read_text())
    url = emulator.url("managedhsm", "local-hsm").rstrip("/")
    assert any(k.rstrip("/") == url for k in challenges), challenges
    assert all((v.startswith("Bearer ") and "resource=" in v) or "scope=" in v for v in challenges.values())
    first.stop()
    second = agent_factory(env=env)  # starts from the remembered challenge
    with second.client() as client:
        assert len(client.sign(agent_keys["p256"], "ES256", bytes(32))) >= 64
