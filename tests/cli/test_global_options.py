"""Global options (--quiet, --verbose, --output) may follow the subcommand; a command's own values stay its own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from tests.fixtures.x509_local import self_signed

pytestmark = pytest.mark.process

REF = "managedhsm:contoso:tls-key"


def hsmcert(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HSMCERT_")}
    return subprocess.run(
        [sys.executable, "-m", "hsmcert", *args], env=env, capture_output=True, text=True, timeout=60
    )


def test_output_json_after_the_subcommand_applies(tmp_path: Path) -> None:
    cert = tmp_path / "c.pem"
    cert.write_bytes(self_signed(ec.generate_private_key(ec.SECP256R1()), "x").public_bytes(Encoding.PEM))
    done = hsmcert("inspect", str(cert), "--output", "json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["schema"] == 1


def test_an_option_value_that_looks_like_a_global_flag_stays_a_value(tmp_path: Path) -> None:
    # '-q' is the value of -o here (a file named -q), not hsmcert's --quiet.
    done = subprocess.run(
        [sys.executable, "-m", "hsmcert", "provider", "pem-ref", "--key", REF, "-o", "-q"],
        env={k: v for k, v in os.environ.items() if not k.startswith("HSMCERT_")},
        cwd=str(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    written = (tmp_path / "-q").read_text()
    assert written.startswith("-----BEGIN HSMCERT KEY REFERENCE-----")
