"""hsmcert sign | verify-signature: release artifacts signed with HSM keys, and checked.

Thin: parse options, call :mod:`hsmcert.signing`, render.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from hsmcert.cli._common import (
    CaBundleOpt,
    CredentialOpt,
    EndpointOpt,
    ForceOpt,
    KeyOpt,
    emit,
    session,
    waiting,
)


class SignFormat(str, Enum):
    raw = "raw"
    raw_base64 = "raw-base64"
    cms = "cms"
    dsse = "dsse"
    checksums = "checksums"
    authenticode = "authenticode"


class VerifyFormat(str, Enum):
    auto = "auto"
    raw = "raw"
    raw_base64 = "raw-base64"
    cms = "cms"
    dsse = "dsse"
    checksums = "checksums"
    authenticode = "authenticode"


def _certificates(path: str | None, what: str) -> list[Any]:
    from hsmcert.pki.io import load_certificates

    return load_certificates(path, what) if path else []


def _predicate(path: str | None) -> dict[str, Any] | None:
    import json

    from hsmcert.errors import UsageError
    from hsmcert.pki.io import read_file

    if path is None:
        return None
    try:
        value = json.loads(read_file(path, "predicate"))
    except ValueError as exc:
        raise UsageError(f"The predicate file {path} is not JSON: {exc}.") from None
    if not isinstance(value, dict):
        raise UsageError(f"The predicate in {path} is not a JSON object.")
    return value


def sign(
    files: Annotated[list[str], typer.Argument(help="The files to sign.")],
    key: KeyOpt,
    fmt: Annotated[
        SignFormat, typer.Option("--format", "-f", help="What to write (docs/ci.md).")
    ] = SignFormat.raw,
    alg: Annotated[
        str | None,
        typer.Option("--alg", help="RS256/384/512, PS256/384/512, ES256/384/512 (default: the key's)."),
    ] = None,
    cert: Annotated[
        str | None, typer.Option("--cert", help="cms, authenticode: the signer's certificate (PEM).")
    ] = None,
    chain: Annotated[
        str | None, typer.Option("--chain", help="cms, authenticode: certificates to include (PEM bundle).")
    ] = None,
    predicate: Annotated[
        str | None, typer.Option("--predicate", help="dsse: the statement's predicate (a JSON file).")
    ] = None,
    predicate_type: Annotated[
        str | None,
        typer.Option(
            "--predicate-type", help="dsse: the predicate's type URI, e.g. https://slsa.dev/provenance/v1."
        ),
    ] = None,
    timestamp_url: Annotated[
        str | None, typer.Option("--timestamp-url", help="authenticode: an RFC 3161 timestamp server.")
    ] = None,
    out: Annotated[
        str | None,
        typer.Option(
            "--out", "-o", help="The output of one file, or of dsse/checksums (default: SHA256SUMS)."
        ),
    ] = None,
    output_dir: Annotated[
        str | None, typer.Option("--output-dir", help="Write signatures here instead of next to each file.")
    ] = None,
    skip_existing: Annotated[
        bool, typer.Option("--skip-existing", help="Keep an existing signature that still verifies.")
    ] = False,
    concurrency: Annotated[
        int, typer.Option("--concurrency", help="Signatures in flight at once (1-64).")
    ] = 8,
    force: ForceOpt = False,
    endpoint: EndpointOpt = None,
    ca_bundle: CaBundleOpt = None,
    credential: CredentialOpt = None,
) -> None:
    """Sign files with an HSM key: raw, raw-base64, cms, dsse (in-toto), checksums or authenticode.

    Each signature is checked with the public key before it is written; outputs are written atomically.

    Example: hsmcert sign --key managedhsm:contoso:release dist/*.tar.gz --format checksums
    """
    from hsmcert.signing import Signer, SignOptions, sign_files

    agent = None
    if fmt is SignFormat.authenticode:  # osslsigncode signs through a private agent of this process
        from hsmcert.agent.run import AgentOptions

        agent = AgentOptions(endpoint=endpoint, ca_bundle=ca_bundle, credential=credential)

    certificate = _certificates(cert, "signer certificate")
    options = SignOptions(
        output_dir=Path(output_dir) if output_dir else None,
        out=Path(out) if out else None,
        force=force,
        skip_existing=skip_existing,
        concurrency=concurrency,
        predicate=_predicate(predicate),
        predicate_type=predicate_type,
        timestamp_url=timestamp_url,
        agent=agent,
    )
    extra = _certificates(chain, "chain")
    with waiting(f"signing {len(files)} file(s) with {key} in the HSM"):
        hsm_key = session(endpoint, ca_bundle, credential).open_key(key)
        signer = Signer.open(hsm_key, alg, certificate[0] if certificate else None, certificate[1:] + extra)
        results = sign_files(signer, files, fmt.value, options)

    def text() -> str:
        return "\n".join(
            f"{r.status} {r.file} -> {r.output}"
            + (" (still verifies)" if r.status == "skipped" else f" ({r.algorithm})")
            for r in results
        )

    emit(
        {
            "key": signer.name,
            "format": fmt.value,
            "algorithm": signer.algorithm.name,
            "signed": sum(r.status == "signed" for r in results),
            "skipped": sum(r.status == "skipped" for r in results),
            "results": [r.to_json() for r in results],
        },
        text,
    )


def verify_signature(
    files: Annotated[list[str], typer.Argument(help="The signed files (a checksum file for checksums).")],
    signature: Annotated[
        str | None,
        typer.Option("--signature", "-s", help="The signature file (default: the one next to FILE)."),
    ] = None,
    fmt: Annotated[
        VerifyFormat, typer.Option("--format", "-f", help="The signature's format.")
    ] = VerifyFormat.auto,
    key: Annotated[
        str | None, typer.Option("--key", "-k", help="Check against this HSM key's public key.")
    ] = None,
    pubkey: Annotated[
        str | None, typer.Option("--pubkey", help="Check against this public key (PEM).")
    ] = None,
    cert: Annotated[
        str | None,
        typer.Option("--cert", help="The signer's certificate (its key; an anchor for cms/authenticode)."),
    ] = None,
    ca: Annotated[
        str | None, typer.Option("--ca", help="cms, authenticode: trusted CA certificates (PEM).")
    ] = None,
    endpoint: EndpointOpt = None,
    ca_bundle: CaBundleOpt = None,
    credential: CredentialOpt = None,
) -> None:
    """Check signatures made by hsmcert sign (or any tool writing these formats): exit 6 if one is bad.

    Example: hsmcert verify-signature dist/app.tar.gz --signature dist/app.tar.gz.sig --pubkey release.pub
    """
    from hsmcert.errors import UsageError, VerificationError
    from hsmcert.signing.verify import Trust, verify_files

    if sum(x is not None for x in (key, pubkey)) > 1:
        raise UsageError("Pass one of --key and --pubkey.")
    public_key, label = None, "the key"
    if key:
        with waiting(f"reading {key} from the HSM"):
            hsm_key = session(endpoint, ca_bundle, credential).open_key(key)
        public_key, label = hsm_key.public_key, str(hsm_key.ref.with_version(None))
    elif pubkey:
        public_key, label = _load_public_key(pubkey), pubkey
    elif cert:
        public_key, label = _certificates(cert, "certificate")[0].public_key(), cert
    trust = Trust(public_key, label, Path(cert) if cert else None, Path(ca) if ca else None)
    verdicts = verify_files(
        files, signature=Path(signature) if signature else None, fmt=fmt.value, trust=trust
    )
    bad = [v for v in verdicts if not v.ok]
    emit(
        {"ok": not bad, "results": [v.to_json() for v in verdicts]},
        "\n".join(v.line() for v in verdicts),
    )
    if bad:
        raise VerificationError(f"{bad[0].file}: {bad[0].detail}.")


def _load_public_key(path: str) -> Any:
    from cryptography.hazmat.primitives import serialization

    from hsmcert.errors import UsageError
    from hsmcert.pki.io import read_file

    data = read_file(path, "public key")
    try:
        if b"-----BEGIN" in data:
            return serialization.load_pem_public_key(data)
        return serialization.load_der_public_key(data)
    except (ValueError, TypeError):
        raise UsageError(f"{path} is not a public key (PEM or DER SubjectPublicKeyInfo).") from None


def register(app: typer.Typer) -> None:
    app.command("sign")(sign)
    app.command("verify-signature")(verify_signature)
