"""The environment variable of every option, made from the option's name by one rule.

``HSMCERT_<COMMAND>_<OPTION>``: the words of the command (``key create``) and the option's first long name
(``--ca-bundle``), upper-cased, with ``-`` and spaces as ``_``: ``HSMCERT_KEY_CREATE_CA_BUNDLE``. Options
of ``hsmcert`` itself have no command part (``HSMCERT_OUTPUT``). An option may also declare a shorter,
command-independent name (``HSMCERT_KEY``, ``HSMCERT_ENDPOINT``, ...): it is read after the rule's name.

Options that act at once and end the command (``--help``, ``--version``, ``--install-completion``,
``--show-completion``) read no variable: a variable left in a pipeline's environment must never turn every
command into something else.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

PREFIX = "HSMCERT"


@dataclass(frozen=True)
class OptionEnv:
    """One option and the variables it reads, in order."""

    command: str
    """The command's words after ``hsmcert`` (empty for hsmcert's own options)."""
    option: str
    variables: tuple[str, ...]


def variable_name(command: str, option: str) -> str:
    """The rule: ``variable_name("key create", "--ca-bundle") == "HSMCERT_KEY_CREATE_CA_BUNDLE"``."""
    words = [PREFIX, *command.split(), option.lstrip("-")]
    return "_".join(w.upper().replace("-", "_") for w in words if w)


def _reads_environment(param: Any) -> bool:
    return (
        type(param).__name__.endswith("Option")
        and not param.is_eager
        and bool(param.expose_value)
        and any(o.startswith("--") for o in param.opts)
    )


def _walk(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    yield path, command
    for name, sub in sorted((getattr(command, "commands", None) or {}).items()):
        yield from _walk(sub, (*path, name))


def assign(root: Any) -> None:
    """Give every option of the command tree ``root`` (a click command) its variables; eager options none."""
    for path, command in _walk(root):
        for param in command.params:
            if type(param).__name__.endswith("Option") and (param.is_eager or not param.expose_value):
                param.envvar = None
                param.allow_from_autoenv = False
                continue
            if not _reads_environment(param):
                continue
            declared = param.envvar
            aliases = [declared] if isinstance(declared, str) else list(declared or [])
            long_name = next(o for o in param.opts if o.startswith("--"))
            own = variable_name(" ".join(path), long_name)
            param.envvar = [own, *(a for a in aliases if a != own)]
            param.allow_from_autoenv = False
            param.show_envvar = True


def table(root: Any) -> list[OptionEnv]:
    """Every option of ``root`` (after :func:`assign`) and its variables, in command order."""
    rows = []
    for path, command in _walk(root):
        for param in command.params:
            if _reads_environment(param):
                long_name = next(o for o in param.opts if o.startswith("--"))
                rows.append(OptionEnv(" ".join(path), long_name, tuple(param.envvar)))
    return rows
