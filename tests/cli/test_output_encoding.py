"""Text the terminal's encoding cannot carry is escaped, never a crash ('a bug in hsmcert', exit 1)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.fixtures.x509_local import self_signed

pytestmark = pytest.mark.process


def hsmcert(*args: str | bytes, encoding: str) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HSMCERT_")}
    env["PYTHONIOENCODING"] = encoding
    return subprocess.run(
        [sys.executable, "-m", "hsmcert", *args], env=env, capture_output=True, timeout=60, check=False
    )


def test_an_accented_subject_on_an_ascii_terminal(tmp_path: Path) -> None:
    cert = self_signed(ec.generate_private_key(ec.SECP256R1()), "caf\u00e9.example")
    path = tmp_path / "cafe.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    done = hsmcert("inspect", str(path), encoding="ascii")
    assert done.returncode == 0, done.stderr
    assert b"/CN=caf\\xe9.example" in done.stdout
    assert hsmcert("inspect", str(path), encoding="utf-8").stdout.count("café".encode()) >= 1


def test_a_file_name_that_is_not_utf8_is_named_in_the_error(tmp_path: Path) -> None:
    missing = os.fsencode(tmp_path) + b"/\xff.pem"
    done = hsmcert("inspect", missing, encoding="utf-8")
    assert done.returncode == 3, done.stderr
    assert b"does not exist" in done.stderr and b"bug in hsmcert" not in done.stderr
