"""hsmcert grant: let a machine's managed identity (or any principal) use HSM keys."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from hsmcert.cli._common import CaBundleOpt, CredentialOpt, EndpointOpt, emit, log, session, waiting


def grant(
    hsm: Annotated[str, typer.Option("--hsm", help="Managed HSM name.")],
    principal: Annotated[
        str | None, typer.Option("--principal", help="Object id of the identity to grant access to.")
    ] = None,
    vm: Annotated[
        str | None, typer.Option("--vm", help="Azure VM whose system-assigned identity gets access.")
    ] = None,
    arc: Annotated[
        str | None, typer.Option("--arc", help="Azure Arc server whose identity gets access.")
    ] = None,
    resource_group: Annotated[
        str | None, typer.Option("--resource-group", "-g", help="Resource group of --vm / --arc.")
    ] = None,
    subscription: Annotated[
        str | None,
        typer.Option(
            "--subscription", help="Subscription of --vm / --arc [default: $AZURE_SUBSCRIPTION_ID]."
        ),
    ] = None,
    key: Annotated[str | None, typer.Option("--key", help="Key name: scope /keys/<name>.")] = None,
    scope: Annotated[str | None, typer.Option("--scope", help="Scope: /, /keys or /keys/<name>.")] = None,
    role: Annotated[
        str, typer.Option("--role", help="Built-in role (crypto-user, crypto-auditor, ...).")
    ] = "crypto-user",
    granular: Annotated[
        bool,
        typer.Option("--granular", help="Least privilege: a custom role with only read and sign, for --key."),
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the equivalent az commands; change nothing.")
    ] = False,
    endpoint: EndpointOpt = None,
    ca_bundle: CaBundleOpt = None,
    credential: CredentialOpt = None,
) -> None:
    """Give an identity access to keys in a Managed HSM (local RBAC), exactly as much as it needs.

    Examples:

      hsmcert grant --hsm contoso --vm web01 -g rg-web --key tls-key --granular

      hsmcert grant --hsm contoso --principal 00000000-0000-0000-0000-000000000001 --key tls-key --dry-run
    """
    from hsmcert.azure.grant import Machine, az_commands, plan_grant
    from hsmcert.errors import UsageError

    named = [x for x in (principal, vm, arc) if x]
    if len(named) != 1:
        raise UsageError("Name exactly one identity: --principal OBJECT_ID, --vm NAME or --arc NAME.")
    machine = None
    if vm or arc:
        sub = subscription or os.environ.get("AZURE_SUBSCRIPTION_ID")
        if not resource_group or not sub:
            raise UsageError(
                "--vm and --arc need --resource-group and --subscription (or AZURE_SUBSCRIPTION_ID)."
            )
        machine = Machine("vm" if vm else "arc", str(vm or arc), resource_group, sub)
    plan = plan_grant(
        hsm, principal_id=principal, machine=machine, key=key, scope=scope, role=role, granular=granular
    )
    if dry_run:
        commands = az_commands(plan)
        emit({**plan.to_json(), "az": commands}, "\n".join(commands))
        return

    hsm_session = session(endpoint, ca_bundle, credential)
    if machine is not None:
        with waiting(f"looking up the managed identity of {machine.name}"):
            plan.principal_id = hsm_session.machine_principal_id(machine)
        log(f"{machine.name}: managed identity {plan.principal_id}")
    with waiting(f"assigning roles in {hsm}"):
        hsm_session.grant(plan)
    emit(
        plan.to_json(),
        lambda: "\n".join(f"{d['action']}: {d.get('role')} at {d.get('scope', '/')}" for d in plan.done),
    )


def register(app: typer.Typer) -> None:
    app.command("grant")(grant)
