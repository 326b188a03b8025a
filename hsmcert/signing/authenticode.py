"""Authenticode signatures of Windows PE files, made by osslsigncode with the hsmcert OpenSSL provider.

osslsigncode (Debian 12's 2.5 and later) reads the key from a PEM file that wraps the key reference
(:func:`hsmcert.provider.pem_ref`); an ``OPENSSL_CONF`` loads the provider, which signs through a private
agent served by this process (:func:`hsmcert.agent.run.private_agent`). RSA PKCS#1 v1.5 and ECDSA; an
RFC 3161 timestamp with ``timestamp_url``. A file is signed in place (or into ``--output-dir``/``--out``):
osslsigncode writes a temporary file next to the target, ``osslsigncode verify`` checks it against the
signer's certificate and chain, and only then does it replace the target.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from hsmcert.errors import HsmcertError, NotFoundError, UsageError, VerificationError
from hsmcert.signing.common import Result, Signer, SignOptions, bounded_map, check_outputs, hash_file

TIMEOUT = 300.0
"""Seconds one osslsigncode run may take (a timestamp server may be slow)."""

_INSTALL = "Install it: apt-get install osslsigncode (Debian, Ubuntu), or see https://github.com/mtrojnar/osslsigncode."


def tool() -> str:
    found = shutil.which("osslsigncode")
    if found is None:
        raise NotFoundError("osslsigncode is not installed; hsmcert signs PE files through it.", _INSTALL)
    return found


def run_tool(args: Sequence[str], env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            [tool(), *args],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            env=env,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        raise HsmcertError(f"osslsigncode did not finish within {TIMEOUT:.0f} s.") from None


def problem(output: str) -> str:
    """The line of osslsigncode's output that says what is wrong (not OpenSSL's error stack)."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for line in lines:
        if "Verify error:" in line:
            return line.split("Verify error:", 1)[1].strip()[:200]
    plain = [line for line in lines if ":error:" not in line and line not in ("Failed", "Succeeded")]
    for marker in ("MISMATCH", "failure", "failed", "error", "Error"):
        for line in plain:
            if marker in line:
                return line[:200]
    return (plain or lines or ["osslsigncode failed"])[0][:200]


def verify(path: Path, ca_file: Path) -> tuple[bool, str]:
    """(ok, one-line detail) of ``osslsigncode verify`` on ``path`` against the CA certificates in ``ca_file``."""
    from hsmcert.agent.run import child_environment

    done = run_tool(["verify", "-in", str(path), "-CAfile", str(ca_file)], child_environment(os.environ))
    out = done.stdout + done.stderr
    if done.returncode == 0 and "Signature verification: ok" in out:
        subject = next(
            (line.split(":", 1)[1].strip() for line in out.splitlines() if "Subject:" in line), "?"
        )
        return True, f"Authenticode signature by {subject}"
    if "No signature found" in out or ("cannot find" in out.lower() and "signature" in out.lower()):
        return False, "the file has no Authenticode signature"
    return False, problem(out)


@contextlib.contextmanager
def _provider_env(signer: Signer, options: SignOptions, work: Path) -> Iterator[dict[str, str]]:
    """The environment in which osslsigncode signs with the HSM key: a private agent and its openssl.cnf."""
    from hsmcert.agent.run import AgentOptions, child_environment, private_agent
    from hsmcert.provider import openssl_cnf

    with private_agent(options.agent or AgentOptions()) as server:
        assert server.socket_path is not None
        conf = work / "openssl.cnf"
        conf.write_text(openssl_cnf(server.socket_path))
        env = child_environment(os.environ)
        env["OPENSSL_CONF"] = str(conf)
        yield env


def sign_files(signer: Signer, paths: Sequence[Path], options: SignOptions, fmt: str) -> list[Result]:
    from cryptography.hazmat.primitives import serialization

    from hsmcert.provider import pem_ref

    certificate = signer.require_certificate("Authenticode")
    if signer.algorithm.pss:
        raise UsageError(
            "Authenticode signatures are RSA PKCS#1 v1.5 or ECDSA, not PSS.",
            "Use --alg RS256 (or leave --alg out).",
        )
    tool()
    in_place = options.out is None and options.output_dir is None
    if options.out is not None and len(paths) != 1:
        raise UsageError("--out names one output; with several files use --output-dir (or sign in place).")
    outputs = [p if in_place else (options.out or (options.output_dir or p.parent) / p.name) for p in paths]
    if not in_place:
        check_outputs(outputs, options)
    digest = signer.algorithm.hash.lower()  # sha256, sha384, sha512
    with tempfile.TemporaryDirectory(prefix="hsmcert-authenticode-") as tmp:
        work = Path(tmp)
        os.chmod(work, 0o700)
        certs = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in [certificate, *signer.chain])
        (work / "certs.pem").write_bytes(certs)
        (work / "key.pem").write_bytes(pem_ref(str(signer.key.ref)))

        def done(path: Path, out: Path, status: str) -> Result:
            sha = hash_file(out, "SHA256")["SHA256"].hex()
            return Result(str(path), str(out), fmt, status, signer.algorithm.name, sha)

        def existing_ok(out: Path) -> bool:
            return options.skip_existing and out.is_file() and verify(out, work / "certs.pem")[0]

        todo = [(p, o) for p, o in zip(paths, outputs, strict=True) if not existing_ok(o)]
        skipped = {o for p, o in zip(paths, outputs, strict=True) if (p, o) not in todo}
        if not in_place:
            from hsmcert.signing.common import refuse_existing

            for _, out in todo:
                refuse_existing(out, options)
        if todo:
            with _provider_env(signer, options, work) as env:

                def one(pair: tuple[Path, Path]) -> None:
                    path, out = pair
                    fd, staged = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
                    os.close(fd)
                    os.unlink(staged)  # osslsigncode creates it
                    try:
                        args = [
                            "sign",
                            "-certs",
                            str(work / "certs.pem"),
                            "-key",
                            str(work / "key.pem"),
                            "-h",
                            digest,
                        ]
                        if options.timestamp_url:
                            args += ["-ts", options.timestamp_url]
                        signed = run_tool([*args, "-in", str(path), "-out", staged], env)
                        if signed.returncode != 0 or not os.path.isfile(staged):
                            output = signed.stdout + signed.stderr
                            if "Unrecognized file type" in output:
                                raise UsageError(
                                    f"{path} is not a file Authenticode signs.",
                                    "Sign Windows PE files (.exe, .dll, .sys), .msi or .cab files.",
                                )
                            stamp = options.timestamp_url and "timestamp" in output.lower()
                            raise HsmcertError(
                                f"osslsigncode could not sign {path}: {problem(output)}.",
                                "Check --timestamp-url (an RFC 3161 server) and the network."
                                if stamp
                                else "Check that it is a PE file (.exe, .dll, .msi, .cab) and run with --verbose.",
                            )
                        ok, detail = verify(Path(staged), work / "certs.pem")
                        if not ok:
                            raise VerificationError(
                                f"The new Authenticode signature of {path} does not verify: {detail}; nothing was written.",
                                "For a certificate issued by a CA, pass its chain up to the root with --chain.",
                            )
                        os.chmod(staged, os.stat(path).st_mode & 0o7777)
                        os.replace(staged, out)
                    finally:
                        with contextlib.suppress(FileNotFoundError):
                            os.unlink(staged)

                bounded_map(one, todo, options.concurrency)
        return [
            done(p, o, "skipped" if o in skipped else "signed") for p, o in zip(paths, outputs, strict=True)
        ]
