"""The agent's socket server, driven over its real Unix socket (no HSM needed for these requests)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hsmcert.agent import protocol
from hsmcert.agent.client import AgentClient, AgentError
from hsmcert.agent.protocol import Op, Status, Tag
from tests.fixtures.agent import AgentProcess, wait_until

VECTORS = json.loads((Path(__file__).parents[1] / "vectors" / "agent_frames.json").read_text())
BAD_REQUESTS = [v for v in VECTORS["invalid"] if v["direction"] == "request"]
OFFLINE = {"HSMCERT_ENDPOINT": "https://127.0.0.1:9", "HSMCERT_CACHE_DIR": "/nonexistent-hsmcert-cache"}


@pytest.fixture(scope="module")
def offline_agent(agent_factory: Any) -> AgentProcess:
    """An agent whose HSM is unreachable: enough for everything refused before the HSM is asked."""
    env = {**os.environ, **OFFLINE}
    process: AgentProcess = agent_factory("--allow", "12345:managedhsm:hsm1:only", "--deadline", "2", env=env)
    return process


def _exchange_all(path: Path, data: bytes) -> list[protocol.Frame | None]:
    """Send ``data``, close our side, read every response frame until the agent hangs up."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.connect(str(path))
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        sock.sendall(data)
    sock.shutdown(socket.SHUT_WR)
    frames: list[protocol.Frame | None] = []
    try:
        while True:
            raw = protocol.read_frame(lambda n: protocol.recv_exactly(sock, n))
            if raw is None:
                break
            frames.append(protocol.decode_frame(raw, request=False))
    except ConnectionResetError:
        frames.append(None)
    finally:
        sock.close()
    return frames


def test_hello_negotiates_version_1(offline_agent: AgentProcess) -> None:
    with offline_agent.client() as client:
        version, name = client.hello(b"\x01")
        assert version == 1 and name.startswith("hsmcert-agent/")
        assert client.hello(b"\x03\x02\x01")[0] == 1
        with pytest.raises(AgentError) as caught:
            client.hello(b"\x02\x09")
        assert caught.value.status is Status.UNSUPPORTED
        assert "version 1" in caught.value.message
        assert client.hello()[0] == 1  # the connection still serves


def test_socket_is_0660_in_a_0750_directory(offline_agent: AgentProcess) -> None:
    assert stat.S_ISSOCK(offline_agent.socket.lstat().st_mode)
    assert stat.S_IMODE(offline_agent.socket.stat().st_mode) == 0o660
    assert stat.S_IMODE(offline_agent.socket.parent.stat().st_mode) == 0o750


def test_audit_names_the_callers_uid_and_pid(offline_agent: AgentProcess) -> None:
    with AgentClient(offline_agent.socket, client="audit-test/1") as client:
        client.hello()
    wait_until(lambda: any(r.get("client") == "audit-test/1" for r in offline_agent.audit()))
    record = [r for r in offline_agent.audit() if r.get("client") == "audit-test/1"][-1]
    assert record["uid"] == os.getuid() and record["pid"] == os.getpid()
    assert record["op"] == "hello" and record["result"] == "ok"
    assert isinstance(record["duration_ms"], float | int) and record["time"].endswith("Z")


@pytest.mark.parametrize("vector", BAD_REQUESTS, ids=lambda v: v["name"])
def test_bad_frames_get_bad_request_and_the_agent_keeps_serving(
    offline_agent: AgentProcess, vector: dict[str, Any]
) -> None:
    hello = protocol.encode_frame(Op.HELLO, {Tag.VERSIONS: b"\x01"})
    data = bytes.fromhex(vector["hex"])
    frames = _exchange_all(offline_agent.socket, data + (b"" if vector["closes_connection"] else hello))
    if not data:
        assert frames == []  # a stream that ends before a frame starts is a clean close
    elif vector["reason"] == "trailing":
        # On a stream the extra byte starts the next frame, which then ends too early.
        assert [f.code for f in frames if f] == [Status.OK, Status.BAD_REQUEST]
    elif vector["closes_connection"]:
        assert len(frames) == 1 and frames[0] is not None
        assert frames[0].code == Status.BAD_REQUEST and frames[0].text(Tag.MESSAGE)
    else:
        # Refused, and the same connection answers the HELLO that follows.
        assert [f.code for f in frames if f] == [Status.BAD_REQUEST, Status.OK]
    with offline_agent.client() as client:
        assert client.hello()[0] == 1


def test_a_bad_reference_is_a_bad_request_on_a_kept_connection(offline_agent: AgentProcess) -> None:
    with offline_agent.client() as client:
        with pytest.raises(AgentError) as caught:
            client.pubkey("managedhsm:not a name:k")
        assert caught.value.status is Status.BAD_REQUEST
        client.hello()


