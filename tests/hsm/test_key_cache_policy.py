"""The public-key cache's settings are read once, when a Session (or the agent) is built, and a TTL that is
not a number of seconds is refused with one sentence naming the variable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.hsm.conftest import run_cli, unique

BAD_TTLS = ["nan", "inf", "-1", "-inf", "soon"]


@pytest.mark.parametrize("ttl", BAD_TTLS)
def test_a_ttl_that_is_not_seconds_is_refused_by_the_cli(
    emulator: Any, ttl: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HSMCERT_KEY_CACHE_TTL", ttl)
    result = run_cli("key", "show", "--key", "managedhsm:local-hsm:any-key")
    assert result.code == 2, result.out + result.err
    assert "HSMCERT_KEY_CACHE_TTL" in result.err and "Traceback" not in result.err
    assert result.err.count("\n") <= 2, result.err  # the sentence and its remedy


@pytest.mark.process
def test_a_ttl_that_is_not_seconds_stops_the_agent_before_it_serves(tmp_path: Path) -> None:
    env = {**os.environ, "HSMCERT_KEY_CACHE_TTL": "nan"}
    result = subprocess.run(
        [sys.executable, "-m", "hsmcert", "agent", "--socket", str(tmp_path / "agent.sock")],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "HSMCERT_KEY_CACHE_TTL" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "agent.sock").exists()


@pytest.mark.parametrize("ttl", ["0", "300", "1.5", " 60 "])
def test_a_ttl_of_seconds_is_taken(ttl: str) -> None:
    from hsmcert.azure.keycache import CachePolicy

    assert CachePolicy.from_environment({"HSMCERT_KEY_CACHE_TTL": ttl}).ttl == float(ttl)


def test_the_agent_caches_where_its_session_was_told_when_it_was_built(
    emulator: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Variables changed after the agent's session is built change nothing: public keys and the remembered
    challenge go to the cache directory it was built with, and caching stays on."""
    from hsmcert.agent.backend import Backend, agent_transport
    from hsmcert.session import Session, default_session

    ref = f"managedhsm:local-hsm:{unique('policy')}"
    version = default_session().keys.create(ref, "EC").ref.version
    built_with, later = tmp_path / "built", tmp_path / "later"
    env = {**os.environ, "HSMCERT_CACHE_DIR": str(built_with), "HSMCERT_KEY_CACHE": "on"}
    with Session(environ=env, transport=agent_transport(pool_size=1, deadline=30)) as session:
        backend = Backend(session, deadline=30)
        monkeypatch.setenv("HSMCERT_CACHE_DIR", str(later))
        monkeypatch.setenv("HSMCERT_KEY_CACHE", "off")
        key = backend.pubkey(None, backend.parse(ref, version))
        backend.sign(None, key.ref, "ES256", bytes(32))
    stored = {p.name for p in (built_with / "public-keys").iterdir()}
    assert "challenges.json" in stored and len(stored) >= 2, stored
    assert not later.exists()
