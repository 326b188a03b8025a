"""hsmcert cert list | needs-renewal | adopt | forget | timer: the certificates hsmcert manages.

Thin: parse options, call :mod:`hsmcert.lifecycle`, render.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from hsmcert.cli._common import (
    CaBundleOpt,
    CredentialOpt,
    EndpointOpt,
    ForceOpt,
    KeyOpt,
    emit,
    log,
    session,
    styled,
    waiting,
)

if TYPE_CHECKING:
    from hsmcert.lifecycle.inventory import Entry

cert_app = typer.Typer(
    name="cert",
    help="Managed certificates: inventory, expiry, adoption, the renewal timer.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

BeforeOpt = Annotated[
    str | None,
    typer.Option(
        "--before",
        help="Renewal point: a time before expiry (30d, 12h, 2w) or a share of the lifetime (33%). "
        "Default: each certificate's renew_before, else 2/3 of its lifetime.",
    ),
]
OfflineOpt = Annotated[
    bool, typer.Option("--offline", help="Do not ask the HSM whether each key is still the current version.")
]
DeployHookOpt = Annotated[
    list[str] | None,
    typer.Option("--deploy-hook", help="A shell command to run after each renewal (repeatable)."),
]

_STATE_STYLE = {"ok": "green", "renew-due": "yellow", "key-rotated": "yellow", "expired": "bold red"}


def _yes_no(value: bool | None) -> str:
    return "-" if value is None else ("yes" if value else "NO")


def _table(items: list[dict[str, Any]]) -> str:
    """A rich table (styled on a terminal) of ``cert list``'s entries."""
    from rich.console import Console
    from rich.table import Table

    from hsmcert.cli._common import _console_kwargs

    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in (
        "certificate",
        "subject",
        "SANs",
        "issuer",
        "not after",
        "days",
        "key",
        "current",
        "state",
    ):
        table.add_column(column, overflow="fold")
    for item in items:
        state_text = item["state"]
        table.add_row(
            item["name"] or item["path"],
            item.get("subject_openssl", "-"),
            ", ".join(item.get("sans", [])) or "-",
            item.get("issuer", "-")
            if not item.get("issuer_kind")
            else f"{item['issuer_kind']}: {item.get('issuer', '-')}",
            item.get("not_after", "-"),
            str(item.get("days_left", "-")),
            item["key"] or "-",
            _yes_no(item["key_current"]),
            f"[{_STATE_STYLE.get(state_text, 'red')}]{state_text}[/]",
        )
    kwargs = {**_console_kwargs(stderr=False), "force_terminal": sys.stdout.isatty()}
    if not sys.stdout.isatty():
        kwargs["width"] = 240
    console = Console(**kwargs)
    with console.capture() as captured:
        console.print(table)
    return captured.get()


@cert_app.command("list")
def list_(
    paths: Annotated[
        list[str] | None, typer.Argument(help="Certificate files or directories to look at too.")
    ] = None,
    nginx_dir: Annotated[
        list[str] | None,
        typer.Option("--nginx-dir", help="A directory of hsmcert nginx sites (default: /etc/hsmcert/nginx)."),
    ] = None,
    before: BeforeOpt = None,
    offline: OfflineOpt = False,
    endpoint: EndpointOpt = None,
    ca_bundle: CaBundleOpt = None,
    credential: CredentialOpt = None,
) -> None:
    """List the managed certificates, the certificates in PATHs and those of hsmcert nginx sites: subject,
    SANs, issuer, expiry, key, and state (ok, renew-due, key-rotated, expired)."""
    from hsmcert.lifecycle.expiry import now, parse_before
    from hsmcert.lifecycle.inventory import inventory
    from hsmcert.lifecycle.state import Store
    from hsmcert.nginx import DEFAULT_OUT_DIR

    policy = parse_before(before) if before else None
    dirs = (
        [Path(d) for d in nginx_dir] if nginx_dir else ([DEFAULT_OUT_DIR] if DEFAULT_OUT_DIR.is_dir() else [])
    )
    store = Store()
    with waiting("reading the certificates and asking the HSM for each key's current version"):
        entries: list[Entry] = inventory(
            store,
            paths or [],
            dirs,
            session=None if offline else session(endpoint, ca_bundle, credential),
            policy=policy,
        )
    at = now()
    items = [e.to_json(at) for e in entries]
    for item in items:
        for note in item["notes"]:
            log(f"{item['name'] or item['path']}: {note}")
        if item["error"]:
            log(f"{item['path']}: {item['error']}")
    if not items:
        log(f"no certificates (none managed in {store.path}; give files or directories to look at)")
    emit({"state_file": str(store.path), "certificates": items}, lambda: _table(items) if items else "")


