"""hsmcert whoami and hsmcert doctor: which identity answers, and what is wrong with the set-up."""

from __future__ import annotations

from typing import Annotated

import typer

from hsmcert.cli._common import CaBundleOpt, CredentialOpt, EndpointOpt, emit, session, state, times
from hsmcert.clock import rfc3339


def whoami(
    credential: CredentialOpt = None,
    scope: Annotated[
        str | None,
        typer.Option("--scope", help="Token audience [default: https://managedhsm.azure.net/.default]."),
    ] = None,
) -> None:
    """Show which credential answers, its tenant and object id (never the token)."""
    from hsmcert.azure.credentials import MANAGED_HSM_SCOPE, describe

    who = describe(session(credential=credential).credential, scope or MANAGED_HSM_SCOPE)
    data = times(who.to_json(), "expires_on")

    def text() -> str:
        expires = f"expires {rfc3339(who.expires_on)}" if who.expires_on else "no expiry claim"
        lines = [
            f"credential: {who.credential}",
            f"tenant:     {who.tenant_id or '-'}",
            f"object id:  {who.object_id or '-'}",
        ]
        if who.app_id:
            lines.append(f"app id:     {who.app_id}")
        if who.name:
            lines.append(f"name:       {who.name}")
        lines.append(f"token for:  {who.scope} ({expires})")
        return "\n".join(lines)

    emit(data, text)


def doctor(
    key: Annotated[
        str | None, typer.Option("--key", "-k", help="Check this key: read, operations, sign.")
    ] = None,
    hsm: Annotated[str | None, typer.Option("--hsm", help="Check this Managed HSM (list keys).")] = None,
    vault: Annotated[str | None, typer.Option("--vault", help="Check this Key Vault (list keys).")] = None,
    no_sign: Annotated[
        bool, typer.Option("--no-sign", help="With --key: do not make a test signature.")
    ] = False,
    endpoint: EndpointOpt = None,
    ca_bundle: CaBundleOpt = None,
    credential: CredentialOpt = None,
) -> None:
    """Check credentials, the endpoint, reachability and the permissions on a key; say how to fix each problem.

    Exit code 0 when every check passes, else the code of the first failed check (docs/cli.md).
    """
    from hsmcert.doctor import run_checks

    checks = []
    for check in run_checks(
        key=key, hsm=hsm, vault=vault, session=session(endpoint, ca_bundle, credential), sign=not no_sign
    ):
        checks.append(check)
        if state.output.value == "text":
            mark = {True: "ok  ", False: "FAIL", None: "skip"}[check.ok]
            typer.echo(f"{mark} {check.name}: {check.detail}")
            if check.remedy and check.ok is False:
                typer.echo(f"     fix: {check.remedy}")
    failed = [c for c in checks if c.ok is False]
    if state.output.value == "json":
        emit({"ok": not failed, "checks": [c.to_json() for c in checks]})
    if failed:
        raise typer.Exit(failed[0].exit_code or 1)


def register(app: typer.Typer) -> None:
    app.command("whoami")(whoami)
    app.command("doctor")(doctor)
