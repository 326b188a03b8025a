"""hsmcert emulator start | stop | status | token | credentials | faults: the local Managed HSM / Key Vault."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from hsmcert.cli._common import emit, log, waiting

emulator_app = typer.Typer(
    name="emulator",
    help="The local Managed HSM / Key Vault emulator (HTTPS, real Azure SDKs work against it).",
    no_args_is_help=True,
    rich_markup_mode=None,
)

DataOpt = Annotated[
    Path | None,
    typer.Option(
        "--data",
        help="Data directory (default: $HSMCERT_EMULATOR, else ~/.local/share/hsmcert/emulator).",
        envvar="HSMCERT_EMULATOR",
    ),
]


def _dir(data: Path | None) -> Path:
    from hsmcert.emulator.control import default_data_dir

    return (data or default_data_dir()).expanduser().resolve()


def _fault_settings(
    throttle: float | None, unavailable: float | None, drop: float | None, latency: float | None
) -> dict[str, Any]:
    given = {"throttle": throttle, "unavailable": unavailable, "drop": drop, "latency_ms": latency}
    settings = {k: v for k, v in given.items() if v is not None}
    if settings:
        from hsmcert.emulator.faults import parse_faults

        parse_faults(settings)  # refuse bad values before starting anything
    return settings


_FAULT_WORDS = {
    "throttle": "{:.0%} answered 429",
    "unavailable": "{:.0%} answered 503",
    "drop": "{:.0%} of connections dropped",
    "latency_ms": "{:g} ms added latency",
}


def _faults_text(faults: Any) -> str:
    """``20% answered 429, 150 ms added latency (services: local-hsm)``, or ``none``; never a dict."""
    if not isinstance(faults, dict):
        return str(faults) if faults else "none"
    words = [form.format(faults[name]) for name, form in _FAULT_WORDS.items() if faults.get(name)]
    if not words:
        return "none"
    if faults.get("retry_after") and (faults.get("throttle") or faults.get("unavailable")):
        words.append(f"Retry-After {faults['retry_after']:g} s")
    services = faults.get("services")
    return ", ".join(words) + (f" (services: {', '.join(map(str, services))})" if services else "")


ThrottleOpt = Annotated[float | None, typer.Option("--throttle", help="Share of requests answered 429.")]
UnavailableOpt = Annotated[
    float | None, typer.Option("--unavailable", help="Share of requests answered 503.")
]
DropOpt = Annotated[float | None, typer.Option("--drop", help="Share of connections dropped unanswered.")]
LatencyOpt = Annotated[float | None, typer.Option("--latency-ms", help="Latency added to every request.")]


@emulator_app.command()
def start(
    data: DataOpt = None,
    foreground: Annotated[
        bool, typer.Option("--foreground", help="Serve in this process (service managers).")
    ] = False,
    throttle: ThrottleOpt = None,
    unavailable: UnavailableOpt = None,
    drop: DropOpt = None,
    latency_ms: LatencyOpt = None,
    hsm: Annotated[
        list[str] | None,
        typer.Option("--hsm", help="Also serve a Managed HSM of this name (repeatable; local-hsm always)."),
    ] = None,
    vault: Annotated[
        list[str] | None,
        typer.Option("--vault", help="Also serve a Key Vault of this name (repeatable; local-vault always)."),
    ] = None,
    token_lifetime: Annotated[
        str | None,
        typer.Option(
            "--token-lifetime",
            help="Lifetime of the tokens its login and managed-identity endpoints issue: 30s, 10m, 2h "
            "(default 1d; on a running emulator, from now on).",
        ),
    ] = None,
    subscription: Annotated[
        str | None,
        typer.Option(
            "--subscription",
            help="The subscription id its Resource Manager serves (a new data directory; default a fixed GUID).",
        ),
    ] = None,
    propagation_delay: Annotated[
        str | None,
        typer.Option(
            "--propagation-delay",
            help="New role assignments (Resource Manager and Managed HSM) take effect after this: 30s, 2m "
            "(default 0; on a running emulator, from now on).",
        ),
    ] = None,
    vault_access_policies: Annotated[
        bool,
        typer.Option(
            "--vault-access-policies",
            help="Vaults made from now on use access policies instead of Azure RBAC (--vault NAME makes one).",
        ),
    ] = False,
) -> None:
    """Start the emulator; prints shell exports: eval "$(hsmcert emulator start)".

    On a running emulator it adds the services of --hsm/--vault and prints the same exports."""
    from hsmcert.emulator.auth import check_lifetime, parse_duration
    from hsmcert.keyref import check_service_name

    directory = _dir(data)
    faults = _fault_settings(throttle, unavailable, drop, latency_ms)
    lifetime = None
    if token_lifetime is not None:
        lifetime = check_lifetime(parse_duration(token_lifetime, "--token-lifetime"), "--token-lifetime")
    services = [("managedhsm", name) for name in hsm or []] + [("vault", name) for name in vault or []]
    for _, name in services:
        check_service_name(name)
    arm_settings = _arm_settings(subscription, propagation_delay, vault_access_policies)
    if foreground:
        import logging

        if services:
            from hsmcert.errors import UsageError

            raise UsageError(
                "--hsm and --vault are not taken with --foreground.",
                "Once it serves, add them from another shell: hsmcert emulator start --hsm NAME",
            )

        from hsmcert.emulator.faults import parse_faults
        from hsmcert.emulator.process import run
        from hsmcert.timestamps import log_to

        log_to(sys.stderr, logging.INFO, "%(asctime)s %(message)s")
        log(f"hsmcert emulator serving from {directory} (stop with Ctrl-C or hsmcert emulator stop)")
        from hsmcert.emulator.process import Options

        options = Options(
            arm_settings.get("subscription"),
            arm_settings.get("propagation_delay"),
            vault_access_policies,
        )
        raise typer.Exit(
            run(directory, parse_faults(faults), token_lifetime=lifetime or 24 * 3600, options=options)
        )
    from hsmcert.emulator.control import service_endpoint, shell_exports, start

    with waiting(f"starting the emulator in {directory}"):
        running = start(directory, faults or None, token_lifetime=lifetime, arm=arm_settings)
    for kind, name in services:
        service_endpoint(directory, kind, name)
    env = running.env()
    emit(
        {"env": env, "pid": running.pid, "data_dir": str(directory)},
        shell_exports(env) + f"echo 'hsmcert emulator running (pid {running.pid}, data {directory})' >&2;",
    )


def _arm_settings(subscription: str | None, delay: str | None, access_policies: bool) -> dict[str, Any]:
    from hsmcert.emulator.arm import check_delay, check_subscription_id
    from hsmcert.emulator.auth import parse_duration

    settings: dict[str, Any] = {}
    if subscription is not None:
        settings["subscription"] = check_subscription_id(subscription)
    if delay is not None:
        settings["propagation_delay"] = check_delay(parse_duration(delay, "--propagation-delay"))
    if access_policies:
        settings["vault_access_policies"] = True
    return settings


@emulator_app.command()
def stop(data: DataOpt = None) -> None:
    """Stop the emulator of the data directory."""
    from hsmcert.emulator.control import stop as stop_emulator

    directory = _dir(data)
    stopped = stop_emulator(directory)
    emit({"stopped": stopped, "data_dir": str(directory)}, None)
    log(f"emulator of {directory} stopped" if stopped else f"no emulator was running from {directory}")


@emulator_app.command()
def status(data: DataOpt = None) -> None:
    """Show whether the emulator runs, its services and URLs, and active faults (exit 5 if not running)."""
    from hsmcert.emulator.control import status as emulator_status

    info = emulator_status(_dir(data))

    def text() -> str:
        lines = [f"running:  pid {info['pid']}", f"data:     {info['data_dir']}"]
        if info.get("login_url"):
            lines.append(
                f"login:    {info['login_url']}  (AZURE_AUTHORITY_HOST; hsmcert emulator credentials)"
            )
        arm = info.get("arm")
        if arm:
            lines.append(
                f"arm:      {arm['url']}  (HSMCERT_ARM_URL; subscription {arm['subscription']}, propagation "
                f"delay {arm['propagation_delay']:g} s)"
            )
            lines.append(f"imds:     {arm['imds_url']}  (HSMCERT_IMDS_URL; self: {arm['self'] or 'none'})")
        lines += [f"{s['kind']:<11} {s['name']:<20} {s['url']}  ({s['keys']} keys)" for s in info["services"]]
        lines.append(f"faults:   {_faults_text(info['faults'])}")
        return "\n".join(lines)

    emit(info, text)


@emulator_app.command()
def token(
    data: DataOpt = None,
    principal: Annotated[str, typer.Option("--principal", help="Principal name or object id.")] = "admin",
    audience: Annotated[
        str,
        typer.Option("--audience", help="The token's aud claim (https://vault.azure.net for a vault)."),
    ] = "https://managedhsm.azure.net",
    lifetime: Annotated[
        str, typer.Option("--lifetime", help="How long it is valid from its start: 30s, 10m, 2h, 1d.")
    ] = "1d",
    valid_in: Annotated[
        str,
        typer.Option(
            "--valid-in",
            help="When it becomes valid (nbf), from now: 10m (not yet valid), -2h (in the past; with "
            "--lifetime 1h, expired).",
        ),
    ] = "0s",
) -> None:
    """Print a bearer token (JWT with oid/tid/appid) for a principal of the emulator."""
    from hsmcert.emulator.auth import check_lifetime, parse_duration, principal_id
    from hsmcert.emulator.control import token as make_token

    seconds = check_lifetime(parse_duration(lifetime, "--lifetime"))
    start_in = parse_duration(valid_in, "--valid-in", signed=True)
    value = make_token(_dir(data), principal, audience, seconds, start_in)
    emit({"token": value, "principal": principal, "object_id": principal_id(principal)}, value)


@emulator_app.command()
def credentials(
    principal: Annotated[str, typer.Option("--principal", help="Principal name or object id.")],
    data: DataOpt = None,
    federated_token_file: Annotated[
        Path | None,
        typer.Option(
            "--federated-token-file",
            help="Write a federated token there and print workload-identity variables instead of a secret.",
        ),
    ] = None,
    mhsm: Annotated[
        bool,
        typer.Option("--mhsm", help="MHSM_CLIENT_ID/MHSM_CLIENT_SECRET/MHSM_TENANT_ID instead of AZURE_*."),
    ] = False,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing federated token file.")] = False,
) -> None:
    """Print the shell exports of a service principal (or workload identity) that signs in at the
    emulator's login endpoint: eval "$(hsmcert emulator credentials --principal ci)"."""
    from hsmcert.emulator.auth import principal_id
    from hsmcert.emulator.control import credentials as make_credentials
    from hsmcert.emulator.control import shell_exports

    env = make_credentials(_dir(data), principal, federated_token_file, mhsm, force)
    # Variables of the other kinds left from an earlier eval would pick another credential.
    every = [
        f"{prefix}_{name}"
        for prefix in ("AZURE", "MHSM")
        for name in ("TENANT_ID", "CLIENT_ID", "CLIENT_SECRET")
    ] + ["AZURE_FEDERATED_TOKEN_FILE"]
    stale = [name for name in every if name not in env]
    emit(
        {"principal": principal, "object_id": principal_id(principal), "env": env},
        f"unset {' '.join(stale)};\n" + shell_exports(env),
    )


