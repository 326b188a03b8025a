"""Detached bare signatures: ``FILE.sig`` (binary) or ``FILE.sig.b64`` (base64, what cosign's sign-blob writes).

RSA PKCS#1 v1.5 and PSS (salt = digest length) signatures, and DER ECDSA, over the file's digest with the
algorithm's hash. ``openssl dgst -sha256 -verify pub.pem -signature FILE.sig FILE`` checks them (PSS: add
``-sigopt rsa_padding_mode:pss``); a base64 signature is decoded first (``base64 -d``).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hsmcert import jwa
from hsmcert.signing.common import (
    Result,
    Signer,
    SignOptions,
    bounded_map,
    check_outputs,
    existing_output,
    hash_file,
    output_for,
    write,
)

SUFFIXES = {"raw": ".sig", "raw-base64": ".sig.b64"}
HASHES = ("SHA256", "SHA384", "SHA512")


def candidate_algorithms(public_key: Any) -> list[tuple[str, str, bool]]:
    """(label, JWA hash name, pss) of every signature a key of this type may have made, most likely first."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    if isinstance(public_key, rsa.RSAPublicKey):
        return [(f"{'PS' if pss else 'RS'}{h[3:]}", h, pss) for h in HASHES for pss in (False, True)]
    from hsmcert.pki.signing import key_shape

    kty, curve, _ = key_shape(public_key)
    default = jwa.ALGORITHMS[jwa.default_algorithm(kty, curve)]
    ordered = [default.hash] + [h for h in HASHES if h != default.hash]
    return [(default.name if h == default.hash else f"ECDSA-{h}", h, False) for h in ordered]


def matching_algorithm(public_key: Any, digests: Mapping[str, bytes], signature: bytes) -> str | None:
    """The algorithm under which ``signature`` is valid for one of ``digests`` (by JWA hash name), or None."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
    from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

    for label, hash_name, pss in candidate_algorithms(public_key):
        if hash_name not in digests:
            continue
        hash_alg = jwa.hash_for(hash_name)
        try:
            if isinstance(public_key, rsa.RSAPublicKey):
                pad: padding.AsymmetricPadding = (
                    padding.PSS(mgf=padding.MGF1(hash_alg), salt_length=padding.PSS.AUTO)
                    if pss
                    else padding.PKCS1v15()
                )
                public_key.verify(signature, digests[hash_name], pad, Prehashed(hash_alg))
            elif isinstance(public_key, ec.EllipticCurvePublicKey):
                public_key.verify(signature, digests[hash_name], ec.ECDSA(Prehashed(hash_alg)))
            else:
                return None
        except (InvalidSignature, ValueError):
            continue
        return label
    return None


def decode(data: bytes, fmt: str) -> bytes | None:
    """The signature bytes of a ``raw`` or ``raw-base64`` file (None: not valid base64)."""
    if fmt != "raw-base64":
        return data
    try:
        return base64.b64decode(b"".join(data.split()), validate=True)
    except (binascii.Error, ValueError):
        return None


def looks_base64(data: bytes) -> bool:
    """Whether a signature file holds base64 text rather than a binary signature."""
    text = b"".join(data.split())
    return bool(text) and all(
        c in b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=" for c in text
    )


def sign_files(signer: Signer, paths: Sequence[Path], options: SignOptions, fmt: str) -> list[Result]:
    outputs = [output_for(p, SUFFIXES[fmt], options, len(paths)) for p in paths]
    check_outputs(outputs, options)
    hash_name = signer.algorithm.hash

    def one(pair: tuple[Path, Path]) -> Result:
        path, out = pair
        digests = hash_file(path, hash_name, "SHA256")
        status = "signed"
        old = existing_output(out, options)
        old_sig = decode(old, fmt) if old is not None else None
        if old_sig is not None and matching_algorithm(
            signer.public_key, {hash_name: digests[hash_name]}, old_sig
        ):
            status = "skipped"
        else:
            signature = signer.sign_digest(digests[hash_name])
            write(out, base64.b64encode(signature) if fmt == "raw-base64" else signature, options)
        return Result(str(path), str(out), fmt, status, signer.algorithm.name, digests["SHA256"].hex())

    return bounded_map(one, list(zip(paths, outputs, strict=True)), options.concurrency)
