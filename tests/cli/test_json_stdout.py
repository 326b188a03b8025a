"""With --output json, stdout is one JSON document even when a command writes a file to stdout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from cryptography import x509

pytestmark = pytest.mark.process  # every test here starts a process (see tests/fixtures/process_marks.py)

KEY = "managedhsm:local-hsm:json-stdout"


def hsmcert(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("HSMCERT_OUTPUT", "OPENSSL_CONF")}
    return subprocess.run(
        [sys.executable, "-m", "hsmcert", *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=60
    )


def document(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)  # the whole of stdout, or this raises
    assert isinstance(doc, dict) and doc["schema"] == 1
    return doc


@pytest.mark.parametrize("out", [[], ["-o", "-"], ["-o", "/dev/stdout"]])
def test_provider_files_on_stdout_are_a_field_of_the_document(out: list[str], tmp_path: Path) -> None:
    cnf = document(hsmcert("--output", "json", "provider", "openssl-cnf", "--socket", "/run/a.sock", *out))
    assert "socket = /run/a.sock" in cnf["text"] and "[hsmcert_sect]" in cnf["text"]
    assert cnf["socket"] == "/run/a.sock" and cnf["timeout_ms"] == 10000
    ref = document(hsmcert("--output", "json", "provider", "pem-ref", "--key", KEY, *out))
    assert ref["text"].startswith("-----BEGIN HSMCERT KEY REFERENCE-----") and ref["key"] == KEY
    # text output stays the file itself
    raw = hsmcert("provider", "pem-ref", "--key", KEY, *out)
    assert raw.returncode == 0 and raw.stdout == ref["text"]


def test_provider_file_written_elsewhere_is_reported_in_json(tmp_path: Path) -> None:
    target = tmp_path / "openssl.cnf"
    doc = document(hsmcert("--output", "json", "provider", "openssl-cnf", "-o", str(target)))
    assert doc["path"] == str(target) and "text" not in doc
    assert "[hsmcert_sect]" in target.read_text()


@pytest.mark.parametrize("command", ["csr", "selfsign"])
def test_pki_output_to_dev_stdout_is_inside_the_document(emulator: Any, command: str) -> None:
    from hsmcert.session import default_session

    ref = f"managedhsm:local-hsm:json-stdout-{uuid4().hex[:8]}"
    default_session().keys.create(ref, "EC", curve="P-256")
    doc = document(
        hsmcert("--output", "json", command, "--key", ref, "--subj", "/CN=a.example", "-o", "/dev/stdout")
    )
    assert doc["pem"].startswith("-----BEGIN") and doc["subject"] == "CN=a.example"
    if command == "selfsign":
        assert x509.load_pem_x509_certificate(doc["pem"].encode()).subject.rfc4514_string() == "CN=a.example"
