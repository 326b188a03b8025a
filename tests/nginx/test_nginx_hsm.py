"""Keyless TLS end to end: Debian's nginx 1.22 with keys in the emulator's Managed HSM.

nginx (own prefix, 127.0.0.1) reads the PEM key reference written by ``hsmcert nginx``; the hsmcert provider
asks the agent, the agent asks the emulator. Every test proves from an audit log that the handshake was
signed in the HSM.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest

from tests.fixtures.nginx import (
    Load,
    LocalCa,
    Nginx,
    NginxFactory,
    TcpProxy,
    curl,
    free_port,
    unix_http_app,
    wait_until,
)

pytestmark = pytest.mark.e2e
HSM = "local-hsm"


def hsmcert(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = dict(os.environ if env is None else env)
    base.pop("OPENSSL_CONF", None)
    return subprocess.run(
        [sys.executable, "-m", "hsmcert", *args], capture_output=True, text=True, env=base, timeout=120
    )


def s_client(port: int, *args: str, servername: str = "localhost") -> subprocess.CompletedProcess[str]:
    """One full handshake with openssl s_client (client side without OPENSSL_CONF)."""
    env = {k: v for k, v in os.environ.items() if k != "OPENSSL_CONF"}
    command = [
        "openssl",
        "s_client",
        "-connect",
        f"127.0.0.1:{port}",
        "-servername",
        servername,
        "-brief",
        *args,
    ]
    return subprocess.run(command, input="", capture_output=True, text=True, env=env, timeout=60)


@dataclass
class HsmKey:
    ref: str
    name: str
    public_key: Any


def new_key(kty: str) -> HsmKey:
    from hsmcert.session import default_session

    name = f"nginx-{kty.lower()}-{uuid4().hex[:8]}"
    ref = f"managedhsm:{HSM}:{name}"
    if kty == "RSA":
        default_session().keys.create(ref, "RSA", size=2048)
    else:
        default_session().keys.create(ref, "EC", curve="P-256")
    return HsmKey(ref, name, default_session().open_key(ref).public_key)


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> LocalCa:
    return LocalCa.create(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="module")
def rsa_key(emulator: Any) -> HsmKey:
    return new_key("RSA")


@pytest.fixture(scope="module")
def ec_key(emulator: Any) -> HsmKey:
    return new_key("EC")


@dataclass
class Served:
    nginx: Nginx
    port: int
    key: HsmKey
    out: Path


ServeFn = Callable[..., Served]


@pytest.fixture
def serve(tmp_path: Path, ca: LocalCa, nginx_factory: NginxFactory, native: Any) -> ServeFn:
    """Render ``hsmcert nginx`` for an HSM key (checked with nginx -t) and start nginx on it."""

    def start(key: HsmKey, socket: Path, *, workers: int = 1, name: str = "nginx") -> Served:
        port = free_port()
        out = tmp_path / f"{name}-conf"
        cert = ca.issue(key.public_key, "localhost", tmp_path / f"{name}-{key.name}.pem")
        # The test's nginx runs its workers as root (standalone_conf): --check sees them as that user.
        main_conf = tmp_path / f"{name}-main.conf"
        main_conf.write_text("user root;\n")
        result = hsmcert(
            "nginx", "--key", key.ref, "--cert", str(cert), "--server-name", "localhost", "-o", str(out),
            "--listen", f"127.0.0.1:{port}", "--socket", str(socket), "--check", "--nginx-conf", str(main_conf),
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert "BEGIN" in next((out / "keys").iterdir()).read_text()
        nginx = nginx_factory([out / "localhost.conf"], ports=[port], openssl_cnf=out / "openssl.cnf",
                              workers=workers, name=name)  # fmt: skip
        return Served(nginx, port, key, out)

    return start


def signs(audit: list[dict[str, Any]], key: HsmKey) -> list[dict[str, Any]]:
    """The successful sign operations on ``key`` in an audit log (emulator's or agent's)."""
    return [
        line
        for line in audit
        if (line.get("operation") or line.get("op")) == "sign"
        and key.name in str(line.get("key"))
        and line.get("result") == "ok"
    ]


def _alg(line: dict[str, Any]) -> str:
    return str(line.get("alg") or line.get("algorithm"))


def test_rsa_tls12_pkcs1_and_tls13_pss_signed_in_the_hsm(
    serve: ServeFn, agent: Any, emulator: Any, rsa_key: HsmKey, ca: LocalCa
) -> None:
    served = serve(rsa_key, agent.socket)
    before = len(signs(emulator.audit(), rsa_key))

    tls12 = s_client(served.port, "-tls1_2", "-sigalgs", "RSA+SHA256", "-CAfile", str(ca.path))
    assert "Protocol version: TLSv1.2" in tls12.stderr, tls12.stderr
    assert "Verification: OK" in tls12.stderr
    tls13 = curl(f"https://localhost:{served.port}/", "--tlsv1.3", ca=ca.path)
    assert tls13.returncode == 0 and "TLSv1.3" in tls13.stdout, tls13.stderr

    new = signs(emulator.audit(), rsa_key)[before:]
    assert [_alg(line) for line in new] == ["RS256", "PS256"]


def test_ec_tls12_and_tls13_signed_in_the_hsm(
    serve: ServeFn, agent: Any, emulator: Any, ec_key: HsmKey, ca: LocalCa
) -> None:
    served = serve(ec_key, agent.socket)
    before = len(signs(emulator.audit(), ec_key))
    for tls in ("1.2", "1.3"):
        result = curl(f"https://localhost:{served.port}/", f"--tlsv{tls}", "--tls-max", tls, ca=ca.path)
        assert result.returncode == 0, result.stderr
        assert f"TLSv{tls}" in result.stdout
    new = signs(emulator.audit(), ec_key)[before:]
    assert [_alg(line) for line in new] == ["ES256", "ES256"]


def test_reload_keeps_serving_and_a_killed_worker_is_replaced(
    serve: ServeFn, agent: Any, ec_key: HsmKey, ca: LocalCa
) -> None:
    served = serve(ec_key, agent.socket, workers=2)
    with Load(served.port, ca.path) as load:
        wait_until(lambda: load.ok >= 3, 20, "handshakes before the reload")
        old_workers = set(served.nginx.worker_pids())
        served.nginx.reload()
        wait_until(lambda: not (set(served.nginx.worker_pids()) & old_workers), 20, "new workers")
        count = load.ok
        wait_until(lambda: load.ok >= count + 3, 20, "handshakes after the reload")
    assert load.failed == 0

    victim = served.nginx.worker_pids()[0]
    os.kill(victim, signal.SIGKILL)
    wait_until(
        lambda: victim not in served.nginx.worker_pids() and len(served.nginx.worker_pids()) == 2,
        20,
        "the master to replace the killed worker",
    )
    successor = (set(served.nginx.worker_pids()) - {victim}) - old_workers
    seen: set[int] = set()
    deadline = time.monotonic() + 30
    while not (seen & successor) and time.monotonic() < deadline:
        assert curl(f"https://localhost:{served.port}/", ca=ca.path).returncode == 0
        seen = {int(line.get("pid", 0)) for line in signs(agent.audit(), ec_key)}
    assert seen & successor, "the replacement worker never signed through the agent"


def test_agent_restart_under_load_recovers_without_touching_nginx(
    serve: ServeFn, agent_factory: Any, ec_key: HsmKey, ca: LocalCa
) -> None:
    own = agent_factory()
    served = serve(ec_key, own.socket, workers=2)
    master = served.nginx.master_pid()
    with Load(served.port, ca.path) as load:
        wait_until(lambda: load.ok >= 3, 20, "handshakes before the restart")
        own.restart()
        count = load.ok
        wait_until(lambda: load.ok >= count + 5, 30, "handshakes after the agent restarted")
    assert served.nginx.master_pid() == master
    assert len(signs(own.audit(), ec_key)) >= 5


def test_hsm_unreachable_fails_fast_then_recovers_by_itself(
    serve: ServeFn, agent_factory: Any, emulator: Any, ec_key: HsmKey, ca: LocalCa
) -> None:
    from urllib.parse import urlsplit

    target = urlsplit(emulator.url("managedhsm", HSM)).port
    assert target is not None
    proxy = TcpProxy(target).start()
    try:
        own = agent_factory(
            "--endpoint",
            f"https://127.0.0.1:{proxy.port}",
            "--ca-bundle",
            str(emulator.ca),
            "--deadline",
            "3",
        )
        served = serve(ec_key, own.socket)
        assert curl(f"https://localhost:{served.port}/", ca=ca.path).returncode == 0

        proxy.stop()
        began = time.monotonic()
        down = curl(f"https://localhost:{served.port}/", ca=ca.path, timeout=30)
        elapsed = time.monotonic() - began
        assert down.returncode != 0
        assert elapsed < 15, f"the failed handshake took {elapsed:.1f} s"
        assert os.path.exists(f"/proc/{served.nginx.master_pid()}")

        proxy.start()
        wait_until(
            lambda: curl(f"https://localhost:{served.port}/", ca=ca.path, timeout=15).returncode == 0,
            30,
            "service to return with the HSM",
        )
    finally:
        proxy.stop()


def test_check_reports_an_unreachable_agent(tmp_path: Path, ca: LocalCa, ec_key: HsmKey, native: Any) -> None:
    cert = ca.issue(ec_key.public_key, "localhost", tmp_path / "cert.pem")
    result = hsmcert(
        "nginx", "--key", ec_key.ref, "--cert", str(cert), "--server-name", "localhost", "-o", str(tmp_path / "o"),
        "--listen", f"127.0.0.1:{free_port()}", "--socket", str(tmp_path / "no-agent.sock"), "--check",
    )  # fmt: skip
    assert result.returncode == 6, result.stderr
    assert "cannot be checked: Cannot reach the hsmcert agent at" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "o").exists(), "a failed --check wrote files"


def test_without_check_a_certificate_of_another_key_is_refused_and_an_absent_agent_warned(
    tmp_path: Path, ca: LocalCa, agent: Any, ec_key: HsmKey, rsa_key: HsmKey, native: Any
) -> None:
    """Without --check the certificate is still compared with the HSM key when the agent answers: another
    key's certificate writes nothing (exit 6); an agent that is not running yet only warns."""
    wrong = ca.issue(rsa_key.public_key, "localhost", tmp_path / "wrong.pem")
    common = ["nginx", "--key", ec_key.ref, "--server-name", "localhost",
              "--listen", f"127.0.0.1:{free_port()}", "--cert", str(wrong)]  # fmt: skip
    result = hsmcert(*common, "-o", str(tmp_path / "o"), "--socket", str(agent.socket))
    assert result.returncode == 6, result.stderr
    assert "RSA-2048" in result.stderr.splitlines()[0] and "Traceback" not in result.stderr
    assert not (tmp_path / "o").exists(), "a certificate of another key was written into a site"

    good = ca.issue(ec_key.public_key, "localhost", tmp_path / "good.pem")
    later = [a if a != str(wrong) else str(good) for a in common]
    result = hsmcert(*later, "-o", str(tmp_path / "p"), "--socket", str(tmp_path / "not-yet.sock"))
    assert result.returncode == 0, result.stderr
    assert "warning: The certificate was not compared with the HSM key" in result.stderr
    assert (tmp_path / "p").is_dir()


