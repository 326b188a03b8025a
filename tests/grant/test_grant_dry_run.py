"""hsmcert grant --dry-run: the plan and the az commands, without touching any HSM."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.process  # every test here starts a process (see tests/fixtures/process_marks.py)

PRINCIPAL = "00000000-0000-0000-0000-000000000001"


def hsmcert(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hsmcert", *args], capture_output=True, text=True, check=False
    )


def test_granular_creates_custom_role_then_assigns_at_key_scope() -> None:
    out = hsmcert(
        "grant", "--hsm", "contoso", "--principal", PRINCIPAL, "--key", "tls", "--granular", "--dry-run"
    )
    assert out.returncode == 0, out.stderr
    create, assign = out.stdout.strip().splitlines()
    assert create.startswith("az keyvault role definition create --hsm-name contoso")
    definition = json.loads(create.split("--role-definition ", 1)[1].strip("'"))
    assert definition["dataActions"] == [
        "Microsoft.KeyVault/managedHsm/keys/read/action",
        "Microsoft.KeyVault/managedHsm/keys/sign/action",
    ]
    assert "--scope /keys/tls" in assign and f"--assignee-object-id {PRINCIPAL}" in assign


def test_vm_dry_run_looks_up_the_identity_in_the_az_command() -> None:
    out = hsmcert(
        "--output", "json", "grant", "--hsm", "contoso", "--vm", "web01", "-g", "rg-web",
        "--subscription", "00000000-0000-0000-0000-00000000abcd", "--key", "k", "--dry-run",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    plan = json.loads(out.stdout)
    assert plan["assignments"] == [{"role": "Managed HSM Crypto User", "scope": "/keys/k"}]
    assert plan["machine"].endswith("/providers/Microsoft.Compute/virtualMachines/web01")
    assert "az vm show -g rg-web -n web01" in plan["az"][0]


def test_role_and_scope_choices() -> None:
    out = hsmcert(
        "grant",
        "--hsm",
        "contoso",
        "--principal",
        PRINCIPAL,
        "--scope",
        "/keys",
        "--role",
        "crypto-auditor",
        "--dry-run",
    )
    assert out.returncode == 0, out.stderr
    assert "--role 'Managed HSM Crypto Auditor' --scope /keys " in out.stdout


def test_bad_input_is_one_line_and_exit_2() -> None:
    cases = [
        ("--principal", "not-a-guid"),
        ("--principal", PRINCIPAL, "--key", "k", "--scope", "/keys"),
        ("--principal", PRINCIPAL, "--scope", "/secrets"),
        ("--principal", PRINCIPAL, "--granular"),
        ("--principal", PRINCIPAL, "--role", "superuser"),
        ("--principal", PRINCIPAL, "--vm", "web01"),
        ("--vm", "web01"),
        ("--principal", "{" + PRINCIPAL + "}"),
        ("--principal", "urn:uuid:" + PRINCIPAL),
    ]
    for extra in cases:
        out = hsmcert("grant", "--hsm", "contoso", *extra, "--dry-run")
        assert out.returncode == 2, (extra, out.stderr)
        assert out.stdout == ""
        assert "Traceback" not in out.stderr
        assert out.stderr.startswith("error: "), out.stderr
