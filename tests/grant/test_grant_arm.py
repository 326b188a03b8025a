"""hsmcert grant / revoke against the emulator's Resource Manager: discovery, identities, vaults, list, revoke.

Each module gets an emulator of its own (machines, the propagation delay and the vault mode are its state),
and runs hsmcert as a user does, a process per command, with a home of its own (no Azure CLI profile).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest

from tests.fixtures.emulator import EmulatorHandle, start_emulator

pytestmark = pytest.mark.process


@dataclass
class Arm:
    emulator: EmulatorHandle
    env: dict[str, str]
    work: Path

    def run(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "hsmcert", *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=180,
            env={**self.env, **(env or {})},
            cwd=self.work,
        )

    def ok(self, *args: str, env: dict[str, str] | None = None) -> Any:
        """Run with --output json; the document (the command must succeed)."""
        out = self.run("--output", "json", *args, env=env)
        assert out.returncode == 0, (args, out.stderr)
        return json.loads(out.stdout)

    def vm(self, name: str, *options: str) -> dict[str, Any]:
        machine: dict[str, Any] = self.ok("emulator", "vm", "add", name, *options)
        return machine

    def token(self, principal: str, audience: str = "https://managedhsm.azure.net") -> str:
        return self.emulator.token(principal, audience)

    def arm_requests(self) -> int:
        return sum(1 for e in self.emulator.audit() if str(e.get("operation", "")).startswith("arm-"))


@pytest.fixture(scope="module")
def arm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Arm]:
    work = tmp_path_factory.mktemp("grant-arm")
    handle = start_emulator(work / "emulator")
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("HSMCERT_", "AZURE_", "IDENTITY_", "MSI_"))
    }
    env.update(handle.env)
    env.update(
        HOME=str(work / "home"),
        AZURE_CONFIG_DIR=str(work / "home" / ".azure"),
        HSMCERT_CONFIG=str(work / "config.toml"),
        HSMCERT_CACHE_DIR=str(work / "cache"),
    )
    try:
        yield Arm(handle, env, work)
    finally:
        handle.stop()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid4().hex[:6]}"


def can_sign(arm: Arm, principal: str, ref: str, audience: str = "https://managedhsm.azure.net") -> int:
    """Exit code of a CSR signed with ``ref`` as ``principal`` (0: it may sign; 4: refused)."""
    out = arm.run(
        "csr", "--key", ref, "--subj", "/CN=grant.test", "-o", str(arm.work / f"{uuid4().hex}.csr"),
        "--credential", "env-token",
        env={"HSMCERT_ACCESS_TOKEN": arm.token(principal, audience), "HSMCERT_KEY_CACHE": "off"},
    )  # fmt: skip
    return out.returncode


def test_grant_vm_myvm_as_written_then_revoke(arm: Arm) -> None:
    """`hsmcert grant --vm myvm`: the default HSM, the subscription and the group are found; the VM's identity
    signs afterwards and not before, and not after revoke; both are idempotent."""
    vm = arm.vm("myvm")
    ref = f"managedhsm:local-hsm:{unique('short')}"
    arm.ok("key", "create", "--key", ref, "--kty", "EC")
    assert can_sign(arm, vm["principalId"], ref) == 4

    plan = arm.ok("grant", "--vm", "myvm")
    assert plan["principal_id"] == vm["principalId"] and plan["machine"] == vm["id"]
    assert plan["hsm"] == "local-hsm" and plan["identity"]["type"] == "system-assigned"
    assert plan["done"] == [{"action": "assigned", "scope": "/keys", "role": "Managed HSM Crypto User"}]
    assert plan["effective"]["effective"] is True
    assert can_sign(arm, vm["principalId"], ref) == 0
    again = arm.ok("grant", "--vm", "myvm")
    assert again["done"][0]["action"] == "already assigned"

    listed = arm.ok("grant", "--list")
    assert {
        "principal_id": vm["principalId"],
        "role": "Managed HSM Crypto User",
        "scope": "/keys",
    }.items() <= next(r for r in listed["assignments"] if r["principal_id"] == vm["principalId"]).items()
    mine = arm.ok("grant", "--list", "--vm", "myvm")["assignments"]
    assert [(r["principal_id"], r["role"], r["scope"]) for r in mine] == [
        (vm["principalId"], "Managed HSM Crypto User", "/keys")
    ]
    text = arm.run("grant", "--list")
    assert text.stdout.splitlines()[0].split() == ["PRINCIPAL", "ROLE", "SCOPE"]

    removed = arm.ok("revoke", "--vm", "myvm")
    assert removed["removed"] == [{"action": "removed", "scope": "/keys", "role": "Managed HSM Crypto User"}]
    assert can_sign(arm, vm["principalId"], ref) == 4
    assert arm.ok("revoke", "--vm", "myvm")["removed"] == []


def test_ambiguous_machines_are_listed_with_the_flag_that_picks_one(arm: Arm) -> None:
    name = unique("twin")
    first = arm.vm(name, "-g", "rg-one")
    second = arm.vm(name, "-g", "rg-two")
    out = arm.run("grant", "--vm", name)
    assert out.returncode == 2, out.stderr
    assert out.stderr.startswith(f"error: 2 machines are named {name!r}")
    assert first["id"] in out.stderr and second["id"] in out.stderr and "-g GROUP" in out.stderr
    picked = arm.ok("grant", "--vm", name, "-g", "rg-two")
    assert picked["principal_id"] == second["principalId"]

    kinds = unique("both")
    arm.vm(kinds)
    arm.vm(kinds, "--scale-set")
    out = arm.run("grant", "--vm", kinds)
    assert out.returncode == 2 and "--vmss NAME" in out.stderr, out.stderr
    assert arm.ok("grant", "--vmss", kinds)["machine"].endswith(f"/virtualMachineScaleSets/{kinds}")


def test_nothing_found_names_where_hsmcert_looked(arm: Arm) -> None:
    out = arm.run("grant", "--vm", "no-such-vm")
    assert out.returncode == 3, out.stderr
    assert "No VM, scale set or Arc machine named 'no-such-vm' in subscription" in out.stderr
    assert "the only subscription visible" in out.stderr and arm.env["HSMCERT_ARM_URL"] in out.stderr

    other = "00000000-0000-0000-0000-0000000000aa"
    out = arm.run("grant", "--vm", "no-such-vm", env={"AZURE_SUBSCRIPTION_ID": other})
    assert out.returncode == 3 and other in out.stderr and "AZURE_SUBSCRIPTION_ID" in out.stderr, out.stderr


def test_a_caller_who_sees_no_subscription_is_told(arm: Arm) -> None:
    token = arm.token("nobody-at-all", "https://management.azure.com")
    out = arm.run("grant", "--vm", "myvm", "--credential", "env-token", env={"HSMCERT_ACCESS_TOKEN": token})
    assert out.returncode == 3 and "sees no enabled subscription" in out.stderr, out.stderr


def test_a_machine_without_identity_gets_the_az_command_or_enable_identity(arm: Arm) -> None:
    name = unique("bare")
    arm.vm(name, "--no-identity")
    out = arm.run("grant", "--vm", name)
    assert out.returncode == 8, out.stderr
    assert f"az vm identity assign -g hsmcert-emulator -n {name} --subscription" in out.stderr
    assert "--enable-identity" in out.stderr and "Traceback" not in out.stderr
    plan = arm.ok("grant", "--vm", name, "--enable-identity")
    assert plan["done"][0]["action"] == "enabled identity" and plan["principal_id"]
    listed = arm.ok("emulator", "vm", "list")["machines"]
    assert next(m for m in listed if m["name"] == name)["principalId"] == plan["principal_id"]


def test_user_assigned_identities_and_arc_machines(arm: Arm) -> None:
    name, uami = unique("web"), unique("uami")
    machine = arm.vm(name, "--user-assigned", uami)
    user = machine["userAssigned"][0]
    plan = arm.ok("grant", "--vm", name, "--identity", uami)
    assert plan["principal_id"] == user["principalId"] != machine["principalId"]
    assert plan["identity"]["type"] == "user-assigned" and plan["identity"]["client_id"] == user["clientId"]
    out = arm.run("grant", "--vm", name, "--identity", "not-there")
    assert out.returncode == 8 and uami in out.stderr and "az vm identity assign" in out.stderr, out.stderr

    edge = unique("edge")
    arc = arm.vm(edge, "--arc")
    assert arm.ok("grant", "--vm", edge)["principal_id"] == arc["principalId"]
    bare = unique("edge")
    arm.vm(bare, "--arc", "--no-identity")
    out = arm.run("grant", "--arc", bare)
    assert out.returncode == 8 and "azcmagent connect" in out.stderr, out.stderr


def test_vault_key_rbac_then_revoke(arm: Arm) -> None:
    vm = arm.vm(unique("signer"))
    ref = f"vault:local-vault:{unique('vk')}"
    arm.ok("key", "create", "--key", ref, "--kty", "EC")
    vault_aud = "https://vault.azure.net"
    assert can_sign(arm, vm["principalId"], ref, vault_aud) == 4

    plan = arm.ok("grant", "--vm", vm["name"], "--key", ref, "--granular")
    assert plan["mode"] == "rbac" and plan["vault"] == "local-vault"
    key_scope = f"{plan['vault_id']}/keys/{ref.rsplit(':', 1)[1]}"
    assert plan["done"][-1] == {"action": "assigned", "scope": key_scope, "role": "hsmcert Key Vault Signer"}
    assert can_sign(arm, vm["principalId"], ref, vault_aud) == 0
    assert (
        arm.ok("grant", "--vm", vm["name"], "--key", ref, "--granular")["done"][-1]["action"]
        == "already assigned"
    )

    other = f"vault:local-vault:{unique('vk')}"
    arm.ok("key", "create", "--key", other, "--kty", "EC")
    assert can_sign(arm, vm["principalId"], other, vault_aud) == 4, (
        "a key-scope grant must not reach another key"
    )

    listed = arm.ok("grant", "--list", "--key", ref, "--principal", vm["principalId"])["assignments"]
    assert [(r["role"], r["scope"]) for r in listed] == [("hsmcert Key Vault Signer", key_scope)]
    assert arm.ok("revoke", "--vm", vm["name"], "--key", ref)["removed"][0]["scope"] == key_scope
    assert can_sign(arm, vm["principalId"], ref, vault_aud) == 4
    assert arm.ok("revoke", "--vm", vm["name"], "--key", ref)["removed"] == []


def test_hostile_names_are_refused_before_any_request(arm: Arm) -> None:
    before = arm.arm_requests()
    for args in (
        ("--vm", "web01/../../other"),
        ("--vm", "web01?api-version=2015-01-01"),
        ("--vm", "web01", "-g", "rg/../x"),
        ("--vm", "web01", "--identity", "id#x"),
        ("--vm", "web01", "--subscription", "../.."),
        ("--vm", "web01", "--key", "vault:kv/../x:k"),
        ("--vm", "web01", "--key", "vault:local-vault:k%2F.."),
    ):
        out = arm.run("grant", *args)
        assert out.returncode == 2, (args, out.stderr)
        assert out.stderr.count("error:") == 1 and "Traceback" not in out.stderr
    assert arm.arm_requests() == before


@pytest.fixture
def private_arm(tmp_path: Path, arm: Arm) -> Iterator[Arm]:
    """An emulator of the test's own, for settings that change the whole Resource Manager."""
    handle = start_emulator(tmp_path / "emulator")
    env = {**arm.env, **handle.env, "HSMCERT_CACHE_DIR": str(tmp_path / "cache")}
    try:
        yield Arm(handle, env, tmp_path)
    finally:
        handle.stop()


