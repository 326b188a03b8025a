"""The systemd timer that runs ``hsmcert renew --all``: ``hsmcert-renew.service`` and ``hsmcert-renew.timer``.

Rendered from ``templates/systemd/`` like the agent's units (every value checked and quoted for systemd by
:mod:`hsmcert.syntax`) and written as managed files (:mod:`hsmcert.generated`: a unit you edited is not
replaced without ``force``). The timer fires on its calendar (default ``daily``) at a random moment within
``RandomizedDelaySec`` (default ``1h``), and ``Persistent=true`` catches up a run missed while the machine
was off. The service is a oneshot that runs ``hsmcert renew --all``; its output goes to the journal.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from hsmcert.generated import ManagedFile

SERVICE = "hsmcert-renew.service"
TIMER = "hsmcert-renew.timer"
_SOURCE = "hsmcert cert timer"


def renew_command(extra: Sequence[str] = ()) -> list[str]:
    """The service's command: this Python running ``hsmcert renew --all`` (plus ``extra`` options)."""
    return [sys.executable, "-m", "hsmcert", "renew", "--all", *extra]


def timer_files(
    out_dir: Path,
    *,
    on_calendar: str = "daily",
    randomized_delay: str = "1h",
    environment: Mapping[str, str] | None = None,
    extra: Sequence[str] = (),
) -> list[ManagedFile]:
    """The two units, for ``out_dir`` (e.g. /etc/systemd/system)."""
    from hsmcert.templates import render

    env = sorted((environment or {}).items())
    service = render("systemd/hsmcert-renew.service.j2", environment=env, exec_start=renew_command(extra))
    timer = render(
        "systemd/hsmcert-renew.timer.j2", on_calendar=on_calendar, randomized_delay=randomized_delay
    )
    return [
        ManagedFile(out_dir / SERVICE, service, "systemd service unit", _SOURCE),
        ManagedFile(out_dir / TIMER, timer, "systemd timer unit", _SOURCE),
    ]


__all__ = ["SERVICE", "TIMER", "renew_command", "timer_files"]
