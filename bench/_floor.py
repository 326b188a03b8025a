"""The irreducible floor of an agent's signature, for bench/agent.py: a minimal in-process client that does,
per signature, only what any agent must do, and nothing else.

- one POST of a prepared ``sign`` request (request line, headers with the bearer token, body: all bytes built
  once) on a kept-alive TLS connection to the emulator;
- the answer read and parsed by ``http.client`` (status, headers, body), the body by ``json``, the value
  base64url-decoded (and, for ECDSA, ``r||s`` made DER, as every caller of OpenSSL needs);
- the signature verified with a pyca public key object built once.

No frame, no socket to a client, no worker thread, no audit line, no retries, no deadlines, no pool: what is
left is the cost of the work itself. Each part is also measured alone (verification; the request without it).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

API_VERSION = "7.5"
WARM_UP = 20


@dataclass
class Target:
    """One HSM key version to sign with: the emulator's URL and CA, a token, the key's public key."""

    url: str
    ca: str
    token: str
    name: str
    version: str
    kind: str
    spki: bytes
    digest: bytes


def _b64u(data: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(data).decode().rstrip("=")


class FloorClient:
    """One kept-alive TLS connection to the HSM and one prepared ``sign`` request."""

    def __init__(self, target: Target) -> None:
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

        parts = urlsplit(target.url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 443
        context = ssl.create_default_context(cafile=target.ca)
        raw = socket.create_connection((host, port), timeout=30)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = context.wrap_socket(raw, server_hostname=host)
        body = json.dumps({"alg": "ES256" if target.kind == "ec" else "RS256", "value": _b64u(target.digest)})
        self.request = (
            f"POST /keys/{target.name}/{target.version}/sign?api-version={API_VERSION} HTTP/1.1\r\n"
            f"Host: {parts.netloc}\r\nAccept: application/json\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {target.token}\r\nContent-Length: {len(body)}\r\n\r\n{body}"
        ).encode("latin-1")
        self.digest = target.digest
        public_key = serialization.load_der_public_key(target.spki)
        prehashed = utils.Prehashed(hashes.SHA256())
        self.verify: Callable[[bytes], None]
        if isinstance(public_key, ec.EllipticCurvePublicKey):
            ec_key, ecdsa, half = public_key, ec.ECDSA(prehashed), 32
            encode = utils.encode_dss_signature

            def verify_ec(raw: bytes) -> None:
                r, s = int.from_bytes(raw[:half]), int.from_bytes(raw[half:])
                ec_key.verify(encode(r, s), self.digest, ecdsa)

            self.verify = verify_ec
        else:
            assert isinstance(public_key, rsa.RSAPublicKey)
            rsa_key, pkcs1 = public_key, padding.PKCS1v15()

            def verify_rsa(raw: bytes) -> None:
                rsa_key.verify(raw, self.digest, pkcs1, prehashed)

            self.verify = verify_rsa

    def fetch(self) -> bytes:
        """One request and its answer: the raw signature the HSM returned (not verified)."""
        import base64

        self.sock.sendall(self.request)
        answer = http.client.HTTPResponse(self.sock)
        answer.begin()
        content = answer.read()
        if answer.status != 200:
            raise SystemExit(f"the emulator answered {answer.status} to the floor client: {content[:300]!r}")
        value: str = json.loads(content)["value"]
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))

    def sign(self) -> bytes:
        """One signature, verified."""
        raw = self.fetch()
        self.verify(raw)
        return raw

    def close(self) -> None:
        self.sock.close()


def threaded_cpu_us(
    make: Callable[[], Any], work: Callable[[Any], object], count: int, threads: int
) -> float:
    """CPU microseconds of this process (all threads: time.process_time) per call of ``work(state)``, with
    ``threads`` threads each making ``count`` calls on its own ``make()`` state (set up and warmed up before
    the clock starts)."""
    start = threading.Barrier(threads + 1)
    errors: list[BaseException] = []

    def run() -> None:
        state = make()
        try:
            for _ in range(WARM_UP):
                work(state)
            start.wait()
            for _ in range(count):
                work(state)
        except BaseException as exc:  # reported by the caller
            errors.append(exc)
            start.abort()
        finally:
            close = getattr(state, "close", None)
            if close is not None:
                close()

    workers = [threading.Thread(target=run, daemon=True) for _ in range(threads)]
    for worker in workers:
        worker.start()
    with contextlib.suppress(threading.BrokenBarrierError):
        start.wait()
    began = time.process_time()
    for worker in workers:
        worker.join()
    used = time.process_time() - began
    if errors:
        raise SystemExit(f"the floor client failed: {errors[0]}")
    return used / (count * threads) * 1e6


def verify_us(target: Target, count: int) -> float:
    """CPU microseconds of the local verification alone (one thread: time.thread_time)."""
    client = FloorClient(target)
    try:
        raw = client.fetch()
        for _ in range(WARM_UP):
            client.verify(raw)
        began = time.thread_time()
        for _ in range(count):
            client.verify(raw)
        return (time.thread_time() - began) / count * 1e6
    finally:
        client.close()


def floor_us(target: Target, count: int, threads: int) -> float:
    """CPU microseconds per verified signature of the floor client."""
    return threaded_cpu_us(lambda: FloorClient(target), FloorClient.sign, count, threads)


def request_us(target: Target, count: int, threads: int) -> float:
    """CPU microseconds per request/answer of the floor client, without the verification."""
    return threaded_cpu_us(lambda: FloorClient(target), FloorClient.fetch, count, threads)
