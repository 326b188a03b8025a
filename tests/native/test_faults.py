"""The provider when the agent is missing, hung or restarted, and in either provider order."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.agent import start_agent
from tests.native.conftest import HsmKeys, hsm_signs, ok, run, s_client, s_server, served


def test_agent_down_gives_a_clear_error_quickly(native: Any, hsm_keys: HsmKeys, tmp_path: Path) -> None:
    env = native.openssl_env(tmp_path / "nobody-listens.sock", timeout_ms=3000)
    started = time.monotonic()
    result = run(
        ["openssl", "req", "-new", "-key", hsm_keys.rsa, "-subj", "/CN=x", "-noout"], env, timeout=30
    )
    assert result.returncode != 0
    assert "hsmcert agent is not reachable" in result.stderr and "nobody-listens.sock" in result.stderr
    assert time.monotonic() - started < 15


@pytest.fixture
def silent_agent(tmp_path: Path) -> Iterator[Path]:
    """A Unix socket that accepts connections and never answers."""
    path = tmp_path / "silent.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield path
    stop.set()
    thread.join(5)
    for conn in held:
        conn.close()
    server.close()


def test_hung_agent_times_out_within_timeout_ms(native: Any, hsm_keys: HsmKeys, silent_agent: Path) -> None:
    env = native.openssl_env(silent_agent, timeout_ms=1000)
    started = time.monotonic()
    result = run(["openssl", "req", "-new", "-key", hsm_keys.ec, "-subj", "/CN=x", "-noout"], env, timeout=30)
    elapsed = time.monotonic() - started
    assert result.returncode != 0
    assert "did not answer within 1000 ms" in result.stderr
    assert elapsed < 10


def test_agent_restart_next_handshake_works_without_restarting_the_server(
    native: Any, emulator: Any, hsm_keys: HsmKeys, tmp_path: Path
) -> None:
    from hsmcert.provider import pem_ref

    own = tmp_path / "agent"
    own.mkdir()
    agent = start_agent(own)
    try:
        env = native.openssl_env(agent.socket)
        key = tmp_path / "server.key"
        key.write_bytes(pem_ref(hsm_keys.ec))
        crt = tmp_path / "server.crt"
        ok(["openssl", "req", "-x509", "-key", str(key), "-subj", "/CN=localhost", "-days", "2",
            "-out", str(crt)], env)  # fmt: skip
        before = hsm_signs(emulator, hsm_keys.ec)
        with s_server(env, crt, key) as port:
            first = s_client(port, crt, "-tls1_3")
            assert served(first), first.stdout
            agent.restart()
            second = s_client(port, crt, "-tls1_3")
            assert served(second), second.stdout
            agent.stop()
            third = s_client(port, crt, "-tls1_3")
            assert not served(third)
        assert hsm_signs(emulator, hsm_keys.ec) == before + 2
    finally:
        agent.stop()


PROVIDER_FIRST = """openssl_conf = openssl_init
[openssl_init]
providers = provider_sect
[provider_sect]
hsmcert = hsmcert_sect
default = default_sect
[hsmcert_sect]
module = {module}
socket = {socket}
activate = 1
[default_sect]
activate = 1
"""


def test_provider_listed_before_the_default_provider(
    native: Any, agent: Any, emulator: Any, hsm_keys: HsmKeys, tmp_path: Path
) -> None:
    conf = tmp_path / "first.cnf"
    conf.write_text(PROVIDER_FIRST.format(module=native.path, socket=agent.socket))
    env = native.openssl_env(agent.socket)
    env["OPENSSL_CONF"] = str(conf)
    plain = {"PATH": "/usr/bin:/bin", "OPENSSL_CONF": "/dev/null"}
    # local keys made without the provider load and serve TLS in a process that has it first
    # (generating new local keys there is not supported: `hsmcert provider openssl-cnf` puts default first)
    local_key, local_crt = tmp_path / "local.key", tmp_path / "local.crt"
    ok(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(local_key), "-subj",
        "/CN=localhost", "-days", "2", "-out", str(local_crt)], plain, timeout=60)  # fmt: skip
    ok(["openssl", "verify", "-CAfile", str(local_crt), str(local_crt)], env, timeout=60)
    before = hsm_signs(emulator, hsm_keys.rsa)
    csr = tmp_path / "hsm.csr"
    ok(["openssl", "req", "-new", "-key", hsm_keys.rsa, "-subj", "/CN=x", "-out", str(csr)], env, timeout=60)
    assert "verify OK" in ok(["openssl", "req", "-in", str(csr), "-verify", "-noout"], plain).stderr
    assert hsm_signs(emulator, hsm_keys.rsa) == before + 1
    # a TLS server with a local key, in the same process as the provider
    with s_server(env, local_crt, local_key) as port:
        result = s_client(port, local_crt, "-tls1_2")
    assert served(result)


_PEM_READ = """
import ctypes, sys
c = ctypes.CDLL("libcrypto.so.3")
P = ctypes.c_void_p
c.OPENSSL_init_crypto.argtypes = [ctypes.c_uint64, P]
c.OPENSSL_init_crypto(0x40, None)  # load OPENSSL_CONF
c.BIO_new_file.restype = P
c.BIO_new_file.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
c.PEM_read_bio_PrivateKey.restype = P
c.PEM_read_bio_PrivateKey.argtypes = [P, P, P, P]
c.ERR_get_error_all.restype = ctypes.c_ulong
c.ERR_get_error_all.argtypes = [P, P, P, ctypes.POINTER(ctypes.c_char_p), P]
c.ERR_error_string_n.argtypes = [ctypes.c_ulong, ctypes.c_char_p, ctypes.c_size_t]
key = c.PEM_read_bio_PrivateKey(c.BIO_new_file(sys.argv[1].encode(), b"r"), None, None, None)
while True:
    data = ctypes.c_char_p()
    code = c.ERR_get_error_all(None, None, None, ctypes.byref(data), None)
    if not code:
        break
    text = ctypes.create_string_buffer(256)
    c.ERR_error_string_n(code, text, 256)
    print(text.value.decode(), (data.value or b"").decode(), file=sys.stderr)
