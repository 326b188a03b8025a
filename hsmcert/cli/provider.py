"""hsmcert provider path | build | openssl-cnf | pem-ref: wire the OpenSSL provider into other programs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hsmcert.agent import SOCKET_ENV
from hsmcert.cli._common import ForceOpt, KeyOpt, OutOpt, emit, log, write_result
from hsmcert.provider import DEFAULT_TIMEOUT_MS, openssl_cnf, pem_ref

app = typer.Typer(
    help="The hsmcert OpenSSL 3 provider: HSM keys for openssl, curl, haproxy, stunnel and nginx.",
    no_args_is_help=True,
)


@app.command("path")
def path_() -> None:
    """Print the path of the built provider module (hsmcert.so)."""
    from hsmcert.provider import provider_path

    found = provider_path()
    emit({"path": str(found)}, str(found))


@app.command("build")
def build_(
    cc: Annotated[str | None, typer.Option("--cc", help="C compiler (default: $CC or cc).")] = None,
) -> None:
    """Compile the provider from the sources shipped with hsmcert into the user cache directory."""
    from hsmcert.provider import build, native_sources

    log(f"building the provider from {native_sources()}")
    built = build(cc=cc)
    emit({"path": str(built)}, str(built))


@app.command("openssl-cnf")
def openssl_cnf_(
    socket: Annotated[
        Path | None,
        typer.Option(
            "--socket",
            "-s",
            help="The agent's socket (default: the agent's default path).",
            envvar=SOCKET_ENV,
        ),
    ] = None,
    timeout_ms: Annotated[
        int,
        typer.Option(
            "--timeout-ms", help="How long the provider waits for the agent per operation (1 to 3600000)."
        ),
    ] = DEFAULT_TIMEOUT_MS,
    no_default: Annotated[
        bool, typer.Option("--no-default", help="Do not activate OpenSSL's default provider first.")
    ] = False,
    out: OutOpt = "-",
    force: ForceOpt = False,
) -> None:
    """Write an openssl.cnf that loads the default provider, then hsmcert (use it with OPENSSL_CONF)."""
    from hsmcert.agent import default_socket_path

    socket = socket or default_socket_path()
    text = openssl_cnf(socket, timeout_ms=timeout_ms, include_default=not no_default)
    data = {"socket": str(socket), "timeout_ms": timeout_ms, "default_provider": not no_default}
    write_result(out, text.encode(), data, inline={"text": text}, force=force)


@app.command("pem-ref")
def pem_ref_(key: KeyOpt, out: OutOpt = "-", force: ForceOpt = False) -> None:
    """Write a PEM file wrapping the key reference, for programs that read only PEM key files."""
    blob = pem_ref(key)
    write_result(out, blob, {"key": str(key)}, inline={"text": blob.decode("ascii")}, force=force)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="provider")