def test_vault_in_access_policy_mode_gets_get_and_sign(private_arm: Arm) -> None:
    arm = private_arm
    out = arm.run("emulator", "start", "--vault", "policy-vault", "--vault-access-policies")
    assert out.returncode == 0, out.stderr
    vm = arm.vm("myvm")
    ref = "vault:policy-vault:pk"
    arm.ok("key", "create", "--key", ref, "--kty", "EC")
    plan = arm.ok("grant", "--vm", "myvm", "--key", ref)
    assert plan["mode"] == "access-policy"
    assert plan["done"][0]["action"] == "added policy" and plan["done"][0]["permissions"] == ["get", "sign"]
    assert can_sign(arm, vm["principalId"], ref, "https://vault.azure.net") == 0
    rows = arm.ok("grant", "--list", "--key", ref, "--principal", vm["principalId"])["assignments"]
    assert [(r["kind"], r["role"]) for r in rows] == [("access policy", "keys: get,sign")]
    assert arm.ok("revoke", "--vm", "myvm", "--key", ref)["removed"][0]["action"] == "removed policy"
    assert can_sign(arm, vm["principalId"], ref, "https://vault.azure.net") == 4
    assert arm.ok("revoke", "--vm", "myvm", "--key", ref)["removed"] == []


def test_grant_waits_for_propagation_on_the_machine_itself(private_arm: Arm) -> None:
    """With a propagation delay, `--vm self` waits until the machine's own identity can read the key; without
    a way to check (another machine) it says the assignment may take minutes."""
    arm = private_arm
    delay = 6
    assert arm.run("emulator", "start", "--propagation-delay", f"{delay}s").returncode == 0
    vm = arm.vm("here", "--self")
    ref = f"vault:local-vault:{unique('pk')}"
    arm.ok("key", "create", "--key", ref, "--kty", "EC")
    started = time.monotonic()
    plan = arm.ok("grant", "--vm", "self", "--key", ref)
    assert plan["principal_id"] == vm["principalId"]
    assert plan["effective"]["effective"] is True and plan["effective"]["probe"] == "data-plane"
    assert time.monotonic() - started >= delay - 1  # it waited for the delay, not less
    assert can_sign(arm, vm["principalId"], ref, "https://vault.azure.net") == 0

    arm.vm("there")
    ref2 = f"vault:local-vault:{unique('pk')}"
    arm.ok("key", "create", "--key", ref2, "--kty", "EC")
    out = arm.run("grant", "--vm", "there", "--key", ref2)
    assert out.returncode == 0, out.stderr
    assert "can take a few minutes" in out.stderr

    ref3 = f"vault:local-vault:{unique('pk')}"
    arm.ok("key", "create", "--key", ref3, "--kty", "EC")
    short = arm.run("grant", "--vm", "self", "--key", ref3, "--wait", "1")
    assert short.returncode == 0 and "not yet observed in effect" in short.stderr, short.stderr


def test_the_remedy_of_a_refused_vault_sign_is_a_grant_that_works(arm: Arm) -> None:
    vm = arm.vm(unique("app"))
    ref = f"vault:local-vault:{unique('rk')}"
    arm.ok("key", "create", "--key", ref, "--kty", "EC")
    token = arm.token(vm["principalId"], "https://vault.azure.net")
    refused = arm.run(
        "csr", "--key", ref, "--subj", "/CN=app", "-o", str(arm.work / "refused.csr"), "--credential", "env-token",
        env={"HSMCERT_ACCESS_TOKEN": token},
    )  # fmt: skip
    assert refused.returncode == 4, refused.stderr
    remedy = refused.stderr[refused.stderr.index("hsmcert grant ") :].split("\n")[0]
    argv = shlex.split(remedy)[1:]
    assert argv[:3] == ["grant", "--principal", vm["principalId"]] and ref in argv, remedy
    assert arm.ok(*argv)["done"][-1]["action"] == "assigned"
    assert can_sign(arm, vm["principalId"], ref, "https://vault.azure.net") == 0
