"""--timeout-ms has one upper bound: what the C provider accepts in openssl.cnf, checked before a file is written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from hsmcert.provider import MAX_TIMEOUT_MS
from tests.native.conftest import run

pytestmark = pytest.mark.process  # every test here starts a process (see tests/fixtures/process_marks.py)

ROOT = Path(__file__).resolve().parents[2]


def hsmcert(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HSMCERT_")}
    return subprocess.run(
        [sys.executable, "-m", "hsmcert", *args], capture_output=True, text=True, env=env, timeout=60
    )


def test_the_c_provider_and_python_share_the_maximum() -> None:
    source = (ROOT / "native" / "src" / "provider.c").read_text()
    defined = re.search(r"^#define HSMCERT_MAX_TIMEOUT_MS (\d+)$", source, re.M)
    assert defined, "HSMCERT_MAX_TIMEOUT_MS moved out of native/src/provider.c"
    assert int(defined.group(1)) == MAX_TIMEOUT_MS


def test_openssl_accepts_the_maximum_the_cli_writes(native: Any, tmp_path: Path) -> None:
    env = native.openssl_env(tmp_path / "agent.sock", timeout_ms=MAX_TIMEOUT_MS)
    result = run(["openssl", "pkey", "-in", "managedhsm:hsm:key", "-pubout"], env)
    assert result.returncode != 0  # no agent listens; the timeout itself is accepted
    assert "timeout_ms" not in result.stderr, result.stderr[-2000:]


@pytest.mark.parametrize("value", [str(MAX_TIMEOUT_MS + 1), "99999999999"])
def test_a_timeout_over_the_maximum_is_refused_before_writing(tmp_path: Path, value: str, local_pki: Any) -> None:
    cnf = tmp_path / "openssl.cnf"
    done = hsmcert("provider", "openssl-cnf", "--timeout-ms", value, "-o", str(cnf))
    assert done.returncode == 2, done.stderr
    assert f"--timeout-ms {value} is not a whole number of milliseconds from 1 to {MAX_TIMEOUT_MS}" in done.stderr
    assert "Traceback" not in done.stderr and not cnf.exists()
    out = tmp_path / "nginx"
    done = hsmcert(
        "nginx", "--key", "managedhsm:local-hsm:tls-key", "--cert", str(local_pki.server_cert),
        "--server-name", "a.example", "-o", str(out), "--nginx-version", "1.29.0", "--timeout-ms", value,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert f"--timeout-ms {value} is not a whole number" in done.stderr and not out.exists()
