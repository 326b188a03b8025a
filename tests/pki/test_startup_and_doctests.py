"""The PKI modules' docstring examples run; `hsmcert --help` loads neither cryptography nor azure."""

from __future__ import annotations

import doctest
import importlib
import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    "name",
    ["hsmcert.pki.subject", "hsmcert.pki.san", "hsmcert.pki.profiles", "hsmcert.pki.certificate"],
)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.process
def test_help_loads_no_cryptography_or_azure() -> None:
    code = (
        "import sys\n"
        "from hsmcert.cli.main import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "bad = sorted({m.split('.')[0] for m in sys.modules if m.split('.')[0] in ('azure', 'cryptography')})\n"
        "assert 'hsmcert.cli.pki' in sys.modules\n"
        "sys.stderr.write(repr(bad))\nsys.exit(1 if bad else 0)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "csr" in done.stdout and "selfsign" in done.stdout
