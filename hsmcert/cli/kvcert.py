"""hsmcert kv-cert create | pending | merge | show | versions | list | renew | download | cancel: Key Vault
certificate objects (thin: parse, call :mod:`hsmcert.azure.kvcert`, render)."""

from __future__ import annotations

import base64
from enum import Enum
from typing import TYPE_CHECKING, Annotated, Any

import typer

from hsmcert.cli._common import (
    CaBundleOpt,
    CredentialOpt,
    EndpointOpt,
    ForceOpt,
    OutOpt,
    emit,
    log,
    session,
    times,
    waiting,
    write_result,
)
from hsmcert.cli.pki import ManageOpt

if TYPE_CHECKING:
    from hsmcert.azure.kvcert import KvCertificate, PendingOperation, VaultCertificates

kv_app = typer.Typer(
    name="kv-cert",
    help="Key Vault certificate objects: a policy, a non-exportable vault key, a pending CSR, merge, renew.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

_TIMES = ("not_before", "expires_on", "created", "updated")

VaultOpt = Annotated[str, typer.Option("--vault", help="Key Vault name.", envvar="HSMCERT_VAULT")]
NameArg = Annotated[str, typer.Argument(help="The certificate's name in the vault.")]
VersionOpt = Annotated[
    str | None, typer.Option("--version", help="A version of the certificate (default: the latest).")
]


class Format(str, Enum):
    pem = "pem"
    der = "der"


FormatOpt = Annotated[Format, typer.Option("--format", help="Output encoding.")]


def _vault(
    vault: str, endpoint: str | None, ca_bundle: str | None, credential: str | None
) -> VaultCertificates:
    from hsmcert.azure.kvcert import VaultCertificates

    return VaultCertificates(session(endpoint, ca_bundle, credential), vault)


def _when(value: Any) -> str:
    return str(value) if value else "-"


def _cert_json(cert: KvCertificate) -> dict[str, Any]:
    return times(cert.to_json(), *_TIMES)


def _cert_text(data: dict[str, Any]) -> str:
    lines = [
        f"certificate: vault:{data['vault']}:{data['name']}",
        f"version:     {data['version'] or '-'}",
        f"key:         {data['key']}",
        f"state:       {data['state']}" + ("" if data["enabled"] is not False else " (disabled)"),
    ]
    if data.get("subject") is not None:
        lines.append(f"subject:     {data['subject']}")
        lines.append(f"issuer:      {data['issuer']}")
        if data.get("sans"):
            lines.append(f"sans:        {', '.join(data['sans'])}")
    lines.append(f"not before:  {_when(data['not_before'])}")
    lines.append(f"expires:     {_when(data['expires_on'])}")
    if data["days_left"] is not None:
        lines.append(f"days left:   {data['days_left']}")
    if data.get("thumbprint_sha1"):
        lines.append(f"sha1:        {data['thumbprint_sha1']}")
    policy = data.get("policy")
    if policy:
        shape = f"{policy['kty']} {policy['size'] or policy['curve'] or ''}".strip()
        exportable = "exportable" if policy["exportable"] else "non-exportable"
        lines.append(
            f"policy:      issuer {policy['issuer']}, {shape} ({exportable}), "
            f"{policy['validity_months']} months, subject {policy['subject'] or '-'}"
            + (f", sans {', '.join(policy['sans'])}" if policy["sans"] else "")
        )
    for name, value in sorted(data["tags"].items()):
        lines.append(f"tag:         {name}={value}")
    return "\n".join(lines)


def _report(result: KvCertificate | PendingOperation, vault: str, did: str) -> None:
    """Report what create/renew made: a certificate version, or a pending operation and what to do next."""
    from hsmcert.azure.kvcert import KvCertificate

    if isinstance(result, KvCertificate):
        data = _cert_json(result)
        log(f"{did} vault:{vault}:{result.name}, version {result.version}")
        emit({**data, "pending": False}, lambda: _cert_text(data))
        return
    op = result.to_json()
    log(
        f"{did} vault:{vault}:{result.name}: waiting for a certificate. Get the CSR with: "
        f"hsmcert kv-cert pending --vault {vault} {result.name} -o {result.name}.csr; "
        f"then: hsmcert kv-cert merge --vault {vault} {result.name} --chain FILE"
    )
    emit(
        {**op, "pending": True},
        f"pending: vault:{vault}:{result.name} (issuer {result.issuer}, {result.status})",
    )


@kv_app.command("create")
def create(
    name: NameArg,
    vault: VaultOpt,
    subj: Annotated[
        str, typer.Option("--subj", "-s", help="Subject: /CN=name/O=Org or CN=name,O=Org (or only --san).")
    ] = "",
    san: Annotated[
        list[str] | None,
        typer.Option("--san", help="Subject alternative names: DNS:a.example,IP:192.0.2.1 (repeatable)."),
    ] = None,
    kty: Annotated[
        str, typer.Option("--kty", help="Key type: RSA-HSM or EC-HSM (never exportable).")
    ] = "RSA-HSM",
    size: Annotated[int | None, typer.Option("--size", help="RSA: 2048, 3072 (default), 4096.")] = None,
    curve: Annotated[str | None, typer.Option("--curve", help="EC: P-256 (default), P-384, P-521.")] = None,
    validity_months: Annotated[
        int, typer.Option("--validity-months", help="Validity of each version, 1-1200 months.")
    ] = 12,
    issuer: Annotated[
        str,
        typer.Option(
            "--issuer", help="Self (the vault signs) or Unknown (a CSR to have signed, then merge)."
        ),
    ] = "Self",
    profile: Annotated[
        str, typer.Option("--profile", help="Key usage and EKU: tls-server, tls-client, code-signing.")
    ] = "tls-server",
    tag: Annotated[list[str] | None, typer.Option("--tag", help="A tag name=value (repeatable).")] = None,
    endpoint: EndpointOpt = None,
    ca_bundle: CaBundleOpt = None,
    credential: CredentialOpt = None,
) -> None:
    """Create a certificate object with a non-exportable HSM key. With --issuer Self the certificate is
    ready at once; with Unknown the vault keeps a CSR (kv-cert pending) until a chain is merged.
    Refuses a name that exists (exit 7; kv-cert renew makes a new version).

    Example: hsmcert kv-cert create --vault contoso www --subj /CN=www.example.com --san DNS:www.example.com --kty EC-HSM --issuer Unknown
    """
    from hsmcert.azure.keys import parse_tags
    from hsmcert.azure.kvcert import CertPolicy

    policy = CertPolicy.build(
        subj,
        san,
        kty=kty,
        size=size,
        curve=curve,
        validity_months=validity_months,
        issuer=issuer,
        profile=profile,
    )
    certs = _vault(vault, endpoint, ca_bundle, credential)
    with waiting(f"creating the certificate {name} in vault:{certs.vault}"):
        result = certs.create(name, policy, tags=parse_tags(tag))
    _report(result, certs.vault, "created")


@kv_app.command("renew")
def renew(
    name: NameArg,
    vault: VaultOpt,
    endpoint: EndpointOpt = None,
    ca_bundle: CaBundleOpt = None,
    credential: CredentialOpt = None,
) -> None:
    """Make a new version of a certificate from its policy (and a new key version): ready at once with the
    issuer Self, else pending until a chain is merged. Older versions stay as they are."""
    certs = _vault(vault, endpoint, ca_bundle, credential)
    with waiting(f"renewing the certificate {name} in vault:{certs.vault}"):
        result = certs.renew(name)
    _report(result, certs.vault, "renewed")


@kv_app.command("pending")
def pending(
    name: NameArg,
    vault: VaultOpt,
    out: OutOpt = "-",
    fmt: FormatOpt = Format.pem,
    force: ForceOpt = False,
    endpoint: EndpointOpt = None,
    ca_bundle: CaBundleOpt = None,
    credential: CredentialOpt = None,
) -> None:
    """Write the CSR of a certificate's pending version (signed by its new key in the vault)."""
    from hsmcert.output_files import check_target

    check_target(out, force=force)
    certs = _vault(vault, endpoint, ca_bundle, credential)
    with waiting(f"reading the pending operation of {name} in vault:{certs.vault}"):
        op = certs.pending(name).require_waiting()
    der = fmt is Format.der
    data = {k: v for k, v in op.to_json().items() if k != "csr_pem"}
    blob = op.csr_der if der else op.csr_pem()
    _write(out, blob, {**data, "format": fmt.value}, force, f"the CSR of vault:{certs.vault}:{name}")


@kv_app.command("merge")
def merge(
    name: NameArg,
    vault: VaultOpt,
    chain: Annotated[
        str, typer.Option("--chain", help="The issued certificate, then its issuers (PEM or DER).")
    ],
    endpoint: EndpointOpt = None,
    ca_bundle: CaBundleOpt = None,
    credential: CredentialOpt = None,
) -> None:
    """Complete a pending certificate with the chain a CA issued for its CSR (exit 6 when the chain's first
    certificate does not carry the pending key, or the chain is broken).

    Example: hsmcert kv-cert merge --vault contoso www --chain www-chain.pem
    """
    from hsmcert.pki.io import load_certificates

    certificates = load_certificates(chain, "chain")
    certs = _vault(vault, endpoint, ca_bundle, credential)
    with waiting(f"merging the chain into {name} in vault:{certs.vault}"):
        merged = certs.merge(name, certificates)
    data = _cert_json(merged)
    log(f"merged: vault:{certs.vault}:{name}, version {merged.version}")
    emit(data, lambda: _cert_text(data))


@kv_app.command("cancel")
def cancel(
    name: NameArg,
    vault: VaultOpt,
    endpoint: EndpointOpt = None,
    ca_bundle: CaBundleOpt = None,
    credential: CredentialOpt = None,
) -> None:
    """Cancel and delete a certificate's pending operation (its unfinished version stays, disabled)."""
    certs = _vault(vault, endpoint, ca_bundle, credential)
    with waiting(f"cancelling the pending operation of {name} in vault:{certs.vault}"):
        op = certs.cancel(name)
    data = {k: v for k, v in op.to_json().items() if k != "csr_pem"}
    emit(data, f"cancelled the pending operation of vault:{certs.vault}:{name}")


@kv_app.command("show")
def show(
    name: NameArg,
    vault: VaultOpt,
    version: VersionOpt = None,
    endpoint: EndpointOpt = None,
    ca_bundle: CaBundleOpt = None,
    credential: CredentialOpt = None,
) -> None:
    """Show a certificate version: state, subject, SANs, dates, days left, its key reference and policy."""
    certs = _vault(vault, endpoint, ca_bundle, credential)
    with waiting(f"reading {name} from vault:{certs.vault}"):
        found = certs.get(name, version)
    data = _cert_json(found)
    emit(data, lambda: _cert_text(data))


def _table(title: str, rows: list[dict[str, Any]], first: str) -> str:
    """A rich table of certificates (styled on a terminal)."""
    import sys

    from rich.console import Console
    from rich.table import Table

    from hsmcert.cli._common import _console_kwargs

    table = Table(title=title, title_justify="left")
    for column in (first, "state", "expires", "days left", "thumbprint (sha1)"):
        table.add_column(column, justify="right" if column == "days left" else "left", no_wrap=True)
    styles = {"ok": "green", "expired": "red", "pending": "yellow", "disabled": "dim"}
    for row in rows:
        days = row["days_left"]
        table.add_row(
            str(row["name"] if first == "name" else row["version"]),
            f"[{styles.get(row['state'], '')}]{row['state']}[/]" if row["state"] in styles else row["state"],
            _when(row["expires_on"]),
            "-" if days is None else str(days),
            row["thumbprint_sha1"] or "-",
        )
    console = Console(**_console_kwargs(stderr=False), force_terminal=sys.stdout.isatty(), width=160)
    with console.capture() as captured:
        console.print(table)
    return captured.get()


@kv_app.command("list")
def list_(
    vault: VaultOpt,
    endpoint: EndpointOpt = None,
    ca_bundle: CaBundleOpt = None,
    credential: CredentialOpt = None,
) -> None:
    """List the certificates of a vault with their state, expiry and days left (a table; JSON with
    --output json)."""
    certs = _vault(vault, endpoint, ca_bundle, credential)
    with waiting(f"listing the certificates of vault:{certs.vault}"):
        found = certs.list()
    rows = [_cert_json(c) for c in found]
    if not rows:
        log(f"no certificates in vault:{certs.vault}")
    emit(
        {"vault": certs.vault, "certificates": rows},
        lambda: _table(f"certificates of vault:{certs.vault}", rows, "name") if rows else "",
    )


@kv_app.command("versions")
def versions(
    name: NameArg,
    vault: VaultOpt,
    endpoint: EndpointOpt = None,
    ca_bundle: CaBundleOpt = None,
    credential: CredentialOpt = None,
) -> None:
    """List the versions of a certificate, oldest first, with their state and expiry."""
    certs = _vault(vault, endpoint, ca_bundle, credential)
    with waiting(f"listing the versions of {name} in vault:{certs.vault}"):
        found = certs.versions(name)
    rows = [_cert_json(c) for c in found]
    emit(
        {"vault": certs.vault, "name": name, "versions": rows},
        lambda: _table(f"versions of vault:{certs.vault}:{name}", rows, "version"),
    )


@kv_app.command("download")
def download(
    name: NameArg,
    vault: VaultOpt,
    out: OutOpt = "-",
    fmt: FormatOpt = Format.pem,
    version: VersionOpt = None,
    force: ForceOpt = False,
    manage: ManageOpt = None,
    ca_key: Annotated[
        str | None,
        typer.Option("--ca-key", help="With --manage, issuer Unknown: the HSM CA key of renewals."),
    ] = None,
    ca_cert: Annotated[
        str | None, typer.Option("--ca-cert", help="With --manage, issuer Unknown: that CA's certificate.")
    ] = None,
    endpoint: EndpointOpt = None,
    ca_bundle: CaBundleOpt = None,
    credential: CredentialOpt = None,
) -> None:
    """Write a certificate version (the latest by default) to a file, atomically: PEM, or DER (.cer).
    With --manage NAME, hsmcert renew NAME then renews it as a new version of the object (docs/lifecycle.md).

    Example: hsmcert kv-cert download --vault contoso www -o /etc/ssl/www.pem --manage www
    """
    from hsmcert.cli.pki import _check_manage
    from hsmcert.errors import UsageError
    from hsmcert.output_files import check_target

    check_target(out, force=force)
    _check_manage(manage, out, force)
    der = fmt is Format.der
    if manage and der:
        raise UsageError("--manage keeps the certificate as PEM.", "Leave out --format der.")
    if bool(ca_key) != bool(ca_cert) or (ca_key and not manage):
        raise UsageError("--ca-key and --ca-cert go together, with --manage.")
    certs = _vault(vault, endpoint, ca_bundle, credential)
    with waiting(f"reading {name} from vault:{certs.vault}"):
        found = certs.get(name, version)
    issuer: dict[str, str] = {"kind": "kv-cert", "vault": certs.vault}
    if ca_key and ca_cert:
        issuer.update(ca_key=ca_key, ca_cert=ca_cert)
    elif manage and found.policy is not None and found.policy.issuer != "Self":
        raise UsageError(
            f"The policy of vault:{certs.vault}:{name} has the issuer {found.policy.issuer}: its renewals need a CA.",
            "Pass --ca-key REF --ca-cert FILE (an HSM CA signs each new version's CSR).",
        )
    blob = found.encoded(der=der)
    data = {"vault": certs.vault, "name": name, "version": found.version, "format": fmt.value}
    _write(out, blob, data, force, f"the certificate vault:{certs.vault}:{name}")
    if manage:
        from hsmcert.lifecycle.register import record_for
        from hsmcert.lifecycle.register import register as register_record
        from hsmcert.lifecycle.state import Store

        leaf = found.certificate()
        assert leaf is not None  # encoded() refused a version without one
        record = record_for(manage, leaf, key=str(found.key_ref), issuer=issuer, files={"cert": out})
        register_record(Store(), record, replace=True)
        log(f"managing {manage}: hsmcert renew {manage} makes a new version of vault:{certs.vault}:{name}")


def _write(out: str, blob: bytes, data: dict[str, Any], force: bool, what: str) -> None:
    """Write a CSR or certificate (atomically; never over a file without --force) and report it."""
    der = data["format"] == "der"
    inline = {"der_base64": base64.b64encode(blob).decode()} if der else {"pem": blob.decode()}
    write_result(out, blob, data, inline=inline, force=force, text=f"wrote {what} to {out}")


def register(app: typer.Typer) -> None:
    app.add_typer(kv_app, name="kv-cert")


__all__ = ["kv_app", "register"]
