"""Clients cannot stop the agent or starve the others: bounded connections, frame deadlines, idle timeouts,
resource limits, restarts, and a socket file removed only on a clean stop.

Every test bounds its counts (at most 1,000 idle connections and 40 slow clients) and its time (socket
timeouts, ``wait_until``).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import resource
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from hsmcert.agent import protocol
from hsmcert.agent.client import AgentClient
from hsmcert.agent.protocol import Op, Status, Tag
from tests.fixtures.agent import AgentProcess, wait_until

OFFLINE = {"HSMCERT_ENDPOINT": "https://127.0.0.1:9", "HSMCERT_CACHE_DIR": "/nonexistent-hsmcert-cache"}
HELLO = protocol.encode_frame(Op.HELLO, {Tag.VERSIONS: b"\x01"})
DIGEST = hashlib.sha256(b"hostile clients").digest()


def _connect(path: Path, timeout: float = 10.0) -> socket.socket:
    end = time.monotonic() + timeout
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
            return sock
        except BlockingIOError:  # the listen backlog is full for a moment: the agent is accepting
            sock.close()
            if time.monotonic() > end:
                raise
            time.sleep(0.01)


def _read_frame(sock: socket.socket) -> protocol.Frame | None:
    """One response frame, or None when the agent closed the connection."""
    try:
        raw = protocol.read_frame(lambda n: protocol.recv_exactly(sock, n))
    except ConnectionResetError:
        return None
    return None if raw is None else protocol.decode_frame(raw, request=False)


def _closed_by_peer(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


@contextlib.contextmanager
def _sockets() -> Iterator[list[socket.socket]]:
    opened: list[socket.socket] = []
    try:
        yield opened
    finally:
        for sock in opened:
            sock.close()


@pytest.fixture(scope="module", autouse=True)
def _enough_file_descriptors() -> Iterator[None]:
    """1,000 sockets on each side: raise this process's open-files limit (the agents inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 4096 if hard == resource.RLIM_INFINITY else min(hard, 4096)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    if wanted < 2600:
        pytest.fail(f"the open-files hard limit {hard} is too low for 1,000 connections")
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _pid(agent: AgentProcess) -> int:
    assert agent.proc is not None and agent.proc.poll() is None, agent.log()
    return agent.proc.pid


