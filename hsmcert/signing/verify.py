"""Checking signatures of every format :mod:`hsmcert.signing` writes, with a public key, a certificate or CAs.

A :class:`Trust` says what to check against: a public key (from ``--key REF``, ``--pubkey FILE`` or the
certificate of ``--cert``), the signer's certificate itself (``--cert``: CMS and Authenticode accept it as a
trust anchor) or CA certificates (``--ca``). :func:`verify_files` returns one :class:`Verdict` per file (per
listed file for a checksum file). CMS signatures are checked by ``openssl cms -verify`` and Authenticode
by ``osslsigncode verify``, the tools a downstream user runs.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hsmcert.errors import HsmcertError, NotFoundError, UsageError
from hsmcert.signing.common import hash_file

VERIFY_FORMATS = ("auto", "raw", "raw-base64", "cms", "dsse", "checksums", "authenticode")
DEFAULT_SUFFIXES = (("raw", ".sig"), ("raw-base64", ".sig.b64"), ("cms", ".p7s"), ("dsse", ".intoto.jsonl"))
_SIGNED_DATA_OID = bytes.fromhex("06092a864886f70d010702")


@dataclass(frozen=True)
class Trust:
    """What a signature is checked against (at least one)."""

    public_key: Any = None
    label: str = "the key"
    cert_file: Path | None = None
    ca_file: Path | None = None

    def require_key(self, fmt: str) -> Any:
        if self.public_key is None:
            raise UsageError(
                f"A {fmt} signature is checked with a public key.",
                "Pass --key REF, --pubkey FILE or --cert FILE.",
            )
        return self.public_key


@dataclass(frozen=True)
class Verdict:
    file: str
    signature: str | None
    format: str
    ok: bool
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "signature": self.signature,
            "format": self.format,
            "ok": self.ok,
            "detail": self.detail,
        }

    def line(self) -> str:
        return f"{'ok ' if self.ok else 'BAD'} {self.file}: {self.detail}"


def _read(path: Path, what: str) -> bytes:
    from hsmcert.pki.io import read_file

    return read_file(path, what)


def default_signature(path: Path, fmt: str) -> tuple[str, Path | None]:
    """(format, signature path) when no --signature is given: the file a format writes next to ``path``."""
    if fmt == "authenticode":
        return fmt, None
    if fmt == "checksums" or (fmt == "auto" and "SUMS" in path.name.upper()):
        return "checksums", path.with_name(path.name + ".sig")
    for name, suffix in DEFAULT_SUFFIXES:
        candidate = path.with_name(path.name + suffix)
        if (fmt in (name, "auto")) and candidate.exists():
            return name, candidate
    if fmt == "auto":
        with open(path, "rb") as fh:
            if fh.read(2) == b"MZ":
                return "authenticode", None
        raise NotFoundError(
            f"No signature found next to {path} ({', '.join(path.name + s for _, s in DEFAULT_SUFFIXES)}).",
            "Name it with --signature.",
        )
    suffix = dict(DEFAULT_SUFFIXES)[fmt]
    return fmt, path.with_name(path.name + suffix)


def detect(path: Path, signature: bytes) -> str:
    """The format of a signature file's content."""
    from hsmcert.signing.raw import looks_base64

    head = signature.lstrip()[:1]
    if head == b"{":
        return "dsse"
    if signature[:1] == b"\x30" and _SIGNED_DATA_OID in signature[:40]:
        return "cms"
    if "SUMS" in path.name.upper():
        return "checksums"
    if looks_base64(signature):
        return "raw-base64"
    return "raw"


