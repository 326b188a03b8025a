"""``make demo``: keyless TLS with nginx, end to end, on one machine, in about a minute.

It starts the local emulator (a Managed HSM, with a Resource Manager) and creates an RSA-3072 and an EC
P-256 key in the HSM and their certificates (signed in the HSM). It adds a VM, ``myvm``, to the emulator's
Resource Manager and lets its managed identity use the keys with ``hsmcert grant --vm myvm``; the hsmcert
agent then signs as that VM's identity. It renders the nginx configuration with ``hsmcert nginx``, starts
Debian's nginx on 127.0.0.1 with its own prefix, fetches a page over TLS 1.3 and TLS 1.2 with each key,
prints the HSM's audit lines that prove each handshake was signed there by the VM's identity, stops
everything and exits 0. Every command it runs is printed, so the demo doubles as a tutorial.

:class:`Stack` (the processes, started and stopped in order) is shared with ``bench/nginx_handshake.py``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any
from uuid import uuid4

from hsmcert.audit import read_audit
from hsmcert.errors import HsmcertError, NotFoundError

HSM = "local-hsm"
VM = "myvm"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise HsmcertError(f"Timed out after {timeout:.0f} s waiting for {what}.")
        time.sleep(0.05)


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@dataclass
class Nginx:
    prefix: Path
    conf: Path
    env: dict[str, str]

    def command(self, *args: str) -> list[str]:
        return [
            "nginx",
            "-p",
            f"{self.prefix}/",
            "-e",
            str(self.prefix / "error.log"),
            "-c",
            str(self.conf),
            *args,
        ]

    def master_pid(self) -> int:
        return int((self.prefix / "nginx.pid").read_text().strip())

    def stop(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            pid = self.master_pid()
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                os.kill(pid, 0)
                time.sleep(0.05)
            os.kill(pid, signal.SIGKILL)


class Stack:
    """The demo's processes (emulator, agent, nginx) in a work directory; :meth:`close` stops them all,
    newest first, whatever state they are in."""

    def __init__(self, workdir: Path, *, echo: Callable[[str], None] | None = None) -> None:
        self.workdir = workdir
        self.echo = echo or (lambda _line: None)
        self.env = {k: v for k, v in os.environ.items() if k != "OPENSSL_CONF"}
        self._stops: list[tuple[str, Callable[[], None]]] = []
        self.emulator_dir = workdir / "emulator"
        self.agent_socket = workdir / "agent" / "agent.sock"
        self.agent_audit = workdir / "agent-audit.jsonl"
        self.agent: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        while self._stops:
            what, stop = self._stops.pop()
            try:
                stop()
            except Exception as exc:
                print(f"warning: could not stop {what}: {exc}", file=sys.stderr)

    # -- running hsmcert itself ---------------------------------------------------------------------

    def hsmcert(self, *args: str, show: bool = True) -> str:
        """Run ``hsmcert ARGS`` as a user would; its stdout, or an HsmcertError with its stderr."""
        if show:
            self.echo("$ hsmcert " + shlex.join(args))
        result = subprocess.run(
            [sys.executable, "-m", "hsmcert", *args],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=300,
            check=False,
        )
        if result.returncode != 0:
            raise HsmcertError(f"hsmcert {args[0]} failed: {result.stderr.strip() or result.stdout.strip()}")
        return result.stdout

    def start_emulator(self) -> None:
        """``eval "$(hsmcert emulator start --data DIR)"``, keeping the variables it exports."""
        command = (
            f'eval "$({shlex.quote(sys.executable)} -m hsmcert emulator start --data {self.emulator_dir})"'
        )
        self.echo(f'$ eval "$(hsmcert emulator start --data {self.emulator_dir})"')
        # registered first: a signal during the start must still stop what did start
        self._stops.append(("the emulator", self.stop_emulator))
        with _signals_deferred():  # an interrupted start could leave an emulator nobody knows of
            result = subprocess.run(
                ["bash", "-c", command + " && env -0"],
                capture_output=True,
                env=self.env,
                timeout=120,
                check=False,
            )
        if result.returncode != 0:
            raise HsmcertError(
                f"The emulator did not start: {result.stderr.decode(errors='replace').strip()}"
            )
        for item in result.stdout.split(b"\0"):
            name, sep, value = item.decode(errors="replace").partition("=")
            if sep and (name.startswith(("HSMCERT_", "AZURE_", "IDENTITY_"))):
                self.env[name] = value

    def stop_emulator(self) -> None:
        subprocess.run(
            [sys.executable, "-m", "hsmcert", "emulator", "stop", "--data", str(self.emulator_dir)],
            capture_output=True,
            env=self.env,
            timeout=60,
            check=False,
        )

    def emulator_audit(self) -> list[dict[str, Any]]:
        return read_audit(self.emulator_dir / "audit.jsonl")

    def agent_audit_lines(self) -> list[dict[str, Any]]:
        return read_audit(self.agent_audit)

    def create_key(self, name: str, *spec: str) -> str:
        ref = f"managedhsm:{HSM}:{name}"
        self.hsmcert("key", "create", "--key", ref, *spec)
        return ref

    def selfsign(self, ref: str, cn: str, path: Path) -> Path:
        self.hsmcert(
            "selfsign", "--key", ref, "--subj", f"/CN={cn}", "--san", f"DNS:{cn}", "--days", "2",
            "--profile", "tls-server", "-o", str(path),
        )  # fmt: skip
        return path

    def start_agent(self, *args: str, env: dict[str, str] | None = None) -> None:
        """``hsmcert agent ARGS`` in the background (``env``: variables to set for it only)."""
        self.agent_socket.parent.mkdir(parents=True, exist_ok=True)
        command = [
            "agent", "--socket", str(self.agent_socket), "--audit", str(self.agent_audit), *args,
        ]  # fmt: skip
        self.echo("$ hsmcert " + shlex.join(command) + " &")
        log = open(self.workdir / "agent.log", "ab")  # noqa: SIM115 - the agent's lifetime
        self._stops.append(("the agent log", log.close))
        self._stops.append(("the agent", self.stop_agent))
        with _signals_deferred():  # the agent is known to stop_agent as soon as it runs
            self.agent = subprocess.Popen(
                [sys.executable, "-m", "hsmcert", *command],
                env={**self.env, **(env or {})},
                stdout=log,
                stderr=log,
            )
        agent = self.agent
        wait_for(lambda: self.agent_socket.exists() or agent.poll() is not None, 30, "the agent's socket")
        if agent.poll() is not None:
            raise HsmcertError(f"The agent stopped at once; see {self.workdir / 'agent.log'}.")

    def stop_agent(self) -> None:
        if self.agent is not None and self.agent.poll() is None:
            self.agent.terminate()
            try:
                self.agent.wait(15)
            except subprocess.TimeoutExpired:
                self.agent.kill()
                self.agent.wait()

    def start_nginx(
        self,
        includes: Sequence[Path],
        ports: Sequence[int],
        *,
        openssl_cnf: Path | None,
        name: str = "nginx",
        workers: int = 1,
        user: str | None = None,
    ) -> Nginx:
        from hsmcert.nginx import standalone_conf

        prefix = self.workdir / name
        prefix.mkdir(parents=True, exist_ok=True)
        conf = prefix / "nginx.conf"
        conf.write_text(standalone_conf(prefix, includes, workers=workers, user=user, log_level="notice"))
        env = dict(self.env)
        if openssl_cnf is not None:
            env["OPENSSL_CONF"] = str(openssl_cnf)
        nginx = Nginx(prefix, conf, env)
        self.echo(
            ("$ OPENSSL_CONF=" + str(openssl_cnf) + " " if openssl_cnf else "$ ")
            + shlex.join(nginx.command())
        )
        self._stops.append((f"nginx ({prefix})", nginx.stop))  # first, as for the emulator
        with _signals_deferred():
            result = subprocess.run(
                nginx.command(), capture_output=True, text=True, env=env, timeout=120, check=False
            )
        if result.returncode != 0:
            raise HsmcertError(f"nginx did not start: {result.stderr.strip()}")
        for port in ports:
            wait_for(lambda port=port: port_open(port), 20, f"nginx on port {port}")  # type: ignore[misc]
        return nginx


def _curl(url: str, tls: str, ca: Path, resolve: str) -> str:
    top = {"1.2": "1.2", "1.3": "1.3"}[tls]
    command = ["curl", "-sS", "--max-time", "20", f"--tlsv{tls}", "--tls-max", top, "--cacert", str(ca)]
    command += ["--resolve", resolve, "-w", "HTTP %{http_code}: ", url]
    env = {k: v for k, v in os.environ.items() if k != "OPENSSL_CONF"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60, check=False)
    if result.returncode != 0:
        raise HsmcertError(f"curl --tlsv{tls} {url} failed: {result.stderr.strip()}")
    body, _, status = result.stdout.rpartition("HTTP ")
    return f"HTTP {status}{body.strip()}"


def _require_tools() -> None:
    missing = [
        tool
        for tool in ("nginx", "curl", "openssl")
        if not shutil.which(tool, path="/usr/sbin:/usr/bin:/bin")
    ]
    if missing:
        raise NotFoundError(
            f"The demo needs {', '.join(missing)}.", "Run it with make demo, which installs them."
        )


_DEFERRING: list[int] = []  # SIGTERM/SIGHUP/SIGINT that came while _signals_deferred() was active
_DEFER = [False]


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Under :func:`_signals_raise`, a signal during the block ends the demo only when the block ends."""
    _DEFER[0] = True
    try:
        yield
    finally:
        _DEFER[0] = False
        if _DEFERRING:
            _DEFERRING.clear()
            raise KeyboardInterrupt


