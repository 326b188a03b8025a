"""hsmcert renew: renew managed certificates with their issuer, deploy them, reload nginx, run hooks."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from hsmcert.cli._common import CaBundleOpt, CredentialOpt, EndpointOpt, emit, log, session, waiting


def renew(
    targets: Annotated[
        list[str] | None, typer.Argument(metavar="[NAME|FILE]...", help="Managed certificates to renew.")
    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every managed certificate that is due.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Renew even when not due.")] = False,
    rotate_key: Annotated[
        bool, typer.Option("--rotate-key", help="Make a new version of each key first and certify it.")
    ] = False,
    deploy_hook: Annotated[
        list[str] | None,
        typer.Option(
            "--deploy-hook",
            help="A shell command run after each renewal, with HSMCERT_RENEWED_* variables naming the new "
            "files (repeatable; see docs/lifecycle.md).",
        ),
    ] = None,
    before: Annotated[
        str | None,
        typer.Option("--before", help="Renewal point instead of each certificate's (30d, 12h, 33%)."),
    ] = None,
    endpoint: EndpointOpt = None,
    ca_bundle: CaBundleOpt = None,
    credential: CredentialOpt = None,
) -> None:
    """Renew managed certificates that are due (all of them with --all; any named with --force): same
    subject, SANs, profile and issuer, same HSM key (or a new version with --rotate-key). Each new
    certificate is checked before it is written; the old files are kept as FILE.previous. Exit 1 when any
    renewal failed; the others still ran.

    Example: hsmcert renew --all --deploy-hook 'systemctl reload myapp'
    """
    from hsmcert.errors import HsmcertError, UsageError
    from hsmcert.lifecycle.expiry import parse_before
    from hsmcert.lifecycle.renewal import Options, renew_many
    from hsmcert.lifecycle.state import Store, state_path_lock

    if bool(targets) == all_:
        raise UsageError(
            "Name the certificates to renew, or pass --all (not both).", "See hsmcert cert list."
        )
    options = Options(
        force=force,
        rotate_key=rotate_key,
        deploy_hooks=deploy_hook or [],
        policy=parse_before(before) if before else None,
    )
    with state_path_lock():
        store = Store()  # read once the lock is held: what another run wrote is seen
        records = list(store) if all_ else [store.find(t) for t in targets or []]
        if not records:
            log(f"no managed certificates in {store.path}")
        with waiting(f"renewing {len(records)} certificate(s)"):
            outcomes = renew_many(records, session(endpoint, ca_bundle, credential), store, options)
    counts = {
        status: sum(o.status == status for o in outcomes) for status in ("renewed", "skipped", "failed")
    }
    log_outcomes(outcomes)
    summary = ", ".join(f"{n} {status}" for status, n in counts.items())
    data: dict[str, Any] = {**counts, "results": [o.to_json() for o in outcomes]}
    emit(data, summary)
    if counts["failed"]:
        raise HsmcertError(
            f"{counts['failed']} of {len(outcomes)} renewal(s) failed.", "See the lines above."
        )


def log_outcomes(outcomes: list[Any]) -> None:
    """One line per renewal on stderr (the journal, under the timer), with its remedy, notes and hooks."""
    for outcome in outcomes:
        log(f"{outcome.status:<8} {outcome.name}: {outcome.reason}")
        if outcome.remedy:
            log(f"         {outcome.remedy}")
        for note in outcome.notes:
            log(f"         note: {note}")
        for hook in outcome.hooks:
            said = "" if hook["ok"] else f"\n{hook['output'].rstrip()}"
            log(f"         deploy hook {'ok' if hook['ok'] else 'FAILED'}: {hook['command']}{said}")


def register(app: typer.Typer) -> None:
    app.command("renew")(renew)