def _target(name_or_file: str) -> tuple[Any, Any]:
    """(managed record or None, the certificate) for a NAME or FILE argument."""
    from hsmcert.lifecycle.inventory import read_leaf
    from hsmcert.lifecycle.state import Store

    store = Store()
    record = store.by_file(name_or_file) if Path(name_or_file).exists() else None
    if record is None and name_or_file in store:
        record = store.get(name_or_file)
    if record is None and not Path(name_or_file).exists():
        store.get(name_or_file)  # raises: names the managed certificates
    return record, read_leaf(record.served_file if record is not None else name_or_file)


@cert_app.command("needs-renewal")
def needs_renewal(
    target: Annotated[str, typer.Argument(metavar="FILE|NAME", help="A certificate file or a managed name.")],
    before: BeforeOpt = None,
    offline: OfflineOpt = False,
    endpoint: EndpointOpt = None,
    ca_bundle: CaBundleOpt = None,
    credential: CredentialOpt = None,
) -> None:
    """Exit 0 when the certificate is due for renewal (or expired, or its key was rotated), 1 when it is
    not; 2 and above are errors. For use in shell: if hsmcert cert needs-renewal www; then ...; fi"""
    from hsmcert.lifecycle.expiry import DUE_STATES, now, parse_before
    from hsmcert.lifecycle.inventory import Entry, check_keys

    record, leaf = _target(target)
    policy = parse_before(before if before else (record.renew_before if record else None))
    entry = Entry(target, "managed" if record else "file", leaf, policy=policy)
    if record is not None:
        entry.name, entry.key = record.name, record.key
        if not offline:
            with waiting(f"asking the HSM for the current version of {record.key}"):
                check_keys([entry], session(endpoint, ca_bundle, credential))
    item = entry.to_json(now())
    due = item["state"] in DUE_STATES
    item["due"] = due
    for note in entry.notes:
        log(note)
    emit(
        item,
        f"{target}: {'due' if due else 'not due'} ({item['state']}; renew at {item['renew_at']}, "
        f"expires {item['not_after']}, {item['days_left']} days left)",
    )
    if not due:
        raise typer.Exit(1)


def _params(values: list[str] | None) -> dict[str, str]:
    from hsmcert.errors import UsageError

    params: dict[str, str] = {}
    for value in values or []:
        name, sep, text = value.partition("=")
        if not sep or not name.strip():
            raise UsageError(
                f"--param {value!r} is not NAME=VALUE.", "For example --param ca_cert=/etc/ssl/ca.pem."
            )
        params[name.strip()] = text
    return params


