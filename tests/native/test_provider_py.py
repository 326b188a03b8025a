"""hsmcert.provider and `hsmcert provider ...`: paths, the openssl.cnf, PEM references, building from sources."""

from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from hsmcert.errors import UsageError
from hsmcert.provider import openssl_cnf, pem_ref


def _hsmcert(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hsmcert", *args], capture_output=True, text=True, timeout=120, env=env
    )


def test_openssl_cnf_activates_default_first_then_hsmcert(tmp_path: Path) -> None:
    text = openssl_cnf(tmp_path / "a.sock", timeout_ms=1500, module="/opt/hsmcert.so")
    section = text.split("[provider_sect]")[1]
    assert section.index("default = default_sect") < section.index("hsmcert = hsmcert_sect")
    assert f"socket = {tmp_path / 'a.sock'}" in text and "timeout_ms = 1500" in text
    assert "module = /opt/hsmcert.so" in text
    assert (
        "default"
        not in openssl_cnf("/a.sock", module="/m.so", include_default=False).split("[provider_sect]")[1]
    )
    with pytest.raises(UsageError):
        openssl_cnf("/a\nb.sock", module="/m.so")
    with pytest.raises(UsageError):
        openssl_cnf("/a.sock", module="/m.so", timeout_ms=0)


def test_pem_ref_wraps_the_canonical_reference() -> None:
    pem = pem_ref("https://local-hsm.managedhsm.azure.net/keys/tls/0123456789abcdef0123456789abcdef").decode()
    lines = pem.strip().splitlines()
    assert (
        lines[0] == "-----BEGIN HSMCERT KEY REFERENCE-----"
        and lines[-1] == "-----END HSMCERT KEY REFERENCE-----"
    )
    der = base64.b64decode("".join(lines[1:-1]))
    assert der[0] == 0x30 and b"hsmcert key reference v1" in der
    assert der.endswith(b"managedhsm:local-hsm:tls?version=0123456789abcdef0123456789abcdef")
    with pytest.raises(UsageError):
        pem_ref("not-a-reference")


def test_cli_pem_ref_openssl_cnf_and_path(native: Any, tmp_path: Path) -> None:
    out = tmp_path / "k.pem"
    assert _hsmcert("provider", "pem-ref", "--key", "managedhsm:myhsm:key1", "-o", str(out)).returncode == 0
    assert out.read_bytes() == pem_ref("managedhsm:myhsm:key1")
    again = _hsmcert("provider", "pem-ref", "--key", "managedhsm:myhsm:key1", "-o", str(out))
    assert again.returncode != 0 and "Traceback" not in again.stderr
    bad = _hsmcert("provider", "pem-ref", "--key", "bogus")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and bad.stdout == ""
    cnf = _hsmcert("provider", "openssl-cnf", "--socket", "/run/x.sock", "--timeout-ms", "2500")
    assert cnf.returncode == 0 and "socket = /run/x.sock" in cnf.stdout and "timeout_ms = 2500" in cnf.stdout
    path = _hsmcert("--output", "json", "provider", "path")
    assert path.returncode == 0 and str(native.path) in path.stdout


def test_build_from_sources_into_a_cache_dir_and_load_it(native: Any, tmp_path: Path) -> None:
    import os

    env = dict(os.environ)
    env["HSMCERT_PROVIDER_DIR"] = str(tmp_path / "cache")
    result = _hsmcert("provider", "build", env=env)
    assert result.returncode == 0, result.stderr
    built = tmp_path / "cache" / "hsmcert.so"
    assert built.is_file() and str(built) in result.stdout
    conf = tmp_path / "o.cnf"
    conf.write_text(openssl_cnf(tmp_path / "none.sock", module=built))
    listed = subprocess.run(
        ["openssl", "list", "-providers"], env={"PATH": "/usr/bin:/bin", "OPENSSL_CONF": str(conf)},
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert "hsmcert" in listed.stdout and "status: active" in listed.stdout
