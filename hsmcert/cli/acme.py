"""hsmcert acme register | issue | revoke | rollover: publicly trusted certificates for HSM keys (RFC 8555).

Thin: parse, call :mod:`hsmcert.acme.flow`, render. The acme library is imported inside the commands.
"""

from __future__ import annotations

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
    waiting,
)

if TYPE_CHECKING:
    from hsmcert.acme.client import Issued

acme_app = typer.Typer(
    name="acme",
    help="Publicly trusted certificates for HSM keys from an ACME CA (Let's Encrypt, ...): register, issue, "
    "revoke, rollover. Renewals: hsmcert renew.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

DirectoryOpt = Annotated[
    str,
    typer.Option(
        "--directory",
        help="The ACME server's directory URL, e.g. https://acme-v02.api.letsencrypt.org/directory.",
        envvar="HSMCERT_ACME_DIRECTORY",
    ),
]
ServerCaOpt = Annotated[
    str | None,
    typer.Option(
        "--server-ca",
        help="CA bundle that the ACME server's TLS certificate is checked with (a test CA such as pebble); "
        "default: the system's. Recorded with the account.",
    ),
]
AccountKeyOpt = Annotated[
    str,
    typer.Option(
        "--account-key",
        help="The account key: 'file' (a new EC key, 0600, in hsmcert's config directory), a PEM key file, "
        "or an HSM key reference (managedhsm:HSM:acme) whose JWS signatures happen in the HSM.",
    ),
]


def _session(endpoint: str | None, ca_bundle: str | None, credential: str | None) -> Any:
    return session(endpoint, ca_bundle, credential)


@acme_app.command("register")
def register_account(
    directory: DirectoryOpt,
    contact: Annotated[
        list[str] | None, typer.Option("--contact", help="mailto:address for the CA's notices (repeatable).")
    ] = None,
    agree_tos: Annotated[
        bool, typer.Option("--agree-tos", help="Agree to the ACME server's terms of service.")
    ] = False,
    eab_kid: Annotated[
        str | None, typer.Option("--eab-kid", help="External Account Binding key id (commercial CAs).")
    ] = None,
    eab_hmac_key: Annotated[
        str | None, typer.Option("--eab-hmac-key", help="External Account Binding HMAC key (base64url).")
    ] = None,
    account_key: AccountKeyOpt = "file",
    server_ca: ServerCaOpt = None,
    endpoint: EndpointOpt = None,
    ca_bundle: CaBundleOpt = None,
    credential: CredentialOpt = None,
) -> None:
    """Create an ACME account (or find the one of this key) and record it in hsmcert's config directory.

    Example: hsmcert acme register --directory https://acme-v02.api.letsencrypt.org/directory --contact mailto:ops@example.com --agree-tos
    """
    from hsmcert.acme import flow

    with waiting(f"registering with {directory}"):
        account, created = flow.register(
            directory,
            _session(endpoint, ca_bundle, credential),
            account_key=account_key,
            contact=contact or [],
            agree_tos=agree_tos,
            eab_kid=eab_kid,
            eab_hmac_key=eab_hmac_key,
            server_ca=server_ca,
        )
    data = {
        "directory": account.directory,
        "account": account.uri,
        "account_key": account.key,
        "created": created,
        "record": str(account.path),
    }
    what = "registered" if created else "already registered"
    emit(data, f"{what}: {account.uri} (account key: {account.key})")


@acme_app.command("issue")
def issue(
    key: KeyOpt,
    domain: Annotated[
        list[str],
        typer.Option("--domain", "-d", help="A DNS name to certify (repeatable; *.name with DNS-01)."),
    ],
    directory: DirectoryOpt,
    cert: Annotated[Path, typer.Option("--cert", help="Where the leaf certificate is written (PEM).")],
    chain: Annotated[
        Path | None,
        typer.Option("--chain", help="Where the chain is written (default: CERT's name + -chain)."),
    ] = None,
    fullchain: Annotated[
        Path | None,
        typer.Option(
            "--fullchain", help="Where leaf + chain are written (default: CERT's name + -fullchain)."
        ),
    ] = None,
    webroot: Annotated[
        str | None, typer.Option("--webroot", help="HTTP-01: a web server's document root.")
    ] = None,
    nginx: Annotated[
        str | None,
        typer.Option(
            "--nginx", help="HTTP-01: the --out-dir of an hsmcert nginx site made with --http-listen."
        ),
    ] = None,
    standalone: Annotated[
        int | None,
        typer.Option("--standalone", help="HTTP-01: answer on this port for the order's length (80)."),
    ] = None,
    dns_hook_present: Annotated[
        str | None,
        typer.Option(
            "--dns-hook-present",
            help="DNS-01: a command that publishes the TXT record HSMCERT_ACME_RECORD_NAME = "
            "HSMCERT_ACME_TXT_VALUE (see docs/acme.md).",
        ),
    ] = None,
    dns_hook_cleanup: Annotated[
        str | None, typer.Option("--dns-hook-cleanup", help="DNS-01: a command that removes that record.")
    ] = None,
    dns_propagation_seconds: Annotated[
        float, typer.Option("--dns-propagation-seconds", help="DNS-01: wait this long after publishing.")
    ] = 60.0,
    name: Annotated[
        str | None,
        typer.Option(
            "--name",
            help="The managed certificate's name for hsmcert renew (default: the first -d; *. as wildcard.).",
        ),
    ] = None,
    deploy_hook: Annotated[
        list[str] | None,
        typer.Option(
            "--deploy-hook",
            help="A command hsmcert renew runs after each renewal of this certificate (repeatable).",
        ),
    ] = None,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds the order may take before it is given up.")
    ] = 300.0,
    server_ca: ServerCaOpt = None,
    force: ForceOpt = False,
    endpoint: EndpointOpt = None,
    ca_bundle: CaBundleOpt = None,
    credential: CredentialOpt = None,
) -> None:
    """Get a certificate for an HSM key from the ACME server; write leaf, chain and fullchain; manage it.

    The CSR is signed in the HSM. The certificate is registered as managed, so hsmcert renew renews it
    with the same method. Example:

      hsmcert acme issue --key managedhsm:contoso:www -d www.example.com --directory URL --webroot /var/www/html --cert /etc/ssl/www.pem
    """
    from hsmcert.acme import flow
    from hsmcert.lifecycle.state import Store
    from hsmcert.output_files import check_target

    method = flow.Method(
        webroot=webroot,
        nginx=nginx,
        standalone=standalone,
        dns_hook_present=dns_hook_present,
        dns_hook_cleanup=dns_hook_cleanup,
        dns_propagation_seconds=dns_propagation_seconds,
    ).check()
    names = flow.check_names(domain)
    files = _files(cert, chain, fullchain)
    for path in files.values():
        check_target(path, force=force)  # before anything is ordered
    store = Store()
    record = _record(
        name or names[0].replace("*", "wildcard"), key, names, directory, method, files, deploy_hook or []
    )
    store.put(record)  # refuses files managed under another name, before the order
    hsm = _session(endpoint, ca_bundle, credential)
    with waiting(f"ordering a certificate for {', '.join(names)}"):
        client, _ = flow.connect(directory, hsm, server_ca=server_ca)
        private_key = hsm.private_key(key)
        issued = flow.order(client, private_key, names, method, timeout=timeout, progress=log)
    _write(issued, files)
    record = record.with_key(str(private_key.ref))
    store.put(record)
    store.save()
    data = _issued_data(issued, files, record.name, str(private_key.ref))
    emit(data, f"wrote {files['fullchain']} for {', '.join(names)} (managed as {record.name}, "
         f"expires {data['not_after']})")  # fmt: skip


