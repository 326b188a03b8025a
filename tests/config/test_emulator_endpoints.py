"""The emulator publishes plain endpoint configuration; resolving a reference reads it and changes nothing."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest

from hsmcert.config import EMULATOR_ENDPOINTS, Endpoint, EndpointResolver
from hsmcert.errors import NotFoundError, UnreachableError
from hsmcert.keyref import Kind
from tests.fixtures.emulator import start_emulator
from tests.hsm.conftest import run_cli, unique

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


def resolve_service(kind: Kind, name: str, environ: dict[str, str] | None = None) -> Endpoint:
    """The endpoint of a service by a resolver of ``environ`` (default: this process's, as now)."""
    return EndpointResolver(environ=dict(os.environ) if environ is None else environ).service(kind, name)


def _served(emulator: Any) -> set[str]:
    from hsmcert.emulator.control import status

    return {f"{s['kind']}:{s['name']}" for s in status(emulator.data_dir)["services"]}


def test_resolving_names_the_emulator_does_not_serve_creates_no_service(emulator: Any) -> None:
    before = _served(emulator)
    names = [unique("nohsm")[:24] for _ in range(40)]
    for name in names:
        with pytest.raises(NotFoundError, match="has no Managed HSM named"):
            resolve_service("managedhsm", name)
    result = run_cli("key", "show", "--key", f"managedhsm:{names[0]}:k")
    assert result.code == 3, result.err
    assert f"hsmcert emulator start --data {emulator.data_dir} --hsm {names[0]}" in result.err
    assert "Traceback" not in result.err
    assert _served(emulator) == before


def test_emulator_start_with_hsm_adds_a_service_that_references_then_reach(emulator: Any) -> None:
    name = unique("added")[:24]
    vault = unique("vlt")[:24]
    result = run_cli("emulator", "start", "--data", str(emulator.data_dir), "--hsm", name, "--vault", vault)
    assert result.code == 0, result.err
    assert {f"managedhsm:{name}", f"vault:{vault}"} <= _served(emulator)
    got = resolve_service("managedhsm", name)
    assert got.source == "emulator" and got.ca_bundle == str(emulator.ca)
    created = run_cli("key", "create", "--key", f"managedhsm:{name}:k1", "--kty", "EC")
    assert created.code == 0, created.err


def test_a_bad_service_name_for_emulator_start_is_one_sentence(emulator: Any) -> None:
    result = run_cli("emulator", "start", "--data", str(emulator.data_dir), "--hsm", "evil.example/x")
    assert result.code == 2 and "not a valid HSM or vault name" in result.err


@pytest.mark.process
def test_the_published_file_matches_the_emulator_and_goes_when_it_stops(
    tmp_path: Path,
) -> None:
    own = start_emulator(tmp_path / "emu")
    try:
        published = tomllib.loads((own.data_dir / EMULATOR_ENDPOINTS).read_text())
        running = own.running()
        assert published["login"] == {"url": running.login_url, "ca_bundle": str(own.ca)}
        assert published["endpoints"] == {
            key: {"url": f"https://127.0.0.1:{port}", "ca_bundle": str(own.ca)}
            for key, port in running.services.items()
        }
        env = {"HSMCERT_EMULATOR": str(own.data_dir)}
        assert resolve_service("vault", "local-vault", env).url == running.url("vault", "local-vault")
    finally:
        own.stop()
    assert not (own.data_dir / EMULATOR_ENDPOINTS).exists()
    with pytest.raises(UnreachableError, match="No emulator runs from"):
        resolve_service("managedhsm", "local-hsm", env)
