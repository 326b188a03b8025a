"""Entry point of the ``hsmcert`` command."""

from __future__ import annotations

import importlib
import os
import pkgutil
import sys
from typing import Annotated, Any

import typer

import hsmcert
from hsmcert.cli._common import OutputFormat, fail, run, state
from hsmcert.errors import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_USAGE, HsmcertError, UsageError

app = typer.Typer(
    name="hsmcert",
    help="Certificates, CSRs and keyless TLS with private keys that never leave Azure Managed HSM or Key Vault.",
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    add_completion=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)

# Global options may stand anywhere before "--": `hsmcert --output json key list` and
# `hsmcert key list --output json` mean the same.
_GLOBAL_FLAGS = {"--quiet", "-q", "--verbose", "-v"}
_GLOBAL_VALUED = {"--output"}


def _version(value: bool) -> None:
    if value:
        sys.stdout.write(f"hsmcert {hsmcert.__version__}\n")
        raise typer.Exit()


@app.callback()
def _root(
    output: Annotated[
        OutputFormat, typer.Option("--output", help="Result format on stdout.", envvar="HSMCERT_OUTPUT")
    ] = OutputFormat.text,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Only errors on stderr.", envvar="HSMCERT_QUIET")
    ] = False,
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose",
            "-v",
            help="Details, HTTP requests to the HSM (credentials redacted) and tracebacks on stderr.",
            envvar="HSMCERT_VERBOSE",
        ),
    ] = False,
    version: Annotated[
        bool, typer.Option("--version", help="Print the version and exit.", callback=_version, is_eager=True)
    ] = False,
) -> None:
    state.output = output
    state.quiet = quiet
    state.verbose = verbose
    if verbose:
        _log_http_requests()


_HTTP_LOG = "azure.core.pipeline.policies.http_logging_policy"


def _log_http_requests() -> None:
    """Show each HTTP request and response hsmcert makes, as azure-core's HTTP logging policy writes them
    (it replaces the Authorization header and other secrets with REDACTED). Idempotent."""
    import logging

    class StderrNow(logging.Handler):
        """Writes to whatever sys.stderr is when a record comes (the CLI may run several times per process)."""

        def emit(self, record: logging.LogRecord) -> None:
            sys.stderr.write(f"http: {record.getMessage()}\n")

    http_log = logging.getLogger(_HTTP_LOG)
    if not any(type(h).__name__ == "StderrNow" for h in http_log.handlers):
        http_log.addHandler(StderrNow())
    http_log.setLevel(logging.INFO)
    logging.getLogger("azure").setLevel(logging.INFO)


