"""hsmcert csr | selfsign | issue | inspect | verify: CSRs and certificates signed inside the HSM.

Thin: parse options, call :mod:`hsmcert.pki`, render. cryptography is imported inside the commands.
"""

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
    KeyOpt,
    OutOpt,
    emit,
    log,
    session,
    waiting,
    write_result,
)
from hsmcert.output_files import check_target

if TYPE_CHECKING:
    from hsmcert.pki.csr import Signed


class Format(str, Enum):
    pem = "pem"
    der = "der"


SubjOpt = Annotated[
    str, typer.Option("--subj", "-s", help="Subject: /C=US/O=Org/CN=name or CN=name,O=Org,C=US.")
]
SanOpt = Annotated[
    list[str] | None,
    typer.Option("--san", help="Subject alternative names, e.g. DNS:a.example,IP:192.0.2.1 (repeatable)."),
]
AlgOpt = Annotated[
    str | None,
    typer.Option(
        "--alg", help="RS256/384/512, PS256/384/512, ES256/384/512 (default: RS256, or the curve's ES)."
    ),
]
DaysOpt = Annotated[int, typer.Option("--days", help="Days of validity (capped by the CA certificate's).")]
PathLenOpt = Annotated[
    int | None, typer.Option("--path-length", help="CA profiles: basicConstraints pathLenConstraint.")
]
FormatOpt = Annotated[Format, typer.Option("--format", help="Output encoding.")]
DerOpt = Annotated[bool, typer.Option("--der", help="Same as --format der.")]
ManageOpt = Annotated[
    str | None,
    typer.Option(
        "--manage",
        metavar="NAME",
        help="Also register the certificate as NAME for hsmcert renew and cert list (docs/lifecycle.md).",
    ),
]


def _check_manage(name: str | None, out: str, force: bool) -> None:
    """Refuse --manage before anything is signed when the result could not be managed."""
    if name is None:
        return
    from hsmcert.cli._common import is_stdout
    from hsmcert.errors import AlreadyExistsError, UsageError
    from hsmcert.lifecycle.state import Store, check_name

    check_name(name)
    if is_stdout(out):
        raise UsageError("--manage needs the result in a file.", "Pass -o FILE.")
    if name in Store() and not force:
        raise AlreadyExistsError(
            f"A managed certificate is already named {name!r}.", "Choose another name, or pass --force."
        )


def _manage(
    name: str | None, signed: Signed, *, out: str, key: str, issuer: dict[str, str], **fields: Any
) -> None:
    """Record what was written as the managed certificate ``name`` (--manage)."""
    if name is None:
        return
    from hsmcert.lifecycle.register import record_for, register
    from hsmcert.lifecycle.state import Store

    record = record_for(name, signed.obj, key=key, issuer=issuer, files={"cert": out}, **fields)
    register(Store(), record, replace=True)
    log(f"managing {name}: hsmcert renew {name} renews it (issuer {record.issuer_kind})")


def _load_key(key: str, endpoint: str | None, ca_bundle: str | None, credential: str | None) -> Any:
    from hsmcert.signer import load_private_key

    return load_private_key(key, session=session(endpoint, ca_bundle, credential))


def _profile(name: str | None) -> Any:
    from hsmcert.pki.profiles import get_profile

    return get_profile(name) if name else None


def _write(signed: Signed, *, out: str, fmt: Format, der: bool, force: bool, key: Any, profile: Any) -> None:
    """Write the new object (atomically, never over a file without --force) and report it."""
    from hsmcert.pki.inspect import describe
    from hsmcert.pki.io import encode

    as_der = der or fmt is Format.der
    blob = encode(signed.obj, der=as_der)
    data = describe(signed.obj)
    ref = getattr(key, "ref", None)
    data.update(
        format="der" if as_der else "pem",
        key=str(ref) if ref is not None else None,
        algorithm=signed.algorithm,
        profile=profile.name if profile is not None else None,
        notes=signed.notes,
    )
    for note in signed.notes:
        log(f"note: {note}")
    what = "CSR" if data["kind"] == "csr" else "certificate"
    inline = {"der_base64": base64.b64encode(blob).decode()} if as_der else {"pem": blob.decode()}
    write_result(
        out,
        blob,
        data,
        inline=inline,
        force=force,
        text=f"wrote {what} {out} ({data['subject_openssl']}, {signed.algorithm}, key {data['key']})",
    )


