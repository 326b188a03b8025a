"""curl, haproxy and stunnel (Debian 12 builds, which read only PEM key files) with PEM-reference keys.

Each program gets the provider only through OPENSSL_CONF; every handshake is proved by a signature in
the emulator's audit log.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.nginx import free_port, wait_port
from tests.native.conftest import HsmKeys, hsm_signs, ok, s_client, s_server

PLAIN = {"PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "OPENSSL_CONF": "/dev/null"}


@pytest.fixture
def env(native: Any, agent: Any) -> dict[str, str]:
    return native.openssl_env(agent.socket)


def _hsm_cert(env: dict[str, str], ref: str, directory: Path, name: str) -> tuple[Path, Path]:
    """A PEM-reference key file for ``ref`` and a self-signed certificate for localhost made with it."""
    from hsmcert.provider import pem_ref

    key, crt = directory / f"{name}.key", directory / f"{name}.crt"
    key.write_bytes(pem_ref(ref))
    ok(["openssl", "req", "-x509", "-key", str(key), "-subj", "/CN=localhost", "-addext",
        "subjectAltName=DNS:localhost,IP:127.0.0.1", "-days", "2", "-out", str(crt)], env)  # fmt: skip
    return key, crt


def _local_cert(directory: Path) -> tuple[Path, Path]:
    key, crt = directory / "local.key", directory / "local.crt"
    ok(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", str(key), "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
        "-days", "2", "-out", str(crt)], PLAIN)  # fmt: skip
    return key, crt


def test_curl_mutual_tls_with_a_pem_reference_client_key(
    env: dict[str, str], emulator: Any, hsm_keys: HsmKeys, tmp_path: Path
) -> None:
    client_key, client_crt = _hsm_cert(env, hsm_keys.rsa, tmp_path, "client")
    server_key, server_crt = _local_cert(tmp_path)
    before = hsm_signs(emulator, hsm_keys.rsa)
    with s_server(PLAIN, server_crt, server_key, "-Verify", "1", "-CAfile", str(client_crt)) as port:
        result = subprocess.run(
            ["curl", "-sS", "--max-time", "20", "--cacert", str(server_crt), "--cert", str(client_crt),
             "--key", str(client_key), f"https://localhost:{port}/"],
            env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (
        "Client certificate" in result.stdout
        or "CN=localhost" in result.stdout
        or "s_server" in result.stdout
    )
    assert hsm_signs(emulator, hsm_keys.rsa) == before + 1


def test_curl_with_the_provider_in_openssl_conf_fetches_an_ordinary_site(
    env: dict[str, str], tmp_path: Path
) -> None:
    key, crt = _local_cert(tmp_path)
    with s_server(PLAIN, crt, key) as port:
        result = subprocess.run(
            ["curl", "-sS", "--max-time", "20", "--cacert", str(crt), f"https://localhost:{port}/"],
            env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert result.returncode == 0, result.stderr


@contextlib.contextmanager
def _backend() -> Iterator[int]:
    """A plain TCP server that answers every connection with a fixed HTTP response."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(5)
                with contextlib.suppress(OSError):
                    conn.recv(4096)
                    conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 8\r\n\r\nbackend\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        stop.set()
        thread.join(5)
        listener.close()


@contextlib.contextmanager
def _daemon(args: list[str], env: dict[str, str], port: int, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with open(log, "w") as out:
        proc = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        try:
            wait_port(port, 15)
        except AssertionError:
            proc.kill()
            proc.wait()
            raise AssertionError(f"{args[0]} did not start:\n{log.read_text()}") from None
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _get(port: int, ca: Path, version: str) -> str:
    result = s_client(port, ca, version)
    return result.stdout


@pytest.mark.parametrize("kind", ["rsa", "ec"])
def test_haproxy_serves_tls_with_a_pem_reference_key(
    env: dict[str, str], emulator: Any, agent: Any, hsm_keys: HsmKeys, tmp_path: Path, kind: str
) -> None:
    """Master-worker mode: the master loads the key, the forked worker signs over its own connection."""
    ref = getattr(hsm_keys, kind)
    key, crt = _hsm_cert(env, ref, tmp_path, "site")
    bundle = tmp_path / "site.pem"
    bundle.write_bytes(crt.read_bytes() + key.read_bytes())
    port = free_port()
    conf = tmp_path / "haproxy.cfg"
    conf.write_text(
        "global\n  maxconn 100\n"
        "defaults\n  mode http\n  timeout connect 5s\n  timeout client 10s\n  timeout server 10s\n"
        f"frontend fe\n  bind 127.0.0.1:{port} ssl crt {bundle}\n"
        '  http-request return status 200 content-type text/plain string "haproxy-ok"\n'
    )
    ok(["haproxy", "-c", "-f", str(conf)], env)
    before = hsm_signs(emulator, ref)
    with _daemon(["haproxy", "-W", "-db", "-f", str(conf)], env, port, tmp_path / "haproxy.log") as master:
        out12 = _get(port, crt, "-tls1_2")
        out13 = _get(port, crt, "-tls1_3")
    signers = {r["pid"] for r in agent.audit()[-2:] if r["op"] == "sign" and r["key"] == ref}
    assert signers and master.pid not in signers
    for out in (out12, out13):
        assert "Verify return code: 0 (ok)" in out and "haproxy-ok" in out, out
    assert hsm_signs(emulator, ref) >= before + 2


@pytest.mark.parametrize("kind", ["rsa", "ec"])
def test_stunnel_serves_tls_with_a_pem_reference_key(
    env: dict[str, str], emulator: Any, hsm_keys: HsmKeys, tmp_path: Path, kind: str
) -> None:
    ref = getattr(hsm_keys, kind)
    key, crt = _hsm_cert(env, ref, tmp_path, "site")
    port = free_port()
    with _backend() as backend:
        conf = tmp_path / "stunnel.conf"
        conf.write_text(
            f"foreground = yes\npid =\noutput = {tmp_path / 'stunnel.out'}\n"
            f"[tls]\naccept = 127.0.0.1:{port}\nconnect = 127.0.0.1:{backend}\n"
            f"cert = {crt}\nkey = {key}\n"
        )
        before = hsm_signs(emulator, ref)
        with _daemon(["stunnel4", str(conf)], env, port, tmp_path / "stunnel.log"):
            out12 = _get(port, crt, "-tls1_2")
            out13 = _get(port, crt, "-tls1_3")
    for out in (out12, out13):
        assert "Verify return code: 0 (ok)" in out and "backend" in out, out
    assert hsm_signs(emulator, ref) >= before + 2
