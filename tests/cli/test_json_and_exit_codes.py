"""Exit codes a pipeline can act on, JSON error documents, a schema field and RFC 3339 times everywhere."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest

from tests.hsm.conftest import CliResult, run_cli

HSM = "local-hsm"
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
TIME_FIELDS = {"created", "updated", "not_before", "not_after", "expires_on"}
ERROR_FIELDS = {"schema", "code", "exit_code", "message", "remedy", "retryable"}


def new_ref() -> str:
    return f"managedhsm:{HSM}:exit-{uuid4().hex[:10]}"


def error_document(result: CliResult) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(result.out)
    assert set(doc) >= ERROR_FIELDS, doc
    assert doc["schema"] == 1 and doc["exit_code"] == result.code
    assert result.err.startswith("error: ")  # people still get the sentence on stderr
    return doc


def test_creating_an_existing_key_exits_7_and_exist_ok_accepts_the_same_shape(emulator: Any) -> None:
    ref = new_ref()
    first = run_cli("key", "create", "--key", ref, "--kty", "EC", "--curve", "P-384")
    assert first.code == 0, first.err
    again = run_cli("--output", "json", "key", "create", "--key", ref, "--kty", "EC", "--curve", "P-384")
    assert again.code == 7, again.out + again.err
    doc = error_document(again)
    assert doc["code"] == "already_exists" and doc["retryable"] is False
    assert "already exists" in doc["message"] and "key rotate" in doc["remedy"]

    ok = run_cli(
        "--output", "json", "key", "create", "--key", ref, "--kty", "ec", "--curve", "p-384", "--exist-ok"
    )
    assert ok.code == 0, ok.err
    data = json.loads(ok.out)
    assert data["existed"] is True and data["curve"] == "P-384" and data["schema"] == 1
    assert "exists already" in ok.err

    for other in (["--kty", "EC"], ["--kty", "EC", "--curve", "P-256"], ["--kty", "RSA"]):
        refused = run_cli("key", "create", "--key", ref, *other, "--exist-ok")
        assert refused.code == 7, refused.err
        assert "exists as EC P-384" in refused.err


def test_exist_ok_creates_a_missing_key_and_compares_rsa_sizes(emulator: Any) -> None:
    ref = new_ref()
    made = run_cli(
        "--output", "json", "key", "create", "--key", ref, "--kty", "RSA", "--size", "2048", "--exist-ok"
    )
    assert made.code == 0 and json.loads(made.out)["existed"] is False
    assert run_cli("key", "create", "--key", ref, "--kty", "RSA", "--size", "2048", "--exist-ok").code == 0
    assert run_cli("key", "create", "--key", ref, "--kty", "RSA", "--exist-ok").code == 7  # 3072 by default


def test_an_existing_output_file_exits_7(tmp_path: Path) -> None:
    out = tmp_path / "ref.pem"
    out.write_text("mine\n")
    refused = run_cli(
        "--output", "json", "provider", "pem-ref", "--key", "managedhsm:contoso:tls-key", "-o", str(out)
    )
    assert refused.code == 7
    assert error_document(refused)["code"] == "already_exists"
    assert out.read_text() == "mine\n"


def test_usage_errors_read_like_every_other_error() -> None:
    missing = run_cli("key", "create", "--kty", "RSA")
    assert missing.code == 2
    assert missing.err.splitlines() == [
        "error: Missing option --key.",
        "Give --key (or set HSMCERT_KEY_CREATE_KEY); see hsmcert key create --help.",
    ]
    typo = run_cli("key", "create", "--key", "managedhsm:contoso:tls-key", "--kty", "RSA", "--sise", "2048")
    assert (
        typo.code == 2 and "error: No such option --sise." in typo.err and "Did you mean --size?" in typo.err
    )
    for result in (missing, typo):
        assert "Usage:" not in result.err and "Error:" not in result.err and result.out == ""
    bad = run_cli(
        "--output",
        "json",
        "selfsign",
        "--key",
        "managedhsm:contoso:tls-key",
        "--subj",
        "/CN=x",
        "--days",
        "x",
    )
    assert bad.code == 2
    doc = error_document(bad)
    assert doc["code"] == "usage_error" and doc["message"].startswith("Invalid value for --days")


def test_json_errors_of_the_library_carry_the_exit_code_name(emulator: Any) -> None:
    gone = run_cli("--output", "json", "key", "show", "--key", new_ref())
    assert gone.code == 3
    assert error_document(gone)["code"] == "not_found"
    bad_ref = run_cli("--output", "json", "key", "show", "--key", "nonsense")
    assert bad_ref.code == 2 and error_document(bad_ref)["code"] == "usage_error"


def _walk(value: Any, path: str = "") -> list[tuple[str, Any]]:
    if isinstance(value, dict):
        return [item for k, v in value.items() for item in [(f"{path}.{k}", v), *_walk(v, f"{path}.{k}")]]
    if isinstance(value, list):
        return [item for i, v in enumerate(value) for item in _walk(v, f"{path}[{i}]")]
    return []


def test_every_json_document_has_a_schema_and_rfc3339_times(emulator: Any, tmp_path: Path) -> None:
    ref = new_ref()
    cert = tmp_path / "c.pem"
    commands = [
        ["key", "create", "--key", ref, "--kty", "EC"],
        ["key", "show", "--key", ref],
        ["key", "rotate", "--key", ref],
        ["key", "list", "--hsm", HSM],
        ["whoami"],
        ["doctor", "--key", ref],
        ["selfsign", "--key", ref, "--subj", "/CN=t.example", "-o", str(cert)],
        ["inspect", str(cert)],
        ["verify", str(cert), "--key", ref],
        ["emulator", "status"],
        ["emulator", "token"],
        ["grant", "--hsm", HSM, "--principal", "00000000-0000-0000-0000-0000000000aa", "--dry-run"],
        ["provider", "path"],
    ]
    seen_times = 0
    for args in commands:
        result = run_cli("--output", "json", *args)
        assert result.code == 0, (args, result.err)
        doc = json.loads(result.out)
        assert doc["schema"] == 1, args
        times = [(p, v) for p, v in _walk(doc) if p.rsplit(".", 1)[-1] in TIME_FIELDS and v is not None]
        assert all(isinstance(v, str) and RFC3339.match(v) for _, v in times), (args, times)
        seen_times += len(times)
    assert seen_times >= 5


@pytest.mark.parametrize("args", [["key", "show", "--key", "managedhsm:contoso:tls-key"]])
def test_text_errors_never_print_json(args: list[str]) -> None:
    result = run_cli(*args)
    assert result.code != 0 and result.out == "" and result.err.startswith("error: ")