def _status_value(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


# -- connection limit ---------------------------------------------------------------------------------


def test_a_connection_over_the_limit_closes_the_longest_idle_one(agent_factory: Any) -> None:
    agent = agent_factory("--max-connections", "8", env={**os.environ, **OFFLINE})
    with _sockets() as idle:
        for _ in range(8):
            idle.append(_connect(agent.socket))
            idle[-1].sendall(HELLO)
            assert (_read_frame(idle[-1]) or pytest.fail("no answer")).code == Status.OK
        with agent.client() as client:  # the ninth: served, the oldest idle connection is closed
            assert client.hello()[0] == 1
        assert _closed_by_peer(idle[0])
        idle[1].sendall(HELLO)  # the others still serve
        assert (_read_frame(idle[1]) or pytest.fail("no answer")).code == Status.OK


def test_a_connection_over_the_limit_is_refused_when_every_one_is_busy(agent_factory: Any) -> None:
    agent = agent_factory("--max-connections", "6", "--deadline", "3", env={**os.environ, **OFFLINE})
    pubkey = protocol.encode_frame(Op.PUBKEY, {Tag.KEYREF: b"managedhsm:hsm1:k"})
    with _sockets() as busy:
        for _ in range(6):  # each waits for an HSM that does not answer (up to the 3 s deadline)
            busy.append(_connect(agent.socket))
            busy[-1].sendall(pubkey)
        time.sleep(0.3)
        for _ in range(20):
            with _connect(agent.socket) as extra:
                frame = _read_frame(extra)
                assert frame is not None and frame.code == Status.UNAVAILABLE
                assert "connections already" in (frame.text(Tag.MESSAGE) or "")
        for sock in busy:  # the admitted ones are answered
            frame = _read_frame(sock)
            assert frame is not None and frame.code == Status.UNAVAILABLE
            assert "connections already" not in (frame.text(Tag.MESSAGE) or "")
    with agent.client() as client:
        assert client.hello()[0] == 1
    assert agent.proc is not None and agent.proc.poll() is None


def test_slow_frames_make_room_for_new_connections(agent_factory: Any) -> None:
    agent = agent_factory("--max-connections", "6", "--frame-timeout", "60", env={**os.environ, **OFFLINE})
    with _sockets() as slow:
        for _ in range(6):  # slowloris: each holds a connection with a frame that never finishes
            slow.append(_connect(agent.socket))
            slow[-1].sendall(HELLO[:3])
        time.sleep(1)
        clients = [agent.client() for _ in range(6)]
        try:
            for client in clients:  # each new connection takes the place of a slow one
                assert client.hello()[0] == 1
        finally:
            for client in clients:
                client.close()
        assert all(_closed_by_peer(sock) for sock in slow)


# -- deadlines ----------------------------------------------------------------------------------------


def test_a_client_trickling_a_frame_is_cut_off_at_the_frame_deadline(agent_factory: Any) -> None:
    agent = agent_factory("--frame-timeout", "1", env={**os.environ, **OFFLINE})
    frame = protocol.encode_frame(Op.PUBKEY, {Tag.KEYREF: b"managedhsm:hsm:" + b"k" * 60})
    with _connect(agent.socket, timeout=10) as sock:
        began = time.monotonic()
        sent = 0
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            while sent < len(frame) and time.monotonic() - began < 8:
                sock.sendall(frame[sent : sent + 1])
                sent += 1
                time.sleep(0.25)
                sock.setblocking(False)
                try:
                    if sock.recv(1, socket.MSG_PEEK):
                        break
                except BlockingIOError:
                    pass
                finally:
                    sock.setblocking(True)
                    sock.settimeout(10)
        answer = _read_frame(sock)
        elapsed = time.monotonic() - began
    assert answer is not None and answer.code == Status.BAD_REQUEST
    assert "did not arrive within 1 s" in (answer.text(Tag.MESSAGE) or "")
    assert elapsed < 4, elapsed  # 1 s deadline, checked every 0.1 s (the frame needed 20 s at this pace)
    wait_until(lambda: any("did not arrive" in (r.get("error") or "") for r in agent.audit()))


def test_an_idle_connection_is_closed_after_the_idle_timeout(agent_factory: Any) -> None:
    agent = agent_factory("--idle-timeout", "1", env={**os.environ, **OFFLINE})
    with _connect(agent.socket) as sock:
        sock.sendall(HELLO)
        assert (_read_frame(sock) or pytest.fail("no answer")).code == Status.OK
        began = time.monotonic()
        assert _closed_by_peer(sock)
        assert 0.8 < time.monotonic() - began < 5
    with agent.client() as client:  # a client reconnects by itself
        assert client.hello()[0] == 1


def test_bad_limits_are_one_sentence(agent_factory: Any, tmp_path: Path) -> None:
    import subprocess
    import sys

    for option, value in (
        ("--max-connections", "0"),
        ("--workers", "0"),
        ("--frame-timeout", "0"),
        ("--idle-timeout", "-1"),
    ):
        result = subprocess.run(
            [sys.executable, "-m", "hsmcert", "agent", "--socket", str(tmp_path / "a.sock"), option, value],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, **OFFLINE},
        )
        assert result.returncode == 2, result.stderr
        assert option in result.stderr and "Traceback" not in result.stderr
        assert not (tmp_path / "a.sock").exists()


# -- load: idle and slow clients do not slow a legitimate client --------------------------------------


class _Signer:
    """A legitimate client that signs and verifies, recording each signature's latency."""

    def __init__(self, agent: AgentProcess, ref: str) -> None:
        self.client = AgentClient(agent.socket, timeout=30)
        public = serialization.load_der_public_key(self.client.pubkey(ref).spki)
        assert isinstance(public, ec.EllipticCurvePublicKey)
        self.public = public
        self.ref = ref

    def latencies(self, count: int) -> list[float]:
        times = []
        for _ in range(count):
            began = time.perf_counter()
            signature = self.client.sign(self.ref, "ES256", DIGEST)
            times.append(time.perf_counter() - began)
            self.public.verify(signature, DIGEST, ec.ECDSA(Prehashed(hashes.SHA256())))
        return times


def _bound(baseline: float) -> float:
    """p99 within 2x of the idle agent's; a floor of 20 ms more keeps a small baseline on a loaded 2-core
    machine from turning scheduler noise into a failure."""
    return max(2 * baseline, baseline + 0.02)


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