def csr(
    key: KeyOpt,
    subj: SubjOpt,
    san: SanOpt = None,
    profile: Annotated[
        str | None, typer.Option("--profile", help="Request this profile's key usage and EKU in the CSR.")
    ] = None,
    alg: AlgOpt = None,
    out: OutOpt = "-",
    fmt: FormatOpt = Format.pem,
    der: DerOpt = False,
    force: ForceOpt = False,
    manage: Annotated[
        str | None,
        typer.Option(
            "--manage",
            metavar="NAME",
            help="Register NAME, a certificate a CA outside hsmcert signs from this CSR (with --cert): "
            "cert list shows it, renew writes the next CSR (docs/lifecycle.md).",
        ),
    ] = None,
    cert: Annotated[
        str | None, typer.Option("--cert", help="With --manage: where the CA's certificate will be.")
    ] = None,
    endpoint: EndpointOpt = None,
    ca_bundle: CaBundleOpt = None,
    credential: CredentialOpt = None,
) -> None:
    """Make a certificate signing request signed inside the HSM.

    Example: hsmcert csr --key managedhsm:contoso:tls --subj /CN=www.example.com --san DNS:www.example.com -o www.csr
    """
    from hsmcert.pki.csr import build_csr
    from hsmcert.pki.san import parse_sans
    from hsmcert.pki.subject import parse_subject

    name, sans, prof = parse_subject(subj), parse_sans(san), _profile(profile)
    check_target(out, force=force)  # before the HSM is asked
    _check_manage(manage, out, force)
    if manage and not cert:
        from hsmcert.errors import UsageError

        raise UsageError(
            "--manage on a CSR needs --cert, where the CA's certificate will be.", "Pass --cert FILE."
        )
    with waiting(f"signing the CSR with {key} in the HSM"):
        private_key = _load_key(key, endpoint, ca_bundle, credential)
        signed = build_csr(private_key, name, sans=sans, profile=prof, alg=alg)
    _write(signed, out=out, fmt=fmt, der=der, force=force, key=private_key, profile=prof)
    if manage and cert:
        from hsmcert.lifecycle.register import record_for_csr, register
        from hsmcert.lifecycle.state import Store

        record = record_for_csr(
            manage,
            signed.obj,
            key=str(private_key.ref),
            csr_path=out,
            cert_path=cert,
            profile=prof.name if prof else None,
            alg=alg,
        )
        register(Store(), record, replace=True)
        log(
            f"managing {manage}: put the CA's certificate in {record.cert}; hsmcert renew {manage} writes the next CSR"
        )


def selfsign(
    key: KeyOpt,
    subj: SubjOpt,
    san: SanOpt = None,
    profile: Annotated[
        str, typer.Option("--profile", help="tls-server, tls-client, code-signing, root-ca.")
    ] = "tls-server",
    days: DaysOpt = 365,
    path_length: PathLenOpt = None,
    alg: AlgOpt = None,
    out: OutOpt = "-",
    fmt: FormatOpt = Format.pem,
    der: DerOpt = False,
    force: ForceOpt = False,
    manage: ManageOpt = None,
    endpoint: EndpointOpt = None,
    ca_bundle: CaBundleOpt = None,
    credential: CredentialOpt = None,
) -> None:
    """Make a self-signed certificate signed inside the HSM (a root CA with --profile root-ca).

    Example: hsmcert selfsign --key managedhsm:contoso:root --subj "/O=Contoso/CN=Root" --profile root-ca --days 3650 -o root.pem
    """
    from hsmcert.pki.san import parse_sans
    from hsmcert.pki.selfsign import build_selfsigned
    from hsmcert.pki.subject import parse_subject

    name, sans, prof = parse_subject(subj), parse_sans(san), _profile(profile)
    check_target(out, force=force)  # before the HSM is asked
    _check_manage(manage, out, force)
    with waiting(f"signing the certificate with {key} in the HSM"):
        private_key = _load_key(key, endpoint, ca_bundle, credential)
        signed = build_selfsigned(
            private_key, name, profile=prof, sans=sans, days=days, path_length=path_length, alg=alg
        )
    _write(signed, out=out, fmt=fmt, der=der, force=force, key=private_key, profile=prof)
    issuer = {"kind": "self-signed"}
    _manage(manage, signed, out=out, key=str(private_key.ref), issuer=issuer, profile=prof.name, alg=alg)


