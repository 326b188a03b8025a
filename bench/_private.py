"""A private emulator and agent for the benchmarks that sign through the provider (bench/agent.py,
bench/provider.py): everything under one temporary directory, nothing of the user's used or left behind."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SIGN_LOOP = ROOT / "native" / "tools" / "sign_loop.py"


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) process ``pid`` has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Private:
    """The running emulator and agent; ``env``: the emulator's environment for hsmcert commands;
    ``child_env``: the environment of a provider client (only PATH and OPENSSL_CONF)."""

    tmp: Path
    running: Any
    env: dict[str, str]
    agent: subprocess.Popen[bytes]
    socket: Path
    child_env: dict[str, str]

    def sign_loop(self, ref: str, count: int, runs: int, threads: int = 1) -> list[list[float]]:
        """native/tools/sign_loop.py against the agent: ``runs`` lists of signature latencies (seconds)."""
        import json

        result = subprocess.run(
            [sys.executable, str(SIGN_LOOP), ref, str(count), str(runs), str(threads)],
            env=self.child_env, capture_output=True, text=True, timeout=900,
        )  # fmt: skip
        if result.returncode != 0:
            raise SystemExit(f"provider signing failed: {result.stderr.strip()[-2000:]}")
        runs_out: list[list[float]] = json.loads(result.stdout)
        return runs_out


@contextlib.contextmanager
def private_stack(pool_size: int) -> Iterator[Private]:
    """Start an emulator and an agent (``--pool-size``) in a temporary directory; stop both after."""
    import tempfile

    from hsmcert.emulator import control
    from hsmcert.provider import openssl_cnf, provider_path

    subprocess.run(["make", "-s", "-C", str(ROOT / "native")], check=True)
    with tempfile.TemporaryDirectory(prefix="hsmcert-bench-") as name:
        tmp = Path(name)
        data_dir = tmp / "emulator"
        running = control.start(data_dir)
        agent = None
        try:
            env = dict(os.environ)
            env.update(running.env())
            env["HSMCERT_EMULATOR"] = str(data_dir)
            for var in ("XDG_CACHE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME"):  # nothing of the user's
                env[var] = str(tmp / var.lower())
            sock = tmp / "run" / "agent.sock"
            agent = subprocess.Popen(
                [sys.executable, "-m", "hsmcert", "agent", "--socket", str(sock), "--audit", str(tmp / "a.jsonl"),
                 "--pool-size", str(pool_size)],
                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            deadline = time.monotonic() + 30
            while not sock.exists():
                if time.monotonic() > deadline or agent.poll() is not None:
                    raise SystemExit("the agent did not start")
                time.sleep(0.05)
            conf = tmp / "openssl.cnf"
            conf.write_text(openssl_cnf(sock, module=provider_path()))
            child_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "OPENSSL_CONF": str(conf)}
            yield Private(tmp, running, env, agent, sock, child_env)
        finally:
            if agent is not None:
                agent.terminate()
                agent.wait(15)
            control.stop(running.data_dir)