sys.exit(0 if key else 1)
"""


def _pem_reference(ref: str, path: Path) -> Path:
    from hsmcert.provider import pem_ref

    path.write_bytes(pem_ref(ref))
    return path


def test_agent_down_names_the_agent_when_a_pem_reference_is_read(
    native: Any, hsm_keys: HsmKeys, tmp_path: Path
) -> None:
    """PEM_read_bio_PrivateKey (how nginx, curl, haproxy and stunnel read keys) reports the unreachable
    agent and how to start it, not OpenSSL's generic "DECODER ... unsupported"."""
    import sys

    sock = tmp_path / "nobody-listens.sock"
    env = native.openssl_env(sock, timeout_ms=3000)
    key = _pem_reference(hsm_keys.ec, tmp_path / "ec.key")
    result = run([sys.executable, "-c", _PEM_READ, str(key)], env, timeout=30)
    assert result.returncode == 1
    assert f"The hsmcert agent is not reachable at {sock}" in result.stderr, result.stderr
    assert f"hsmcert agent --socket {sock}" in result.stderr
    assert "No supported data to decode" not in result.stderr


def test_nginx_t_with_the_agent_down_names_the_agent(native: Any, hsm_keys: HsmKeys, tmp_path: Path) -> None:
    sock = tmp_path / "nobody-listens.sock"
    env = native.openssl_env(sock, timeout_ms=3000)
    key = _pem_reference(hsm_keys.rsa, tmp_path / "rsa.key")
    local_key, cert = tmp_path / "local.key", tmp_path / "cert.pem"
    plain = {k: v for k, v in env.items() if k != "OPENSSL_CONF"}
    ok(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(local_key), "-subj", "/CN=x",
        "-days", "1", "-out", str(cert)], plain)  # fmt: skip
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        f"error_log stderr;\npid {tmp_path}/nginx.pid;\nevents {{}}\nhttp {{\n"
        f"  access_log off;\n  client_body_temp_path {tmp_path};\n"
        f"  server {{ listen 127.0.0.1:65000 ssl; ssl_certificate {cert}; ssl_certificate_key {key}; }}\n}}\n"
    )
    result = run(["nginx", "-t", "-p", str(tmp_path), "-c", str(conf)], env, timeout=60)
    assert result.returncode != 0
    assert f"The hsmcert agent is not reachable at {sock}" in result.stderr, result.stderr
    assert "No supported data to decode" not in result.stderr
