"""What every command shares: the run's state and session, option types, output rendering, the stderr console."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from hsmcert.session import Session


class OutputFormat(str, Enum):
    text = "text"
    json = "json"


@dataclass
class State:
    """What one run of the command line knows: its global options, and the session it built."""

    output: OutputFormat = OutputFormat.text
    quiet: bool = False
    verbose: bool = False
    printed_document: bool = False
    """A JSON document went to stdout already: a failure after it prints no second one."""
    session: Session | None = None


_run: ContextVar[State | None] = ContextVar("hsmcert_cli_run", default=None)


def current() -> State:
    """The state of the run in progress (outside a run: the defaults, in a throwaway object)."""
    found = _run.get()
    return found if found is not None else State()


@contextmanager
def run() -> Iterator[State]:
    """One run of the command line with a fresh state; the session it built is closed at the end."""
    fresh = State()
    token = _run.set(fresh)
    try:
        yield fresh
    finally:
        _run.reset(token)
        if fresh.session is not None:
            fresh.session.close()


class _CurrentState:
    """``state.output``, ``state.quiet``...: the fields of the run in progress (nothing is kept here)."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        return getattr(current(), name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(current(), name, value)


state: Any = _CurrentState()


def session(
    endpoint: str | None = None, ca_bundle: str | None = None, credential: str | None = None
) -> Session:
    """The run's :class:`~hsmcert.session.Session`, built on first use from the command's ``--endpoint``,
    ``--ca-bundle`` and ``--credential``, the environment and the config file, then kept for the run."""
    here = current()
    if here.session is None:
        from hsmcert.session import Session

        here.session = Session(endpoint=endpoint, ca_bundle=ca_bundle, credential=credential)
    return here.session


# Options shared by many commands. Every option is also read from HSMCERT_<COMMAND>_<OPTION>
# (cli/_env.py); the envvar given below is a short, command-independent name read after it.
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


def _console_kwargs(stderr: bool = True) -> dict[str, Any]:
    plain = bool(os.environ.get("NO_COLOR"))
    kwargs: dict[str, Any] = {"stderr": stderr, "no_color": plain, "highlight": False, "soft_wrap": True}
    if plain:
        kwargs["color_system"] = None  # no_color alone keeps bold and underline
    return kwargs


def styled(parts: list[tuple[str, str | None]]) -> str:
    """Text for stdout with rich styles (``[(text, style), ...]``): styled only on a terminal without NO_COLOR."""
    from rich.console import Console
    from rich.text import Text

    console = Console(**_console_kwargs(stderr=False), force_terminal=sys.stdout.isatty())
    with console.capture() as captured:
        console.print(Text.assemble(*((part, style or "") for part, style in parts)), end="")
    return captured.get()


def log(message: str) -> None:
    """Progress and information for a person, on stderr; silenced by --quiet."""
    if state.quiet:
        return
    from rich.console import Console

    Console(**_console_kwargs()).print(message, markup=False)


SCHEMA = 1
"""The version of every JSON document hsmcert prints (its ``schema`` field); raised when a field changes
meaning or goes away, never when one is added."""


def _write_json(document: dict[str, Any]) -> None:
    state.printed_document = True
    sys.stdout.write(json.dumps({"schema": SCHEMA, **document}, indent=2, sort_keys=True, default=str) + "\n")


def emit(data: dict[str, Any], text: str | Callable[[], str] | None = None) -> None:
    """Write a command's result to stdout: ``data`` as a JSON document with --output json, else ``text``."""
    if state.output is OutputFormat.json:
        _write_json(data)
    else:
        rendered = text() if callable(text) else text
        if rendered:
            sys.stdout.write(rendered if rendered.endswith("\n") else rendered + "\n")
    sys.stdout.flush()


