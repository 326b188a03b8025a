"""The CI identities end to end: a GitHub Actions job and an Azure Pipelines job sign in without a secret.

A loopback stand-in plays each CI system's OIDC token endpoint (GitHub's ``ACTIONS_ID_TOKEN_REQUEST_URL``,
Azure DevOps' ``SYSTEM_OIDCREQUESTURI``): it checks the job's request token and answers a JWT signed by a test
issuer. The emulator's login endpoint trusts that issuer for one subject through a federated credential,
as Entra does, and azure-identity (ClientAssertionCredential, AzurePipelinesCredential) exchanges the JWT
for an access token that signs artifacts.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from hsmcert.emulator import auth, control
from hsmcert.emulator.login import add_federated_credential
from tests.hsm.conftest import HSM, run_cli, unique

from .loopback import QuietHandler, serving

GITHUB_ISSUER = "https://token.actions.githubusercontent.com"
GITHUB_SUBJECT = "repo:contoso/app:ref:refs/heads/main"
PIPELINES_ISSUER = "https://vstoken.dev.azure.com/00000000-0000-0000-0000-00000000c0de"
PIPELINES_SUBJECT = "sc://contoso/app/release-signing"
REQUEST_TOKEN = "job-request-token"
CONNECTION = "11111111-2222-3333-4444-555555555555"

_VARS = (
    "HSMCERT_CREDENTIAL", "HSMCERT_ACCESS_TOKEN", "AZURE_CLI_ACCESS_TOKEN", "AZURE_CLIENT_ID",
    "AZURE_CLIENT_SECRET", "AZURE_CLIENT_CERTIFICATE_PATH", "AZURE_TENANT_ID", "AZURE_FEDERATED_TOKEN_FILE",
    "MHSM_CLIENT_ID", "MHSM_CLIENT_SECRET", "MHSM_TENANT_ID", "HSMCERT_MANAGED_IDENTITY_CLIENT_ID",
    "AZURE_AUTHORITY_HOST", "ACTIONS_ID_TOKEN_REQUEST_URL", "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
    "SYSTEM_OIDCREQUESTURI", "SYSTEM_ACCESSTOKEN", "AZURESUBSCRIPTION_SERVICE_CONNECTION_ID",
    "AZURESUBSCRIPTION_CLIENT_ID", "AZURESUBSCRIPTION_TENANT_ID",
)  # fmt: skip


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Issuer:
    """A test OIDC issuer: an EC P-256 key, its JWKS, and ES256 tokens."""

    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        numbers = self.key.public_key().public_numbers()
        self.jwks = {
            "keys": [
                {
                    "kty": "EC", "crv": "P-256", "kid": "test-1", "alg": "ES256", "use": "sig",
                    "x": _b64(numbers.x.to_bytes(32, "big")), "y": _b64(numbers.y.to_bytes(32, "big")),
                }
            ]
        }  # fmt: skip
        self.subject = {GITHUB_ISSUER: GITHUB_SUBJECT, PIPELINES_ISSUER: PIPELINES_SUBJECT}

    def token(self, issuer: str, audience: str) -> str:
        now = int(time.time())
        header = _b64(json.dumps({"alg": "ES256", "typ": "JWT", "kid": "test-1"}).encode())
        claims = {
            "iss": issuer, "sub": self.subject[issuer], "aud": audience,
            "iat": now, "nbf": now - 5, "exp": now + 300, "jti": str(uuid.uuid4()),
        }  # fmt: skip
        body = _b64(json.dumps(claims).encode())
        der = self.key.sign(f"{header}.{body}".encode(), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        return f"{header}.{body}.{_b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


@pytest.fixture(scope="module")
def ci_endpoints() -> Iterator[tuple[str, Issuer, list[str]]]:
    """The stand-in token endpoints (base URL), their issuer, and the log of requests they answered."""
    issuer = Issuer()
    log: list[str] = []

    class Handler(QuietHandler):
        def _answer(self, status: int, body: dict[str, Any]) -> None:
            self.answer(status, json.dumps(body).encode(), "application/json")

        def do_GET(self) -> None:  # GitHub Actions: GET $ACTIONS_ID_TOKEN_REQUEST_URL&audience=...
            url = urlsplit(self.path)
            query = parse_qs(url.query)
            if url.path != "/github" or self.headers.get("Authorization") != f"bearer {REQUEST_TOKEN}":
                self._answer(401, {"message": "bad request token"})
                return
            log.append("github")
            self._answer(200, {"value": issuer.token(GITHUB_ISSUER, query["audience"][0])})

        def do_POST(
            self,
        ) -> None:  # Azure Pipelines: POST $SYSTEM_OIDCREQUESTURI?api-version=7.1&serviceConnectionId=
            url = urlsplit(self.path)
            query = parse_qs(url.query)
            authorized = self.headers.get("Authorization") == f"Bearer {REQUEST_TOKEN}"
            if url.path != "/pipelines" or not authorized or query.get("serviceConnectionId") != [CONNECTION]:
                self._answer(401, {"message": "bad access token or service connection"})
                return
            log.append("pipelines")
            self._answer(200, {"oidcToken": issuer.token(PIPELINES_ISSUER, "api://AzureADTokenExchange")})

    with serving(Handler) as url:
        yield url, issuer, log


@pytest.fixture
def ci_job(emulator: Any, ci_endpoints: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """job("github"|"pipelines", subject=None): a principal with a federated credential for that CI's issuer
    and the variables the CI system sets in a job; returns the principal's client id."""
    base, issuer, _ = ci_endpoints
    for name in _VARS:
        monkeypatch.delenv(name, raising=False)
    authority = control.require_running(emulator.data_dir).login_url

    def job(kind: str, subject: str | None = None) -> str:
        client_id = auth.principal_id(unique(f"ci-{kind}"))
        iss = GITHUB_ISSUER if kind == "github" else PIPELINES_ISSUER
        add_federated_credential(
            emulator.data_dir, client_id, iss, subject or issuer.subject[iss], issuer.jwks
        )
        monkeypatch.setenv("AZURE_AUTHORITY_HOST", authority)
        if kind == "github":
            monkeypatch.setenv("ACTIONS_ID_TOKEN_REQUEST_URL", f"{base}/github?api-version=2.0")
            monkeypatch.setenv("ACTIONS_ID_TOKEN_REQUEST_TOKEN", REQUEST_TOKEN)
            monkeypatch.setenv("AZURE_CLIENT_ID", client_id)
            monkeypatch.setenv("AZURE_TENANT_ID", auth.TENANT_ID)
        else:
            monkeypatch.setenv("SYSTEM_OIDCREQUESTURI", f"{base}/pipelines")
            monkeypatch.setenv("SYSTEM_ACCESSTOKEN", REQUEST_TOKEN)
            monkeypatch.setenv("AZURESUBSCRIPTION_SERVICE_CONNECTION_ID", CONNECTION)
            monkeypatch.setenv("AZURESUBSCRIPTION_CLIENT_ID", client_id)
            monkeypatch.setenv("AZURESUBSCRIPTION_TENANT_ID", auth.TENANT_ID)
        return client_id

    return job


