"""hsmcert emulator start | stop | status | token from a shell, and the exports a plain SDK user relies on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.process  # every test here starts a process (see tests/fixtures/process_marks.py)

HSMCERT = [sys.executable, "-m", "hsmcert"]


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*HSMCERT, *args], capture_output=True, text=True, env=env, timeout=60, check=False)


def _recipe() -> str:
    """The plain-SDK program of docs/emulator.md (the block after its "tested: plain-sdk" marker)."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "emulator.md").read_text()
    after = text.split("<!-- tested: plain-sdk", 1)[1]
    return after.split("```python\n", 1)[1].split("```", 1)[0]


def test_eval_start_then_a_plain_sdk_program_then_stop(tmp_path: Path) -> None:
    data = tmp_path / "emu"
    recipe = tmp_path / "recipe.py"
    recipe.write_text(_recipe())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HSMCERT_", "AZURE_", "IDENTITY_"))}
    script = (
        f'set -e; eval "$({" ".join(HSMCERT)} emulator start --data {data})"; '
        f"{sys.executable} {recipe}; "
        f"{' '.join(HSMCERT)} emulator status; "
        "env | grep -E '^(HSMCERT_EMULATOR|HSMCERT_EMULATOR_CA|AZURE_MANAGEDHSM_URL|AZURE_KEYVAULT_URL|"
        "IDENTITY_ENDPOINT|IDENTITY_HEADER)=' | sort"
    )
    try:
        done = subprocess.run(
            ["bash", "-c", script], capture_output=True, text=True, env=env, timeout=120, check=False
        )
        assert done.returncode == 0, done.stderr
        lines = done.stdout.splitlines()
        assert lines[0] == "True"
        assert "local-hsm" in done.stdout and "running:" in done.stdout
        exported = dict(line.split("=", 1) for line in lines if "=" in line)
        assert exported["HSMCERT_EMULATOR"] == str(data.resolve())
        assert exported["AZURE_MANAGEDHSM_URL"].startswith("https://127.0.0.1:")
        assert exported["IDENTITY_ENDPOINT"].startswith("http://127.0.0.1:")
        assert len(exported) == 6
        assert (data / "master.key").stat().st_mode & 0o777 == 0o600
        status = _run("--output", "json", "emulator", "status", "--data", str(data), env=env)
        assert json.loads(status.stdout)["services"][0]["keys"] >= 1
    finally:
        stopped = _run("emulator", "stop", "--data", str(data), env=env)
    assert stopped.returncode == 0
    after = _run("emulator", "status", "--data", str(data), env=env)
    assert after.returncode == 5 and "emulator start" in after.stderr
    assert "Traceback" not in after.stderr


def test_token_prints_a_jwt_for_the_principal(emulator: object) -> None:
    done = _run("--output", "json", "emulator", "token", "--principal", "bob")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["token"].count(".") == 2 and data["principal"] == "bob"


@pytest.mark.parametrize("principal", ["", "\udcff\udcfe", "a\tb", "x" * 257])
@pytest.mark.parametrize("command", ["token", "credentials"])
def test_an_invalid_principal_is_one_clear_error(emulator: object, command: str, principal: str) -> None:
    done = subprocess.run(
        [*HSMCERT, "emulator", command, "--principal", principal],
        capture_output=True,
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
        timeout=60,
        check=False,
    )
    err = done.stderr.decode("utf-8", "replace")
    assert done.returncode == 2 and "principal name" in err and "Traceback" not in err, err
    assert not done.stdout


def test_help_does_not_import_the_emulator() -> None:
    code = "import sys; from hsmcert.cli.main import main\ntry:\n    main(['emulator', '--help'])\nexcept SystemExit: pass\n"
    code += (
        "print(sorted(m for m in sys.modules if m.startswith(('hsmcert.emulator', 'cryptography', 'azure'))))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_a_stale_state_file_does_not_fool_start(tmp_path: Path) -> None:
    from hsmcert.emulator import control

    data = tmp_path / "emu"
    data.mkdir()
    (data / "identity.secret").write_bytes(b"x" * 24)
    # this test's own pid is alive, but nothing answers on port 9: as after a crash and pid reuse
    state = {"pid": os.getpid(), "control_port": 9, "services": {"managedhsm:local-hsm": 9}}
    (data / "state.json").write_text(json.dumps(state))
    running = control.start(data)
    try:
        assert running.pid != os.getpid()
        assert control.status(data)["pid"] == running.pid
    finally:
        control.stop(data)
    assert control.running(data) is None


def test_an_emulator_tied_to_a_process_ends_with_it(tmp_path: Path) -> None:
    import time

    from hsmcert.emulator import control

    parent = subprocess.Popen(["sleep", "0.5"])
    running = control.start(tmp_path / "emu", exit_with=parent.pid)
    parent.wait()
    deadline = time.monotonic() + 10
    while control.running(tmp_path / "emu") is not None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert control.running(tmp_path / "emu") is None, f"pid {running.pid} still serves"


def test_foreground_serves_until_stopped_from_another_shell(tmp_path: Path) -> None:
    import time

    from hsmcert.emulator import control

    data = tmp_path / "emu"
    proc = subprocess.Popen(
        [*HSMCERT, "emulator", "start", "--foreground", "--data", str(data)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while control.running(data) is None and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        assert control.running(data) is not None
        assert _run("emulator", "stop", "--data", str(data)).returncode == 0
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0 and out == ""
    assert "managedhsm local-hsm: https://127.0.0.1:" in err
