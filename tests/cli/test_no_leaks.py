"""The suite's own guard: a run whose tests leave a process behind fails, names it and stops it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.process  # every test here starts a process (see tests/fixtures/process_marks.py)

ROOT = Path(__file__).resolve().parents[2]


def run_inner(tmp_path: Path, body: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_inner.py").write_text(textwrap.dedent(body))
    env = {k: v for k, v in os.environ.items() if k != "TEST_RUN_PROCESS_MARK"}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "tests.fixtures.processes",
         "-c", str(tmp_path / "pytest.ini"), "--rootdir", str(tmp_path), str(tmp_path / "test_inner.py")],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def test_a_leaked_daemon_fails_the_run_and_is_stopped(tmp_path: Path) -> None:
    done = run_inner(
        tmp_path,
        """
        import subprocess, sys, pathlib

        def test_leaks_a_detached_process():
            proc = subprocess.Popen(["sleep", "300"], start_new_session=True)
            pathlib.Path("leaked.pid").write_text(str(proc.pid))

        def test_leaks_an_agent_with_a_clean_environment():
            proc = subprocess.Popen(
                [sys.executable, "-c", "import time; time.sleep(300)", "hsmcert", "agent"], env={}
            )
            pathlib.Path("agent.pid").write_text(str(proc.pid))
        """,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "2 passed" in done.stdout
    assert "outlived it" in done.stdout and "sleep 300" in done.stdout and "hsmcert agent" in done.stdout
    for name in ("leaked.pid", "agent.pid"):
        assert not alive(int((tmp_path / name).read_text()))


def test_a_run_that_stops_what_it_started_passes(tmp_path: Path) -> None:
    done = run_inner(
        tmp_path,
        """
        import subprocess

        def test_tidy():
            proc = subprocess.Popen(["sleep", "300"])
            proc.terminate()
            proc.wait()
        """,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "outlived" not in done.stdout


_DEMO_INTERRUPTED_AT_THE_WORST_MOMENT = """
import os, signal, subprocess, sys, tempfile
from pathlib import Path
from hsmcert import demo

real = subprocess.Popen

class SignalRightAfterSpawn(real):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        Path(sys.argv[1]).write_text(str(self.pid))
        os.kill(os.getpid(), signal.SIGTERM)

subprocess.Popen = SignalRightAfterSpawn
with tempfile.TemporaryDirectory() as tmp, demo._signals_raise():
    try:
        with demo.Stack(Path(tmp)) as stack:
            stack.start_agent()
    except KeyboardInterrupt:
        print("interrupted")
"""


def test_the_demo_stops_an_agent_it_was_interrupted_starting(tmp_path: Path) -> None:
    pid_file = tmp_path / "agent.pid"
    done = subprocess.run(
        [sys.executable, "-c", _DEMO_INTERRUPTED_AT_THE_WORST_MOMENT, str(pid_file)],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert "interrupted" in done.stdout, done.stderr
    pid = int(pid_file.read_text())
    try:
        assert not alive(pid), "the demo left its agent running"
    finally:
        if alive(pid):
            os.kill(pid, 9)
