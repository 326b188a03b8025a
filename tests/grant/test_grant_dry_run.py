"""hsmcert grant --dry-run: the plan and the az commands, without touching any HSM."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.process  # every test here starts a process (see tests/fixtures/process_marks.py)

PRINCIPAL = "00000000-0000-0000-0000-000000000001"


def hsmcert(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hsmcert", *args], capture_output=True, text=True, check=False, env=env
    )


def offline_env(tmp_path: Path) -> dict[str, str]:
    """An environment where any request would fail at once: no subscription, no Azure CLI profile, Resource
    Manager and the instance metadata service at a closed port."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "HSMCERT_ARM", "HSMCERT_EMULATOR"))
    }
    env.update(
        {
            "AZURE_CONFIG_DIR": str(tmp_path / "no-az"),
            "HSMCERT_ARM_URL": "https://127.0.0.1:9",
            "HSMCERT_IMDS_URL": "http://127.0.0.1:9",
            "HSMCERT_CONFIG": str(tmp_path / "config.toml"),
        }
    )
    return env


def test_grant_vm_dry_run_needs_no_subscription_group_or_network(tmp_path: Path) -> None:
    """The short form with --dry-run: the az look-up of the machine instead of a resolved principal."""
    (tmp_path / "config.toml").write_text('[defaults]\nhsm = "contoso"\n')
    out = hsmcert("grant", "--vm", "myvm", "--dry-run", env=offline_env(tmp_path))
    assert out.returncode == 0, out.stderr
    lookup, assign = out.stdout.strip().splitlines()
    assert lookup.startswith("principal=$(az vm show --ids ") and "az vm list --query" in lookup
    assert "[?name=='myvm'].id" in lookup and "--subscription" not in lookup
    assert assign.startswith("az keyvault role assignment create --hsm-name contoso ")
    assert '--assignee-object-id "$principal"' in assign and "--scope /keys " in assign


def test_vault_dry_run_prints_rbac_and_the_access_policy_alternative(tmp_path: Path) -> None:
    out = hsmcert(
        "--output", "json", "grant", "--vm", "myvm", "--identity", "signer-id", "--key", "vault:team-kv:sign",
        "--granular", "--dry-run", env=offline_env(tmp_path),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    plan = json.loads(out.stdout)
    assert plan["vault"] == "team-kv" and plan["hsm"] is None and plan["schema"] == 1
    commands = plan["az"]
    assert commands[0].startswith("principal=$(az identity list --query ")
    assert commands[1] == "subscription=$(az account show --query id -o tsv)"
    assert commands[2].startswith("az role definition create --role-definition ")
    assert '\\"Microsoft.KeyVault/vaults/keys/sign/action\\"' in commands[2]
    assert "/subscriptions/$subscription" in commands[2]
    assert "--role 'hsmcert Key Vault Signer'" in commands[3]
    assert '--scope "$(az keyvault show -n team-kv --query id -o tsv)/keys/sign"' in commands[3]
    assert "az keyvault set-policy -n team-kv" in commands[4] and "--key-permissions get sign" in commands[4]


def test_revoke_dry_run_prints_the_delete_commands(tmp_path: Path) -> None:
    env = offline_env(tmp_path)
    out = hsmcert("revoke", "--principal", PRINCIPAL, "--key", "managedhsm:contoso:tls", "--dry-run", env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == (
        f"az keyvault role assignment delete --hsm-name contoso --assignee {PRINCIPAL} --scope /keys/tls"
    )
    out = hsmcert("revoke", "--vm", "myvm", "-g", "rg1", "--key", "vault:kv1:k", "--dry-run", env=env)
    assert out.returncode == 0, out.stderr
    lookup, delete, policy = out.stdout.strip().splitlines()
    assert lookup == "principal=$(az vm show -g rg1 -n myvm --query identity.principalId -o tsv)"
    assert delete.startswith(
        'az role assignment delete --assignee "$principal" --scope "$(az keyvault show -n kv1'
    )
    assert "az keyvault delete-policy -n kv1" in policy


def test_without_an_hsm_the_error_says_how_to_name_one(tmp_path: Path) -> None:
    out = hsmcert("grant", "--vm", "myvm", "--dry-run", env=offline_env(tmp_path))
    assert out.returncode == 2, out.stderr
    assert out.stderr.startswith("error: Which HSM?") and "[defaults] hsm" in out.stderr


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
        ("--vm", "web01", "--vmss", "web01"),
        ("--vm", "web01/../x"),
        ("--vm", "web01", "--identity", "bad/id"),
        ("--vm", "web01", "-g", "rg."),
        ("--vm", "web01", "--subscription", "nope"),
        ("--principal", PRINCIPAL, "--identity", "uami"),
        ("--principal", PRINCIPAL, "--key", "vault:kv1:k?version=0123456789abcdef0123456789abcdef"),
        ("--principal", PRINCIPAL, "--key", "vault:kv1:k", "--scope", "/keys"),
        ("--principal", "{" + PRINCIPAL + "}"),
        ("--principal", "urn:uuid:" + PRINCIPAL),
    ]
    for extra in cases:
        out = hsmcert("grant", "--hsm", "contoso", *extra, "--dry-run")
        assert out.returncode == 2, (extra, out.stderr)
        assert out.stdout == ""
        assert "Traceback" not in out.stderr
        assert out.stderr.startswith("error: "), out.stderr


def test_hsmcert_hsm_is_a_default_that_a_key_reference_overrides(tmp_path: Path) -> None:
    env = {**offline_env(tmp_path), "HSMCERT_HSM": "from-env"}
    out = hsmcert("--output", "json", "grant", "--principal", PRINCIPAL, "--dry-run", env=env)
    assert out.returncode == 0 and json.loads(out.stdout)["hsm"] == "from-env", out.stderr
    out = hsmcert(
        "--output", "json", "grant", "--principal", PRINCIPAL, "--key", "vault:kv1:k", "--dry-run", env=env
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["vault"] == "kv1" and json.loads(out.stdout)["hsm"] is None
