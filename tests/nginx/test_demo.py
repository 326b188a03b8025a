"""make demo: whatever happens, everything the demo started is stopped.

(The full demo run is ``make demo`` itself; these tests cover its clean-up on failure and interruption.)
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from hsmcert.demo import Stack
from hsmcert.emulator.control import running

pytestmark = pytest.mark.e2e


def _clean_env() -> dict[str, str]:
    """The environment without the session emulator's variables: the demo starts its own."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("HSMCERT_", "AZURE_", "IDENTITY_"))}


def test_stack_stops_everything_when_a_step_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("HSMCERT_EMULATOR", "AZURE_", "IDENTITY_")):
            monkeypatch.delenv(name)
    with tempfile.TemporaryDirectory(prefix="hsmcert-demo-test-") as tmp:
        stack = Stack(Path(tmp))
        with pytest.raises(RuntimeError, match="a step failed"), stack:
            stack.start_emulator()
            stack.start_agent()
            assert running(stack.emulator_dir) is not None
            raise RuntimeError("a step failed")
        assert stack.agent is not None and stack.agent.poll() is not None
        assert running(stack.emulator_dir) is None


def test_interrupted_demo_stops_what_it_started() -> None:
    demo = subprocess.Popen(
        [sys.executable, "-m", "hsmcert.demo"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_clean_env(),
    )
    assert demo.stdout is not None
    data_dir: Path | None = None
    deadline = time.monotonic() + 90
    for line in demo.stdout:
        match = re.search(r"emulator start --data (\S+?)\)", line)
        if match:
            data_dir = Path(match.group(1))
        if line.startswith("== 3."):
            break
        assert time.monotonic() < deadline, "the demo did not reach its third step"
    assert data_dir is not None and running(data_dir) is not None
    demo.send_signal(signal.SIGTERM)
    _, err = demo.communicate(timeout=60)
    assert demo.returncode == 130, err
    assert "everything it started was stopped" in err
    assert running(data_dir) is None