class _Slowloris:
    """``count`` clients that each send one byte of a frame every ``pace`` seconds, reconnecting when cut
    off, until stopped."""

    def __init__(self, path: Path, count: int, pace: float) -> None:
        self.path, self.count, self.pace = path, count, pace
        self.cut_off = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> _Slowloris:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        frame = protocol.encode_frame(Op.PUBKEY, {Tag.KEYREF: b"managedhsm:hsm:" + b"s" * 200})
        clients: list[tuple[socket.socket, int]] = []
        try:
            while not self._stop.is_set():
                while len(clients) < self.count:
                    clients.append((_connect(self.path), 0))
                kept = []
                for sock, sent in clients:
                    try:
                        sock.sendall(frame[sent : sent + 1])
                        kept.append((sock, (sent + 1) % len(frame)))
                    except OSError:
                        self.cut_off += 1
                        sock.close()
                clients = kept
                self._stop.wait(self.pace)
        finally:
            for sock, _ in clients:
                sock.close()


def test_idle_and_slow_clients_do_not_slow_a_signing_client(
    agent_factory: Any, agent_keys: dict[str, str]
) -> None:
    agent = agent_factory("--max-connections", "1200", "--frame-timeout", "2")
    signer = _Signer(agent, agent_keys["p256"])
    signer.latencies(20)  # warm up: token, key, connections
    baseline = _p99(signer.latencies(150))
    pid = _pid(agent)
    threads_before = _status_value(pid, "Threads")
    rss_before = _status_value(pid, "VmRSS")
    with _sockets() as idle:
        for n in range(1000):
            idle.append(_connect(agent.socket))
            if n % 2:
                idle[-1].sendall(HELLO)  # half said hello, half never spoke
        wait_until(lambda: len(agent.audit()) > 500, timeout=60)
        with _Slowloris(agent.socket, count=40, pace=0.5) as slow:
            time.sleep(1)
            loaded = _p99(signer.latencies(150))
            if loaded > _bound(baseline):  # a slowdown the attack causes persists; a burst of noise does not
                loaded = min(loaded, _p99(signer.latencies(150)))
            wait_until(lambda: slow.cut_off >= 40, timeout=20)  # the frame deadline cut them off
        threads = _status_value(pid, "Threads")
        rss_growth = (_status_value(pid, "VmRSS") - rss_before) * 1024
        for sock in idle[1::2]:  # the idle clients that said hello are still served
            sock.settimeout(10)
            assert (_read_frame(sock) or pytest.fail("no answer")).code == Status.OK
    signer.client.close()
    print(f"p99 of a signature: idle agent {baseline * 1000:.1f} ms, under load {loaded * 1000:.1f} ms")
    print(f"agent memory growth with 1,040 connections: {rss_growth >> 10} KB")
    # No thread per connection: 1,000 connections left the thread count as it was.
    assert threads <= threads_before + 2, (threads_before, threads)
    # Memory per connection is bounded: 1,040 connections cost well under 16 KB each (a thread each cost 73 MB
    # for 200 slow clients before).
    assert rss_growth < 16 << 20, rss_growth
    assert loaded <= _bound(baseline), (baseline, loaded)


# -- resource limits ----------------------------------------------------------------------------------


NOBODY = 65534
PR_CAPBSET_DROP = 24
CAP_SYS_ADMIN, CAP_SYS_RESOURCE = 21, 24


def _limits(address_space: int, processes: int) -> Callable[[], None]:
    """``ulimit -v`` and ``ulimit -u`` for a child. The kernel does not apply RLIMIT_NPROC to uid 0 or to
    a process with CAP_SYS_RESOURCE or CAP_SYS_ADMIN: when the tests run as root, the child drops those
    capabilities and counts as nobody (its real uid), keeping root's effective uid to read the tests' files."""

    def apply() -> None:
        if os.geteuid() == 0:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            for cap in (CAP_SYS_ADMIN, CAP_SYS_RESOURCE):
                if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
                    raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")
            os.setresuid(NOBODY, 0, 0)
        resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))
        resource.setrlimit(resource.RLIMIT_NPROC, (processes, processes))

    return apply


def _tasks_of(uid: int) -> int:
    """Processes and threads whose real uid is ``uid`` (what RLIMIT_NPROC counts)."""
    count = 0
    for status in Path("/proc").glob("[0-9]*/status"):
        with contextlib.suppress(OSError, StopIteration):
            lines = status.read_text().splitlines()
            if int(next(line.split()[1] for line in lines if line.startswith("Uid:"))) == uid:
                count += int(next(line.split()[1] for line in lines if line.startswith("Threads:")))
    return count


