"""Keys and helpers for the provider's end-to-end tests (real openssl, curl, haproxy, stunnel)."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest

from tests.fixtures.nginx import free_port, wait_port

HSM = "local-hsm"


@dataclass
class HsmKeys:
    rsa: str
    ec: str
    ec384: str

    @staticmethod
    def name(ref: str) -> str:
        return ref.rsplit(":", 1)[1]


@pytest.fixture(scope="session")
def hsm_keys(emulator: Any) -> HsmKeys:
    """An RSA 2048, an EC P-256 and an EC P-384 key in the emulator's default Managed HSM."""
    from hsmcert.session import default_session

    tag = uuid4().hex[:8]
    rsa = f"managedhsm:{HSM}:prov-rsa-{tag}"
    ec = f"managedhsm:{HSM}:prov-ec-{tag}"
    default_session().keys.create(rsa, "RSA", size=2048)
    ec384 = f"managedhsm:{HSM}:prov-p384-{tag}"
    default_session().keys.create(ec, "EC", curve="P-256")
    default_session().keys.create(ec384, "EC", curve="P-384")
    return HsmKeys(rsa, ec, ec384)


def hsm_signs(emulator: Any, ref: str) -> int:
    """How many signatures the emulator (the HSM) made with this key: the proof a signature was remote."""
    key = HsmKeys.name(ref)
    return sum(
        1
        for e in emulator.audit()
        if e.get("operation") == "sign" and e.get("key") == key and e.get("result") == "ok"
    )


def run(
    args: Sequence[str], env: dict[str, str], timeout: float = 60, **kw: Any
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), env=env, capture_output=True, text=True, timeout=timeout, **kw)


def ok(args: Sequence[str], env: dict[str, str], **kw: Any) -> subprocess.CompletedProcess[str]:
    result = run(args, env, **kw)
    assert result.returncode == 0, f"{' '.join(args)}\n{result.stdout}\n{result.stderr}"
    return result


@contextlib.contextmanager
def s_server(
    env: dict[str, str], cert: Path, key: Path | str, *extra: str, port: int | None = None
) -> Iterator[int]:
    """An ``openssl s_server -www`` on 127.0.0.1 with this certificate and key; yields its port."""
    port = port or free_port()
    proc = subprocess.Popen(
        ["openssl", "s_server", "-accept", f"127.0.0.1:{port}", "-cert", str(cert), "-key", str(key),
         "-www", *extra],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        try:
            wait_port(port, 15)
        except AssertionError:
            proc.kill()
            raise AssertionError(f"s_server did not start: {proc.communicate()[0]}") from None
        yield port
    finally:
        proc.kill()
        proc.wait()


def s_client(port: int, ca: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """A plain openssl s_client (no provider) that verifies the server and sends one GET."""
    env = {"PATH": "/usr/bin:/bin", "OPENSSL_CONF": "/dev/null"}
    return subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-CAfile", str(ca), "-verify_return_error",
         "-servername", "localhost", "-ign_eof", *extra],
        input="GET / HTTP/1.0\r\n\r\n", env=env, capture_output=True, text=True, timeout=30,
    )  # fmt: skip


def served(result: subprocess.CompletedProcess[str]) -> bool:
    """The s_client completed a verified handshake and got s_server's -www page."""
    return "Verify return code: 0 (ok)" in result.stdout and "HTTP/1.0 200 ok" in result.stdout
