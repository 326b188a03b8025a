"""Detached CMS (PKCS#7) signatures, ``FILE.p7s`` (DER), with the signer's certificate and its chain.

Built by pyca/cryptography's ``PKCS7SignatureBuilder`` on the HSM key adapter (:mod:`hsmcert.signer`): the
signed attributes (content type, signing time, the file's digest) are signed in the HSM, and the adapter
checks that signature with the public key before cryptography embeds it. Checked by
``openssl cms -verify -binary -inform DER -in FILE.p7s -content FILE -CAfile ca.pem -purpose any``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hsmcert.errors import HsmcertError
from hsmcert.signing.common import (
    Result,
    Signer,
    SignOptions,
    bounded_map,
    check_outputs,
    existing_output,
    output_for,
    write,
)

SUFFIX = ".p7s"


def build(signer: Signer, data: bytes) -> bytes:
    """The DER of a detached CMS signature of ``data``."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.serialization import pkcs7

    from hsmcert.pki.signing import sign_kwargs

    certificate = signer.require_certificate("CMS")
    key = signer.private_key()
    _, kwargs = sign_kwargs(key, signer.algorithm.name)
    builder = pkcs7.PKCS7SignatureBuilder().set_data(data)
    builder = builder.add_signer(certificate, key, kwargs["algorithm"], rsa_padding=kwargs.get("rsa_padding"))
    for extra in signer.chain:
        builder = builder.add_certificate(extra)
    return builder.sign(
        serialization.Encoding.DER, [pkcs7.PKCS7Options.DetachedSignature, pkcs7.PKCS7Options.Binary]
    )


def sign_files(signer: Signer, paths: Sequence[Path], options: SignOptions, fmt: str) -> list[Result]:
    import hashlib

    signer.require_certificate("CMS")
    outputs = [output_for(p, SUFFIX, options, len(paths)) for p in paths]
    check_outputs(outputs, options)
    from hsmcert.signing.verify import cms_check

    def one(pair: tuple[Path, Path]) -> Result:
        path, out = pair
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise HsmcertError(f"Cannot read {path}: {exc.strerror or exc}.") from exc
        status = "signed"
        old = existing_output(out, options)
        if old is not None and cms_check(path, old, signer_key=signer.public_key)[0]:
            status = "skipped"
        else:
            write(out, build(signer, data), options)
        return Result(
            str(path), str(out), fmt, status, signer.algorithm.name, hashlib.sha256(data).hexdigest()
        )

    return bounded_map(one, list(zip(paths, outputs, strict=True)), options.concurrency)
