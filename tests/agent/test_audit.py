"""The audit logs: what a client sends is cut and escaped; a symbolic link at the log's path is refused."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from hsmcert.agent.client import AgentError
from hsmcert.agent.protocol import Status
from tests.fixtures.agent import AgentProcess, wait_until

OFFLINE = {"HSMCERT_ENDPOINT": "https://127.0.0.1:9", "HSMCERT_CACHE_DIR": "/nonexistent-hsmcert-cache"}
HOSTILE = "managedhsm:h\u202ek\u2028x\u0085y\u200b\u2066z:key\\u0041"


@pytest.fixture(scope="module")
def offline(agent_factory: Any) -> AgentProcess:
    process: AgentProcess = agent_factory("--deadline", "1", env={**os.environ, **OFFLINE})
    return process


def _records_for(process: AgentProcess, client: str) -> list[dict[str, Any]]:
    return [r for r in process.audit() if r.get("client") == client]


def test_a_63_kb_reference_writes_a_short_line(offline: AgentProcess) -> None:
    reference = "managedhsm:hsm:" + "k" * 63_000
    for _ in range(3):
        with offline.client(client="long-ref") as client:
            client.hello()
            with pytest.raises(AgentError) as caught:
                client.pubkey(reference)
            assert caught.value.status is Status.BAD_REQUEST
    wait_until(lambda: len(_records_for(offline, "long-ref")) >= 6)
    lines = [line for line in offline.audit_path.read_text().splitlines() if '"long-ref"' in line]
    assert len(lines) == 6
    assert max(len(line.encode()) for line in lines) < 2048  # 63 KB per line before
    refused = [r for r in _records_for(offline, "long-ref") if r["op"] == "pubkey"]
    assert all(r["key"].startswith("managedhsm:hsm:kkk") for r in refused)
    assert all(r["key"].endswith("more characters]") and "[cut: " in r["key"] for r in refused)


def test_control_and_bidi_characters_are_escaped(offline: AgentProcess) -> None:
    name = "evil\u202e\u2066client"
    with offline.client(client=name) as client:
        client.hello()
        with pytest.raises(AgentError):
            client.pubkey(HOSTILE)
    escaped_name = "evil\\u202e\\u2066client"
    wait_until(lambda: len(_records_for(offline, escaped_name)) >= 2)
    raw = offline.audit_path.read_text(encoding="utf-8")
    for char in "\u202e\u2066\u2028\u0085\u200b":
        assert char not in raw
    # One record per line: every line is a whole JSON object.
    assert all(line.startswith("{") and line.endswith("}") for line in raw.split("\n") if line)
    record = [r for r in _records_for(offline, escaped_name) if r["op"] == "pubkey"][-1]
    assert record["key"] == "managedhsm:h\\u202ek\\u2028x\\x85y\\u200b\\u2066z:key\\\\u0041"


@pytest.mark.process
def test_a_symbolic_link_at_the_audit_path_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "victim"
    target.write_text("precious\n")
    link = tmp_path / "audit.jsonl"
    link.symlink_to(target)
    socket_path = tmp_path / "run" / "agent.sock"
    result = subprocess.run(
        [sys.executable, "-m", "hsmcert", "agent", "--socket", str(socket_path), "--audit", str(link)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **OFFLINE},
    )
    assert result.returncode == 2, result.stderr
    assert "symbolic link" in result.stderr and "Traceback" not in result.stderr
    assert result.stderr.startswith("error:") and len(result.stderr.strip().splitlines()) <= 2
    assert target.read_text() == "precious\n"
    assert not socket_path.exists()


def test_the_agent_log_is_0640_and_the_emulator_log_0600(tmp_path: Path) -> None:
    from hsmcert.agent.audit import AuditLog as AgentAudit
    from hsmcert.emulator.audit import AuditLog as EmulatorAudit
    from hsmcert.emulator.audit import read_audit

    old = os.umask(0)
    try:
        agent_log = AgentAudit(tmp_path / "agent.jsonl")
        emulator_log = EmulatorAudit(tmp_path / "emulator.jsonl")
    finally:
        os.umask(old)
    agent_log.write(uid=1, pid=2, op="sign", result="ok", duration_ms=1.0, key="k\u202e")
    emulator_log.record(operation="sign", key="k\u202e" * 400, principal=None, result="ok")
    agent_log.close()
    emulator_log.close()
    assert stat.S_IMODE((tmp_path / "agent.jsonl").stat().st_mode) == 0o640
    assert stat.S_IMODE((tmp_path / "emulator.jsonl").stat().st_mode) == 0o600
    (agent_record,) = read_audit(tmp_path / "agent.jsonl")
    (emulator_record,) = read_audit(tmp_path / "emulator.jsonl")
    assert agent_record["key"] == "k\\u202e" and agent_record["op"] == "sign"
    assert list(emulator_record)[:2] == ["time", "operation"]
    assert emulator_record["key"].endswith("more characters]") and len(emulator_record["key"]) < 300
    (tmp_path / "link.jsonl").symlink_to(tmp_path / "emulator.jsonl")
    from hsmcert.errors import UsageError

    with pytest.raises(UsageError, match="symbolic link"):
        EmulatorAudit(tmp_path / "link.jsonl")


@pytest.mark.process
def test_a_fifo_without_a_reader_does_not_hang_the_agent(tmp_path: Path) -> None:
    fifo = tmp_path / "audit.fifo"
    os.mkfifo(fifo)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "hsmcert",
            "agent",
            "--socket",
            str(tmp_path / "a.sock"),
            "--audit",
            str(fifo),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **OFFLINE},
    )
    assert result.returncode == 2 and "Cannot open the audit log" in result.stderr
