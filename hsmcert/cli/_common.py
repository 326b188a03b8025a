"""What every command shares: global state, option types, output rendering, the stderr console."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Annotated, Any

import typer


class OutputFormat(str, Enum):
    text = "text"
    json = "json"


@dataclass
class State:
    output: OutputFormat = OutputFormat.text
    quiet: bool = False
    verbose: bool = False


state = State()

# Options shared by many commands. Every option is also read from HSMCERT_<COMMAND>_<OPTION>
# (click's auto_envvar_prefix); the ones below also have a short, command-independent variable.
KeyOpt = Annotated[
    str, typer.Option("--key", "-k", help="Key reference, e.g. managedhsm:HSM:KEY.", envvar="HSMCERT_KEY")
]
ForceOpt = Annotated[bool, typer.Option("--force", help="Replace an existing output file.")]
OutOpt = Annotated[str, typer.Option("--out", "-o", help="Output file; - (the default) for standard output.")]
EndpointOpt = Annotated[
    str | None,
    typer.Option(
        "--endpoint",
        help="Service URL instead of Azure's (see docs/configuration.md).",
        envvar="HSMCERT_ENDPOINT",
    ),
]
CaBundleOpt = Annotated[
    str | None,
    typer.Option("--ca-bundle", help="CA bundle to trust for --endpoint.", envvar="HSMCERT_CA_BUNDLE"),
]


def _console_kwargs() -> dict[str, Any]:
    return {
        "stderr": True,
        "no_color": bool(os.environ.get("NO_COLOR")),
        "highlight": False,
        "soft_wrap": True,
    }


def log(message: str) -> None:
    """Progress and information for a person, on stderr; silenced by --quiet."""
    if state.quiet:
        return
    from rich.console import Console

    Console(**_console_kwargs()).print(message, markup=False)


def emit(data: Any, text: str | Callable[[], str] | None = None) -> None:
    """Write a command's result to stdout: ``data`` as JSON with --output json, else ``text``."""
    if state.output is OutputFormat.json:
        sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
    else:
        rendered = text() if callable(text) else text
        if rendered:
            sys.stdout.write(rendered if rendered.endswith("\n") else rendered + "\n")
    sys.stdout.flush()


def error(message: str, remedy: str | None = None) -> None:
    """An error line on stderr (always shown, even with --quiet)."""
    from rich.console import Console

    console = Console(**_console_kwargs())
    console.print(f"error: {message}", style="bold red", markup=False)
    if remedy:
        console.print(remedy, markup=False)


# The identity to use (hsmcert.azure.credentials); shared by every command that talks to an HSM.
CredentialOpt = Annotated[
    str | None,
    typer.Option(
        "--credential",
        help="Which identity: auto, env-token, service-principal, workload-identity, managed-identity, azure-cli.",
        envvar="HSMCERT_CREDENTIAL",
    ),
]
