"""Signing release artifacts with HSM keys, in the formats the usual verifiers read.

One :class:`~hsmcert.signing.common.Signer` per run holds the HSM key (its public key fetched once), the
algorithm and the signer's certificate; :func:`sign_files` signs many files with it, concurrently within a
bound, each signature checked with the public key before its file is written (atomically).

==============  ===========================================================  ================================
format          what is written                                              verified by
==============  ===========================================================  ================================
raw             ``FILE.sig``: the bare signature (PKCS#1 v1.5, PSS, DER       ``openssl dgst -verify``
                ECDSA)
raw-base64      ``FILE.sig.b64``: the same, base64 (what cosign writes)      ``cosign verify-blob``, openssl
cms             ``FILE.p7s``: detached CMS with the signer's certificate      ``openssl cms -verify``
dsse            one in-toto statement of every file's SHA-256 in a DSSE      in-toto, securesystemslib
                envelope (``.intoto.jsonl``)
checksums       ``SHA256SUMS`` and ``SHA256SUMS.sig``                         ``sha256sum -c``, openssl
authenticode    the PE file itself, signed through osslsigncode and the       ``osslsigncode verify``,
                hsmcert OpenSSL provider                                      Windows
==============  ===========================================================  ================================

:func:`~hsmcert.signing.verify.verify_files` checks all of them (``hsmcert verify-signature``).
"""

from __future__ import annotations

from hsmcert.signing.common import FORMATS, Result, Signer, SignOptions, sign_files

__all__ = ["FORMATS", "Result", "SignOptions", "Signer", "sign_files"]
