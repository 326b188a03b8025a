"""Running openssl and pkilint on what the PKI code made."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.serialization import Encoding

from hsmcert.pki.lint import lint_certificate


def write_pem(path: Path, *objs: Any) -> Path:
    path.write_bytes(b"".join(o.public_bytes(Encoding.PEM) for o in objs))
    return path


def openssl(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["openssl", *map(str, args)], capture_output=True, text=True, timeout=60)


def assert_csr_verifies(path: Path) -> None:
    done = openssl("req", "-verify", "-noout", "-in", path)
    assert done.returncode == 0 and "verify OK" in (done.stdout + done.stderr), done.stderr


def assert_chain_verifies(leaf: Path, root: Path, untrusted: Path | None = None) -> None:
    extra: list[str | Path] = ["-untrusted", untrusted] if untrusted else []
    done = openssl("verify", "-CAfile", root, *extra, leaf)
    assert done.returncode == 0 and done.stdout.strip().endswith(": OK"), done.stdout + done.stderr


def assert_lint_clean(cert: Any) -> None:
    assert lint_certificate(cert.public_bytes(Encoding.DER)) == []
