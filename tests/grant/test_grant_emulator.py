"""hsmcert grant against the emulator's Managed HSM local RBAC: the refused caller's remedy works as printed.

An application principal with no role cannot sign; the 403 names the `hsmcert grant` command that fixes it;
an administrator runs that command; the application then signs with that key, and with no other key.
"""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest

from tests.hsm.conftest import CliResult, run_cli

HSM = "local-hsm"


def _as(principal_token: str | None, monkeypatch: pytest.MonkeyPatch, *args: str) -> CliResult:
    """Run hsmcert as the principal of ``principal_token`` (None: the emulator's administrator)."""
    from hsmcert.azure import keycache

    with monkeypatch.context() as m:
        if principal_token is not None:
            m.setenv("HSMCERT_ACCESS_TOKEN", principal_token)
            args = (*args, "--credential", "env-token")
        else:
            m.delenv("HSMCERT_ACCESS_TOKEN", raising=False)
        result = run_cli(*args)
    for ref in [a for a in args if a.startswith("managedhsm:")]:
        keycache.forget(ref)  # the next caller opens the key afresh, with its own credential
    return result


def _csr(token: str | None, monkeypatch: pytest.MonkeyPatch, ref: str, out: Path) -> CliResult:
    return _as(token, monkeypatch, "csr", "--key", ref, "--subj", "/CN=app.example", "-o", str(out))


@pytest.mark.e2e
def test_remedy_of_a_refused_sign_is_a_grant_that_works(
    emulator: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hsmcert.session import default_session

    k1, k2 = (f"grant-{n}-{uuid4().hex[:8]}" for n in ("k1", "k2"))
    for name in (k1, k2):
        default_session().keys.create(f"managedhsm:{HSM}:{name}", "EC", curve="P-256")
    app = f"grant-app-{uuid4().hex[:8]}"
    token = emulator.token(principal=app)

    refused = _csr(token, monkeypatch, f"managedhsm:{HSM}:{k1}", tmp_path / "refused.csr")
    assert refused.code == 4, refused.err
    assert not (tmp_path / "refused.csr").exists()
    remedy = refused.err[refused.err.index("hsmcert grant ") :].split("\n")[0].rstrip(".")
    argv = shlex.split(remedy)[1:]
    assert argv[:3] == ["grant", "--hsm", HSM] and emulator.principal_id(app) in argv, remedy

    granted = _as(None, monkeypatch, "--output", "json", *argv)
    assert granted.code == 0, granted.err
    assert json.loads(granted.out)["done"] == [
        {"action": "assigned", "scope": f"/keys/{k1}", "role": "Managed HSM Crypto User"}
    ]
    again = _as(None, monkeypatch, "--output", "json", *argv)
    assert again.code == 0 and json.loads(again.out)["done"][0]["action"] == "already assigned"

    signed = _csr(token, monkeypatch, f"managedhsm:{HSM}:{k1}", tmp_path / "k1.csr")
    assert signed.code == 0, signed.err
    subprocess.run(["openssl", "req", "-in", str(tmp_path / "k1.csr"), "-verify", "-noout"], check=True)
    signer = emulator.principal_id(app)
    assert any(
        e.get("key") == k1 and e["operation"] == "sign" and e["principal"] == signer and e["result"] == "ok"
        for e in emulator.audit()
    )

    other = _csr(token, monkeypatch, f"managedhsm:{HSM}:{k2}", tmp_path / "k2.csr")
    assert other.code == 4, "a grant at /keys/k1 must not reach k2"


@pytest.mark.e2e
def test_granular_grant_gives_read_and_sign_on_one_key(
    emulator: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hsmcert.session import default_session

    key = f"grant-granular-{uuid4().hex[:8]}"
    ref = f"managedhsm:{HSM}:{key}"
    default_session().keys.create(ref, "RSA", size=2048)
    app = f"grant-signer-{uuid4().hex[:8]}"
    token = emulator.token(principal=app)
    argv = ["grant", "--hsm", HSM, "--principal", emulator.principal_id(app), "--key", key, "--granular"]

    granted = _as(None, monkeypatch, "--output", "json", *argv)
    assert granted.code == 0, granted.err
    from hsmcert.azure.roles import SIGNER_ROLE_NAME

    done = json.loads(granted.out)["done"]
    assert done[-1] == {"action": "assigned", "scope": f"/keys/{key}", "role": SIGNER_ROLE_NAME}

    assert _csr(token, monkeypatch, ref, tmp_path / "ok.csr").code == 0
    # the custom role reads and signs, nothing more: rotating the key is refused
    rotate = _as(token, monkeypatch, "key", "rotate", "--key", ref)
    assert rotate.code == 4, rotate.err
