"""The provider (C) and the agent (Python) agree on the default agent socket.

An openssl.cnf without ``socket =`` makes the provider use its default; the path it names in its error
("The hsmcert agent is not reachable at PATH") must be the one ``hsmcert agent`` listens on by default
(``hsmcert.agent.default_socket_path``) under the same user and environment. As root the user cases run
as ``nobody`` through setpriv, so every branch (variable, root, XDG_RUNTIME_DIR, /tmp fallback) is met.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
AS_NOBODY = ["setpriv", "--reuid", "nobody", "--regid", "nogroup", "--clear-groups"]
NAMED = re.compile(r"The hsmcert agent is not reachable at (\S+) \(")


@pytest.fixture(scope="module")
def shared_dir() -> Iterator[Path]:
    """A directory every user can read: openssl.cnf, a runtime directory, a root-only one, a plain file."""
    with tempfile.TemporaryDirectory(prefix="hsmcert-sock-") as tmp:
        base = Path(tmp)
        base.chmod(0o755)
        (base / "runtime").mkdir(mode=0o777)
        (base / "runtime").chmod(0o777)
        (base / "root-only").mkdir(mode=0o700)
        (base / "plain-file").write_text("")
        yield base


def _conf(native: Any, directory: Path) -> Path:
    """The generated openssl.cnf for the sanitizer build, without its ``socket =`` line."""
    from hsmcert.provider import openssl_cnf

    text = openssl_cnf("/unused.sock", module=native.asan_path)
    conf = directory / "no-socket.cnf"
    conf.write_text("".join(line for line in text.splitlines(True) if not line.startswith("socket =")))
    conf.chmod(0o644)
    return conf


def _run(command: list[str], env: dict[str, str], as_nobody: bool) -> subprocess.CompletedProcess[str]:
    prefix = AS_NOBODY if as_nobody and os.geteuid() == 0 else []
    return subprocess.run(prefix + command, env=env, capture_output=True, text=True, timeout=60, cwd="/")


@pytest.mark.parametrize(
    ("as_nobody", "variables"),
    [
        (False, {}),
        (False, {"HSMCERT_AGENT_SOCKET": "/srv/hsmcert/explicit.sock"}),
        (True, {}),
        (True, {"XDG_RUNTIME_DIR": "{dir}/runtime"}),
        (True, {"XDG_RUNTIME_DIR": "{dir}/root-only"}),
        (True, {"XDG_RUNTIME_DIR": "{dir}/plain-file"}),
        (True, {"XDG_RUNTIME_DIR": "/nonexistent/run"}),
        (True, {"XDG_RUNTIME_DIR": ""}),
        (True, {"XDG_RUNTIME_DIR": "{dir}/runtime", "HSMCERT_AGENT_SOCKET": "/srv/explicit.sock"}),
    ],
    ids=["root", "variable", "user", "runtime", "runtime-root-only", "runtime-file", "runtime-missing",
         "runtime-empty", "variable-wins"],
)  # fmt: skip
def test_the_provider_and_the_agent_default_to_the_same_socket(
    native: Any, shared_dir: Path, as_nobody: bool, variables: dict[str, str]
) -> None:
    env = {"PATH": "/usr/bin:/bin", **{k: v.format(dir=shared_dir) for k, v in variables.items()}}
    python = _run(
        [sys.executable, "-c", "from hsmcert.agent import default_socket_path; print(default_socket_path())"],
        {**env, "PYTHONPATH": str(ROOT)},
        as_nobody,
    )
    assert python.returncode == 0, python.stderr
    expected = python.stdout.strip()
    assert not Path(expected).exists(), f"an agent may listen at {expected}: this test needs no agent there"
    provider_env = {
        **env,
        "OPENSSL_CONF": str(_conf(native, shared_dir)),
        "LD_PRELOAD": native.sanitizer_runtime(),
        "ASAN_OPTIONS": "detect_leaks=1:exitcode=23",
        "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1",
    }
    result = _run(["openssl", "pkey", "-in", "managedhsm:hsm:key", "-pubout"], provider_env, as_nobody)
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Sanitizer" not in result.stderr and "runtime error" not in result.stderr, result.stderr[-3000:]
    named = NAMED.search(result.stderr)
    assert named, result.stderr[-3000:]
    assert named[1] == expected
