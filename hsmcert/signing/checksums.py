"""The usual release pattern: ``SHA256SUMS`` (``sha256sum`` lines, names as given) and ``SHA256SUMS.sig``, a
bare signature of it (:mod:`hsmcert.signing.raw`).

A downstream user checks ``openssl dgst -sha256 -verify pub.pem -signature SHA256SUMS.sig SHA256SUMS``,
then ``sha256sum -c SHA256SUMS`` in the same directory the files were named from.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

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
from hsmcert.signing.dsse import hash_file_bytes

DEFAULT_NAME = "SHA256SUMS"
SIG_SUFFIX = ".sig"
_LINE = re.compile(r"^(?P<digest>[0-9a-fA-F]{64}) [ *](?P<name>.+)$")


def render(entries: Sequence[tuple[str, str]]) -> bytes:
    """``sha256sum``'s output for ``(name, hex digest)`` entries.

    >>> render([("a.tar.gz", "00" * 32)]).decode().split()[1]
    'a.tar.gz'
    """
    for name, _ in entries:
        if "\n" in name or "\\" in name:
            raise UsageError(f"{name!r}: a file name in SHA256SUMS cannot hold a newline or a backslash.")
    return "".join(f"{digest}  {name}\n" for name, digest in entries).encode()


def parse(data: bytes, source: str) -> list[tuple[str, str]]:
    """The ``(name, hex digest)`` entries of a checksum file."""
    entries = []
    for number, line in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
        if not line.strip():
            continue
        match = _LINE.match(line)
        if match is None:
            raise UsageError(f"{source} line {number} is not a 'SHA256  name' line.")
        entries.append((match["name"], match["digest"].lower()))
    if not entries:
        raise UsageError(f"{source} lists no file.")
    return entries


def sign_files(signer: Signer, paths: Sequence[Path], options: SignOptions, fmt: str) -> list[Result]:
    out = options.out or (options.output_dir or Path(".")) / DEFAULT_NAME
    sig_out = out.with_name(out.name + SIG_SUFFIX)
    check_outputs([out, sig_out], options)
    digests = bounded_map(lambda p: hash_file(p, "SHA256")["SHA256"].hex(), list(paths), options.concurrency)
    sums = render([(str(p), d) for p, d in zip(paths, digests, strict=True)])
    digest = hash_file_bytes(sums, signer.algorithm.hash)
    status = "signed"
    old, old_sig = existing_output(out, options), existing_output(sig_out, options)
    from hsmcert.signing.raw import matching_algorithm

    if (
        old == sums
        and old_sig is not None
        and matching_algorithm(signer.public_key, {signer.algorithm.hash: digest}, old_sig)
    ):
        status = "skipped"
    else:
        signature = signer.sign_digest(digest)
        write(out, sums, options)
        write(sig_out, signature, options)
    return [
        Result(str(p), str(out), fmt, status, signer.algorithm.name, d)
        for p, d in zip(paths, digests, strict=True)
    ]