@emulator_app.command()
def faults(
    data: DataOpt = None,
    throttle: ThrottleOpt = None,
    unavailable: UnavailableOpt = None,
    drop: DropOpt = None,
    latency_ms: LatencyOpt = None,
    service: Annotated[
        list[str] | None, typer.Option("--service", help="Only this service (repeatable).")
    ] = None,
) -> None:
    """Set the running emulator's faults (no option: clear them)."""
    from hsmcert.emulator.control import set_faults

    settings: dict[str, Any] = _fault_settings(throttle, unavailable, drop, latency_ms)
    if service:
        settings["services"] = list(service)
    answer = set_faults(_dir(data), **settings)
    emit(answer, lambda: f"faults: {_faults_text(answer.get('faults', answer))}")


vm_app = typer.Typer(
    name="vm",
    help="Machines of the emulator's Resource Manager: VMs, scale sets and Arc machines with managed identities.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
emulator_app.add_typer(vm_app)


def _machine_lines(machine: dict[str, Any]) -> list[str]:
    kind = {"vm": "VM", "vmss": "scale set", "arc": "Arc machine"}.get(machine["kind"], machine["kind"])
    lines = [
        f"{kind} {machine['name']} (resource group {machine['resourceGroup']})"
        + ("  [instance metadata: self]" if machine.get("self") else ""),
        f"  id:        {machine['id']}",
        f"  principal: {machine['principalId'] or '(no system-assigned identity)'}",
    ]
    lines += [
        f"  user-assigned {u['name']}: principal {u['principalId']}, client id {u['clientId']}"
        for u in machine["userAssigned"]
    ]
    return lines


@vm_app.command("add")
def vm_add(
    name: Annotated[str, typer.Argument(help="The machine's name.")],
    data: DataOpt = None,
    group: Annotated[
        str | None,
        typer.Option("--group", "-g", help="Its resource group (default hsmcert-emulator)."),
    ] = None,
    user_assigned: Annotated[
        list[str] | None,
        typer.Option(
            "--user-assigned",
            help="A user-assigned identity (a name in its group, made when new, or a resource id); repeatable.",
        ),
    ] = None,
    no_identity: Annotated[
        bool, typer.Option("--no-identity", help="No system-assigned managed identity.")
    ] = False,
    scale_set: Annotated[
        bool, typer.Option("--scale-set", help="A virtual machine scale set (Microsoft.Compute).")
    ] = False,
    arc: Annotated[
        bool, typer.Option("--arc", help="An Arc-enabled machine (Microsoft.HybridCompute).")
    ] = False,
    self_: Annotated[
        bool,
        typer.Option(
            "--self", help="The instance metadata service (HSMCERT_IMDS_URL) describes this machine."
        ),
    ] = False,
) -> None:
    """Add a machine to the emulator's Resource Manager; each identity is a principal of its own:
    hsmcert emulator token --principal <principal id>."""
    from hsmcert.emulator.control import machines
    from hsmcert.errors import UsageError

    if scale_set and arc:
        raise UsageError("--scale-set and --arc exclude each other.", "Give one of them.")
    kind = "vmss" if scale_set else "arc" if arc else "vm"
    body = {
        "kind": kind,
        "name": name,
        "group": group,
        "user_assigned": list(user_assigned or []),
        "identity": not no_identity,
        "self": self_,
    }
    machine = machines(_dir(data), "POST", body)
    emit(machine, lambda: "\n".join(_machine_lines(machine)))


@vm_app.command("list")
def vm_list(data: DataOpt = None) -> None:
    """List the machines of the emulator's Resource Manager and their identities."""
    from hsmcert.emulator.control import machines

    answer = machines(_dir(data))
    emit(
        answer,
        lambda: "\n".join(line for m in answer["machines"] for line in _machine_lines(m)) or "no machines",
    )


@vm_app.command("remove")
def vm_remove(
    name: Annotated[str, typer.Argument(help="The machine's name.")],
    data: DataOpt = None,
    group: Annotated[
        str | None, typer.Option("--group", "-g", help="Its resource group (when several have the name).")
    ] = None,
) -> None:
    """Remove a machine (its role assignments stay, as in Azure)."""
    from hsmcert.emulator.control import machines

    answer = machines(_dir(data), "DELETE", {"name": name, "group": group})
    emit(answer, f"removed {answer['removed']}")


def register(app: typer.Typer) -> None:
    app.add_typer(emulator_app)
