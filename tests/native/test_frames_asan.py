"""The provider's frame codec under AddressSanitizer + UBSan, driven with ctypes from Python.

The test-only codec library (``make -C native codec-test``: src/frame.c built with ASAN + UBSan and
every function exported) is loaded in a subprocess with libasan preloaded (ctypes cannot load an ASAN library
into a process started without it). Every protocol vector decodes to the meaning or the refusal
reason the vectors give, and on hypothesis-generated garbage the C codec agrees with the Python codec
on every frame: no crash, no leak, every bad frame refused with the same reason.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.native.asan_report import memory_errors, provider_leaks

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def _run_driver(native: Any, examples: int = 1000) -> tuple[dict[str, Any], str]:
    env = native.asan_env()
    env["HSMCERT_FUZZ_EXAMPLES"] = str(examples)
    env["PYTHONPATH"] = str(ROOT)
    result = subprocess.run(
        [sys.executable, str(HERE / "asan_driver.py")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        cwd=ROOT,
    )
    assert not memory_errors(result.stderr), result.stderr[-4000:]
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout.strip().splitlines()[-1]), result.stderr


def test_codec_under_asan_matches_vectors_and_python(native: Any) -> None:
    summary, stderr = _run_driver(native)
    assert summary["failures"] == []
    vectors = json.loads((ROOT / "tests" / "vectors" / "agent_frames.json").read_text())
    assert summary["vectors"] == len(vectors["valid"]) + len(vectors["invalid"])
    assert summary["fuzzed"] >= 900
    assert provider_leaks(stderr) == [], provider_leaks(stderr)[:3]


def _exports(path: Path) -> set[str]:
    out = subprocess.run(
        ["nm", "-D", "--defined-only", str(path)], capture_output=True, text=True, check=True
    )
    return {line.split()[-1] for line in out.stdout.splitlines() if line.split()[1] in {"T", "D", "B"}}


def test_the_shipped_provider_exports_only_its_entry_point(native: Any) -> None:
    """The codec's test entry points live in the test-only library, never in the provider."""
    assert _exports(native.path) == {"OSSL_provider_init"}
    assert _exports(native.asan_path) == {"OSSL_provider_init"}
    codec = _exports(native.codec_test_path)
    assert {"hsmcert_frame_validate", "hsmcert_frame_decode", "hsmcert_frame_encode_arrays"} <= codec
    assert "OSSL_provider_init" not in codec


def test_leak_report_filter_keeps_provider_frames_only() -> None:
    report = (
        "Direct leak of 8 byte(s) in 1 object(s) allocated from:\n"
        "    #0 0x1 in malloc\n    #1 0x2 in hsmcert_agent_new native/src/agent.c:40\n\n"
        "Direct leak of 9 byte(s) in 1 object(s) allocated from:\n"
        "    #0 0x1 in malloc\n    #1 0x2 in _PyObject_Malloc Objects/obmalloc.c:2003\n\n"
        "SUMMARY: AddressSanitizer: 17 byte(s) leaked in 2 allocation(s).\n"
    )
    leaks = provider_leaks(report)
    assert len(leaks) == 1 and "agent.c" in leaks[0]