@contextlib.contextmanager
def _signals_raise() -> Iterator[None]:
    """SIGTERM, SIGHUP and Ctrl-C end the demo, so the cleanup still runs."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        if _DEFER[0]:
            _DEFERRING.append(signum)
            return
        raise KeyboardInterrupt

    old = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def run(workdir: Path, echo: Callable[[str], None] = print) -> int:
    """The demo in ``workdir``; returns the number of handshakes the HSM signed."""
    _require_tools()
    tag = uuid4().hex[:6]
    with Stack(workdir, echo=echo) as stack:
        echo("\n== 1. A local Managed HSM (the emulator) ==")
        stack.start_emulator()

        echo("\n== 2. Two keys that never leave the HSM, and certificates signed by them ==")
        keys = {
            "rsa": stack.create_key(f"demo-rsa-{tag}", "--kty", "RSA", "--size", "3072"),
            "ec": stack.create_key(f"demo-ec-{tag}", "--kty", "EC", "--curve", "P-256"),
        }
        certs = {
            kind: stack.selfsign(ref, f"{kind}.hsmcert.test", workdir / f"{kind}.pem")
            for kind, ref in keys.items()
        }

        echo("\n== 3. The machine that serves: a VM whose managed identity may use the keys ==")
        machine = json.loads(stack.hsmcert("--output", "json", "emulator", "vm", "add", VM))
        vm_principal = str(machine["principalId"])
        echo(f"  {VM}: system-assigned identity {vm_principal}")
        for granted in stack.hsmcert("grant", "--vm", VM).splitlines():
            echo("  " + granted)

        echo(
            "\n== 4. The hsmcert agent, signed in as the VM's identity: the only process that talks to the HSM =="
        )
        token = stack.hsmcert("emulator", "token", "--principal", vm_principal, show=False).strip()
        echo(f"$ export HSMCERT_ACCESS_TOKEN=$(hsmcert emulator token --principal {vm_principal})")
        user = "www-data" if os.geteuid() == 0 else None
        stack.start_agent(
            *(["--group", "www-data"] if user else []),
            "--credential",
            "env-token",
            env={"HSMCERT_ACCESS_TOKEN": token},
        )

        echo("\n== 5. nginx configuration, rendered and checked with nginx -t ==")
        ports = {kind: free_port() for kind in keys}
        out = workdir / "nginx-conf"
        for kind, ref in keys.items():
            stack.hsmcert(
                "nginx", "--key", ref, "--cert", str(certs[kind]), "--server-name", f"{kind}.hsmcert.test",
                "-o", str(out), "--listen", f"127.0.0.1:{ports[kind]}", "--socket", str(stack.agent_socket),
                "--check",
            )  # fmt: skip
        includes = [out / f"{kind}.hsmcert.test.conf" for kind in keys]

        echo("\n== 6. nginx 1.22 on 127.0.0.1, its own prefix, keys in the HSM ==")
        started = time.time()
        stack.start_nginx(includes, list(ports.values()), openssl_cnf=out / "openssl.cnf", user=user)

        echo("\n== 7. HTTPS requests: TLS 1.3 and TLS 1.2, with each key ==")
        for kind in keys:
            host = f"{kind}.hsmcert.test"
            for tls in ("1.3", "1.2"):
                url = f"https://{host}:{ports[kind]}/"
                echo(f"$ curl --tlsv{tls} --tls-max {tls} --cacert {certs[kind].name} {url}")
                echo("  " + _curl(url, tls, certs[kind], f"{host}:{ports[kind]}:127.0.0.1"))

        echo("\n== 8. The HSM's audit log: each handshake was signed inside the HSM, by the VM's identity ==")
        names = {ref.rsplit(":", 1)[1] for ref in keys.values()}
        signed = [
            line
            for line in stack.emulator_audit()
            if line.get("operation") == "sign"
            and line.get("key") in names
            and _epoch(line.get("time")) >= started
            and line.get("principal") == vm_principal
        ]
        for line in signed:
            fields = ("time", "principal_name", "service", "key", "alg", "operation", "result")
            echo("  " + " ".join(str(line[f]) for f in fields if f in line))
        agent_signs = [line for line in stack.agent_audit_lines() if line.get("op") == "sign"]
        if agent_signs:
            echo(
                "\n   ...asked for by nginx's workers through the agent (its audit log: caller uid and pid):"
            )
        for line in agent_signs:
            shown = ("time", "uid", "pid", "key", "alg", "result")
            echo(
                "  "
                + " ".join(
                    f"{f}={line[f]}" if f in ("uid", "pid") else str(line[f]) for f in shown if f in line
                )
            )
        if len(signed) < 4:
            raise HsmcertError(
                f"Expected at least 4 signatures by {VM}'s identity in the HSM's audit log, found {len(signed)}."
            )
        echo(
            f"\n{len(signed)} TLS handshakes signed in the HSM; no private key was ever on this machine's disk."
        )
        echo("\n== 9. Stopping nginx, the agent and the emulator ==")
    return len(signed)


def _epoch(value: Any) -> float:
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        from datetime import datetime

        with contextlib.suppress(ValueError):
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    return 0.0


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    keep = "--keep" in args
    with _signals_raise():
        # Unix socket paths must stay short: work under /tmp. Traversable by nginx's workers (www-data).
        workdir = Path(tempfile.mkdtemp(prefix="hsmcert-demo-"))
        workdir.chmod(0o711)
        try:
            run(workdir)
        except HsmcertError as exc:
            print(
                f"\ndemo failed: {exc.diagnostics()}\n(everything it started was stopped; files in {workdir})",
                file=sys.stderr,
            )
            return 1
        except KeyboardInterrupt:
            print("\ndemo interrupted; everything it started was stopped.", file=sys.stderr)
            if not keep:
                shutil.rmtree(workdir, ignore_errors=True)
            return 130
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
    print("\ndemo finished: exit 0")
    return 0


if __name__ == "__main__":
    sys.exit(main())
