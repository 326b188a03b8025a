"""whoami and doctor call a garbage token "not a JWT" and an expired one expired (exit 4), never invent an expiry."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time

import pytest

from hsmcert.timestamps import rfc3339

pytestmark = pytest.mark.process  # every test here starts a process (see tests/fixtures/process_marks.py)


def jwt(claims: dict[str, object]) -> str:
    def part(data: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    return f"{part({'alg': 'RS256', 'typ': 'JWT'})}.{part(claims)}.c2ln"


def run(token: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HSMCERT_", "AZURE_", "MHSM_"))}
    env["HSMCERT_ACCESS_TOKEN"] = token
    return subprocess.run(
        [sys.executable, "-m", "hsmcert", *args, "--credential", "env-token"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


CLAIMS = {"oid": "11111111-2222-3333-4444-555555555555", "tid": "t"}


@pytest.mark.parametrize("garbage", ["garbage", "a.b.c", "e30.W10.x"])
def test_whoami_calls_garbage_not_a_jwt(garbage: str) -> None:
    done = run(garbage, "whoami")
    assert done.returncode == 4, done.stdout + done.stderr
    assert "not a JWT" in done.stderr and "Traceback" not in done.stderr
    assert done.stdout == ""


def test_whoami_says_when_a_token_expired() -> None:
    exp = int(time.time()) - 7200
    done = run(jwt({**CLAIMS, "exp": exp}), "whoami")
    assert done.returncode == 4, done.stdout + done.stderr
    assert f"expired at {rfc3339(exp)}" in done.stderr


def test_doctor_fails_the_token_check_for_garbage_and_expired_tokens() -> None:
    garbage = run("garbage", "doctor")
    assert garbage.returncode == 4, garbage.stdout + garbage.stderr
    assert "FAIL token" in garbage.stdout and "not a JWT" in garbage.stdout
    exp = int(time.time()) - 60
    expired = run(jwt({**CLAIMS, "exp": exp}), "doctor", "--output", "json")
    assert expired.returncode == 4
    token_check = next(c for c in json.loads(expired.stdout)["checks"] if c["check"] == "token")
    assert token_check["ok"] is False and f"expired at {rfc3339(exp)}" in token_check["detail"]


def test_whoami_never_invents_an_expiry() -> None:
    done = run(jwt(CLAIMS), "whoami", "--output", "json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["object_id"] == CLAIMS["oid"] and data["expires_on"] is None
    exp = int(time.time()) + 3000
    done = run(jwt({**CLAIMS, "exp": exp}), "whoami")
    assert done.returncode == 0 and rfc3339(exp) in done.stdout


@pytest.mark.parametrize("claim", ["exp", "nbf"])
@pytest.mark.parametrize(
    "value", [float("nan"), float("inf"), float("-inf"), 1e300, -1e300, -1, 253402300800]
)
def test_a_time_claim_out_of_range_is_a_problem_not_a_crash(claim: str, value: float) -> None:
    token = jwt({**CLAIMS, claim: value})  # json.dumps writes NaN and Infinity, which json.loads reads back
    for command in ("whoami", "doctor"):
        done = run(token, command)
        assert done.returncode == 4, command + done.stdout + done.stderr
        assert f"has no usable {claim} claim" in done.stdout + done.stderr
        assert "Unexpected error" not in done.stderr and "Traceback" not in done.stderr


def test_a_time_at_the_end_of_year_9999_is_usable() -> None:
    done = run(jwt({**CLAIMS, "exp": 253402300799}), "whoami", "--output", "json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["expires_on"] == "9999-12-31T23:59:59Z"


def test_a_non_numeric_exp_is_a_problem_and_non_string_claims_are_not_shown() -> None:
    done = run(jwt({"exp": "soon", "tid": ["t"], "oid": {"a": 1}}), "whoami", "--output", "json")
    assert done.returncode == 4, done.stdout + done.stderr
    assert json.loads(done.stdout)["code"] == "permission_denied"
    assert "has no usable exp claim" in done.stderr
    done = run(jwt({"tid": ["t"], "oid": {"a": 1}, "appid": 7, "upn": ["u"]}), "whoami", "--output", "json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["tenant_id"] is None and data["object_id"] is None
    assert data["app_id"] is None and data["name"] is None