def whoami(*args: str) -> dict[str, Any]:
    done = run_cli("--output", "json", "whoami", *args)
    assert done.code == 0, done.err
    return dict(json.loads(done.out))


@pytest.mark.parametrize(("kind", "name"), [("github", "github-actions"), ("pipelines", "azure-pipelines")])
def test_a_ci_job_signs_in_and_signs_artifacts(
    emulator: Any, ci_job: Any, ci_endpoints: Any, tmp_path: Path, kind: str, name: str
) -> None:

    _, _, log = ci_endpoints
    client_id = ci_job(kind)
    asked = len(log)
    who = whoami()  # the automatic chain: the CI credential comes before the emulator's managed identity
    assert who["credential"] == name and who["object_id"] == client_id and who["tenant_id"] == auth.TENANT_ID
    assert len(log) > asked  # the CI's token endpoint was asked

    doctor = run_cli("--output", "json", "doctor")
    assert name in doctor.out, doctor.out

    ref = f"managedhsm:{HSM}:{unique('ci-sign')}"
    with pytest.MonkeyPatch.context() as admin:  # the administrator sets up the key and the role
        admin.setenv("HSMCERT_ACCESS_TOKEN", emulator.token())
        assert run_cli("key", "create", "--key", ref, "--kty", "EC", "--credential", "env-token").code == 0
        granted = run_cli(
            "grant", "--hsm", HSM, "--principal", client_id, "--key", ref.rsplit(":", 1)[1],
            "--role", "crypto-user", "--credential", "env-token",
        )  # fmt: skip
        assert granted.code == 0, granted.err
    artifact = tmp_path / "release.tar.gz"
    artifact.write_bytes(b"release 1.0")
    signed = run_cli("sign", "--key", ref, "--credential", name, str(artifact))
    assert signed.code == 0, signed.err
    assert run_cli("verify-signature", str(artifact), "--key", ref).code == 0
    signs = [e for e in emulator.audit() if e.get("principal") == client_id and e["operation"] == "sign"]
    assert [e["result"] for e in signs] == ["ok"]


@pytest.mark.parametrize("kind", ["github", "pipelines"])
def test_a_token_for_another_subject_is_refused(ci_job: Any, kind: str) -> None:
    ci_job(kind, subject="repo:contoso/app:ref:refs/heads/release")  # the job runs on another branch
    name = "github-actions" if kind == "github" else "azure-pipelines"
    done = run_cli("whoami", "--credential", name)
    assert done.code == 4 and "Traceback" not in done.err
    assert "AADSTS700211" in done.err and "subject" in done.err


def test_without_the_id_token_permission_the_credential_says_so(
    ci_job: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    ci_job("github")
    monkeypatch.setenv("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "wrong")
    done = run_cli("whoami", "--credential", "github-actions")
    assert done.code == 4 and "Traceback" not in done.err and "id-token: write" in done.err


def test_unconfigured_ci_credentials_name_their_variables(ci_job: Any) -> None:
    for name, words in (("github-actions", "id-token: write"), ("azure-pipelines", "SYSTEM_ACCESSTOKEN")):
        done = run_cli("whoami", "--credential", name)
        assert done.code == 4 and words in done.err, done.err
