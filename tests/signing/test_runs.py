"""What a pipeline that signs many files and re-runs sees: one HSM request per file, existing signatures
kept or refused, bad input refused before anything is signed, a JSON report."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest

from tests.hsm.conftest import run_cli


@pytest.fixture(scope="module")
def key(emulator: Any) -> str:
    from hsmcert.session import default_session

    ref = f"managedhsm:local-hsm:sign-runs-{uuid4().hex[:8]}"
    default_session().keys.create(ref, "EC", curve="P-256")
    return ref


def operations(emulator: Any, ref: str) -> list[str]:
    name = ref.rsplit(":", 1)[1]
    return [e["operation"] for e in emulator.audit() if e.get("key") == name]


@pytest.fixture
def files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    monkeypatch.chdir(tmp_path)
    names = [f"f{i}.bin" for i in range(20)]
    for name in names:
        Path(name).write_bytes(os.urandom(64))
    return names


def test_one_request_per_file_and_a_json_report(emulator: Any, key: str, files: list[str]) -> None:
    before = len(operations(emulator, key))
    done = run_cli("--output", "json", "sign", "--key", key, "--concurrency", "4", *files)
    assert done.code == 0, done.err
    report = json.loads(done.out)
    assert report["signed"] == 20 and report["skipped"] == 0 and report["algorithm"] == "ES256"
    assert [r["file"] for r in report["results"]] == files
    ops = operations(emulator, key)[before:]
    assert ops.count("sign") == 20 and ops.count("get") <= 1


def test_a_rerun_skips_what_still_verifies_and_signs_the_rest(
    emulator: Any, key: str, files: list[str]
) -> None:
    assert run_cli("sign", "--key", key, *files).code == 0
    Path(files[3]).write_bytes(b"rebuilt")  # its signature no longer verifies
    Path(f"{files[5]}.sig").unlink()
    refused = run_cli("sign", "--key", key, *files)
    assert refused.code == 7 and "already exists" in refused.err
    before = operations(emulator, key).count("sign")
    assert run_cli("sign", "--key", key, "--skip-existing", *files).code == 7  # f3.bin.sig: no --force
    rerun = run_cli("--output", "json", "sign", "--key", key, "--skip-existing", "--force", *files)
    assert rerun.code == 0, rerun.err
    status = {r["file"]: r["status"] for r in json.loads(rerun.out)["results"]}
    signed = {f for f, s in status.items() if s == "signed"}
    # f5.bin may have been signed by the run that stopped at f3.bin's signature: either way, only those two
    assert files[3] in signed and signed <= {files[3], files[5]}
    assert operations(emulator, key).count("sign") - before <= 4
    assert run_cli("verify-signature", *files, "--key", key).code == 0


def test_bad_input_is_refused_before_any_signature(
    emulator: Any, key: str, files: list[str], tmp_path: Path
) -> None:
    before = operations(emulator, key).count("sign")
    cases = [
        (["sign", "--key", key, files[0], "missing.bin"], 3, "does not exist"),
        (["sign", "--key", key, "--out", "x.sig", files[0], files[1]], 2, "--out"),
        (["sign", "--key", key, "--format", "dsse", files[0], files[1]], 2, "--out"),
        (["sign", "--key", key, "--format", "cms", files[0]], 2, "--cert"),
        (["sign", "--key", key, "--alg", "RS256", files[0]], 2, "RS256"),
        (["sign", "--key", key, "--concurrency", "0", files[0], files[1]], 2, "concurrency"),
        (
            ["sign", "--key", key, "--format", "dsse", "--predicate", "nope.json", "-o", "a.jsonl", files[0]],
            3,
            "nope.json",
        ),
        (["verify-signature", files[0]], 2, "--key"),
    ]
    for args, code, words in cases:
        done = run_cli(*args)
        assert done.code == code, (args, done.err)
        assert words in done.err and "Traceback" not in done.err
    assert operations(emulator, key).count("sign") == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(files)


def test_signing_many_files_rides_out_throttling(emulator: Any, key: str, files: list[str]) -> None:
    """The HSM's limits: throttled (429) and failing (503) requests are retried, each file signed once."""
    before = len(emulator.audit())
    try:
        active = emulator.set_faults(throttle=0.15, unavailable=0.1, retry_after=0)
        assert active["throttle"] == 0.15
        done = run_cli("--output", "json", "sign", "--key", key, "--concurrency", "8", *files)
    finally:
        emulator.set_faults()
    assert done.code == 0, done.err
    assert json.loads(done.out)["signed"] == 20
    name = key.rsplit(":", 1)[1]
    made = [e for e in emulator.audit()[before:] if e.get("operation") == "sign" and e.get("key") == name]
    assert len(made) == 20  # a refused attempt signs nothing; no file was signed twice
    assert run_cli("verify-signature", *files, "--key", key).code == 0
