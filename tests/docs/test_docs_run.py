"""The examples of the README and docs/ run as written against the local emulator, so a reader can copy them.

The ```sh and ```python blocks of each page below run in order, as one bash script with ``set -e``, in an
empty directory with a home of its own (so `hsmcert emulator start` makes a fresh emulator) and hsmcert on
PATH. A command whose comment says ``# exit N`` must exit with N. A block right after an
``<!-- not run: reason -->`` line is left out (Azure-only commands, service managers).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Not here: keyless-tls-nginx.md (the demo, which tests/nginx/test_demo.py runs, then an Azure VM),
# agent-protocol.md, configuration.md and cli.md (reference pages without shell examples).
PAGES = [
    "README.md",
    *(
        f"docs/{name}"
        for name in (
            "csr-and-certificates.md",
            "keys.md",
            "grant.md",
            "emulator.md",
            "authentication.md",
            "agent.md",
            "openssl-provider.md",
            "cli.md",
            "ci.md",
            "kv-certificates.md",
            "lifecycle.md",
            "acme.md",
        )
    ),
]
_BLOCK = re.compile(r"(?P<skip><!-- not run:[^>]*-->\s*\n)?```(?P<lang>sh|python)\n(?P<body>.*?)```", re.S)
_EXPECTS_EXIT = re.compile(r"^(?P<command>[^#\n]*?)\s+# exit (?P<code>\d+)\b.*$", re.M)


def script_of(page: Path) -> str:
    """The page's examples as one bash script."""
    parts = []
    for block in _BLOCK.finditer(page.read_text()):
        if block.group("skip"):
            continue
        body = block.group("body")
        if block.group("lang") == "python":
            parts.append(f"python3 - <<'HSMCERT_DOC_PY'\n{body}HSMCERT_DOC_PY\n")
            continue
        parts.append(_EXPECTS_EXIT.sub(_expect, body))
    return "\n".join(parts)


def _expect(match: re.Match[str]) -> str:
    command, code = match.group("command").strip(), match.group("code")
    quoted = shlex.quote(f"expected exit {code}: {command}")
    return f'rc=0; {command} || rc=$?; [ "$rc" = {code} ] || {{ echo {quoted} "(got $rc)" >&2; exit 1; }}'


@pytest.mark.e2e
@pytest.mark.parametrize("page", PAGES)
def test_the_page_runs_as_written(page: str, tmp_path: Path) -> None:
    script = script_of(ROOT / page)
    assert "hsmcert" in script, f"{page} has no examples"
    home = tmp_path / "home"
    home.mkdir()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("HSMCERT_", "AZURE_", "IDENTITY_", "MSI_", "XDG_"))
    }
    env.update(HOME=str(home), PATH=f"{Path(sys.executable).parent}:{env.get('PATH', '')}")
    prologue = (
        "set -euo pipefail\n"
        "trap 'kill $(jobs -p) 2>/dev/null || true; hsmcert emulator stop >/dev/null 2>&1 || true' EXIT\n"
    )
    try:
        run = subprocess.run(
            ["bash", "-c", prologue + script],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    finally:  # whatever the script did, its emulator ends with the test
        from hsmcert.emulator import control

        for data_dir in home.glob(".local/share/hsmcert/emulator*"):
            control.stop(data_dir)
    assert run.returncode == 0, f"{page} failed:\n{run.stdout[-2000:]}\n{run.stderr[-3000:]}"
