"""hsmcert cert timer: the units systemd accepts, values that cannot become directives."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from hsmcert.config import config_path
from tests.hsm.conftest import run_cli


def test_the_units_run_renew_all_daily_with_a_random_delay(tmp_path: Path) -> None:
    done = run_cli("cert", "timer", "-o", str(tmp_path))
    assert done.code == 0, done.err
    timer = (tmp_path / "hsmcert-renew.timer").read_text()
    service = (tmp_path / "hsmcert-renew.service").read_text()
    for line in ("OnCalendar=daily", "RandomizedDelaySec=1h", "Persistent=true", "WantedBy=timers.target"):
        assert f"\n{line}\n" in timer
    assert "Type=oneshot" in service and "-m hsmcert renew --all\n" in service
    # the service reads the certificates.toml this run reads, wherever XDG_CONFIG_HOME put it
    assert f"Environment=HSMCERT_CONFIG={config_path().absolute()}\n" in service, service
    again = run_cli("cert", "timer", "-o", str(tmp_path))  # unchanged: nothing to refuse
    assert again.code == 0
    (tmp_path / "hsmcert-renew.timer").write_text(timer.replace("daily", "weekly"))
    edited = run_cli("cert", "timer", "-o", str(tmp_path))
    assert edited.code == 7 and "edited" in edited.err


@pytest.mark.process
def test_systemd_accepts_the_units(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is part of systemd (Debian: installed with it)"
    assert (
        run_cli(
            "cert",
            "timer",
            "-o",
            str(tmp_path),
            "--on-calendar",
            "Mon *-*-* 03:00",
            "--randomized-delay",
            "2h 30min",
        ).code
        == 0
    )
    done = subprocess.run(
        [analyze, "verify", "./hsmcert-renew.timer", "./hsmcert-renew.service"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--on-calendar", "daily\nExecStart=/bin/sh"),
        ("--on-calendar", "daily;rm"),
        ("--randomized-delay", "1h\n[Service]"),
    ],
)
def test_values_that_are_not_calendar_or_time_span_are_refused(
    tmp_path: Path, option: str, value: str
) -> None:
    done = run_cli("cert", "timer", "-o", str(tmp_path), option, value)
    assert done.code == 2 and not list(tmp_path.iterdir())
