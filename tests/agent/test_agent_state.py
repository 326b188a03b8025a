"""Requests for ever new key and service names do not make the agent, or the HSM side, keep more state."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from hsmcert.agent.client import AgentError
from hsmcert.agent.protocol import Status


def test_pubkey_for_40_new_service_names_creates_no_emulator_service(
    agent_factory: Any, emulator: Any
) -> None:
    before = set(emulator.running().services)
    agent = agent_factory()
    with agent.client() as client:
        for n in range(40):
            with pytest.raises(AgentError) as caught:
                client.pubkey(f"managedhsm:probe{n:02d}:k")
            assert caught.value.status in (Status.NOT_FOUND, Status.BAD_REQUEST), caught.value
    assert set(emulator.running().services) == before
    assert agent.proc is not None and agent.proc.poll() is None


SCRIPT = """
import json, sys
from hsmcert.agent.backend import MAX_KEYS, Backend
from hsmcert.azure import clients

backend = Backend(deadline=2)
errors = set()
for n in range(int(sys.argv[1])):
    for version in (None, "0" * 31 + str(n % 10)):
        try:
            backend.pubkey(None, backend.parse(f"managedhsm:hsm{n}:k{n}", version))
        except Exception as exc:
            errors.add(type(exc).__name__)
print(json.dumps({
    "errors": sorted(errors),
    "services": len(backend.session._clients),
    "max_services": clients.MAX_SERVICES,
    "parsed": len(backend._parsed),
    "keys": len(backend._keys) + len(backend._latest),
    "memory": len(backend.session.key_cache._memory),
}))
"""


def test_service_clients_and_references_for_new_names_are_bounded(emulator: Any, tmp_path: Path) -> None:
    """100 service names (as a client without an allow rule may send), each at its own endpoint URL: each
    one's SDK clients, connection pool and challenge are built, then the least recently used are dropped
    beyond the limit. (The endpoints are paths on the emulator, which refuses the made-up token.)"""
    names = 100
    base = emulator.url()
    config = tmp_path / "config.toml"
    config.write_text(
        "".join(
            f'[endpoints."managedhsm:hsm{n}"]\nurl = "{base}/hsm{n}"\nca_bundle = "{emulator.ca}"\n'
            for n in range(names)
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HSMCERT_", "AZURE_", "IDENTITY_"))}
    env.update(
        HSMCERT_CONFIG=str(config),
        HSMCERT_ACCESS_TOKEN="not-a-real-token",
        HSMCERT_CACHE_DIR=str(tmp_path / "cache"),
    )
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(names)], capture_output=True, text=True, timeout=300, env=env
    )
    assert result.returncode == 0, result.stderr
    state = json.loads(result.stdout)
    assert state["errors"] == ["PermissionDeniedError"], state
    assert 0 < state["services"] <= state["max_services"] < names, state
    assert state["parsed"] == 2 * names  # bounded at 4096, far above this test's count
