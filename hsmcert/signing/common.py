"""What every signature format shares: the signer of a run, its options, file digests, the bounded pool that
signs files concurrently, and where outputs go.
"""

from __future__ import annotations

import hashlib
import importlib
import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from hsmcert import jwa
from hsmcert.errors import AlreadyExistsError, NotFoundError, UsageError

if TYPE_CHECKING:
    from cryptography import x509

    from hsmcert.agent.run import AgentOptions
    from hsmcert.azure.hsm import HsmKey
    from hsmcert.signer import HsmPrivateKey

FORMATS = ("raw", "raw-base64", "cms", "dsse", "checksums", "authenticode")
"""Every format :func:`sign_files` writes, by name."""

DEFAULT_CONCURRENCY = 8
"""Signatures in flight at once by default: well under what one client may send to a Managed HSM or a
premium vault (hundreds of RSA-2048 signatures per second); the SDK retries a 429 with backoff."""
MAX_CONCURRENCY = 64

_CHUNK = 1 << 20

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class SignOptions:
    """How a run signs: where outputs go and what a re-run does with the ones already there."""

    output_dir: Path | None = None
    """Write signatures (and signed PE files) here instead of next to each file."""
    out: Path | None = None
    """The output of a format that writes one file for all (dsse, checksums), or of a single file."""
    force: bool = False
    """Replace an existing output that does not verify (or any, without ``skip_existing``)."""
    skip_existing: bool = False
    """Leave an existing output alone when it still verifies for this file and key."""
    concurrency: int = DEFAULT_CONCURRENCY
    predicate: dict[str, Any] | None = None
    predicate_type: str | None = None
    timestamp_url: str | None = None
    agent: AgentOptions | None = None
    """Authenticode: how the private agent that serves osslsigncode reaches the HSM."""


@dataclass(frozen=True)
class Result:
    """What happened to one input file."""

    file: str
    output: str
    format: str
    status: str
    """``signed`` or ``skipped`` (an existing output still verifies)."""
    algorithm: str
    sha256: str

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "output": self.output,
            "format": self.format,
            "status": self.status,
            "algorithm": self.algorithm,
            "sha256": self.sha256,
        }


@dataclass
class Signer:
    """The key of a run (its public key fetched once), the algorithm it signs with, and the certificates
    that go with it (CMS, Authenticode)."""

    key: HsmKey
    algorithm: jwa.Algorithm
    certificate: x509.Certificate | None = None
    chain: list[x509.Certificate] = field(default_factory=list)
    _private: HsmPrivateKey | None = field(default=None, repr=False)

    @classmethod
    def open(
        cls,
        key: HsmKey,
        alg: str | None = None,
        certificate: x509.Certificate | None = None,
        chain: Sequence[x509.Certificate] = (),
    ) -> Signer:
        """``key`` with ``alg`` (default: the key's) and a certificate whose public key must be the key's."""
        algorithm = key.check_algorithm(alg or key.default_algorithm())
        if certificate is not None:
            from hsmcert.pki.signing import same_public_key

            if not same_public_key(certificate.public_key(), key.public_key):
                raise UsageError(
                    f"The certificate {certificate.subject.rfc4514_string()} is not for {key.ref}: "
                    "their public keys differ.",
                    "Pass the certificate issued for this key (--cert).",
                )
        return cls(key, algorithm, certificate, list(chain))

    @property
    def name(self) -> str:
        return str(self.key.ref)

    @property
    def public_key(self) -> Any:
        return self.key.public_key

    def sign_digest(self, digest: bytes) -> bytes:
        """One HSM request; the signature is checked with the public key before it is returned."""
        return self.key.sign_digest(self.algorithm.name, digest)

    def private_key(self) -> HsmPrivateKey:
        """The key as a cryptography private key, for cryptography's builders."""
        if self._private is None:
            from hsmcert.signer import private_key_for

            self._private = private_key_for(self.key)
        return self._private

    def require_certificate(self, fmt: str) -> x509.Certificate:
        if self.certificate is None:
            raise UsageError(
                f"A {fmt} signature carries the signer's certificate: pass --cert.",
                "Make one with hsmcert selfsign --profile code-signing, or hsmcert csr and your CA.",
            )
        return self.certificate


def hash_file(path: Path, *names: str) -> dict[str, bytes]:
    """The digests of ``path`` by the JWA hash names (SHA256, SHA384, SHA512), in one read."""
    hashers = {name: hashlib.new(name.lower()) for name in names}
    try:
        with open(path, "rb") as fh:
            while chunk := fh.read(_CHUNK):
                for hasher in hashers.values():
                    hasher.update(chunk)
    except FileNotFoundError:
        raise NotFoundError(f"The file {path} does not exist.", "Check the path.") from None
    except IsADirectoryError:
        raise UsageError(f"{path} is a directory, not a file.") from None
    except PermissionError:
        raise UsageError(f"The file {path} cannot be read (permission denied).") from None
    return {name: hasher.digest() for name, hasher in hashers.items()}