def issue(
    ca_key: Annotated[str, typer.Option("--ca-key", help="The CA's key reference (held in the HSM).")],
    ca_cert: Annotated[str, typer.Option("--ca-cert", help="The CA's certificate (PEM or DER).")],
    csr_file: Annotated[str, typer.Option("--csr", help="The certificate signing request (PEM or DER).")],
    profile: Annotated[
        str, typer.Option("--profile", help="tls-server, tls-client, code-signing, intermediate-ca.")
    ] = "tls-server",
    days: DaysOpt = 365,
    subj: Annotated[str | None, typer.Option("--subj", help="Use this subject instead of the CSR's.")] = None,
    san: Annotated[
        list[str] | None, typer.Option("--san", help="Use these SANs instead of the CSR's (repeatable).")
    ] = None,
    path_length: PathLenOpt = None,
    alg: AlgOpt = None,
    out: OutOpt = "-",
    fmt: FormatOpt = Format.pem,
    der: DerOpt = False,
    force: ForceOpt = False,
    manage: ManageOpt = None,
    key: Annotated[
        str | None,
        typer.Option(
            "--key",
            help="With --manage: the HSM key the CSR is for (renewals make new CSRs with it).",
        ),
    ] = None,
    endpoint: EndpointOpt = None,
    ca_bundle: CaBundleOpt = None,
    credential: CredentialOpt = None,
) -> None:
    """Issue a certificate for a CSR, signed by a CA key held in the HSM.

    Only the subject and SANs are taken from the CSR; the profile decides key usage, EKU and CA constraints.

    Example: hsmcert issue --ca-key managedhsm:contoso:ca --ca-cert ca.pem --csr www.csr -o www.pem
    """
    from hsmcert.errors import UsageError
    from hsmcert.pki.io import load_certificates, load_csr
    from hsmcert.pki.issue import issue_certificate
    from hsmcert.pki.san import parse_sans
    from hsmcert.pki.subject import parse_subject

    prof = _profile(profile)
    if prof.name == "root-ca":
        raise UsageError("A root CA is self-signed, not issued.", "Use hsmcert selfsign --profile root-ca.")
    name = parse_subject(subj) if subj else None
    sans = parse_sans(san) if san else None
    request = load_csr(csr_file)
    ca_certificate = load_certificates(ca_cert, "CA certificate")[0]
    check_target(out, force=force)  # before the HSM is asked
    _check_manage(manage, out, force)
    if manage and not key:
        raise UsageError("--manage needs --key, the HSM key of the CSR.", "Pass --key REF.")
    with waiting(f"issuing the certificate with {ca_key} in the HSM"):
        leaf_key = _csr_key(request, key, endpoint, ca_bundle, credential) if manage and key else None
        private_key = _load_key(ca_key, endpoint, ca_bundle, credential)
        signed = issue_certificate(
            private_key,
            ca_certificate,
            request,
            profile=prof,
            days=days,
            subject=name,
            sans=sans,
            path_length=path_length,
            alg=alg,
        )
    _write(signed, out=out, fmt=fmt, der=der, force=force, key=private_key, profile=prof)
    issuer = {"kind": "hsmcert-ca", "ca_key": str(private_key.ref), "ca_cert": ca_cert}
    _manage(manage, signed, out=out, key=str(leaf_key), issuer=issuer, profile=prof.name, alg=alg)


def _csr_key(
    request: Any, key: str, endpoint: str | None, ca_bundle: str | None, credential: str | None
) -> str:
    """``key`` pinned to the version whose public key the CSR carries (exit 6 when none does)."""
    from hsmcert.lifecycle.register import key_for

    return key_for(request, key, session(endpoint, ca_bundle, credential))


