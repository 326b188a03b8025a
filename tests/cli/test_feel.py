"""The command line's feel: spinners on a terminal only, NO_COLOR, coloured doctor, no Python dicts in text,
value completion, whoami naming the service it talks to."""

from __future__ import annotations

import base64
import json
import os
import re
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest

from tests.fixtures.emulator import EmulatorHandle, start_emulator

HSMCERT = [sys.executable, "-m", "hsmcert"]


def run_in_pty(args: list[str], env: dict[str, str], timeout: float = 120) -> tuple[int, str]:
    """Run with stdin, stdout and stderr on a pseudo-terminal; everything it printed, as one text."""
    import fcntl
    import pty
    import struct
    import termios

    # the terminal's size is the window's, as on a real terminal: not COLUMNS/LINES a test runner may set
    env = {k: v for k, v in env.items() if k not in ("COLUMNS", "LINES")}
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 250, 0, 0))  # room for a whole line
    proc = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True)
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while True:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None:
                break
            assert time.monotonic() < deadline, "timed out"
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(30)
        os.close(master)
    return proc.returncode, b"".join(chunks).decode(errors="replace")


def run_piped(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)


pytestmark = pytest.mark.process  # every test here runs hsmcert against an emulator of its own


@pytest.fixture(scope="module")
def slow_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorHandle]:
    handle = start_emulator(tmp_path_factory.mktemp("feel") / "emulator")
    try:
        yield handle
    finally:
        handle.stop()


