"""hsmcert whoami and hsmcert doctor: which identity answers, and what is wrong with the set-up."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from hsmcert.cli._common import (
    CaBundleOpt,
    CredentialOpt,
    EndpointOpt,
    emit,
    session,
    state,
    styled,
    times,
    waiting,
)
from hsmcert.timestamps import rfc3339


def whoami(
    credential: CredentialOpt = None,
    scope: Annotated[
        str | None,
        typer.Option("--scope", help="Token audience [default: https://managedhsm.azure.net/.default]."),
    ] = None,
) -> None:
    """Show which credential answers, its tenant and object id (never the token)."""
    from hsmcert.azure.credentials import MANAGED_HSM_SCOPE, describe

    with waiting("getting a token"):
        who = describe(session(credential=credential).credential, scope or MANAGED_HSM_SCOPE)
    service, where = _talks_to()
    data = {**times(who.to_json(), "expires_on"), "service": service, "service_detail": where}

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
        lines.append(f"talks to:   {where}")
        return "\n".join(lines)

    emit(data, text)


def _talks_to() -> tuple[str, str]:
    """Where HSM requests go: ``("azure" | "emulator" | "endpoint", a sentence for people)``."""
    import os

    from hsmcert.config import EndpointResolver

    resolver = EndpointResolver()
    if resolver.env_endpoint:
        return "endpoint", f"{resolver.env_endpoint} (HSMCERT_ENDPOINT)"
    data_dir = resolver.emulator_dir()
    if data_dir is not None:
        how = "HSMCERT_EMULATOR" if resolver.env_emulator is not None else str(resolver.config_path)
        return "emulator", f"the hsmcert emulator of {data_dir} ({how})"
    login = os.environ.get("AZURE_AUTHORITY_HOST")
    configured = resolver.config.get("endpoints", {})
    extra = f"; {len(configured)} service(s) mapped in {resolver.config_path}" if configured else ""
    extra += f"; sign-in at {login}" if login else ""
    return "azure", f"Azure (https://<name>.managedhsm.azure.net, https://<name>.vault.azure.net{extra})"


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
    from hsmcert.doctor import Check, run_checks

    checks: list[Check] = []
    pending = run_checks(
        key=key, hsm=hsm, vault=vault, session=session(endpoint, ca_bundle, credential), sign=not no_sign
    )
    while True:
        with waiting("checking " + (f"after {checks[-1].name}" if checks else "the credential")):
            check = next(pending, None)
        if check is None:
            break
        checks.append(check)
        if state.output.value == "text":
            mark, style = {True: ("ok  ", "green"), False: ("FAIL", "bold red"), None: ("skip", "yellow")}[
                check.ok
            ]
            sys.stdout.write(styled([(mark, style), (f" {check.name}: {check.detail}", None)]) + "\n")
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