def _files(cert: Path, chain: Path | None, fullchain: Path | None) -> dict[str, str]:
    base = cert.with_suffix("") if cert.suffix == ".pem" else cert
    return {
        "cert": str(cert.absolute()),
        "chain": str((chain or base.with_name(base.name + "-chain.pem")).absolute()),
        "fullchain": str((fullchain or base.with_name(base.name + "-fullchain.pem")).absolute()),
    }


def _record(
    name: str,
    key: str,
    names: list[str],
    directory: str,
    method: Any,
    files: dict[str, str],
    deploy_hooks: list[str],
) -> Any:
    from hsmcert.lifecycle.state import ManagedCert, check_name

    return ManagedCert(
        name=check_name(name),
        key=key,
        issuer={"kind": "acme", "directory": directory, **method.params()},
        subject=f"/CN={names[0]}" if len(names[0]) <= 64 else "",
        cert=files["cert"],
        chain=files["chain"],
        fullchain=files["fullchain"],
        profile="tls-server",
        sans=[f"DNS:{n}" for n in names],
        deploy_hooks=list(deploy_hooks),
    )


def _write(issued: Issued, files: dict[str, str]) -> None:
    """Leaf, chain and fullchain, each atomically and all or none (a file replaced with --force is kept as
    FILE.previous)."""
    from cryptography.hazmat.primitives.serialization import Encoding

    from hsmcert.lifecycle.files import install

    leaf = issued.leaf.public_bytes(Encoding.PEM)
    chain = b"".join(c.public_bytes(Encoding.PEM) for c in issued.chain)
    install({files["chain"]: chain, files["fullchain"]: leaf + chain, files["cert"]: leaf})