def _files(directory: Path) -> dict[Path, tuple[bytes, int]]:
    return {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(directory.rglob("*")) if p.is_file()}


def test_a_failed_check_leaves_every_file_as_it_was(
    tmp_path: Path, ca: LocalCa, agent: Any, ec_key: HsmKey, rsa_key: HsmKey, native: Any
) -> None:
    """An RSA certificate with an EC HSM key: exit 6 with one line naming both, and nothing changes."""
    good = ca.issue(ec_key.public_key, "localhost", tmp_path / "good.pem")
    wrong = ca.issue(rsa_key.public_key, "localhost", tmp_path / "wrong.pem")
    out = tmp_path / "out"
    common = ["nginx", "--key", ec_key.ref, "--server-name", "localhost", "-o", str(out),
              "--listen", f"127.0.0.1:{free_port()}", "--socket", str(agent.socket)]  # fmt: skip
    assert hsmcert(*common, "--cert", str(good)).returncode == 0
    before = _files(out)

    result = hsmcert(*common, "--cert", str(wrong), "--check", "--force")
    assert result.returncode == 6, result.stderr
    first = result.stderr.splitlines()[0]
    assert "RSA-2048" in first and "EC secp256r1" in first and ec_key.name in first, result.stderr
    assert "Traceback" not in result.stderr
    assert _files(out) == before, "a failed --check changed the generated files"

    fresh = tmp_path / "fresh"
    result = hsmcert(
        *[fresh.as_posix() if a == str(out) else a for a in common], "--cert", str(wrong), "--check"
    )
    assert result.returncode == 6 and not fresh.exists(), result.stderr