def _register_commands() -> None:
    import hsmcert.cli as package

    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        if info.name.startswith("_") or info.name == "main":
            continue
        module = importlib.import_module(f"hsmcert.cli.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(app)


_register_commands()


def command() -> Any:
    """The click command tree of ``hsmcert``: every option with its environment variables (cli/_env.py) and
    its value completion (cli/_complete.py)."""
    from typer.main import get_command

    from hsmcert.cli._complete import attach
    from hsmcert.cli._env import assign

    root = get_command(app)
    assign(root)
    attach(root)
    return root


def _hoist_global_options(argv: list[str], root: Any) -> list[str]:
    """Move the global options written after a subcommand to the front.

    Only what the command line itself reads as an option moves: the value of a command's own option stays
    with it (``key create --label -q``), and so does everything after ``--`` or after the first argument
    of a command that takes its arguments as they are (``exec curl -v``)."""
    front: list[str] = []
    rest: list[str] = []
    command = root
    valued = _valued_options(root)
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            rest.extend(argv[i:])
            break
        if arg in _GLOBAL_FLAGS:
            front.append(arg)
        elif arg in _GLOBAL_VALUED and i + 1 < len(argv):
            front.extend(argv[i : i + 2])
            i += 1
        elif any(arg.startswith(f"{name}=") for name in _GLOBAL_VALUED):
            front.append(arg)
        elif arg in valued and i + 1 < len(argv):
            rest.extend(argv[i : i + 2])
            i += 1
        elif arg.startswith("-"):
            rest.append(arg)
        elif arg in getattr(command, "commands", {}):
            command = command.commands[arg]
            valued = _valued_options(command)
            rest.append(arg)
        elif command.context_settings.get("allow_interspersed_args", True) is False:
            rest.extend(argv[i:])
            break
        else:
            rest.append(arg)
        i += 1
    return front + rest


def _valued_options(command: Any) -> set[str]:
    """The spellings of ``command``'s options that take a value (``--label``, ``-o``)."""
    return {
        name
        for param in command.params
        if param.param_type_name == "option" and not param.is_flag and not param.count
        for name in param.opts
    }


def _json_requested(args: list[str]) -> bool:
    """Whether --output json was asked for (used when parsing failed before the option was applied)."""
    import os

    for i, arg in enumerate(args):
        if arg == "--":
            break
        if arg == "--output=json" or (arg == "--output" and args[i + 1 : i + 2] == ["json"]):
            return True
    return os.environ.get("HSMCERT_OUTPUT", "").lower() == "json"


def _usage_message(exc: Exception, args: list[str]) -> tuple[str, str]:
    """A click usage error as hsmcert says every error: one sentence, then what to do."""
    ctx = getattr(exc, "ctx", None)
    see = f"see {ctx.command_path if ctx is not None else 'hsmcert'} --help"
    param = getattr(exc, "param", None)
    if type(exc).__name__ == "NoSuchOption":
        maybe = sorted(getattr(exc, "possibilities", None) or [])
        hint = f"Did you mean {' or '.join(maybe)}? S" if maybe else "S"
        return f"No such option {getattr(exc, 'option_name', '')}.", f"{hint}{see[1:]}."
    if param is None:
        text = str(exc.format_message()).strip().replace("\n", " ")  # type: ignore[attr-defined]
        return (text if text.endswith((".", ")")) else text + ".").replace(
            "'", ""
        ), f"Check the spelling; {see}."
    opts = list(getattr(param, "opts", []))
    long_name = next((o for o in opts if o.startswith("--")), None)
    name = long_name or str(getattr(param, "name", "argument")).upper()
    if type(exc).__name__ == "MissingParameter":
        envvar = getattr(param, "envvar", None)
        variable = envvar[0] if isinstance(envvar, list) and envvar else None
        what = f"option {name}" if long_name else f"argument {name}"
        give = f"Give {name}" + (f" (or set {variable})" if variable else "")
        return f"Missing {what}.", f"{give}; {see}."
    reason = str(getattr(exc, "message", "") or "").strip().removeprefix("Value error, ")
    envvar = getattr(param, "envvar", None) or []
    variable = next((v for v in envvar if os.environ.get(v)), None) if not isinstance(envvar, str) else None
    given = any(a in opts or a.startswith(f"{long_name}=") for a in args)
    if variable and not given:
        name = f"{name} (from {variable})"
    return f"Invalid value for {name}: {reason.rstrip('.')}.", f"{see[:1].upper()}{see[1:]}."


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; exit with the documented code. Expected failures print one line, never a traceback.

    Each call is one run with a state of its own (global options, the session), gone when it returns."""
    import logging

    _never_fail_to_print()
    root = command()
    args = _hoist_global_options(list(sys.argv[1:] if argv is None else argv), root)
    # --verbose turns the SDK's HTTP log on for its run only: the next run in this process starts quiet.
    loggers = [logging.getLogger(name) for name in ("azure", _HTTP_LOG)]
    saved = [(logger.level, list(logger.handlers)) for logger in loggers]
    try:
        with run():
            _main(root, args)
    finally:
        for logger, (level, handlers) in zip(loggers, saved, strict=True):
            logger.setLevel(level)
            logger.handlers[:] = handlers


def _never_fail_to_print() -> None:
    """Text the output's encoding cannot carry (a name with an accent on an ASCII terminal, a lone surrogate
    from a server's JSON or from an argument that was not UTF-8) is written as a backslash escape instead
    of ending the command with UnicodeEncodeError."""
    import io

    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="backslashreplace")


def _refuse_nul(args: list[str]) -> None:
    """No option takes a NUL byte (no path, file or URL can hold one): an argument with one, which only an
    in-process caller can pass, is refused before any option is read."""
    for position, arg in enumerate(args, 1):
        if "\x00" in arg:
            shown = arg.split("\x00", 1)[0][:40]
            raise UsageError(
                f"Argument {position} ({shown!r}...) contains a NUL byte.", "No option takes one."
            )


def _main(root: Any, args: list[str]) -> None:
    try:
        _refuse_nul(args)
        code = root.main(args=args, prog_name="hsmcert", standalone_mode=False)
    except HsmcertError as exc:
        if state.verbose:
            import traceback

            traceback.print_exc()
        facts = {
            name: getattr(exc, attr)
            for name, attr in (("status", "status"), ("service_code", "code"), ("retry_after", "retry_after"))
            if getattr(exc, attr, None) not in (None, "")
        }
        fail(exc.message, exc.remedy, exc.exit_code, retryable=bool(exc.transient), facts=facts)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        fail("Interrupted.", None, EXIT_INTERRUPTED, retryable=True)
        sys.exit(EXIT_INTERRUPTED)
    except Exception as exc:  # click's usage errors and aborts, without importing click at start-up
        exit_code = getattr(exc, "exit_code", None)
        if type(exc).__name__ == "NoArgsIsHelpError":
            exc.show()  # type: ignore[attr-defined]
            sys.exit(EXIT_USAGE)
        if callable(getattr(exc, "format_message", None)) and isinstance(exit_code, int):
            if _json_requested(args):
                state.output = OutputFormat.json
            message, remedy = _usage_message(exc, args)
            fail(message, remedy, exit_code, retryable=False)
            sys.exit(exit_code)
        if type(exc).__name__ == "Abort":
            fail("Aborted.", None, EXIT_FAILURE, retryable=False)
            sys.exit(EXIT_FAILURE)
        if state.verbose:
            raise
        fail(
            f"Unexpected error: {type(exc).__name__}: {exc}",
            "This is a bug in hsmcert; run with --verbose for details.",
            EXIT_FAILURE,
            retryable=False,
        )
        sys.exit(EXIT_FAILURE)
    sys.exit(code if isinstance(code, int) else 0)


__all__ = ["EXIT_USAGE", "app", "main"]