def test_a_flood_under_ulimit_v_and_u_leaves_the_agent_signing(
    agent_factory: Any, agent_keys: dict[str, str]
) -> None:
    ref = agent_keys["p256"]
    # Measure what the agent needs after a few signatures, then give it that plus 256 MB of address space
    # and 8 more tasks (processes and threads) than it has: with a thread per connection (8 MB of stack
    # each, one task each), the flood below made the agent exit and remove its socket.
    probe = agent_factory()
    _Signer(probe, ref).latencies(3)
    pid = _pid(probe)
    peak, threads = _status_value(pid, "VmPeak") * 1024, _status_value(pid, "Threads")
    probe.stop()
    counted = NOBODY if os.geteuid() == 0 else os.getuid()
    limits = _limits(peak + (256 << 20), _tasks_of(counted) + threads + 8)
    agent = agent_factory("--max-connections", "300", preexec_fn=limits)
    if os.geteuid() == 0:  # the limit applies: the agent counts as nobody, without the exempting capabilities
        assert _status_value(_pid(agent), "Uid") == NOBODY
    signer = _Signer(agent, ref)
    with _sockets() as flood:
        for n in range(600):
            try:
                flood.append(_connect(agent.socket, timeout=5))
            except OSError:
                continue
            with contextlib.suppress(OSError):
                flood[-1].sendall(HELLO if n % 3 else HELLO[:2])
        assert signer.latencies(5)
    assert agent.proc is not None and agent.proc.poll() is None, agent.log()
    assert agent.socket.exists()
    assert "Traceback" not in agent.log()
    with AgentClient(agent.socket) as fresh:
        assert fresh.sign(ref, "ES256", DIGEST)


# -- restarts and the socket file ---------------------------------------------------------------------


def test_clients_connected_across_a_restart_reconnect_and_sign(
    agent_factory: Any, agent_keys: dict[str, str]
) -> None:
    agent = agent_factory()
    signers = [_Signer(agent, agent_keys["p256"]) for _ in range(5)]
    for signer in signers:
        assert signer.latencies(2)
    with _sockets() as idle:
        idle.extend(_connect(agent.socket) for _ in range(50))
        assert agent.stop(signal.SIGTERM) == 0
        assert not agent.socket.exists()
        agent.start()
        for signer in signers:  # each client's old connection is gone: it reconnects once and signs
            assert signer.latencies(3)
            signer.client.close()
        assert all(_closed_by_peer(sock) for sock in idle)


class _ExplodingSelector:
    """A selector whose select() fails as if the process had hit a fatal error in the agent's loop."""

    def __init__(self, real: Any) -> None:
        self.real = real

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def select(self, timeout: float | None = None) -> Any:
        raise OSError(9, "Bad file descriptor")


def _in_process_server(path: Path) -> Any:
    from hsmcert.agent.audit import AuditLog
    from hsmcert.agent.backend import Backend
    from hsmcert.agent.server import AgentServer

    server = AgentServer(
        Backend(endpoint="https://127.0.0.1:9"),  # its own session: nothing process-wide is set
        socket_path=path,
        audit=AuditLog(open(os.devnull, "w")),  # noqa: SIM115 - closed with the server's audit
    )
    server.bind()
    return server


def test_the_socket_file_stays_after_an_error_and_goes_on_a_clean_stop(tmp_path: Path) -> None:
    import selectors

    path = tmp_path / "run" / "agent.sock"
    server = _in_process_server(path)
    failures: list[BaseException] = []
    real_selector = selectors.DefaultSelector

    def crashing() -> Any:
        return _ExplodingSelector(real_selector())

    def serve() -> None:
        try:
            server.serve_forever()
        except BaseException as exc:  # what ended the loop, checked below
            failures.append(exc)

    selectors.DefaultSelector = crashing  # type: ignore[misc]
    try:
        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        thread.join(15)
    finally:
        selectors.DefaultSelector = real_selector  # type: ignore[misc]
    assert not thread.is_alive() and failures and isinstance(failures[0], OSError)
    assert path.exists()  # an agent that died of an error leaves its socket for the next one to replace

    again = _in_process_server(path)  # replaces the stale socket file
    thread = threading.Thread(target=again.serve_forever, daemon=True)
    thread.start()
    with AgentClient(path) as client:
        assert client.hello()[0] == 1
    again.stop()
    thread.join(15)
    assert not thread.is_alive()
    assert not path.exists()
