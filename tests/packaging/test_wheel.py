"""What a user gets from `pip install hsmcert`: the wheel carries the templates and the provider's sources,
and an installed hsmcert (no checkout next to it) renders nginx configs and builds its provider."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, str]]]:
    """The wheel built from this checkout, installed (without dependencies: the venv has them) into a
    directory of its own that comes first on PYTHONPATH."""
    work = tmp_path_factory.mktemp("wheel")
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(work / "dist"), str(ROOT)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = (work / "dist").glob("hsmcert-*.whl")
    target = work / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target), str(wheel)],
        check=True,
    )
    env = {**os.environ, "PYTHONPATH": str(target), "XDG_CACHE_HOME": str(work / "cache")}
    built = _hsmcert(env, "provider", "build", cwd=work)  # what a pip user runs once
    assert built.returncode == 0, built.stderr
    yield wheel, env


def _hsmcert(env: dict[str, str], *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hsmcert", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        check=False,
    )


def test_the_wheel_carries_templates_and_provider_sources(installed: tuple[Path, dict[str, str]]) -> None:
    wheel, _ = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in (
        "hsmcert/_data/templates/nginx/server.conf.j2",
        "hsmcert/_data/templates/systemd/hsmcert-agent.service.j2",
        "hsmcert/_data/native/Makefile",
        "hsmcert/_data/native/src/signature.c",
    ):
        assert name in names, name
    assert not [n for n in names if n.endswith((".so", ".o", ".pyc"))]


def test_installed_hsmcert_built_its_provider_into_the_user_cache(
    installed: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    _, env = installed
    where = subprocess.run(
        [sys.executable, "-c", "import hsmcert.package_data as s; print(s.PACKAGE_DIR, s.CHECKOUT)"],
        capture_output=True, text=True, env=env, cwd=tmp_path, check=True,
    ).stdout.split()  # fmt: skip
    assert where[0].startswith(env["PYTHONPATH"]) and where[1] == "None", where
    path = _hsmcert(env, "provider", "path", cwd=tmp_path)
    assert path.returncode == 0 and path.stdout.strip().startswith(env["XDG_CACHE_HOME"]), path
    module = Path(path.stdout.strip())
    listed = subprocess.run(
        ["openssl", "list", "-providers", "-provider-path", str(module.parent), "-provider", "hsmcert"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert listed.returncode == 0 and "hsmcert" in listed.stdout, listed.stderr


def test_installed_hsmcert_renders_nginx_config(
    installed: tuple[Path, dict[str, str]], emulator: Any, tmp_path: Path
) -> None:
    from uuid import uuid4

    from hsmcert.session import default_session

    env = {**os.environ, **{k: installed[1][k] for k in ("PYTHONPATH", "XDG_CACHE_HOME")}}  # + the emulator's
    ref = f"managedhsm:local-hsm:wheel-{uuid4().hex[:8]}"
    default_session().keys.create(ref, "EC", curve="P-256")
    cert = tmp_path / "www.pem"
    made = _hsmcert(env, "selfsign", "--key", ref, "--subj", "/CN=www.example", "-o", str(cert), cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    out = tmp_path / "conf"
    rendered = _hsmcert(
        env, "nginx", "--key", ref, "--cert", str(cert), "--server-name", "www.example", "-o", str(out),
        cwd=tmp_path,
    )  # fmt: skip
    assert rendered.returncode == 0, rendered.stderr
    assert (out / "www.example.conf").read_text().count("ssl_certificate_key") == 1
    cnf = (out / "openssl.cnf").read_text()
    assert "Managed by hsmcert" in cnf and f"{env['XDG_CACHE_HOME']}/hsmcert/provider/hsmcert.so" in cnf
