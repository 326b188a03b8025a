"""The agent's signing hot path (requests prepared per key, kept-alive pooled connections, httptools): it goes
through an HTTPS proxy's tunnel like the SDK's requests, keeps the connection limit, and an answer it does not
handle itself (a disabled key, a deleted one) reaches the client as the SDK's error mapping words it."""

from __future__ import annotations

import contextlib
import hashlib
import socket
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from hsmcert.agent.client import AgentError
from hsmcert.agent.protocol import Status

DIGEST = hashlib.sha256(b"hot path").digest()


class TunnelProxy:
    """An HTTP proxy that only tunnels (CONNECT host:port), as corporate proxies do for HTTPS; it records
    the targets of the tunnels it opened."""

    def __init__(self) -> None:
        self.tunnels: list[str] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._tunnel, args=(client,), daemon=True).start()

    def _tunnel(self, client: socket.socket) -> None:
        with contextlib.suppress(OSError), client:
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = client.recv(4096)
                if not chunk:
                    return
                head += chunk
            method, target = head.split(b" ", 2)[:2]
            if method != b"CONNECT":
                client.sendall(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
                return
            host, _, port = target.decode().rpartition(":")
            upstream = socket.create_connection((host, int(port)))
            self.tunnels.append(target.decode())
            client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            back = threading.Thread(target=_pipe, args=(upstream, client), daemon=True)
            back.start()
            _pipe(client, upstream)
            back.join(5)

    def close(self) -> None:
        self._listener.close()


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := src.recv(65536):
            dst.sendall(data)
    with contextlib.suppress(OSError):
        dst.shutdown(socket.SHUT_WR)


@pytest.fixture
def tunnel() -> Iterator[TunnelProxy]:
    proxy = TunnelProxy()
    yield proxy
    proxy.close()


def _verify(spki: bytes, signature: bytes) -> None:
    public = serialization.load_der_public_key(spki)
    assert isinstance(public, ec.EllipticCurvePublicKey)
    public.verify(signature, DIGEST, ec.ECDSA(Prehashed(hashes.SHA256())))


def test_signatures_go_through_the_proxys_tunnel_within_the_pool(
    agent_factory: Any, agent_keys: dict[str, str], tunnel: TunnelProxy
) -> None:
    import os

    env = {k: v for k, v in os.environ.items() if k.lower() not in ("no_proxy", "https_proxy", "all_proxy")}
    env["HTTPS_PROXY"] = f"http://127.0.0.1:{tunnel.port}"
    agent = agent_factory("--pool-size", "2", env=env)
    ref = agent_keys["p256"]
    with agent.client() as client:
        spki = client.pubkey(ref).spki
    failures: list[BaseException] = []

    def sign(n: int) -> None:
        try:
            with agent.client() as client:
                for _ in range(n):
                    _verify(spki, client.sign(ref, "ES256", DIGEST))
        except BaseException as exc:  # reported below
            failures.append(exc)

    threads = [threading.Thread(target=sign, args=(15,)) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not failures, failures
    hsm = urlsplit(os.environ["AZURE_MANAGEDHSM_URL"])
    assert 1 <= len(tunnel.tunnels) <= 2, tunnel.tunnels
    assert {t.rpartition(":")[2] for t in tunnel.tunnels} == {str(hsm.port)}
    assert all(r["result"] == "ok" for r in agent.audit() if r["op"] == "sign")


@pytest.fixture
def own_key(emulator: Any) -> str:
    """A key of this test's own, to disable and delete."""
    from uuid import uuid4

    from hsmcert.session import default_session

    made = f"managedhsm:local-hsm:agent-hot-{uuid4().hex[:8]}"
    default_session().keys.create(made, "EC", curve="P-256")
    return made


def test_a_disabled_then_deleted_key_is_refused_with_the_services_reason(
    agent_factory: Any, own_key: str
) -> None:
    from hsmcert.keyref import parse_keyref
    from hsmcert.session import default_session

    agent = agent_factory()
    ref = parse_keyref(own_key)
    session = default_session()
    key_client = session.clients(session.endpoint(ref)).key_client
    with agent.client() as client:
        spki = client.pubkey(own_key).spki
        _verify(spki, client.sign(own_key, "ES256", DIGEST))  # the hot path is in use from here on
        key_client.update_key_properties(ref.key, enabled=False)
        with pytest.raises(AgentError) as caught:
            client.sign(own_key, "ES256", DIGEST)
        assert caught.value.status is Status.DENIED, caught.value
        assert "disabled" in caught.value.message
        key_client.begin_delete_key(ref.key).wait()
        with pytest.raises(AgentError) as caught:
            client.sign(own_key, "ES256", DIGEST)
        assert caught.value.status is Status.NOT_FOUND, caught.value
    results = [r["result"] for r in agent.audit() if r["op"] == "sign"]
    assert results == ["ok", "denied", "not_found"]


def test_with_verbose_every_signature_request_is_logged_and_its_token_redacted(
    agent_keys: dict[str, str], agent_dir: Any
) -> None:
    from tests.fixtures.agent import AgentProcess

    class VerboseAgent(AgentProcess):
        def command(self) -> list[str]:
            base = super().command()
            return [*base[:3], "--verbose", *base[3:]]

    agent = VerboseAgent(agent_dir).start()
    try:
        ref = agent_keys["p256"]
        with agent.client() as client:
            spki = client.pubkey(ref).spki
            for _ in range(3):
                _verify(spki, client.sign(ref, "ES256", DIGEST))
    finally:
        agent.stop()
    log = agent.log()
    assert log.count("/sign?api-version=") >= 3, log[-2000:]
    assert "Authorization': 'REDACTED" in log and "eyJ" not in log  # no token (a JWT) in the clear


@pytest.fixture
def faults(emulator: Any) -> Iterator[Any]:
    yield emulator.set_faults
    emulator.set_faults()


def test_after_a_first_signature_retry_after_is_still_waited_for(
    agent_factory: Any, emulator: Any, own_key: str, faults: Any
) -> None:
    import time

    agent = agent_factory("--deadline", "20")
    key = own_key.rsplit(":", 1)[1]
    with agent.client() as client:
        spki = client.pubkey(own_key).spki
        _verify(spki, client.sign(own_key, "ES256", DIGEST))  # the endpoint's next signatures: the hot path
        before = len(emulator.audit())
        faults(throttle=1.0, retry_after=3)
        threading.Timer(1.5, faults).start()
        began = time.monotonic()
        _verify(spki, client.sign(own_key, "ES256", DIGEST))
        waited = time.monotonic() - began
    assert waited >= 2.9, f"retried after {waited:.2f} s although the HSM said Retry-After: 3"
    signs = [e for e in emulator.audit()[before:] if e.get("operation") == "sign" and e.get("key") == key]
    assert len(signs) == 1


def test_after_a_first_signature_a_hung_hsm_is_unavailable_within_the_deadline(
    agent_factory: Any, own_key: str, faults: Any
) -> None:
    import time

    agent = agent_factory("--deadline", "1.5")
    with agent.client() as client:
        spki = client.pubkey(own_key).spki
        _verify(spki, client.sign(own_key, "ES256", DIGEST))
        faults(latency_ms=4000)
        began = time.monotonic()
        with pytest.raises(AgentError) as caught:
            client.sign(own_key, "ES256", DIGEST)
        waited = time.monotonic() - began
        assert caught.value.status is Status.UNAVAILABLE, caught.value
        assert 1.0 <= waited < 3.0, f"answered after {waited:.2f} s with a 1.5 s deadline"
        faults()
        _verify(spki, client.sign(own_key, "ES256", DIGEST))  # the same agent recovers