def _read_input(file: str) -> tuple[bytes, str]:
    import sys

    from hsmcert.pki.io import read_file

    if file == "-":
        return sys.stdin.buffer.read(), "standard input"
    return read_file(file, "input"), file


def inspect(
    file: Annotated[str, typer.Argument(help="A CSR or certificate(s), PEM or DER; - for standard input.")],
    lint: Annotated[
        bool,
        typer.Option("--lint", help="Also run pkilint's RFC 5280 linter (exit 6 on a WARNING or worse)."),
    ] = False,
) -> None:
    """Show what is in a CSR or certificate (text, or JSON with --output json)."""
    from hsmcert.errors import VerificationError
    from hsmcert.pki.inspect import describe, render_text
    from hsmcert.pki.io import encode, parse_any
    from hsmcert.pki.lint import lint_certificate

    data, source = _read_input(file)
    objs = parse_any(data, source)
    items = [describe(obj) for obj in objs]
    if lint:
        for obj, item in zip(objs, items, strict=True):
            if item["kind"] == "certificate":
                item["lint"] = lint_certificate(encode(obj, der=True))

    def text() -> str:
        blocks = []
        for item in items:
            block = render_text(item)
            if "lint" in item:
                block += "\n  lint:       " + (
                    "; ".join(item["lint"]) or "clean (RFC 5280, WARNING and above)"
                )
            blocks.append(block)
        return "\n\n".join(blocks)

    emit(items[0] if len(items) == 1 else {"kind": "bundle", "items": items}, text)
    findings = sum(len(i.get("lint", [])) for i in items)
    if findings:
        raise VerificationError(f"{source}: pkilint reports {findings} finding(s) at WARNING or above.")


def verify(
    file: Annotated[str, typer.Argument(help="The certificate or CSR to check; - for standard input.")],
    key: Annotated[
        str | None, typer.Option("--key", "-k", help="Check that it carries this HSM key's public key.")
    ] = None,
    ca: Annotated[
        str | None, typer.Option("--ca", "--ca-file", help="Trusted CA certificate(s) (PEM).")
    ] = None,
    untrusted: Annotated[
        str | None, typer.Option("--untrusted", help="Intermediate certificates to build the chain with.")
    ] = None,
    csr_file: Annotated[str | None, typer.Option("--csr", help="Check that it matches this CSR.")] = None,
    endpoint: EndpointOpt = None,
    ca_bundle: CaBundleOpt = None,
    credential: CredentialOpt = None,
) -> None:
    """Check a certificate against a key reference, a CA file and/or a CSR (exit 6 when a check fails)."""
    from hsmcert.errors import VerificationError
    from hsmcert.pki.io import load_certificates, load_csr, parse_any
    from hsmcert.pki.verify import verify as run_checks

    data, source = _read_input(file)
    obj = parse_any(data, source)[0]
    public_key, label = None, "the key"
    if key:
        with waiting(f"reading {key} from the HSM"):
            hsm_key = session(endpoint, ca_bundle, credential).open_key(key)
        public_key, label = hsm_key.public_key, str(hsm_key.ref)
    checks = run_checks(
        obj,
        public_key=public_key,
        key_label=label,
        ca_certs=load_certificates(ca, "CA") if ca else None,
        untrusted=load_certificates(untrusted, "intermediate certificate") if untrusted else None,
        csr=load_csr(csr_file) if csr_file else None,
    )
    failed = [c for c in checks if not c.ok]
    emit(
        {"file": file, "ok": not failed, "checks": [c.to_json() for c in checks]},
        "\n".join(f"{'ok  ' if c.ok else 'FAIL'} {c.name}: {c.detail}" for c in checks),
    )
    if failed:
        raise VerificationError(f"{source}: {failed[0].name} check failed: {failed[0].detail}.")


def register(app: typer.Typer) -> None:
    app.command("csr")(csr)
    app.command("selfsign")(selfsign)
    app.command("issue")(issue)
    app.command("inspect")(inspect)
    app.command("verify")(verify)