@cert_app.command("adopt")
def adopt(
    file: Annotated[Path, typer.Argument(help="The certificate (or full chain) file to manage.")],
    key: KeyOpt,
    name: Annotated[
        str | None, typer.Option("--name", help="The name to manage it as (default: the file's name).")
    ] = None,
    issuer: Annotated[
        str | None,
        typer.Option(
            "--issuer",
            help="Who renews it: self-signed, hsmcert-ca, or another registered kind (default: self-signed "
            "for a self-signed certificate).",
        ),
    ] = None,
    param: Annotated[
        list[str] | None, typer.Option("--param", help="An issuer parameter NAME=VALUE (repeatable).")
    ] = None,
    ca_key: Annotated[str | None, typer.Option("--ca-key", help="hsmcert-ca: the CA key reference.")] = None,
    ca_cert: Annotated[str | None, typer.Option("--ca-cert", help="hsmcert-ca: the CA certificate.")] = None,
    fullchain: Annotated[
        Path | None, typer.Option("--fullchain", help="Also write leaf + chain to this file on renewal.")
    ] = None,
    chain: Annotated[Path | None, typer.Option("--chain", help="Also write the chain to this file.")] = None,
    profile: Annotated[
        str | None, typer.Option("--profile", help="The profile of renewals (default: as the certificate).")
    ] = None,
    days: Annotated[
        int | None, typer.Option("--days", help="Validity of renewals (default: as now).")
    ] = None,
    renew_before: Annotated[
        str | None, typer.Option("--renew-before", help="Its renewal point (30d, 33%; default 2/3 of life).")
    ] = None,
    deploy_hook: DeployHookOpt = None,
    force: Annotated[bool, typer.Option("--force", help="Replace a record of the same name.")] = False,
    endpoint: EndpointOpt = None,
    ca_bundle: CaBundleOpt = None,
    credential: CredentialOpt = None,
) -> None:
    """Manage an existing certificate: check that it carries the HSM key's public key (exit 6 when not),
    then record it with its issuer so that hsmcert renew can renew it."""
    from dataclasses import replace

    from hsmcert.errors import UsageError
    from hsmcert.lifecycle.register import is_self_signed, key_for, record_for, register
    from hsmcert.lifecycle.state import Store
    from hsmcert.pki.io import load_certificates

    certs = load_certificates(file)
    leaf = certs[0]
    params = _params(param)
    params.update({k: v for k, v in (("ca_key", ca_key), ("ca_cert", ca_cert)) if v})
    kind = issuer or ("hsmcert-ca" if ca_key else "self-signed" if is_self_signed(leaf) else None)
    if kind is None:
        raise UsageError(
            f"{file} was not self-signed: say who renews it.",
            "Pass --issuer hsmcert-ca --ca-key REF --ca-cert FILE, or --issuer KIND --param NAME=VALUE.",
        )
    role = "fullchain" if len(certs) > 1 else "cert"
    files: dict[str, Path | None] = {role: file, "chain": chain}
    if fullchain is not None:
        files["fullchain"] = fullchain
    with waiting(f"reading {key} from the HSM"):
        pinned = key_for(leaf, key, session(endpoint, ca_bundle, credential))
    record = record_for(
        name or file.stem,
        leaf,
        key=pinned,
        issuer={"kind": kind, **params},
        files=files,
        profile=profile,
        deploy_hooks=deploy_hook or [],
        renew_before=renew_before,
    )
    if days is not None:
        from hsmcert.pki.certificate import check_days

        check_days(days)
        record = replace(record, days=days)
    store = Store()
    register(store, record, replace=force)
    log(f"managing {record.name}: {record.served_file} (key {record.key}, issuer {kind})")
    emit({"state_file": str(store.path), **record.to_json()}, f"adopted {record.name}")


@cert_app.command("forget")
def forget(name: Annotated[str, typer.Argument(help="The managed certificate's name.")]) -> None:
    """Stop managing a certificate (its files stay as they are)."""
    from hsmcert.lifecycle.state import Store

    store = Store()
    record = store.remove(name)
    store.save()
    emit({"state_file": str(store.path), **record.to_json()}, f"no longer managing {name} (files kept)")


@cert_app.command("timer")
def timer(
    out_dir: Annotated[Path, typer.Option("--out-dir", "-o", help="Where to write the units.")] = Path(
        "/etc/systemd/system"
    ),
    on_calendar: Annotated[
        str, typer.Option("--on-calendar", help="When to run (systemd calendar event).")
    ] = "daily",
    randomized_delay: Annotated[
        str, typer.Option("--randomized-delay", help="Random delay added to each run (systemd time span).")
    ] = "1h",
    force: ForceOpt = False,
) -> None:
    """Write hsmcert-renew.service and hsmcert-renew.timer, which run hsmcert renew --all every day."""
    from hsmcert import generated
    from hsmcert.config import config_path
    from hsmcert.lifecycle.timer import SERVICE, TIMER, timer_files
    from hsmcert.syntax import absolute_path

    # the service reads the config file (and certificates.toml beside it) this run reads, wherever
    # HSMCERT_CONFIG or XDG_CONFIG_HOME put it
    env = {"HSMCERT_CONFIG": str(config_path().absolute())}
    files = timer_files(
        Path(absolute_path(out_dir, "--out-dir")),
        on_calendar=on_calendar,
        randomized_delay=randomized_delay,
        environment=env,
    )
    done = generated.write_all(files, force=force)
    for item in done:
        log(f"{item.action:<15} {item.file.path}  ({item.file.description})")
    data = {"files": [{"path": str(p.file.path), "action": p.action} for p in done]}
    emit(
        data,
        lambda: styled(
            [
                (f"wrote {SERVICE} and {TIMER} in {out_dir}\nnext:\n", None),
                (f"  systemctl daemon-reload && systemctl enable --now {TIMER}\n", "bold"),
                ("  systemctl list-timers hsmcert-renew.timer; journalctl -u hsmcert-renew.service", None),
            ]
        ),
    )


def register(app: typer.Typer) -> None:
    app.add_typer(cert_app, name="cert")


__all__ = ["cert_app", "register"]