def test_check_compares_the_certificate_with_the_version_the_reference_names(
    tmp_path: Path, ca: LocalCa, agent: Any, native: Any
) -> None:
    """A certificate for version 1 of a rotated key matches ref?version=v1, and not the latest version."""
    from hsmcert.session import default_session

    key = new_key("EC")
    first = default_session().open_key(key.ref).ref.version
    cert = ca.issue(key.public_key, "localhost", tmp_path / "v1.pem")
    default_session().keys.rotate(key.ref)
    main_conf = tmp_path / "nginx.conf"
    main_conf.write_text("user root;\n")

    def check(ref: str, out: str) -> subprocess.CompletedProcess[str]:
        return hsmcert(
            "nginx", "--key", ref, "--cert", str(cert), "--server-name", "localhost", "-o", str(tmp_path / out),
            "--listen", f"127.0.0.1:{free_port()}", "--socket", str(agent.socket), "--check",
            "--nginx-conf", str(main_conf),
        )  # fmt: skip

    pinned = check(f"{key.ref}?version={first}", "pinned")
    assert pinned.returncode == 0, pinned.stderr
    latest = check(key.ref, "latest")
    assert latest.returncode == 6, latest.stderr
    assert "is not the one of" in latest.stderr and first not in latest.stderr.splitlines()[0]
    assert not (tmp_path / "latest").exists()


