"""Pooling and resilience: the HSM sees at most --pool-size TLS connections; faults are ridden out."""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from tests.fixtures.agent import AgentProcess


class CountingProxy:
    """A TCP relay in front of the emulator's HSM port that counts the connections made through it
    (each one is a TLS connection the HSM sees)."""

    def __init__(self, target: tuple[str, int], pattern: bytes | None = None) -> None:
        self.target = target
        self.connections = 0
        self.pattern = pattern
        self.matches = 0
        """How often ``pattern`` went from client to server (plain-HTTP targets: requests of a path)."""
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._stop = False
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            upstream = socket.create_connection(self.target)
            for a, b, count in ((client, upstream, True), (upstream, client, False)):
                threading.Thread(target=self._pipe, args=(a, b, count), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, count: bool) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                if count and self.pattern:
                    self.matches += data.count(self.pattern)
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self._stop = True
        self._listener.close()


@pytest.fixture
def proxy(emulator: Any) -> Iterator[CountingProxy]:
    parts = urlsplit(emulator.url("managedhsm", "local-hsm"))
    relay = CountingProxy((parts.hostname or "127.0.0.1", parts.port or 443))
    yield relay
    relay.close()


def _sign_many(agent: AgentProcess, ref: str, count: int, threads: int) -> None:
    digest = hashlib.sha256(b"pooled").digest()
    errors: list[BaseException] = []
    with agent.client() as client:
        spki = client.pubkey(ref).spki
    public = serialization.load_der_public_key(spki)
    assert isinstance(public, ec.EllipticCurvePublicKey)

    def work(n: int) -> None:
        try:
            with agent.client() as client:
                for _ in range(n):
                    signature = client.sign(ref, "ES256", digest)
                    public.verify(signature, digest, ec.ECDSA(Prehashed(hashes.SHA256())))
        except BaseException as exc:  # reported below
            errors.append(exc)

    workers = [threading.Thread(target=work, args=(count // threads,)) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(300)
    assert not errors, errors[:3]


def test_1000_signatures_use_no_more_connections_than_the_pool(
    agent_factory: Any, emulator: Any, agent_keys: dict[str, str], proxy: CountingProxy
) -> None:
    agent = agent_factory(
        "--pool-size", "2", "--endpoint", f"https://127.0.0.1:{proxy.port}", "--ca-bundle", str(emulator.ca)
    )
    ref = agent_keys["p256"]
    _sign_many(agent, ref, 1000, threads=4)
    signs = [r for r in agent.audit() if r["op"] == "sign" and r["result"] == "ok"]
    assert len(signs) == 1000
    assert {r["pid"] for r in signs} == {os.getpid()}
    assert 1 <= proxy.connections <= 2, f"the HSM saw {proxy.connections} TLS connections"


@pytest.fixture
def faults(emulator: Any) -> Iterator[Any]:
    yield emulator.set_faults
    emulator.set_faults()


def test_operations_succeed_while_20_percent_of_hsm_calls_fail(
    agent_factory: Any, emulator: Any, agent_keys: dict[str, str], faults: Any
) -> None:
    agent = agent_factory("--deadline", "60")
    ref = agent_keys["p256"]
    with agent.client() as client:
        client.pubkey(ref)  # the key is known before the faults start
    before = len(emulator.audit())
    active = faults(throttle=0.1, unavailable=0.1, retry_after=0)
    assert active["throttle"] == 0.1 and active["unavailable"] == 0.1
    # The emulator does not log the requests it fails on purpose; with 120 signatures the chance that
    # none of them met a fault is 0.8**120, about 2e-12.
    _sign_many(agent, ref, 120, threads=3)
    faults()
    signs = [r for r in agent.audit() if r["op"] == "sign"]
    assert len(signs) == 120 and all(r["result"] == "ok" for r in signs)
    key = ref.rsplit(":", 1)[1]
    made = [e for e in emulator.audit()[before:] if e.get("operation") == "sign" and e.get("key") == key]
    assert len(made) == 120  # a refused attempt signs nothing; each signature was made once in the HSM


def test_dropped_connections_are_retried(
    agent_factory: Any, emulator: Any, agent_keys: dict[str, str], faults: Any
) -> None:
    agent = agent_factory("--deadline", "60")
    ref = agent_keys["p256"]
    with agent.client() as client:
        client.pubkey(ref)
    faults(drop=0.15)
    _sign_many(agent, ref, 40, threads=2)
    faults()
    assert all(r["result"] == "ok" for r in agent.audit() if r["op"] == "sign")


def test_one_token_serves_many_operations(
    agent_factory: Any, emulator: Any, agent_keys: dict[str, str]
) -> None:
    identity = urlsplit(os.environ["IDENTITY_ENDPOINT"])
    relay = CountingProxy((identity.hostname or "127.0.0.1", identity.port or 80), b" /msi/token")
    try:
        endpoint = f"http://127.0.0.1:{relay.port}{identity.path}"
        env = {**os.environ, "IDENTITY_ENDPOINT": endpoint, "HSMCERT_CREDENTIAL": "managed-identity"}
        agent = agent_factory(env=env)
        _sign_many(agent, agent_keys["p256"], 30, threads=3)
        _sign_many(agent, agent_keys["p384"], 0, threads=1)
        assert relay.matches == 1, f"{relay.matches} token requests"
    finally:
        relay.close()