def verify_files(
    files: Sequence[str | os.PathLike[str]], *, signature: Path | None, fmt: str, trust: Trust
) -> list[Verdict]:
    """One verdict per file (a checksum file: one per file it lists)."""
    if fmt not in VERIFY_FORMATS:
        raise UsageError(f"Unknown signature format {fmt!r}.", f"Use one of: {', '.join(VERIFY_FORMATS)}.")
    if trust.public_key is None and trust.cert_file is None and trust.ca_file is None:
        raise UsageError(
            "Nothing to check the signature against.",
            "Pass --key REF, --pubkey FILE, --cert FILE or --ca FILE.",
        )
    paths = [Path(f) for f in files]
    if not paths:
        raise UsageError("No file to check.")
    shared = _read(signature, "signature") if signature is not None else None
    if shared is not None and fmt == "auto":
        fmt = detect(paths[0], shared)
    if shared is not None and len(paths) > 1 and fmt != "dsse":
        raise UsageError("--signature names the signature of one file (or the DSSE envelope of several).")
    verdicts: list[Verdict] = []
    for path in paths:
        if not path.is_file():
            raise NotFoundError(f"The file {path} does not exist.", "Check the path.")
        kind, sig_path = (fmt, signature) if signature is not None else default_signature(path, fmt)
        sig = shared if shared is not None else _read(sig_path, "signature") if sig_path is not None else b""
        if kind == "auto":
            kind = detect(path, sig)
        verdicts.extend(_one(path, kind, sig_path, sig, trust))
    return verdicts


def _one(path: Path, kind: str, sig_path: Path | None, sig: bytes, trust: Trust) -> list[Verdict]:
    name = str(sig_path) if sig_path is not None else None

    def verdict(ok: bool, detail: str, file: Path = path) -> Verdict:
        return Verdict(str(file), name, kind, ok, detail)

    if kind in ("raw", "raw-base64"):
        from hsmcert.signing.raw import decode, matching_algorithm

        key = trust.require_key(kind)
        raw = decode(sig, kind)
        alg = matching_algorithm(key, hash_file(path, "SHA256", "SHA384", "SHA512"), raw) if raw else None
        if alg is None:
            return [verdict(False, f"the signature is not {trust.label}'s signature of this file")]
        return [verdict(True, f"{alg} signature by {trust.label}")]
    if kind == "dsse":
        return [_dsse(path, sig, trust, verdict)]
    if kind == "checksums":
        return _checksums(path, sig, trust, verdict)
    if kind == "cms":
        ok, detail = cms_check(
            path,
            sig,
            signer_key=trust.public_key,
            cert_file=trust.cert_file,
            ca_file=trust.ca_file,
            label=trust.label,
        )
        return [verdict(ok, detail)]
    if kind == "authenticode":
        from hsmcert.signing.authenticode import verify as authenticode_verify

        anchor = trust.ca_file or trust.cert_file
        if anchor is None:
            raise UsageError(
                "An Authenticode signature is checked against certificates.",
                "Pass --ca FILE (or --cert FILE for a self-signed one).",
            )
        ok, detail = authenticode_verify(path, anchor)
        return [verdict(ok, detail)]
    raise UsageError(f"Unknown signature format {kind!r}.")


def _dsse(path: Path, sig: bytes, trust: Trust, verdict: Callable[..., Verdict]) -> Verdict:
    import hashlib

    from hsmcert.signing.dsse import pae, parse_envelope, subjects_of
    from hsmcert.signing.raw import matching_algorithm

    key = trust.require_key("DSSE")
    payload_type, payload, signatures = parse_envelope(sig, "the signature")
    message = pae(payload_type, payload)
    digests = {h: hashlib.new(h.lower(), message).digest() for h in ("SHA256", "SHA384", "SHA512")}
    alg = next((a for _, s in signatures if (a := matching_algorithm(key, digests, s))), None)
    if alg is None:
        return verdict(False, f"no signature of the envelope is by {trust.label}")
    subjects = subjects_of(payload)
    if subjects is None:
        return verdict(False, "the envelope's payload is not an in-toto statement")
    digest = hash_file(path, "SHA256")["SHA256"].hex()
    if digest not in subjects:
        return verdict(False, "the file's SHA-256 is not a subject of the signed statement")
    return verdict(
        True, f"subject {subjects[digest]!r} of an in-toto statement, {alg} signature by {trust.label}"
    )