def test_a_failed_reload_puts_the_previous_files_back(
    tmp_path: Path, ca: LocalCa, agent: Any, ec_key: HsmKey, native: Any
) -> None:
    """The staged check passes, nginx's own configuration does not: exit 6, and the files are as before."""
    cert = ca.issue(ec_key.public_key, "localhost", tmp_path / "cert.pem")
    out = tmp_path / "out"
    common = ["nginx", "--key", ec_key.ref, "--cert", str(cert), "--server-name", "localhost", "-o", str(out),
              "--socket", str(agent.socket)]  # fmt: skip
    assert hsmcert(*common, "--listen", f"127.0.0.1:{free_port()}").returncode == 0
    before = _files(out)
    broken = tmp_path / "nginx.conf"
    broken.write_text("user root;\nnot_a_directive on;\nevents {}\n")
    result = hsmcert(*common, "--listen", f"127.0.0.1:{free_port()}", "--reload", "--nginx-conf", str(broken))
    assert result.returncode == 6, result.stderr
    assert "not_a_directive" in result.stderr and "previous files are back" in result.stderr
    assert {path: data for path, (data, _) in _files(out).items()} == {
        path: data for path, (data, _) in before.items()
    }


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory nginx's workers (www-data) may traverse, short enough for Unix sockets."""
    import shutil
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="hsmcert-w-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.skipif(
    os.geteuid() != 0, reason="checks another user's access: needs root, as nginx -t in production"
)
def test_check_sees_the_socket_as_nginx_workers_do(
    tmp_path: Path, ca: LocalCa, emulator: Any, ec_key: HsmKey, native: Any, open_dir: Path
) -> None:
    """nginx -t runs as root and passes; the workers (www-data) cannot open a root:root 0660 socket."""
    from tests.fixtures.agent import AgentProcess

    cert = ca.issue(ec_key.public_key, "localhost", tmp_path / "cert.pem")
    main_conf = tmp_path / "nginx.conf"
    main_conf.write_text("user www-data;\nworker_processes 2;\n")

    def check(agent: AgentProcess, out: str) -> subprocess.CompletedProcess[str]:
        return hsmcert(
            "nginx", "--key", ec_key.ref, "--cert", str(cert), "--server-name", "localhost",
            "-o", str(tmp_path / out), "--listen", f"127.0.0.1:{free_port()}", "--socket", str(agent.socket),
            "--nginx-conf", str(main_conf), "--check",
        )  # fmt: skip

    env = {**os.environ, "HSMCERT_CACHE_DIR": str(tmp_path / "cache")}
    root_only = AgentProcess(open_dir / "root-only", env=env)
    root_only.directory.mkdir(mode=0o755)
    try:
        root_only.start()
        # The agent's own directory (0750, root's group) stops the workers first...
        result = check(root_only, "o1")
        assert result.returncode == 6, result.stderr
        assert f"workers run as www-data (the user directive of {main_conf})" in result.stderr
        assert "cannot enter" in result.stderr and "root:root 0750" in result.stderr
        assert "--group www-data" in result.stderr, result.stderr
        # ... and with the directory open, the socket itself (root:root 0660).
        root_only.socket.parent.chmod(0o755)
        result = check(root_only, "o2")
        assert result.returncode == 6, result.stderr
        assert "cannot connect to the agent socket" in result.stderr and "root:root 0660" in result.stderr
        assert "--group www-data" in result.stderr and "--nginx-group www-data" in result.stderr
    finally:
        root_only.stop()
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()

    grouped = AgentProcess(open_dir / "www-data", "--group", "www-data", env=env)
    grouped.directory.mkdir(mode=0o755)
    try:
        grouped.start()
        result = check(grouped, "o3")
    finally:
        grouped.stop()
    assert result.returncode == 0, result.stderr


