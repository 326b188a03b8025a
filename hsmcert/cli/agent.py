"""hsmcert agent | exec: the local signing agent, as a daemon or around one command."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from hsmcert.agent import SOCKET_ENV
from hsmcert.cli._common import CaBundleOpt, CredentialOpt, EndpointOpt, log

if TYPE_CHECKING:
    from hsmcert.agent.server import AgentServer

AllowOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--allow",
        help="UID:KEYREF (or USER:KEYREF, KEYREF * for all keys) the uid may use; repeat. "
        "Without any, every caller that can open the socket may use every key.",
    ),
]
AuditOpt = Annotated[
    Path | None,
    typer.Option("--audit", help="Append one JSON line per operation to this file (default: stderr)."),
]
PoolOpt = Annotated[
    int, typer.Option("--pool-size", help="HTTPS connections kept open to each HSM (a hard limit).")
]
DeadlineOpt = Annotated[
    float, typer.Option("--deadline", help="Seconds one operation may take, retries included.")
]
MaxConnectionsOpt = Annotated[
    int,
    typer.Option(
        "--max-connections",
        help="Connections open at once; one more closes a slow or the longest idle one, "
        "or is refused when all are busy.",
    ),
]
WorkersOpt = Annotated[int, typer.Option("--workers", help="Threads that run requests (calls to the HSM).")]
FrameTimeoutOpt = Annotated[
    float,
    typer.Option("--frame-timeout", help="Seconds a request may take to arrive from its first byte."),
]
IdleTimeoutOpt = Annotated[
    float,
    typer.Option("--idle-timeout", help="Seconds after which a connection that sends nothing is closed."),
]


def agent(
    socket: Annotated[
        Path | None,
        typer.Option(
            "--socket",
            "-s",
            help="Unix socket to listen on (default: hsmcert.agent.default_socket_path()); "
            "ignored under systemd socket activation.",
            envvar=SOCKET_ENV,
        ),
    ] = None,
    allow: AllowOpt = None,
    audit: AuditOpt = None,
    group: Annotated[
        str | None,
        typer.Option("--group", help="Group owning the socket and its directory (e.g. www-data for nginx)."),
    ] = None,
    pool_size: PoolOpt = 4,
    deadline: DeadlineOpt = 30.0,
    max_connections: MaxConnectionsOpt = 256,
    workers: WorkersOpt = 16,
    frame_timeout: FrameTimeoutOpt = 5.0,
    idle_timeout: IdleTimeoutOpt = 300.0,
    endpoint: EndpointOpt = None,
    ca_bundle: CaBundleOpt = None,
    credential: CredentialOpt = None,
) -> None:
    """Run the signing agent in the foreground until SIGTERM or Ctrl-C."""
    from hsmcert.agent.run import AgentOptions, serve

    options = AgentOptions(
        socket=socket,
        allow=list(allow or []),
        audit=audit,
        group=group,
        pool_size=pool_size,
        deadline=deadline,
        max_connections=max_connections,
        workers=workers,
        frame_timeout=frame_timeout,
        idle_timeout=idle_timeout,
        endpoint=endpoint,
        ca_bundle=ca_bundle,
        credential=credential,
    )

    def ready(server: AgentServer) -> None:
        how = " (socket from systemd)" if server.listen_fd is not None else ""
        log(f"hsmcert agent listening on {server.socket_path}{how}")

    serve(options, on_ready=ready)
    log("hsmcert agent stopped")


def exec_(
    command: Annotated[list[str], typer.Argument(help="The command and its arguments, after --.")],
    audit: Annotated[
        Path | None,
        typer.Option("--audit", help="Append the private agent's audit lines to this file (default: none)."),
    ] = None,
    allow: AllowOpt = None,
    pool_size: PoolOpt = 4,
    deadline: DeadlineOpt = 30.0,
    endpoint: EndpointOpt = None,
    ca_bundle: CaBundleOpt = None,
    credential: CredentialOpt = None,
) -> None:
    """Run COMMAND with a private agent and an OPENSSL_CONF that loads the hsmcert provider.

    Example: hsmcert exec -- openssl req -new -key managedhsm:myhsm:tls -subj /CN=example
    """
    from hsmcert.agent.run import AgentOptions, exec_command

    options = AgentOptions(
        allow=list(allow or []),
        audit=audit,
        pool_size=pool_size,
        deadline=deadline,
        endpoint=endpoint,
        ca_bundle=ca_bundle,
        credential=credential,
    )
    code = exec_command(command, options)
    raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    app.command("agent")(agent)
    app.command("exec", context_settings={"allow_interspersed_args": False})(exec_)
