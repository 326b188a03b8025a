"""hsmcert grant / revoke: let a machine's managed identity (or any principal) use keys, list who may, undo it."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from hsmcert.cli._common import (
    CaBundleOpt,
    CredentialOpt,
    EndpointOpt,
    OutputFormat,
    emit,
    log,
    session,
    state,
    waiting,
)

if TYPE_CHECKING:
    from hsmcert.azure.grant import MachineRef, Target

PrincipalOpt = Annotated[
    str | None, typer.Option("--principal", help="Object id of the identity (a service principal, a user).")
]
VmOpt = Annotated[
    str | None,
    typer.Option(
        "--vm",
        help="A machine by name: a VM, scale set or Arc machine, found across the subscription; "
        "self: the VM hsmcert runs on (instance metadata).",
    ),
]
VmssOpt = Annotated[str | None, typer.Option("--vmss", help="A virtual machine scale set by name.")]
ArcOpt = Annotated[str | None, typer.Option("--arc", help="An Azure Arc machine by name.")]
IdentityOpt = Annotated[
    str | None,
    typer.Option(
        "--identity", help="The machine's user-assigned identity of this name [default: system-assigned]."
    ),
]
GroupOpt = Annotated[
    str | None,
    typer.Option("--resource-group", "-g", help="Resource group of the machine [default: searched]."),
]
SubscriptionOpt = Annotated[
    str | None,
    typer.Option(
        "--subscription",
        help="Subscription to search [default: $AZURE_SUBSCRIPTION_ID, the Azure CLI's default account, "
        "or the only one visible].",
    ),
]
GrantKeyOpt = Annotated[
    str | None,
    typer.Option(
        "--key",
        help="Key reference (managedhsm:HSM:KEY, vault:VAULT:KEY; sets the HSM or vault and the scope), "
        "or a key name in --hsm / --vault.",
    ),
]
HsmOpt = Annotated[
    str | None,
    typer.Option(
        "--hsm", help="Managed HSM name [default: $HSMCERT_HSM, the config file's, the emulator's]."
    ),
]
VaultOpt = Annotated[
    str | None, typer.Option("--vault", help="Key Vault name (Azure RBAC or access policies).")
]
ScopeOpt = Annotated[str | None, typer.Option("--scope", help="Managed HSM scope: /, /keys or /keys/<name>.")]
DryRunOpt = Annotated[
    bool, typer.Option("--dry-run", help="Print the equivalent az commands; no request is made.")
]


def _machine_ref(
    principal: str | None,
    vm: str | None,
    vmss: str | None,
    arc: str | None,
    group: str | None,
    subscription: str | None,
    identity: str | None,
) -> MachineRef | None:
    from hsmcert.azure.grant import MachineRef, check_principal
    from hsmcert.errors import UsageError

    named = [(k, v) for k, v in (("principal", principal), ("vm", vm), ("vmss", vmss), ("arc", arc)) if v]
    if len(named) != 1:
        raise UsageError(
            "Name exactly one identity: --principal OBJECT_ID, --vm NAME (or self), --vmss NAME or --arc NAME."
        )
    kind, value = named[0]
    if kind == "principal":
        check_principal(value)
        if identity or group:
            raise UsageError("--identity and -g go with --vm, --vmss or --arc, not with --principal.")
        return None
    return MachineRef(kind, value, group, subscription, identity)


def _target(
    key: str | None, hsm: str | None, vault: str | None, scope: str | None, *where: str | None
) -> Target:
    """The target, from the options or the default HSM (the config file's, or the emulator's); no request.
    ``where``: the command's --endpoint, --ca-bundle and --credential."""
    from hsmcert.azure.grant import target_for

    default = None
    if not (hsm or vault or (key and ":" in key)):
        default = session(*where).default_hsm()
    return target_for(key=key, hsm=hsm, vault=vault, scope=scope, default_hsm=default)


