"""Running the agent: as a foreground daemon (``hsmcert agent``) or privately around one command
(``hsmcert exec -- CMD``)."""

from __future__ import annotations

import contextlib
import importlib
import os
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from hsmcert.agent.audit import AuditLog
from hsmcert.agent.backend import DEFAULT_DEADLINE, DEFAULT_POOL_SIZE, AllowList, Backend
from hsmcert.agent.server import (
    DEFAULT_FRAME_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_WORKERS,
    IDLE_TIMEOUT,
    AgentServer,
    check_limits,
    systemd_listen_fd,
)
from hsmcert.errors import HsmcertError, UsageError

CREDENTIAL_VARIABLES = (
    # tokens
    "HSMCERT_ACCESS_TOKEN",
    "AZURE_CLI_ACCESS_TOKEN",
    "AZURE_ACCESS_TOKEN",
    # service principals (hsmcert's, azure-identity's and Azure's PKCS#11 library's spellings)
    "AZURE_CLIENT_SECRET",
    "AZURE_CLIENT_CERTIFICATE_PATH",
    "AZURE_CLIENT_CERTIFICATE_PASSWORD",
    "AZURE_USERNAME",
    "AZURE_PASSWORD",
    "MHSM_CLIENT_SECRET",
    # the same for Terraform's azurerm/azapi spellings
    "ARM_CLIENT_CERTIFICATE",
    "ARM_CLIENT_CERTIFICATE_PATH",
    "ARM_OIDC_REQUEST_URL",
    "ARM_MSI_ENDPOINT",
    # workload identity and CI identity providers
    "AZURE_FEDERATED_TOKEN_FILE",
    "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
    "ACTIONS_ID_TOKEN_REQUEST_URL",
    "SYSTEM_ACCESSTOKEN",
    "SYSTEM_OIDCREQUESTURI",
    # managed identity endpoints and their secrets (App Service, Arc, Service Fabric, Cloud Shell)
    "IDENTITY_ENDPOINT",
    "IDENTITY_HEADER",
    "IDENTITY_SERVER_THUMBPRINT",
    "IMDS_ENDPOINT",
    "MSI_ENDPOINT",
    "MSI_SECRET",
)
"""Variables that carry a credential or lead to one: ``hsmcert exec`` removes them from the command's
environment (the command signs through the agent, which keeps them; docs/agent.md lists them), together
with every variable :func:`carries_credential` matches."""

CREDENTIAL_PREFIXES = ("AZURE_", "ARM_", "MSI_", "IDENTITY_", "MHSM_", "HSMCERT_")
"""Prefixes of the variables of Azure tools, Terraform's azurerm, managed identity, Azure's PKCS#11 library
and hsmcert."""

CREDENTIAL_WORDS = frozenset({"SECRET", "TOKEN", "PASSWORD", "ASSERTION", "HMAC"})
"""A variable under :data:`CREDENTIAL_PREFIXES` with one of these words (between underscores) in its name
carries a credential or leads to one (``ARM_OIDC_TOKEN``, ``AZURE_CLIENT_ASSERTION``)."""

KEPT_VARIABLES = frozenset({"HSMCERT_AGENT_SOCKET", "OPENSSL_CONF"})
"""What the command needs to reach the agent: never removed."""


def carries_credential(name: str) -> bool:
    """Whether ``hsmcert exec`` removes the variable ``name`` from the command's environment.

    >>> [carries_credential(n) for n in ("ARM_CLIENT_SECRET", "AZURE_CLIENT_ASSERTION", "MSI_SECRET")]
    [True, True, True]
    >>> [carries_credential(n) for n in ("AZURE_CLIENT_ID", "HSMCERT_AGENT_SOCKET", "GITHUB_TOKEN")]
    [False, False, False]
    """
    if name in KEPT_VARIABLES:
        return False
    if name in CREDENTIAL_VARIABLES:
        return True
    return name.startswith(CREDENTIAL_PREFIXES) and not CREDENTIAL_WORDS.isdisjoint(name.split("_"))


@dataclass
class AgentOptions:
    """Everything ``hsmcert agent`` and ``hsmcert exec`` can set."""

    socket: Path | None = None
    allow: list[str] = field(default_factory=list)
    audit: Path | None = None
    group: str | None = None
    pool_size: int = DEFAULT_POOL_SIZE
    deadline: float = DEFAULT_DEADLINE
    endpoint: str | None = None
    ca_bundle: str | None = None
    credential: str | None = None
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    workers: int = DEFAULT_WORKERS
    frame_timeout: float = DEFAULT_FRAME_TIMEOUT
    idle_timeout: float = IDLE_TIMEOUT