def _issued_data(issued: Issued, files: dict[str, str], name: str, key: str) -> dict[str, Any]:
    from hsmcert.timestamps import rfc3339

    leaf = issued.leaf
    return {
        "name": name,
        "key": key,
        "files": files,
        "serial": format(leaf.serial_number, "x"),
        "not_before": rfc3339(leaf.not_valid_before_utc.timestamp()),
        "not_after": rfc3339(leaf.not_valid_after_utc.timestamp()),
        "issuer": leaf.issuer.rfc4514_string(),
        "order": issued.order_url,
        "validated": issued.validated,
        "reused_authorizations": issued.reused,
    }


@acme_app.command("revoke")
def revoke(
    cert: Annotated[
        Path, typer.Option("--cert", help="The certificate to revoke (PEM; the leaf comes first).")
    ],
    directory: DirectoryOpt,
    reason: Annotated[
        str,
        typer.Option(
            "--reason",
            help="unspecified, keyCompromise, affiliationChanged, superseded or cessationOfOperation.",
        ),
    ] = "unspecified",
    key: Annotated[
        str | None,
        typer.Option(
            "--key",
            help="Sign the revocation with the certificate's own HSM key instead of the account (works "
            "without the account, e.g. after a key compromise).",
        ),
    ] = None,
    server_ca: ServerCaOpt = None,
    endpoint: EndpointOpt = None,
    ca_bundle: CaBundleOpt = None,
    credential: CredentialOpt = None,
) -> None:
    """Revoke a certificate this account ordered (or, with --key, any certificate of that HSM key).

    Example: hsmcert acme revoke --cert /etc/ssl/www.pem --directory URL --reason superseded
    """
    from hsmcert.acme import flow
    from hsmcert.pki.io import load_certificates

    leaf = load_certificates(str(cert), "certificate")[0]
    with waiting("revoking"):
        hsm = _session(endpoint, ca_bundle, credential)
        if key is None:
            client, _ = flow.connect(directory, hsm, server_ca=server_ca)
        else:
            client = flow.certificate_key_client(directory, hsm, key, server_ca=server_ca)
        client.revoke(leaf, reason)
    serial = format(leaf.serial_number, "x")
    emit({"revoked": True, "serial": serial, "reason": reason}, f"revoked {cert} (serial {serial}, {reason})")


@acme_app.command("rollover")
def rollover(
    directory: DirectoryOpt,
    new_account_key: Annotated[
        str,
        typer.Option(
            "--new-account-key",
            help="The new key: 'file' (a fresh EC key file replaces the old one), a PEM key file, or an "
            "HSM key reference.",
        ),
    ],
    endpoint: EndpointOpt = None,
    ca_bundle: CaBundleOpt = None,
    credential: CredentialOpt = None,
) -> None:
    """Replace the account's key (RFC 8555 key rollover); the account and its certificates stay.

    Example: hsmcert acme rollover --directory URL --new-account-key managedhsm:contoso:acme-2026
    """
    from hsmcert.acme import flow

    with waiting("rolling the account key over"):
        account = flow.rollover(directory, _session(endpoint, ca_bundle, credential), new_account_key)
    emit(
        {"directory": account.directory, "account": account.uri, "account_key": account.key},
        f"the account {account.uri} now signs with {account.key}",
    )


def register(app: typer.Typer) -> None:
    app.add_typer(acme_app)