def grant(
    principal: PrincipalOpt = None,
    vm: VmOpt = None,
    vmss: VmssOpt = None,
    arc: ArcOpt = None,
    identity: IdentityOpt = None,
    enable_identity: Annotated[
        bool,
        typer.Option("--enable-identity", help="Give the machine a system-assigned identity if it has none."),
    ] = False,
    key: GrantKeyOpt = None,
    hsm: HsmOpt = None,
    vault: VaultOpt = None,
    scope: ScopeOpt = None,
    resource_group: GroupOpt = None,
    subscription: SubscriptionOpt = None,
    role: Annotated[
        str, typer.Option("--role", help="Built-in role (crypto-user, crypto-officer, crypto-auditor, ...).")
    ] = "crypto-user",
    granular: Annotated[
        bool,
        typer.Option(
            "--granular", help="Least privilege: a custom role with only read and sign, for one key."
        ),
    ] = False,
    list_: Annotated[
        bool,
        typer.Option("--list", help="List who has which role at which scope (with --key, --hsm, --vault)."),
    ] = False,
    wait: Annotated[
        float,
        typer.Option(
            "--wait", min=0, max=3600, help="Seconds to wait for the access to take effect (0: do not wait)."
        ),
    ] = 60.0,
    dry_run: DryRunOpt = False,
    endpoint: EndpointOpt = None,
    ca_bundle: CaBundleOpt = None,
    credential: CredentialOpt = None,
) -> None:
    """Give a machine's managed identity (or any principal) access to keys: Managed HSM local RBAC, or a Key
    Vault's Azure RBAC or access policy, exactly as much as it needs.

    Examples:

      hsmcert grant --vm myvm

      hsmcert grant --vm web01 --key managedhsm:contoso:tls-key --granular

      hsmcert grant --vm web01 --key vault:team-kv:signing --dry-run

      hsmcert grant --list --key vault:team-kv:signing
    """
    from hsmcert.azure import grant as access

    target = _target(key, hsm, vault, scope, endpoint, ca_bundle, credential)
    if list_ and not (vm or vmss or arc):
        _list(target, principal, subscription, endpoint, ca_bundle, credential)
        return
    ref = _machine_ref(principal, vm, vmss, arc, resource_group, subscription, identity)
    if list_:  # only the machine's identity
        found = access.plan_grant(target, principal_id=None, machine=ref)
        with waiting(
            f"looking up the managed identity of {'this machine' if ref and ref.is_self else vm or vmss or arc}"
        ):
            access.resolve_principal(
                session(endpoint, ca_bundle, credential), found, subscription=subscription
            )
        _list(target, found.principal_id, found.subscription or subscription, endpoint, ca_bundle, credential)
        return
    plan = access.plan_grant(target, principal_id=principal, machine=ref, role=role, granular=granular)
    if dry_run:
        plan.subscription = subscription
        commands = access.az_commands(plan)
        emit({**plan.to_json(), "az": commands}, "\n".join(commands))
        return

    hsm_session = session(endpoint, ca_bundle, credential)
    if ref is not None:
        with waiting(f"looking up the managed identity of {'this machine' if ref.is_self else ref.name}"):
            access.resolve_principal(
                hsm_session, plan, subscription=subscription, enable_identity=enable_identity
            )
        if plan.machine is not None and plan.identity is not None:
            log(
                f"{plan.machine.spec.label} {plan.machine.name} (resource group {plan.machine.resource_group}): "
                f"{plan.identity.name} identity {plan.principal_id}"
            )
    with waiting(f"giving access in {target.label}"):
        access.apply(hsm_session, plan, subscription=subscription)
    if wait > 0 and any(d["action"] != "already assigned" for d in plan.done):
        with waiting("waiting for the access to take effect"):
            result = access.wait_effective(hsm_session, plan, timeout=wait)
        if not result["effective"]:
            log(
                f"warning: the access is not yet observed in effect after {result['seconds']:.0f} s; "
                "Azure can take several minutes (Azure RBAC on a vault up to ten)."
            )
        elif result["probe"] == "data-plane":
            log(f"in effect after {result['seconds']:.0f} s (checked with the machine's own identity)")
        elif plan.mode == "rbac":
            log(
                "The role assignment is in place; Azure RBAC can take a few minutes (up to ten) before the "
                "vault honours it. hsmcert can check that only on the machine itself: --vm self."
            )
    emit(plan.to_json(), lambda: "\n".join(_done_line(d) for d in plan.done))


def _done_line(done: dict[str, Any]) -> str:
    if "role" in done and "scope" in done:
        return f"{done['action']}: {done['role']} at {done['scope']}"
    if "permissions" in done:
        return f"{done['action']}: keys {', '.join(done['permissions'])} at {done['scope']}"
    if "machine" in done:
        return f"{done['action']}: {done['machine']}"
    return f"{done['action']}: {done.get('role')} at /"