@pytest.fixture
def app_socket(tmp_path: Path) -> Iterator[tuple[Path, list[dict[str, str]]]]:
    path = tmp_path / "app.sock"
    with unix_http_app(path) as seen:
        yield path, seen


def test_sidecars_carry_a_request_over_mutual_tls_with_hsm_keys(
    tmp_path: Path,
    ca: LocalCa,
    agent: Any,
    emulator: Any,
    rsa_key: HsmKey,
    ec_key: HsmKey,
    nginx_factory: NginxFactory,
    native: Any,
    app_socket: tuple[Path, list[dict[str, str]]],
) -> None:
    app, seen = app_socket
    port = free_port()
    client_sock = tmp_path / "client.sock"
    server_cert = ca.issue(rsa_key.public_key, "api.internal", tmp_path / "server.pem")
    client_cert = ca.issue(ec_key.public_key, "orders-service", tmp_path / "client.pem", client=True)
    out = tmp_path / "conf"
    common = ["-o", str(out), "--socket", str(agent.socket), "--ca", str(ca.path), "--app-protocol", "http"]
    server = hsmcert(
        "nginx", "--mode", "server-sidecar", "--key", rsa_key.ref, "--cert", str(server_cert),
        "--server-name", "api.internal", "--listen", f"127.0.0.1:{port}", "--upstream", str(app), *common,
    )  # fmt: skip
    assert server.returncode == 0, server.stderr
    client = hsmcert(
        "nginx", "--mode", "client-sidecar", "--key", ec_key.ref, "--cert", str(client_cert),
        "--server-name", "api.internal", "--listen", str(client_sock), "--upstream", f"127.0.0.1:{port}",
        *common,
    )  # fmt: skip
    assert client.returncode == 0, client.stderr
    includes = sorted(out.glob("api.internal-*.conf"))
    before = {k.name: len(signs(emulator.audit(), k)) for k in (rsa_key, ec_key)}
    nginx_factory(includes, ports=[port], openssl_cnf=out / "openssl.cnf")

    result = curl("http://app/orders", "--unix-socket", str(client_sock))
    assert result.returncode == 0, result.stderr
    assert seen[-1]["path"] == "/orders"
    assert seen[-1]["x-client-verify"] == "SUCCESS"
    assert "CN=orders-service" in seen[-1]["x-client-subject"]
    after = {k.name: len(signs(emulator.audit(), k)) for k in (rsa_key, ec_key)}
    assert after[rsa_key.name] > before[rsa_key.name], "the server sidecar did not sign in the HSM"
    assert after[ec_key.name] > before[ec_key.name], "the client sidecar did not sign in the HSM"