def env_of(handle: EmulatorHandle, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HSMCERT_", "AZURE_", "IDENTITY_"))}
    env.update(handle.env)
    env["HSMCERT_CACHE_DIR"] = str(handle.data_dir.parent / "cache")
    env.pop("NO_COLOR", None)
    env.update(extra)
    return env


def test_a_slow_hsm_call_shows_a_spinner_on_a_terminal_only(slow_emulator: EmulatorHandle) -> None:
    slow_emulator.set_faults(latency_ms=1500)
    try:
        env = env_of(slow_emulator)
        ref = f"managedhsm:local-hsm:spin-{uuid4().hex[:8]}"
        code, screen = run_in_pty([*HSMCERT, "key", "create", "--key", ref, "--kty", "EC"], env)
        assert code == 0, screen
        assert f"creating EC P-256 key {ref} in the HSM" in screen

        code, screen = run_in_pty([*HSMCERT, "--quiet", "key", "show", "--key", ref], env)
        assert code == 0 and "reading" not in screen, screen
        piped = run_piped([*HSMCERT, "key", "show", "--key", ref], env)
        assert piped.returncode == 0 and "reading" not in piped.stderr + piped.stdout
    finally:
        slow_emulator.set_faults()


def test_a_retry_after_throttling_says_so_with_the_delay(slow_emulator: EmulatorHandle) -> None:
    slow_emulator.set_faults(throttle=1.0, retry_after=1)
    try:
        code, screen = run_in_pty([*HSMCERT, "key", "list", "--hsm", "local-hsm"], env_of(slow_emulator))
    finally:
        slow_emulator.set_faults()
    assert code == 5, screen
    assert "answered 429; retrying in 1.0 s" in screen


def test_doctor_colours_ok_and_fail_and_no_color_turns_every_style_off(slow_emulator: EmulatorHandle) -> None:
    env = env_of(slow_emulator)
    code, coloured = run_in_pty([*HSMCERT, "doctor", "--hsm", "local-hsm"], env)
    assert code == 0 and "\x1b[32mok" in coloured, coloured
    bad = {**env, "HSMCERT_ACCESS_TOKEN": "garbage"}
    code, failed = run_in_pty([*HSMCERT, "doctor", "--credential", "env-token"], bad)
    assert code == 4 and "\x1b[1;31mFAIL" in failed, failed
    for args, variables in (
        (["doctor", "--hsm", "local-hsm"], env),
        (["doctor", "--credential", "env-token"], bad),
    ):
        _, plain = run_in_pty([*HSMCERT, *args], {**variables, "NO_COLOR": "1"})
        assert not re.search(r"\x1b\[[0-9;]*m", plain), plain  # no colour, no bold (a spinner may still move)
        assert "ok" in plain or "FAIL" in plain


def test_emulator_text_output_prints_no_python_dict(slow_emulator: EmulatorHandle) -> None:
    env = env_of(slow_emulator)
    data = ["--data", str(slow_emulator.data_dir)]
    faults = run_piped(
        [*HSMCERT, "emulator", "faults", *data, "--throttle", "0.25", "--latency-ms", "5"], env
    )
    assert faults.returncode == 0, faults.stderr
    assert faults.stdout.strip() == "faults: 25% answered 429, 5 ms added latency, Retry-After 1 s"
    status = run_piped([*HSMCERT, "emulator", "status", *data], env)
    assert "faults:   25% answered 429, 5 ms added latency" in status.stdout
    cleared = run_piped([*HSMCERT, "emulator", "faults", *data], env)
    assert cleared.stdout.strip() == "faults: none"
    for text in (faults.stdout, status.stdout, cleared.stdout):
        assert "{" not in text and "'" not in text


def complete(words: str, env: dict[str, str]) -> tuple[list[str], str, float]:
    started = time.monotonic()
    cword = len(words.split()) - (0 if words.endswith(" ") else 1)
    done = subprocess.run(
        HSMCERT,
        env={**env, "_HSMCERT_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": str(cword)},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    return done.stdout.split(), done.stderr, time.monotonic() - started


def test_completion_offers_values(slow_emulator: EmulatorHandle) -> None:
    env = env_of(slow_emulator)
    assert complete("hsmcert key create --kty ", env)[0] == ["RSA", "EC", "oct"]
    assert complete("hsmcert key create --curve P-3", env)[0] == ["P-384"]
    assert "root-ca" in complete("hsmcert selfsign --profile ", env)[0]
    assert complete("hsmcert whoami --credential m", env)[0] == ["managed-identity"]
    assert complete("hsmcert --output ", env)[0] == ["text", "json"]
    assert "ES384" in complete("hsmcert csr --alg ", env)[0]
    assert complete("hsmcert key show --key managedhsm:", env)[0] == ["managedhsm:local-hsm:"]
    name = f"tab-{uuid4().hex[:8]}"
    from hsmcert.azure.keys import create_key  # noqa: F401 - the CLI makes it below

    made = run_piped([*HSMCERT, "key", "create", "--key", f"managedhsm:local-hsm:{name}", "--kty", "EC"], env)
    assert made.returncode == 0, made.stderr
    assert f"managedhsm:local-hsm:{name}" in complete("hsmcert csr --key managedhsm:local-hsm:tab-", env)[0]


def test_key_completion_is_silent_and_quick_when_the_hsm_is_not_there(slow_emulator: EmulatorHandle) -> None:
    env = env_of(slow_emulator)
    for words in ("hsmcert key show --key managedhsm:no-such-hsm:", "hsmcert key show --key vault:x:"):
        values, err, took = complete(words, env)
        assert values == [] and err == ""
        assert took < 30
    unreachable = {**env, "HSMCERT_ENDPOINT": "https://10.255.255.1:9", "HSMCERT_EMULATOR": ""}
    values, err, took = complete("hsmcert key show --key managedhsm:contoso:", unreachable)
    assert values == [] and err == "" and took < 30


def _jwt(claims: dict[str, Any]) -> str:
    part = lambda d: base64.urlsafe_b64encode(json.dumps(d).encode()).decode().rstrip("=")  # noqa: E731
    return f"{part({'alg': 'RS256'})}.{part(claims)}.c2ln"


def test_whoami_says_whether_it_talks_to_azure_or_the_emulator(
    slow_emulator: EmulatorHandle, tmp_path: Path
) -> None:
    emulated = run_piped([*HSMCERT, "whoami"], env_of(slow_emulator))
    assert emulated.returncode == 0, emulated.stderr
    assert f"talks to:   the hsmcert emulator of {slow_emulator.data_dir}" in emulated.stdout
    azure_env = {
        k: v for k, v in os.environ.items() if not k.startswith(("HSMCERT_", "AZURE_", "IDENTITY_", "MHSM_"))
    }
    azure_env.update(
        HSMCERT_ACCESS_TOKEN=_jwt({"oid": "o", "tid": "t"}), HSMCERT_CONFIG=str(tmp_path / "none.toml")
    )
    azure = run_piped([*HSMCERT, "--output", "json", "whoami", "--credential", "env-token"], azure_env)
    assert azure.returncode == 0, azure.stderr
    assert json.loads(azure.stdout)["service"] == "azure"