def _list(
    target: Target,
    principal: str | None,
    subscription: str | None,
    endpoint: str | None,
    ca_bundle: str | None,
    credential: str | None,
) -> None:
    from hsmcert.azure.grant import check_principal, list_access

    if principal is not None:
        check_principal(principal)
    with waiting(f"reading the access of {target.label}"):
        rows = list_access(
            session(endpoint, ca_bundle, credential), target, principal, subscription=subscription
        )
    emit({"target": target.label, "scope": target.scope, "assignments": rows}, lambda: _table(rows))


def _short_scope(scope: str) -> str:
    """A Resource Manager scope for a table: from the resource provider on (the full id is in the JSON).

    >>> _short_scope("/subscriptions/s/resourceGroups/g/providers/Microsoft.KeyVault/vaults/v/keys/k")
    '.../Microsoft.KeyVault/vaults/v/keys/k'
    """
    return (
        "..." + scope[scope.index("/providers/") + len("/providers") :] if "/providers/" in scope else scope
    )


def _table(rows: list[dict[str, Any]]) -> str:
    """The rows as a table: rich's on a terminal, plain aligned columns otherwise (KIND only when the rows
    mix role assignments and access policies)."""
    if not rows:
        return "no role assignments or access policies"
    columns = ["principal_id", "role", "scope"]
    headers = ["PRINCIPAL", "ROLE", "SCOPE"]
    if len({row.get("kind") for row in rows}) > 1:
        columns.append("kind")
        headers.append("KIND")
    cells = [
        [_short_scope(str(row.get(c) or "")) if c == "scope" else str(row.get(c) or "") for c in columns]
        for row in rows
    ]
    if sys.stdout.isatty() and state.output is OutputFormat.text:
        from rich.console import Console
        from rich.table import Table

        from hsmcert.cli._common import _console_kwargs

        table = Table(box=None, header_style="bold")
        for header in headers:  # an object id and a role name are read (and copied) whole
            table.add_column(header, no_wrap=header != "SCOPE", overflow="fold")
        for line in cells:
            table.add_row(*line)
        console = Console(**_console_kwargs(stderr=False), force_terminal=True)
        with console.capture() as captured:
            console.print(table)
        return captured.get().rstrip("\n")
    matrix = [headers, *cells]
    widths = [max(len(r[i]) for r in matrix) for i in range(len(columns))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in matrix)


def revoke(
    principal: PrincipalOpt = None,
    vm: VmOpt = None,
    vmss: VmssOpt = None,
    arc: ArcOpt = None,
    identity: IdentityOpt = None,
    key: GrantKeyOpt = None,
    hsm: HsmOpt = None,
    vault: VaultOpt = None,
    scope: ScopeOpt = None,
    resource_group: GroupOpt = None,
    subscription: SubscriptionOpt = None,
    dry_run: DryRunOpt = False,
    endpoint: EndpointOpt = None,
    ca_bundle: CaBundleOpt = None,
    credential: CredentialOpt = None,
) -> None:
    """Remove the access hsmcert grant gave: the identity's role assignments at the key (without --key: at
    every key and /keys), or the get and sign permissions of its vault access policy. Nothing to remove is
    not an error.

    Examples:

      hsmcert revoke --vm myvm

      hsmcert revoke --principal 00000000-0000-0000-0000-000000000001 --key vault:team-kv:signing
    """
    from hsmcert.azure import grant as access

    target = _target(key, hsm, vault, scope, endpoint, ca_bundle, credential)
    ref = _machine_ref(principal, vm, vmss, arc, resource_group, subscription, identity)
    if dry_run:
        commands = access.revoke_commands(target, principal, ref)
        emit(
            {"target": target.label, "scope": target.scope, "principal_id": principal, "az": commands},
            "\n".join(commands),
        )
        return
    hsm_session = session(endpoint, ca_bundle, credential)
    plan = access.plan_grant(target, principal_id=principal, machine=ref)
    if ref is not None:
        with waiting(f"looking up the managed identity of {'this machine' if ref.is_self else ref.name}"):
            access.resolve_principal(hsm_session, plan, subscription=subscription)
    principal_id = str(plan.principal_id)
    with waiting(f"removing access in {target.label}"):
        removed = access.revoke(
            hsm_session, target, principal_id, subscription=plan.subscription or subscription
        )
    emit(
        {"target": target.label, "scope": target.scope, "principal_id": principal_id, "removed": removed},
        lambda: (
            "\n".join(_done_line(d) for d in removed)
            or f"nothing to revoke: {principal_id} has no access hsmcert gives at {target.label} {target.scope}"
        ),
    )


def register(app: typer.Typer) -> None:
    app.command("grant")(grant)
    app.command("revoke")(revoke)