def test_allow_list_refuses_other_keys_and_uids(offline_agent: AgentProcess) -> None:
    with offline_agent.client() as client:
        for ref in ("managedhsm:hsm1:only", "managedhsm:hsm1:other"):
            with pytest.raises(AgentError) as caught:
                client.sign(ref, "ES256", b"\x00" * 32)
            assert caught.value.status is Status.DENIED
            assert f"uid {os.getuid()}" in caught.value.message
    wait_until(lambda: any(r["result"] == "denied" for r in offline_agent.audit()))
    denied = [r for r in offline_agent.audit() if r["result"] == "denied"]
    assert {r["key"] for r in denied} >= {"managedhsm:hsm1:only", "managedhsm:hsm1:other"}
    assert all(r["op"] == "sign" and r["alg"] == "ES256" for r in denied)


def test_unreachable_hsm_is_unavailable_within_the_deadline(agent_factory: Any) -> None:
    env = {**os.environ, **OFFLINE}
    process = agent_factory("--deadline", "1.5", env=env)
    with process.client() as client, pytest.raises(AgentError) as caught:
        client.pubkey("managedhsm:hsm1:k")
    assert caught.value.status is Status.UNAVAILABLE
    assert "127.0.0.1:9" in caught.value.message or "deadline" in caught.value.message


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(garbage=st.binary(max_size=300))
def test_fuzzed_bytes_on_the_live_socket(offline_agent: AgentProcess, garbage: bytes) -> None:
    frames = _exchange_all(offline_agent.socket, garbage)
    for frame in frames:
        assert frame is not None and frame.code in set(Status)
        if frame.code != Status.OK:
            assert frame.text(Tag.MESSAGE)
    with offline_agent.client() as client:
        assert client.hello()[0] == 1


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    op=st.integers(0, 6),
    fields=st.dictionaries(st.sampled_from(list(Tag)), st.binary(max_size=80), max_size=5),
)
def test_fuzzed_well_framed_requests(offline_agent: AgentProcess, op: int, fields: dict[Tag, bytes]) -> None:
    frames = _exchange_all(offline_agent.socket, protocol.encode_frame(op, fields))
    assert len(frames) == 1 and frames[0] is not None
    assert frames[0].code in set(Status)


def _spawn(argv: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kwargs)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_clean_shutdown_removes_the_socket(agent_factory: Any, sig: int) -> None:
    process = agent_factory(env={**os.environ, **OFFLINE})
    with process.client() as client:
        client.hello()
        assert process.stop(sig) == 0
    assert not process.socket.exists()
    assert "stopped" in process.log()


def test_a_live_agent_is_not_replaced_and_a_stale_socket_is(agent_factory: Any, tmp_path: Path) -> None:
    process = agent_factory(env={**os.environ, **OFFLINE})
    second = subprocess.run(
        [sys.executable, "-m", "hsmcert", "agent", "--socket", str(process.socket)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **OFFLINE},
    )
    assert second.returncode == 1 and "already listening" in second.stderr
    assert "Traceback" not in second.stderr
    process.stop(signal.SIGKILL)  # leaves a stale socket file
    assert process.socket.exists()
    process.start()
    with process.client() as client:
        assert client.hello()[0] == 1


@pytest.mark.process
def test_systemd_socket_activation(tmp_path: Path) -> None:
    path = Path(tmp_path) / "activated.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(8)
    fd = listener.fileno()

    def as_fd_3() -> None:
        os.dup2(fd, 3)
        os.set_inheritable(3, True)

    audit = tmp_path / "audit.jsonl"
    shell = 'export LISTEN_PID=$$ LISTEN_FDS=1; exec "$@"'
    proc = subprocess.Popen(
        ["sh", "-c", shell, "sh", sys.executable, "-m", "hsmcert", "agent", "--audit", str(audit)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        preexec_fn=as_fd_3,
        pass_fds=(3,),
        env={**os.environ, **OFFLINE},
    )
    listener.close()
    try:
        # Connections queue on the socket before the agent runs, as with systemd.
        with AgentClient(path) as client:
            version, _ = client.hello()
        assert version == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=15)
    assert proc.returncode == 0, out
    assert b"socket from systemd" in out
    assert path.exists()  # systemd owns the socket file
    assert json.loads(audit.read_text().splitlines()[0])["op"] == "hello"


@pytest.mark.process
def test_a_socket_directory_others_control_is_refused(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    result = subprocess.run(
        [sys.executable, "-m", "hsmcert", "agent", "--socket", str(shared / "agent.sock")],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **OFFLINE},
    )
    assert result.returncode == 2
    assert "writable by anyone" in result.stderr and "Traceback" not in result.stderr
    assert not (shared / "agent.sock").exists()


@pytest.mark.process
def test_a_file_in_place_of_the_socket_is_already_exists(tmp_path: Path) -> None:
    directory = tmp_path / "run"
    directory.mkdir(mode=0o750)
    in_place = directory / "agent.sock"
    in_place.write_text("mine\n")
    result = subprocess.run(
        [sys.executable, "-m", "hsmcert", "agent", "--socket", str(in_place)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **OFFLINE},
    )
    assert result.returncode == 7, result.stderr  # already exists (docs/cli.md)
    assert "is not a socket" in result.stderr and "Traceback" not in result.stderr
    assert in_place.read_text() == "mine\n"