def _checksums(path: Path, sig: bytes, trust: Trust, verdict: Callable[..., Verdict]) -> list[Verdict]:
    from hsmcert.signing.checksums import parse
    from hsmcert.signing.raw import decode, looks_base64, matching_algorithm

    key = trust.require_key("checksum file")
    raw = decode(sig, "raw-base64") if looks_base64(sig) else sig
    alg = matching_algorithm(key, hash_file(path, "SHA256", "SHA384", "SHA512"), raw) if raw else None
    if alg is None:
        return [verdict(False, f"the signature is not {trust.label}'s signature of this checksum file")]
    found: list[Verdict] = [verdict(True, f"{alg} signature by {trust.label}")]
    for name, digest in parse(_read(path, "checksum"), str(path)):
        listed = Path(name)
        if not listed.is_file():
            found.append(verdict(False, "listed, but missing", listed))
        elif hash_file(listed, "SHA256")["SHA256"].hex() != digest:
            found.append(verdict(False, f"its SHA-256 is not the one {path} lists", listed))
        else:
            found.append(verdict(True, f"SHA-256 as listed in {path}", listed))
    return found


def cms_check(
    path: Path,
    sig: bytes,
    *,
    signer_key: Any = None,
    cert_file: Path | None = None,
    ca_file: Path | None = None,
    label: str = "the key",
) -> tuple[bool, str]:
    """(ok, one-line detail) of ``openssl cms -verify`` on a detached CMS signature of ``path``.

    Against ``ca_file`` (a chain to a CA), else ``cert_file`` (the signer's certificate as anchor), else only
    the signature itself; with ``signer_key`` the signer's public key must be that key too.
    """
    from cryptography import x509

    from hsmcert.pki.signing import same_public_key

    with tempfile.TemporaryDirectory(prefix="hsmcert-cms-") as tmp:
        sig_file, signer_file = Path(tmp) / "sig.der", Path(tmp) / "signer.pem"
        sig_file.write_bytes(sig)
        args = [
            "openssl",
            "cms",
            "-verify",
            "-binary",
            "-inform",
            "DER",
            "-in",
            str(sig_file),
            "-content",
            str(path),
        ]
        args += ["-purpose", "any", "-out", os.devnull, "-signer", str(signer_file)]
        if ca_file is not None:
            args += ["-CAfile", str(ca_file)]
        elif cert_file is not None:
            args += ["-CAfile", str(cert_file), "-partial_chain"]
        else:
            args += ["-noverify"]
        try:
            done = subprocess.run(
                args, capture_output=True, text=True, timeout=60, check=False, stdin=subprocess.DEVNULL
            )
        except FileNotFoundError:
            raise NotFoundError(
                "openssl is not installed; hsmcert checks CMS signatures with it.", "apt-get install openssl"
            ) from None
        except subprocess.TimeoutExpired:
            raise HsmcertError("openssl cms -verify did not finish within 60 s.") from None
        if done.returncode != 0:
            return False, _openssl_problem(done.stderr)
        signers = x509.load_pem_x509_certificates(signer_file.read_bytes())
    subject = signers[0].subject.rfc4514_string() if signers else "?"
    if signer_key is not None and not any(same_public_key(c.public_key(), signer_key) for c in signers):
        return False, f"signed by {subject}, not by {label}"
    return True, f"CMS signature by {subject}"


def _openssl_problem(stderr: str) -> str:
    """The reason in openssl's error lines (``...:CMS routines:FUNCTION:REASON:file:line:``)."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    for line in lines:
        if "Verify error:" in line:
            return "certificate: " + line.split("Verify error:", 1)[1].strip()
    reasons = [line.split(":")[5] for line in lines if ":error:" in line and len(line.split(":")) > 6]
    if "verification failure" in reasons and any("content verify" in r for r in reasons):
        return "the signature does not match the file (changed since it was signed?)"
    if reasons:
        return reasons[0]
    return lines[-1].strip() if lines else "openssl cms -verify failed"
