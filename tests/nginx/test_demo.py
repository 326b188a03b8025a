"""make demo: it runs end to end and proves each handshake was signed in the HSM (by the identity of the VM that
`hsmcert grant --vm myvm` gave access); whatever happens,
everything the demo started is stopped (on a failed step and on SIGTERM)."""

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


def test_make_demo_runs_end_to_end_and_proves_each_handshake_was_signed_in_the_hsm() -> None:
    """What `make demo` runs: four HTTPS requests (TLS 1.3 and 1.2, RSA and EC), each signed in the HSM."""
    demo = subprocess.run(
        [sys.executable, "-m", "hsmcert.demo"],
        capture_output=True,
        text=True,
        env=_clean_env(),
        timeout=240,
        check=False,
    )
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    out = demo.stdout
    assert out.count("HTTP 200: hsmcert keyless TLS: TLSv1.3") == 2
    assert out.count("HTTP 200: hsmcert keyless TLS: TLSv1.2") == 2
    # `hsmcert grant --vm myvm` let the VM's identity use the keys; the agent signs as that identity
    found = re.search(r"^  myvm: system-assigned identity (\S+)$", out, re.M)
    assert found is not None and "assigned: Managed HSM Crypto User at /keys" in out, out
    vm = re.escape(found.group(1))
    hsm_signs = re.findall(
        rf"^  \S+Z {vm} local-hsm demo-(rsa|ec)-\w+ (PS256|ES256|RS256) sign ok$", out, re.M
    )
    agent_signs = re.findall(
        r"^  \S+Z uid=\d+ pid=\d+ managedhsm:local-hsm:demo-(rsa|ec)-\w+ \w+ ok$", out, re.M
    )
    assert len(hsm_signs) == len(agent_signs) == 4, out
    assert {kind for kind, _ in hsm_signs} == {"rsa", "ec"}
    assert "4 TLS handshakes signed in the HSM" in out
    assert "demo finished: exit 0" in out