def build_server(
    options: AgentOptions, *, audit: AuditLog | None = None, activation: bool = True
) -> AgentServer:
    """The server for ``options``, bound and ready to serve (a systemd socket wins over ``socket``)."""
    if options.pool_size < 1:
        raise UsageError("--pool-size must be at least 1.")
    if options.deadline <= 0:
        raise UsageError("--deadline must be positive.")
    check_limits(options.max_connections, options.workers, options.frame_timeout, options.idle_timeout)
    allow = AllowList.parse(options.allow)
    backend = Backend(
        endpoint=options.endpoint,
        ca_bundle=options.ca_bundle,
        credential=options.credential,
        pool_size=options.pool_size,
        deadline=options.deadline,
        allow=allow,
    )
    listen_fd = systemd_listen_fd() if activation else None
    if listen_fd is None and options.socket is None:
        from hsmcert.agent import default_socket_path

        options.socket = default_socket_path()
    if audit is None:
        audit = AuditLog(options.audit) if options.audit else AuditLog()
    server = AgentServer(
        backend,
        socket_path=None if listen_fd is not None else options.socket,
        listen_fd=listen_fd,
        audit=audit,
        group=options.group,
        max_connections=options.max_connections,
        workers=options.workers,
        frame_timeout=options.frame_timeout,
        idle_timeout=options.idle_timeout,
    )
    server.bind()
    return server


def serve(options: AgentOptions, on_ready: Callable[[AgentServer], None] | None = None) -> None:
    """Run the agent in the foreground until SIGTERM or SIGINT; the socket is removed on the way out."""
    server = build_server(options)

    def stop(signum: int, frame: FrameType | None) -> None:
        server.stop()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        if on_ready is not None:
            on_ready(server)
        server.serve_forever()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        server.audit.close()


def wait_for_socket(path: Path, timeout: float = 15.0, alive: Callable[[], bool] | None = None) -> None:
    """Wait until something accepts connections on ``path``."""
    end = time.monotonic() + timeout
    while True:
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(os.fspath(path))
            return
        except OSError:
            if time.monotonic() > end or (alive is not None and not alive()):
                raise HsmcertError(f"The agent did not start listening on {path}.") from None
            time.sleep(0.02)
        finally:
            probe.close()


@contextlib.contextmanager
def private_agent(options: AgentOptions) -> Iterator[AgentServer]:
    """An agent on a fresh socket in a private temporary directory, served by a thread of this process."""
    with tempfile.TemporaryDirectory(prefix="hsmcert-exec-") as tmp:
        os.chmod(tmp, 0o700)
        options.socket = Path(tmp) / "agent.sock"
        audit = AuditLog(options.audit) if options.audit else AuditLog(open(os.devnull, "w"))  # noqa: SIM115
        server = build_server(options, audit=audit, activation=False)
        thread = threading.Thread(target=server.serve_forever, name="hsmcert-agent", daemon=True)
        thread.start()
        try:
            yield server
        finally:
            server.stop()
            thread.join(10)
            audit.close()


def child_environment(
    environ: Mapping[str, str], extra_env: Mapping[str, str] | None = None
) -> dict[str, str]:
    """``environ`` plus ``extra_env`` without the variables that carry a credential
    (:func:`carries_credential`).

    >>> child_environment({"PATH": "/bin", "AZURE_CLIENT_SECRET": "s", "ARM_OIDC_TOKEN": "t"})
    {'PATH': '/bin'}
    """
    env = {**environ, **(extra_env or {})}
    return {name: value for name, value in env.items() if not carries_credential(name)}


def exec_command(
    command: Sequence[str], options: AgentOptions, extra_env: dict[str, str] | None = None
) -> int:
    """Run ``command`` with a private agent and an ``OPENSSL_CONF`` that loads the hsmcert provider.

    The command's environment has no credential variables (:func:`carries_credential`): it signs
    through the agent. Returns the command's exit status (128 + signal number when a signal ended it);
    127 when the command does not exist, 126 when it cannot be run.
    """
    if not command:
        raise UsageError("Nothing to run.", "Usage: hsmcert exec -- COMMAND [ARGS...]")
    try:
        openssl_cnf = importlib.import_module("hsmcert.provider").openssl_cnf
    except ImportError as exc:
        raise HsmcertError(
            "The OpenSSL provider support (hsmcert.provider) is not installed.",
            "Build it with: make native (or hsmcert provider build).",
        ) from exc
    with private_agent(options) as server:
        assert server.socket_path is not None
        conf = server.socket_path.parent / "openssl.cnf"
        conf.write_text(openssl_cnf(server.socket_path))
        env = child_environment(os.environ, extra_env)
        env["OPENSSL_CONF"] = str(conf)
        env["HSMCERT_AGENT_SOCKET"] = str(server.socket_path)
        try:
            child = subprocess.Popen(list(command), env=env)
        except OSError as exc:
            # As a shell does: 127 when there is no such command, 126 when it cannot be run.
            code = 127 if isinstance(exc, FileNotFoundError) else 126
            raise HsmcertError(f"Cannot run {command[0]}: {exc.strerror or exc}.", exit_code=code) from exc
        forwarded: dict[signal.Signals, Any] = {}

        def forward(signum: int, frame: FrameType | None) -> None:
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(signum)

        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            with contextlib.suppress(ValueError):  # not the main thread: leave signals alone
                forwarded[sig] = signal.signal(sig, forward)
        try:
            code = child.wait()
        finally:
            for forwarded_sig, handler in forwarded.items():
                signal.signal(forwarded_sig, handler)
    return 128 - code if code < 0 else code


__all__ = [
    "CREDENTIAL_VARIABLES",
    "AgentOptions",
    "build_server",
    "carries_credential",
    "child_environment",
    "exec_command",
    "private_agent",
    "serve",
    "wait_for_socket",
]
