"""Every time hsmcert prints is RFC 3339 in UTC: command output (text and JSON), the emulator's log lines and
its login errors. One regular expression matches them all."""

from __future__ import annotations

import json
import os
import re
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest

from tests.hsm.conftest import run_cli

RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3})?Z")
LOOKS_LIKE_A_TIME = re.compile(r"\d{4}-\d\d-\d\d[^\s\"',;)]*(?: \d\d:\d\d[^\s\"',;)]*)?")
"""A date, with whatever time follows it (also after a space): what a reader would take for a time."""


def times_in(text: str) -> list[str]:
    """The times ``text`` shows, each checked to be RFC 3339."""
    found = LOOKS_LIKE_A_TIME.findall(text)
    assert all(RFC3339.fullmatch(t) for t in found), found
    return found


def test_command_output_shows_rfc3339_times(emulator: Any, tmp_path: Path) -> None:
    ref = f"managedhsm:local-hsm:times-{uuid4().hex[:10]}"
    cert = tmp_path / "c.pem"
    assert run_cli("key", "create", "--key", ref, "--kty", "EC").code == 0
    assert run_cli("selfsign", "--key", ref, "--subj", "/CN=t.example", "-o", str(cert)).code == 0
    for args, least in (
        (["inspect", str(cert)], 2),
        (["--output", "json", "inspect", str(cert)], 2),
        (["key", "show", "--key", ref], 1),
        (["whoami"], 1),
    ):
        result = run_cli(*args)
        assert result.code == 0, (args, result.err)
        assert len(times_in(result.out + result.err)) >= least, (args, result.out)


def test_the_emulator_logs_rfc3339_times(emulator: Any) -> None:
    log = (Path(emulator.data_dir) / "emulator.log").read_text()
    lines = [line for line in log.splitlines() if "emulator ready" in line]
    assert lines, log
    for line in lines:
        assert RFC3339.fullmatch(line.split(" ", 1)[0]), line
        times_in(line)


@pytest.mark.process
def test_emulator_start_in_the_foreground_logs_rfc3339_times(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HSMCERT_")}
    command = [
        sys.executable,
        "-m",
        "hsmcert",
        "emulator",
        "start",
        "--foreground",
        "--data",
        str(tmp_path / "e"),
    ]
    proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, env=env)  # fmt: skip
    try:
        assert proc.stderr is not None
        lines = []
        for line in proc.stderr:  # ends when the process does; it is stopped below once it serves
            lines.append(line)
            if "emulator ready" in line:
                break
    finally:
        subprocess.run([sys.executable, "-m", "hsmcert", "emulator", "stop", "--data", str(tmp_path / "e")],
                       capture_output=True, timeout=60, env=env)  # fmt: skip
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)
    ready = [line for line in lines if "emulator ready" in line]
    assert ready, "".join(lines)
    assert RFC3339.fullmatch(ready[0].split(" ", 1)[0]), ready[0]
    times_in("".join(lines))


def test_the_emulator_login_error_has_an_rfc3339_timestamp(emulator: Any) -> None:
    login_url = emulator.running().login_url
    assert login_url
    request = urllib.request.Request(
        f"{login_url}/00000000-0000-0000-0000-000000000000/oauth2/v2.0/token",
        data=b"grant_type=client_credentials&client_id=nobody&client_secret=wrong&scope=x%2F.default",
        method="POST",
    )
    context = ssl.create_default_context(cafile=str(emulator.ca))
    try:
        urllib.request.urlopen(request, context=context, timeout=30)
    except urllib.error.HTTPError as exc:
        body = json.loads(exc.read())
    else:
        raise AssertionError("the emulator accepted a wrong client secret")
    assert RFC3339.fullmatch(body["timestamp"]), body
