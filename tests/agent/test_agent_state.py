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


def _connections_to(port: int) -> int:
    """Established TCP connections of this process to 127.0.0.1:``port`` (its open sockets there)."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    count = 0
    for line in Path("/proc/self/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        remote, state, inode = fields[2], fields[3], fields[9]
        if state == "01" and inode in inodes and remote == f"0100007F:{port:04X}":
            count += 1
    return count


def _endpoints_of_one_hsm(emulator: Any, tmp_path: Path, endpoints: int) -> tuple[str, dict[str, str]]:
    """A new EC key in the emulator's HSM, and an environment whose config file makes ``managedhsm:hsmN``
    (N < ``endpoints``) that HSM, each with its own copy of the CA bundle (a distinct endpoint to a
    session)."""
    from hsmcert.session import default_session

    name = f"dropped-{os.urandom(4).hex()}"
    default_session().keys.create(f"managedhsm:local-hsm:{name}", "EC", curve="P-256")
    url = emulator.url("managedhsm", "local-hsm")
    lines = []
    for n in range(endpoints):
        ca = tmp_path / f"ca-{n}.pem"
        ca.write_bytes(Path(emulator.ca).read_bytes())
        lines.append(f'[endpoints."managedhsm:hsm{n}"]\nurl = "{url}"\nca_bundle = "{ca}"\n')
    (tmp_path / "config.toml").write_text("".join(lines))
    env = {k: v for k, v in os.environ.items() if k not in ("HSMCERT_EMULATOR", "HSMCERT_ENDPOINT")}
    env.update(HSMCERT_CONFIG=str(tmp_path / "config.toml"), HSMCERT_CACHE_DIR=str(tmp_path / "cache"))
    return name, env


def test_endpoints_the_session_drops_close_their_connections_and_work_again(
    emulator: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The agent's backend used with more endpoints than the session keeps: the dropped ones' connection
    pools are closed (the process's connections to the HSM stay bounded) and their opened keys go with
    them, so using a dropped endpoint again opens new clients that work. (Each endpoint is the emulator's
    HSM with its own copy of the CA bundle: a distinct endpoint to the session.)"""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

    from hsmcert import session as session_module
    from hsmcert.agent.backend import Backend, agent_transport
    from hsmcert.session import Session

    kept, endpoints, rounds = 3, 12, 3
    monkeypatch.setattr(session_module, "MAX_SERVICES", kept)
    name, env = _endpoints_of_one_hsm(emulator, tmp_path, endpoints)
    port = int(emulator.url("managedhsm", "local-hsm").rsplit(":", 1)[1])
    digest = bytes(32)
    before = _connections_to(port)  # the default session's, which made the key
    with Session(environ=env, transport=agent_transport(pool_size=2, deadline=30)) as session:
        backend = Backend(session, deadline=30)
        most = 0
        for _ in range(rounds):
            for n in range(endpoints):
                key, signature = backend.sign(
                    None, backend.parse(f"managedhsm:hsm{n}:{name}"), "ES256", digest
                )
                public = key.public_key
                assert isinstance(public, ec.EllipticCurvePublicKey)
                public.verify(signature, digest, ec.ECDSA(Prehashed(hashes.SHA256())))
                most = max(most, _connections_to(port) - before)
    assert most <= kept * 2, f"{most} connections open for {kept} endpoints kept (pool size 2)"
    assert _connections_to(port) == before


def test_signing_goes_on_while_the_session_drops_endpoints_under_it(
    emulator: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Threads sign through more endpoints than the session keeps, so endpoints are dropped (and their pools
    closed) between a thread's lookup of a key and its request: each such request is made again through the
    endpoint's new clients, and every signature succeeds."""
    import threading

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

    from hsmcert import session as session_module
    from hsmcert.agent.backend import Backend, agent_transport
    from hsmcert.session import Session

    kept, endpoints, threads, each = 1, 4, 4, 15
    monkeypatch.setattr(session_module, "MAX_SERVICES", kept)
    name, env = _endpoints_of_one_hsm(emulator, tmp_path, endpoints)
    errors: list[BaseException] = []
    digest = bytes(32)
    with Session(environ=env, transport=agent_transport(pool_size=2, deadline=60)) as session:
        backend = Backend(session, deadline=60)

        def work(t: int) -> None:
            try:
                for i in range(each):
                    ref = backend.parse(f"managedhsm:hsm{(t + i) % endpoints}:{name}")
                    key, signature = backend.sign(None, ref, "ES256", digest)
                    public = key.public_key
                    assert isinstance(public, ec.EllipticCurvePublicKey)
                    public.verify(signature, digest, ec.ECDSA(Prehashed(hashes.SHA256())))
            except BaseException as exc:
                errors.append(exc)

        workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=240)
        assert not any(worker.is_alive() for worker in workers)
    assert not errors, errors[:3]
