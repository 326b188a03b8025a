"""An in-toto statement about the files (subjects: their names and SHA-256 digests) in a DSSE envelope.

The statement is in-toto Statement v1; its predicate comes from ``--predicate FILE`` (JSON) with
``--predicate-type URI`` (e.g. SLSA provenance ``https://slsa.dev/provenance/v1``); without one the
predicate is empty, of type :data:`DEFAULT_PREDICATE_TYPE`. The envelope is one line of JSON
(``.intoto.jsonl``), signed over DSSE's pre-authentication encoding; its ``keyid`` is the SHA-256 of the
key's SubjectPublicKeyInfo (hex). The in-toto and securesystemslib libraries, cosign's ``verify-blob-attestation``
and slsa-verifier read it.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hsmcert.errors import UsageError
from hsmcert.signing.common import (
    Result,
    Signer,
    SignOptions,
    bounded_map,
    check_outputs,
    existing_output,
    hash_file,
    write,
)

PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
DEFAULT_PREDICATE_TYPE = "https://in-toto.io/attestation/release/v0.1"
SUFFIX = ".intoto.jsonl"


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE's pre-authentication encoding: what is signed.

    >>> pae("t", b"hi")
    b'DSSEv1 1 t 2 hi'
    """
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def statement(subjects: Sequence[tuple[str, str]], predicate_type: str, predicate: dict[str, Any]) -> bytes:
    """The statement's JSON for ``(name, sha256 hex)`` subjects."""
    body = {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": name, "digest": {"sha256": digest}} for name, digest in subjects],
        "predicateType": predicate_type,
        "predicate": predicate,
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def keyid(public_key: Any) -> str:
    from hsmcert.pki.signing import spki_sha256

    return spki_sha256(public_key)


def parse_envelope(data: bytes, source: str) -> tuple[str, bytes, list[tuple[str, bytes]]]:
    """(payloadType, payload, [(keyid, signature)]) of an envelope (the first line of a .jsonl file)."""
    try:
        first = next(line for line in data.splitlines() if line.strip())
        doc = json.loads(first)
        payload = base64.b64decode(doc["payload"], validate=True)
        signatures = [(str(s.get("keyid", "")), _b64(s["sig"])) for s in doc["signatures"]]
        payload_type = str(doc["payloadType"])
    except (StopIteration, ValueError, KeyError, TypeError, AttributeError, binascii.Error):
        raise UsageError(
            f"{source} is not a DSSE envelope (JSON with payload, payloadType, signatures)."
        ) from None
    return payload_type, payload, signatures


def _b64(text: str) -> bytes:
    # DSSE writers use standard or URL-safe base64, padded or not
    text = text.strip().replace("-", "+").replace("_", "/")
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def subjects_of(payload: bytes) -> dict[str, str] | None:
    """sha256 digest -> name of each subject of an in-toto statement (None: not a statement)."""
    try:
        doc = json.loads(payload)
        if not str(doc.get("_type", "")).startswith("https://in-toto.io/Statement/"):
            return None
        return {str(s["digest"]["sha256"]).lower(): str(s.get("name", "")) for s in doc["subject"]}
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def envelope_verifies(signer: Signer, data: bytes, payload: bytes) -> bool:
    """Whether the envelope ``data`` carries ``payload`` with a valid signature by the signer's key."""
    from hsmcert.signing.raw import matching_algorithm

    try:
        payload_type, old_payload, signatures = parse_envelope(data, "envelope")
    except UsageError:
        return False
    if old_payload != payload or payload_type != PAYLOAD_TYPE:
        return False
    digest = hash_file_bytes(pae(payload_type, payload), signer.algorithm.hash)
    return any(
        matching_algorithm(signer.public_key, {signer.algorithm.hash: digest}, sig) for _, sig in signatures
    )


def hash_file_bytes(data: bytes, hash_name: str) -> bytes:
    import hashlib

    return hashlib.new(hash_name.lower(), data).digest()


def sign_files(signer: Signer, paths: Sequence[Path], options: SignOptions, fmt: str) -> list[Result]:
    if options.out is None and len(paths) != 1:
        raise UsageError(
            "A DSSE statement covers all the files in one envelope: name it with --out.",
            "For example: --out release.intoto.jsonl",
        )
    out = options.out or (options.output_dir or paths[0].parent) / (paths[0].name + SUFFIX)
    check_outputs([out], options)
    if options.predicate is not None and not options.predicate_type:
        raise UsageError("--predicate needs --predicate-type (e.g. https://slsa.dev/provenance/v1).")
    digests = bounded_map(lambda p: hash_file(p, "SHA256")["SHA256"].hex(), list(paths), options.concurrency)
    names = [p.name for p in paths]
    if len(set(names)) != len(names):
        raise UsageError("Two files have the same name: a statement names each subject once.")
    payload = statement(
        list(zip(names, digests, strict=True)),
        options.predicate_type or DEFAULT_PREDICATE_TYPE,
        options.predicate if options.predicate is not None else {},
    )
    old = existing_output(out, options)
    status = "signed"
    if old is not None and envelope_verifies(signer, old, payload):
        status = "skipped"
    else:
        signature = signer.sign_digest(hash_file_bytes(pae(PAYLOAD_TYPE, payload), signer.algorithm.hash))
        envelope = {
            "payload": base64.b64encode(payload).decode(),
            "payloadType": PAYLOAD_TYPE,
            "signatures": [{"keyid": keyid(signer.public_key), "sig": base64.b64encode(signature).decode()}],
        }
        write(out, json.dumps(envelope, separators=(",", ":")).encode() + b"\n", options)
    return [
        Result(str(p), str(out), fmt, status, signer.algorithm.name, d)
        for p, d in zip(paths, digests, strict=True)
    ]
