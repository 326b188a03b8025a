"""hsmcert key create | list | show | rotate: keys in a Managed HSM or Key Vault."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import typer

from hsmcert.cli._common import (
    CaBundleOpt,
    CredentialOpt,
    EndpointOpt,
    KeyOpt,
    emit,
    log,
    session,
    times,
    waiting,
)

key_app = typer.Typer(
    name="key",
    help="Create, list, show and rotate HSM keys (non-exportable).",
    no_args_is_help=True,
    rich_markup_mode=None,
)


_TIMES = ("created", "updated", "not_before", "expires_on")


def _when(value: Any) -> str:
    return str(value) if value else "-"


def _shape(kty: str | None, size: int | None, curve: str | None) -> str:
    """``RSA 3072``, ``EC P-256`` or ``oct``: what --exist-ok compares (the service does not say an AES
    key's size, so for oct only the type counts)."""
    base = {"RSA": "RSA", "EC": "EC", "OCT": "oct"}.get(str(kty).upper().removesuffix("-HSM"), str(kty))
    if base == "RSA":
        return f"RSA {size or 3072}"  # the defaults of hsmcert.azure.keys.create_key
    if base == "EC":
        return f"EC {(curve or 'P-256').upper()}"
    return base


def _details_text(data: dict[str, Any]) -> str:
    shape = (
        f"{data['kty']} {data['size']}" if data["kty"] == "RSA" else f"{data['kty']} {data['curve'] or ''}"
    )
    if data["kty"] == "oct":
        shape = "AES (oct)"
    lines = [
        f"key:        {data['ref']}",
        f"type:       {shape.strip()} ({data['key_type']})",
        f"operations: {', '.join(data['key_ops'])}",
        f"enabled:    {data['enabled']}",
        f"created:    {_when(data['created'])}",
    ]
    if data["not_before"]:
        lines.append(f"not before: {_when(data['not_before'])}")
    if data["expires_on"]:
        lines.append(f"expires:    {_when(data['expires_on'])}")
    if data["label"]:
        lines.append(f"label:      {data['label']}")
    for name, value in sorted(data["tags"].items()):
        lines.append(f"tag:        {name}={value}")
    if data["spki_sha256"]:
        lines.append(f"spki sha256: {data['spki_sha256']}")
        lines.append(data["public_key_pem"].rstrip("\n"))
    return "\n".join(lines)


@key_app.command("create")
def create(
    key: KeyOpt,
    kty: Annotated[str, typer.Option("--kty", help="Key type: RSA, EC or oct (AES, Managed HSM only).")],
    size: Annotated[
        int | None, typer.Option("--size", help="RSA: 2048, 3072 (default), 4096; oct: 128, 192, 256.")
    ] = None,
    curve: Annotated[
        str | None, typer.Option("--curve", help="EC: P-256 (default), P-384, P-521, P-256K.")
    ] = None,
    label: Annotated[
        str | None,
        typer.Option(
            "--label",
            help="PKCS#11 CKA_LABEL, stored under the p11_pri_/p11_pub_ tag names of Azure's TLS offload library.",
        ),
    ] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", help="A tag name=value (repeatable).")] = None,
    ops: Annotated[
        str | None,
        typer.Option(
            "--ops", help="Comma-separated key operations (default: by type, e.g. sign,verify for EC)."
        ),
    ] = None,
    exist_ok: Annotated[
        bool,
        typer.Option(
            "--exist-ok",
            help="Succeed when the key exists with the same type and size or curve (exit 7 otherwise).",
        ),
    ] = False,
    endpoint: EndpointOpt = None,
    ca_bundle: CaBundleOpt = None,
    credential: CredentialOpt = None,
) -> None:
    """Create a non-exportable HSM key. Refuses if the key exists (exit 7; use `key rotate` for a new
    version, --exist-ok to accept a key of the same shape).

    Example: hsmcert key create --key managedhsm:contoso:tls-key --kty EC --curve P-256 --label tlsKey
    """
    from hsmcert.azure.keys import parse_tags
    from hsmcert.errors import AlreadyExistsError

    keys = session(endpoint, ca_bundle, credential).keys
    try:
        with waiting(f"creating {_shape(kty, size, curve)} key {key} in the HSM"):
            details = keys.create(
                key,
                kty,
                size=size,
                curve=curve,
                label=label,
                tags=parse_tags(tag),
                ops=[o.strip() for o in ops.split(",") if o.strip()] if ops else None,
            )
        existed = False
    except AlreadyExistsError as exc:
        if not exist_ok:
            raise
        with waiting(f"reading {key} from the HSM"):
            details = keys.show(key)
        found = details.to_json()
        have, want = _shape(found["kty"], found["size"], found["curve"]), _shape(kty, size, curve)
        if have != want:
            raise AlreadyExistsError(
                f"The key {key} exists as {have}, not {want}.",
                "Choose another name, or ask for the existing key's type and size or curve.",
            ) from exc
        existed = True
    data = {**times(details.to_json(), *_TIMES), "existed": existed}
    shape = _shape(data["kty"], data["size"], data["curve"])
    log(f"{data['ref']} exists already ({shape})" if existed else f"created {data['ref']}")
    emit(data, lambda: _details_text(data))


@key_app.command("show")
def show(
    key: KeyOpt,
    endpoint: EndpointOpt = None,
    ca_bundle: CaBundleOpt = None,
    credential: CredentialOpt = None,
) -> None:
    """Show a key version (the latest unless the reference names one): type, operations, tags, public key."""
    with waiting(f"reading {key} from the HSM"):
        details = session(endpoint, ca_bundle, credential).keys.show(key)
    data = times(details.to_json(), *_TIMES)
    emit(data, lambda: _details_text(data))


@key_app.command("rotate")
def rotate(
    key: KeyOpt,
    renew: Annotated[
        bool,
        typer.Option(
            "--renew",
            help="Also renew the managed certificates of the key for the new version (and reload their "
            "hsmcert nginx sites).",
        ),
    ] = False,
    endpoint: EndpointOpt = None,
    ca_bundle: CaBundleOpt = None,
    credential: CredentialOpt = None,
) -> None:
    """Make a new version of a key (same type, operations and tags); older versions keep working.

    Managed certificates of the key still hold the old version: they are listed, and renewed for the new
    version with --renew (exit 1 when one of those renewals fails; the new version stays).
    """
    from hsmcert.errors import HsmcertError
    from hsmcert.lifecycle.rotation import bound_to
    from hsmcert.lifecycle.state import Store

    store = Store()
    with waiting(f"making a new version of {key} in the HSM"):
        details = session(endpoint, ca_bundle, credential).keys.rotate(key)
    data = times(details.to_json(), *_TIMES)
    log(f"new version {data['version']} of {data['service']}:{data['name']}")
    bound = bound_to(store, key, str(data["version"]))
    data["managed_certificates"] = [c.name for c in bound]
    failed = 0
    if bound and renew:
        from hsmcert.cli.renew import log_outcomes
        from hsmcert.lifecycle.renewal import Options, renew_many
        from hsmcert.lifecycle.state import state_path_lock

        with state_path_lock(), waiting(f"renewing {len(bound)} certificate(s) for the new version"):
            store = Store()  # as it is now that no renewal runs
            bound = [store.get(c.name) for c in bound if c.name in store]
            outcomes = renew_many(bound, session(endpoint, ca_bundle, credential), store, Options(force=True))
        data["renewals"] = [o.to_json() for o in outcomes]
        log_outcomes(outcomes)
        failed = sum(o.status == "failed" for o in outcomes)
    elif bound:
        names = " ".join(c.name for c in bound)
        log(
            f"warning: {len(bound)} managed certificate(s) still hold an older version of this key: {names}. "
            f"Renew them for the new version: hsmcert renew {names}"
        )
    emit(data, lambda: _details_text(data))
    if failed:
        raise HsmcertError(f"{failed} of {len(bound)} renewal(s) for the new version failed.", "See above.")


@key_app.command("list")
def list_(
    hsm: Annotated[str | None, typer.Option("--hsm", help="Managed HSM name.", envvar="HSMCERT_HSM")] = None,
    vault: Annotated[str | None, typer.Option("--vault", help="Key Vault name.")] = None,
    label: Annotated[str | None, typer.Option("--label", help="Only keys with this PKCS#11 label.")] = None,
    endpoint: EndpointOpt = None,
    ca_bundle: CaBundleOpt = None,
    credential: CredentialOpt = None,
) -> None:
    """List the keys of a Managed HSM (--hsm) or a Key Vault (--vault)."""
    from hsmcert.errors import UsageError

    if bool(hsm) == bool(vault):
        raise UsageError("Name one service: --hsm NAME or --vault NAME.")
    kind: Literal["managedhsm", "vault"] = "managedhsm" if hsm else "vault"
    name = str(hsm or vault)
    with waiting(f"listing the keys of {kind}:{name}"):
        keys = session(endpoint, ca_bundle, credential).keys.list(kind, name, label=label)
    listed = [times(k.to_json(), *_TIMES) for k in keys]
    data = {"service": f"{kind}:{name.lower()}", "keys": listed}

    def text() -> str:
        if not keys:
            return ""
        rows = []
        for k in listed:
            state = "enabled" if k["enabled"] else "disabled"
            extra = f"  label={k['label']}" if k["label"] else ""
            rows.append(f"{k['ref']}  {state}  {_when(k['created'])}{extra}")
        return "\n".join(rows)

    if not keys:
        log(f"no keys in {data['service']}")
    emit(data, text)


def register(app: typer.Typer) -> None:
    app.add_typer(key_app, name="key")
