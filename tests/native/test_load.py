"""Many signatures from one C program through the provider, with the HSM failing 20% of its calls."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.agent import start_agent
from tests.native.conftest import HsmKeys, hsm_signs

SIGN_LOOP = Path(__file__).resolve().parents[2] / "native" / "tools" / "sign_loop.py"


@pytest.fixture
def faults(emulator: Any) -> Iterator[Any]:
    yield emulator.set_faults
    emulator.set_faults()


def test_signatures_succeed_while_20_percent_of_hsm_calls_fail(
    native: Any, emulator: Any, hsm_keys: HsmKeys, faults: Any, tmp_path: Path
) -> None:
    agent = start_agent(tmp_path, "--deadline", "60")
    try:
        env = {
            "PATH": "/usr/bin:/bin",
            "OPENSSL_CONF": str(native.openssl_cnf(agent.socket, timeout_ms=60000)),
        }
        before = hsm_signs(emulator, hsm_keys.ec)
        faults(throttle=0.1, unavailable=0.1, retry_after=0)
        result = subprocess.run(
            [sys.executable, str(SIGN_LOOP), hsm_keys.ec, "100", "1"],
            env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        faults()
        assert result.returncode == 0, result.stderr
        assert len(json.loads(result.stdout)[0]) == 100
        # 20 warm-up + 100 measured; a refused attempt signs nothing, each signature was made once
        assert hsm_signs(emulator, hsm_keys.ec) == before + 120
        records = [r for r in agent.audit() if r["op"] == "sign"]
        assert len(records) == 120 and all(r["result"] == "ok" for r in records)
        assert len({r["pid"] for r in records}) == 1
    finally:
        agent.stop()


def test_threads_sign_concurrently_under_the_sanitizer(
    native: Any, agent: Any, emulator: Any, hsm_keys: HsmKeys
) -> None:
    """Four threads of one process share the provider's agent connections (ASAN+UBSan build)."""
    env = {
        "PATH": "/usr/bin:/bin",
        "OPENSSL_CONF": str(native.openssl_cnf(agent.socket, module=native.asan_path)),
        "LD_PRELOAD": native.sanitizer_runtime(),
        "ASAN_OPTIONS": "detect_leaks=0:exitcode=23",  # CPython is not leak-clean; leaks are checked elsewhere
        "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1",
    }
    before = hsm_signs(emulator, hsm_keys.ec384)
    result = subprocess.run(
        [sys.executable, str(SIGN_LOOP), hsm_keys.ec384, "25", "1", "4"],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Sanitizer" not in result.stderr and "runtime error" not in result.stderr
    assert len(json.loads(result.stdout)[0]) == 100
    assert hsm_signs(emulator, hsm_keys.ec384) == before + 120
