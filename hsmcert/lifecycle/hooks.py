"""Deploy hooks: commands run after a certificate was renewed, told by environment variables what changed.

Each hook is a shell command (``sh -c``), run after the new files are in place (and, for an hsmcert nginx
site, after nginx reloaded), with at most :data:`HOOK_TIMEOUT` seconds. Its environment is hsmcert's own
without the variables that carry a credential (the rule of ``hsmcert exec``,
:func:`hsmcert.agent.run.child_environment`), plus:

=================================  ==================================================================
``HSMCERT_RENEWED_NAME``           the managed certificate's name
``HSMCERT_RENEWED_CERT``           the new leaf's file (empty when the certificate has none)
``HSMCERT_RENEWED_FULLCHAIN``      the new leaf + chain file (empty when none)
``HSMCERT_RENEWED_CHAIN``          the new chain file (empty when none)
``HSMCERT_RENEWED_KEY``            the HSM key reference, with the version the certificate is for
``HSMCERT_RENEWED_SERIAL``         the new certificate's serial number (hexadecimal)
``HSMCERT_RENEWED_NOT_AFTER``      when it expires (RFC 3339, UTC)
``HSMCERT_RENEWED_PREVIOUS_CERT``  the previous leaf, kept for rollback (likewise ``_FULLCHAIN``, ``_CHAIN``)
=================================  ==================================================================

A hook that exits non-zero (or runs too long) makes the renewal count as failed; the new certificate stays.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass

HOOK_TIMEOUT = 300.0
PREFIX = "HSMCERT_RENEWED_"
ROLES = ("cert", "fullchain", "chain")


@dataclass(frozen=True)
class HookResult:
    command: str
    exit_code: int | None
    """None when it did not finish in time."""
    output: str
    """The end of what it printed (stdout and stderr)."""

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def to_json(self) -> dict[str, object]:
        return {"command": self.command, "exit_code": self.exit_code, "ok": self.ok, "output": self.output}


def hook_variables(
    name: str,
    files: Mapping[str, str],
    previous: Mapping[str, str],
    *,
    key: str,
    serial: str,
    not_after: str,
) -> dict[str, str]:
    """The ``HSMCERT_RENEWED_*`` variables (``files``: role -> path; ``previous``: path -> its copy)."""
    variables = {
        f"{PREFIX}NAME": name,
        f"{PREFIX}KEY": key,
        f"{PREFIX}SERIAL": serial,
        f"{PREFIX}NOT_AFTER": not_after,
    }
    for role in ROLES:
        path = files.get(role, "")
        variables[f"{PREFIX}{role.upper()}"] = path
        if path in previous:
            variables[f"{PREFIX}PREVIOUS_{role.upper()}"] = previous[path]
    return variables


def run_hook(command: str, variables: Mapping[str, str], *, timeout: float = HOOK_TIMEOUT) -> HookResult:
    """Run one hook (``sh -c``) without credentials in its environment; never raises for its failure."""
    from hsmcert.agent.run import child_environment

    env = child_environment(os.environ, variables)
    try:
        done = subprocess.run(
            ["/bin/sh", "-c", command],
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        output = (exc.stdout or "") if isinstance(exc.stdout, str) else ""
        return HookResult(command, None, output[-2000:] + f"\n(stopped after {timeout:.0f} s)")
    return HookResult(command, done.returncode, (done.stdout + done.stderr)[-2000:])


__all__ = ["HOOK_TIMEOUT", "HookResult", "hook_variables", "run_hook"]