def is_stdout(out: str) -> bool:
    """Whether the output path ``out`` is standard output: ``-``, or a path to the file, pipe or terminal
    stdout is (``/dev/stdout``, ``/proc/self/fd/1``)."""
    if out == "-":
        return True
    try:
        target, stdout = os.stat(out), os.fstat(sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        return False  # no such file yet, or a stdout that is not a file (captured in a test)
    return (target.st_dev, target.st_ino) == (stdout.st_dev, stdout.st_ino)


def write_result(
    out: str,
    blob: bytes,
    data: dict[str, Any],
    *,
    inline: dict[str, Any],
    force: bool,
    mode: int = 0o644,
    text: str | None = None,
) -> None:
    """Write a command's file ``blob`` to ``out`` and report it with :func:`emit`.

    With --output json stdout holds one JSON document only: when ``out`` is standard output the file's
    content is not written raw but carried in the document (the ``inline`` fields, e.g. ``{"text": ...}``).
    Without it, a file on stdout is the whole output (``text`` is printed only for a file elsewhere).
    """
    from hsmcert.output_files import write_output

    data = {**data, "path": out}
    to_stdout = is_stdout(out)
    if to_stdout and state.output is OutputFormat.json:
        emit({**data, **inline})
        return
    write_output(out, blob, force=force, mode=mode)
    if not to_stdout:
        emit(data, text)


def times(data: dict[str, Any], *fields: str) -> dict[str, Any]:
    """``data`` with the named fields (seconds since the epoch, or None) as RFC 3339 UTC text."""
    from hsmcert.timestamps import rfc3339

    return {k: (rfc3339(v) if k in fields and isinstance(v, (int, float)) else v) for k, v in data.items()}


SPINNER_DELAY = 1.0
"""Seconds a wait lasts before :func:`waiting` shows its spinner."""


@contextlib.contextmanager
def waiting(what: str) -> Iterator[None]:
    """A spinner on stderr saying ``what`` (and any retry :mod:`hsmcert.progress` reports) if the block
    lasts more than :data:`SPINNER_DELAY`; only on a terminal, never with --quiet."""
    if state.quiet or not sys.stderr.isatty():
        yield
        return
    from rich.console import Console
    from rich.live import Live
    from rich.spinner import Spinner

    from hsmcert import progress

    spinner = Spinner("dots", text=f"{what}...")
    # stdout is never redirected through the spinner: results stay plain bytes on stdout
    status = Live(
        spinner,
        console=Console(**_console_kwargs()),
        transient=True,
        redirect_stdout=False,
        redirect_stderr=False,
        refresh_per_second=12.5,
    )
    lock = threading.Lock()
    shown = [False, False]  # started, finished

    def show() -> None:
        with lock:
            if not shown[1]:
                status.start()
                shown[0] = True

    def retrying(text: str) -> None:
        spinner.update(text=f"{what}: {text}...")
        show()  # a retry is a wait worth showing at once

    timer = threading.Timer(SPINNER_DELAY, show)
    timer.daemon = True
    timer.start()
    try:
        with progress.listening(retrying):
            yield
    finally:
        timer.cancel()
        with lock:
            shown[1] = True
            if shown[0]:
                status.stop()


def error(message: str, remedy: str | None = None) -> None:
    """An error line on stderr (always shown, even with --quiet)."""
    from rich.console import Console

    console = Console(**_console_kwargs())
    console.print(f"error: {message}", style="bold red", markup=False)
    if remedy:
        console.print(remedy, markup=False)


def fail(
    message: str, remedy: str | None, exit_code: int, *, retryable: bool, facts: dict[str, Any] | None = None
) -> None:
    """Report a failure: the error lines on stderr and, with --output json, an error document on stdout."""
    from hsmcert.errors import EXIT_NAMES

    error(message, remedy)
    if state.output is OutputFormat.json and not state.printed_document:
        _write_json(
            {
                "code": EXIT_NAMES.get(exit_code, "failure"),
                "exit_code": exit_code,
                "message": message,
                "remedy": remedy,
                "retryable": retryable,
                **(facts or {}),
            }
        )
        sys.stdout.flush()


# The identity to use (hsmcert.azure.credentials); shared by every command that talks to an HSM.
CredentialOpt = Annotated[
    str | None,
    typer.Option(
        "--credential",
        help="Which identity: auto, env-token, service-principal, workload-identity, github-actions, "
        "azure-pipelines, managed-identity, azure-cli.",
        envvar="HSMCERT_CREDENTIAL",
    ),
]