def check_inputs(files: Sequence[Path]) -> None:
    """Refuse, before anything is signed, a missing input, a directory, or the same file twice."""
    if not files:
        raise UsageError("No file to sign.", "Name one or more files: hsmcert sign --key REF FILE...")
    seen: set[tuple[int, int]] = set()
    for path in files:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise NotFoundError(f"The file {path} does not exist.", "Check the path.") from None
        except OSError as exc:
            raise UsageError(f"Cannot read {path}: {exc.strerror or exc}.") from None
        if not os.path.isfile(path):
            raise UsageError(f"{path} is not a regular file.", "Name the files to sign, not directories.")
        if (st.st_dev, st.st_ino) in seen:
            raise UsageError(f"{path} is named twice.")
        seen.add((st.st_dev, st.st_ino))


def output_for(path: Path, suffix: str, options: SignOptions, count: int) -> Path:
    """Where the signature of ``path`` goes: ``--out`` for a single file, else ``FILE<suffix>`` next to it
    or in ``--output-dir``."""
    if options.out is not None:
        if count != 1:
            raise UsageError(
                "--out names one output; with several files use --output-dir (or no option: next to each)."
            )
        return options.out
    directory = options.output_dir if options.output_dir is not None else path.parent
    return directory / (path.name + suffix)


def check_outputs(paths: Iterable[Path], options: SignOptions) -> None:
    """Before the HSM is asked: every output can be written (an existing one only with --force or
    --skip-existing, which decides per file later)."""
    from hsmcert.output_files import check_target

    targets = list(paths)
    if len(set(targets)) != len(targets):
        raise UsageError(
            "Two files would write the same signature file.", "Sign them into different directories."
        )
    for target in targets:
        check_target(target, force=options.force or options.skip_existing)


def existing_output(path: Path, options: SignOptions) -> bytes | None:
    """The content of an output already there when --skip-existing should look at it, else None."""
    if not options.skip_existing or not path.is_file():
        return None
    return path.read_bytes()


def refuse_existing(path: Path, options: SignOptions) -> None:
    """An output that exists and did not verify (or was not checked) is replaced only with --force."""
    if not options.force and os.path.lexists(path):
        raise AlreadyExistsError(
            f"{path} already exists"
            + (" and does not verify for this file and key." if options.skip_existing else "."),
            "Pass --force to replace it"
            + ("." if options.skip_existing else ", or --skip-existing to keep a valid one."),
        )


def write(path: Path, data: bytes, options: SignOptions) -> None:
    from hsmcert.output_files import write_output

    refuse_existing(path, options)
    write_output(path, data, force=True)


def bounded_map(fn: Callable[[T], R], items: Sequence[T], concurrency: int) -> list[R]:
    """``fn`` over ``items`` on at most ``concurrency`` threads, results in order; the first failure stops
    the work not yet started and is raised."""
    if not 1 <= concurrency <= MAX_CONCURRENCY:
        raise UsageError(f"--concurrency must be from 1 to {MAX_CONCURRENCY}, not {concurrency}.")
    if concurrency == 1 or len(items) <= 1:
        return [fn(item) for item in items]
    with ThreadPoolExecutor(
        max_workers=min(concurrency, len(items)), thread_name_prefix="hsmcert-sign"
    ) as pool:
        futures = [pool.submit(fn, item) for item in items]
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        failed = next((f for f in futures if f in done and f.exception() is not None), None)
        if failed is not None:
            for other in futures:
                other.cancel()
            return [failed.result()]  # raises the failure
        return [future.result() for future in futures]


def sign_files(
    signer: Signer, files: Sequence[str | os.PathLike[str]], fmt: str, options: SignOptions
) -> list[Result]:
    """Sign ``files`` in format ``fmt`` (one of :data:`FORMATS`); one :class:`Result` per file."""
    if fmt not in FORMATS:
        raise UsageError(f"Unknown signature format {fmt!r}.", f"Use one of: {', '.join(FORMATS)}.")
    paths = [Path(f) for f in files]
    check_inputs(paths)
    module = importlib.import_module(f"hsmcert.signing.{fmt.replace('-base64', '')}")
    results: list[Result] = module.sign_files(signer, paths, options, fmt)
    return results


__all__ = [
    "DEFAULT_CONCURRENCY",
    "FORMATS",
    "MAX_CONCURRENCY",
    "Result",
    "SignOptions",
    "Signer",
    "bounded_map",
    "check_inputs",
    "check_outputs",
    "existing_output",
    "hash_file",
    "output_for",
    "sign_files",
    "write",
]
