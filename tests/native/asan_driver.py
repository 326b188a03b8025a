"""Run inside a subprocess that LD_PRELOADs libasan: drives the test-only ASAN codec library
(``make -C native codec-test``) with ctypes.

Checks the exported entry points, decodes every protocol vector, and compares the C codec with the
Python codec (hsmcert.agent.protocol) on hypothesis-generated frames. Prints one JSON summary line;
the sanitizer report, if any, goes to stderr (see asan_report.py).
"""

from __future__ import annotations

import ctypes
import json
import os
import sys
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hsmcert.agent import protocol as P

ROOT = Path(__file__).resolve().parents[2]
VECTORS = ROOT / "tests" / "vectors" / "agent_frames.json"
REASONS = [
    "ok", "short", "length", "trailing", "version", "field-truncated", "duplicate-tag", "unknown-tag",
    "unknown-op", "missing-field", "unexpected-field", "bad-value", "unknown-status", "argument",
]  # fmt: skip
EXPORTS = [
    "hsmcert_frame_reason",
    "hsmcert_frame_length",
    "hsmcert_frame_decode",
    "hsmcert_frame_check_request",
    "hsmcert_frame_check_response",
    "hsmcert_frame_encode",
    "hsmcert_frame_encode_arrays",
    "hsmcert_frame_validate",
    "hsmcert_frame_get_field",
    "hsmcert_frame_code",
]


def load(path: str) -> ctypes.CDLL:
    lib = ctypes.CDLL(path)
    lib.hsmcert_frame_validate.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int]
    lib.hsmcert_frame_validate.restype = ctypes.c_int
    lib.hsmcert_frame_reason.argtypes = [ctypes.c_int]
    lib.hsmcert_frame_reason.restype = ctypes.c_char_p
    lib.hsmcert_frame_get_field.argtypes = [
        ctypes.c_char_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t,
    ]  # fmt: skip
    lib.hsmcert_frame_get_field.restype = ctypes.c_long
    lib.hsmcert_frame_code.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
    lib.hsmcert_frame_encode_arrays.argtypes = [
        ctypes.c_int, ctypes.c_char_p, ctypes.POINTER(ctypes.c_char_p), ctypes.POINTER(ctypes.c_size_t),
        ctypes.c_size_t, ctypes.c_char_p, ctypes.c_size_t,
    ]  # fmt: skip
    lib.hsmcert_frame_encode_arrays.restype = ctypes.c_long
    return lib


def c_reason(lib: ctypes.CDLL, data: bytes, direction: int, op: int = 0) -> str:
    return REASONS[lib.hsmcert_frame_validate(data, len(data), direction, op)]


def py_reason(data: bytes, direction: int, op: int = 0) -> str:
    try:
        frame = P.decode_frame(data)
        if direction == 1:
            P.check_request(frame)
        elif direction == 0:
            P.check_response(frame, P.Op(op) if op else None)
    except P.ProtocolError as exc:
        return exc.reason
    return "ok"


def c_field(lib: ctypes.CDLL, data: bytes, tag: int) -> bytes | None:
    size = lib.hsmcert_frame_get_field(data, len(data), tag, None, 0)
    if size < 0:
        return None
    buf = ctypes.create_string_buffer(max(size, 1))
    lib.hsmcert_frame_get_field(data, len(data), tag, buf, size)
    return buf.raw[:size]


def c_encode(lib: ctypes.CDLL, code: int, fields: list[tuple[int, bytes]]) -> bytes | int:
    n = len(fields)
    tags = bytes(t for t, _ in fields)
    values = (ctypes.c_char_p * max(n, 1))(*[v for _, v in fields])
    lens = (ctypes.c_size_t * max(n, 1))(*[len(v) for _, v in fields])
    cap = 4 + 2 + sum(3 + len(v) for _, v in fields)
    out = ctypes.create_string_buffer(cap)
    size = lib.hsmcert_frame_encode_arrays(code, tags, values, lens, n, out, cap)
    return out.raw[:size] if size >= 0 else int(size)


def check_vectors(lib: ctypes.CDLL, failures: list[str]) -> int:
    vectors = json.loads(VECTORS.read_text())
    count = 0
    for v in vectors["valid"]:
        data = bytes.fromhex(v["hex"])
        direction = 1 if v["direction"] == "request" else 0
        op = int(P.Op[v["for_op"]]) if v.get("for_op") else 0
        got = c_reason(lib, data, direction, op)
        if got != "ok":
            failures.append(f"valid vector {v['name']!r} refused: {got}")
        for field in v.get("fields", []):
            tag = int(P.Tag[field["tag"]])
            if c_field(lib, data, tag) != bytes.fromhex(field["hex"]):
                failures.append(f"valid vector {v['name']!r}: field {field['tag']} differs")
        code = int(P.Op[v["op"]]) if "op" in v else int(P.Status[v["status"]])
        if lib.hsmcert_frame_code(data, len(data)) != code:
            failures.append(f"valid vector {v['name']!r}: code differs")
        fields = [(int(P.Tag[f["tag"]]), bytes.fromhex(f["hex"])) for f in v.get("fields", [])]
        if c_encode(lib, code, fields) != data:
            failures.append(f"valid vector {v['name']!r}: C encoding differs")
        count += 1
    for v in vectors["invalid"]:
        data = bytes.fromhex(v["hex"])
        direction = 1 if v["direction"] == "request" else 0
        op = int(P.Op[v["for_op"]]) if v.get("for_op") else 0
        got = c_reason(lib, data, direction, op)
        if got != v["reason"]:
            failures.append(f"invalid vector {v['name']!r}: C says {got}, expected {v['reason']}")
        count += 1
    return count


def valid_frames() -> st.SearchStrategy[bytes]:
    vectors = json.loads(VECTORS.read_text())
    return st.sampled_from([bytes.fromhex(v["hex"]) for v in vectors["valid"]])


@st.composite
def mutated(draw: Any) -> bytes:
    data = bytearray(draw(valid_frames()))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "cut", "insert", "set"]))
        if kind == "flip" and data:
            i = draw(st.integers(0, len(data) - 1))
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif kind == "cut" and data:
            i = draw(st.integers(0, len(data) - 1))
            del data[i : i + draw(st.integers(1, 8))]
        elif kind == "insert":
            i = draw(st.integers(0, len(data)))
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "set" and data:
            i = draw(st.integers(0, len(data) - 1))
            data[i] = draw(st.integers(0, 255))
    # keep the length field consistent half of the time, so the field decoder is reached
    if draw(st.booleans()) and len(data) >= 4:
        data[0:4] = (len(data) - 4).to_bytes(4, "big")
    return bytes(data)


@st.composite
def structured(draw: Any) -> bytes:
    fields = draw(
        st.lists(
            st.tuples(
                st.integers(0, 15),
                st.one_of(
                    st.binary(max_size=70),
                    st.sampled_from([b"RS256", b"PS384", b"ES256K", b"RSA-OAEP", b"\x01", b"managedhsm:h:k"]),
                    st.text(max_size=20).map(lambda t: t.encode()),
                ),
            ),
            max_size=6,
        )
    )
    body = bytes([draw(st.sampled_from([1, 1, 1, 0, 2])), draw(st.integers(0, 8))])
    body += b"".join(bytes([t]) + len(v).to_bytes(2, "big") + v for t, v in fields)
    return len(body).to_bytes(4, "big") + body


def main() -> int:
    path = os.environ["HSMCERT_NATIVE_CODEC"]
    lib = load(path)
    failures: list[str] = []
    missing = [name for name in EXPORTS if not hasattr(lib, name)]
    if missing:
        failures.append(f"missing exports: {missing}")
    count = check_vectors(lib, failures)
    examples = {"n": 0}

    @settings(max_examples=int(os.environ.get("HSMCERT_FUZZ_EXAMPLES", "1000")), deadline=None,
              suppress_health_check=list(HealthCheck), database=None)  # fmt: skip
    @given(st.one_of(st.binary(max_size=80), mutated(), structured()), st.integers(-1, 1), st.integers(0, 4))
    def differential(data: bytes, direction: int, op: int) -> None:
        examples["n"] += 1
        c = c_reason(lib, data, direction, op if direction == 0 else 0)
        py = py_reason(data, direction, op if direction == 0 else 0)
        if c != py:
            failures.append(f"{data.hex()} dir={direction} op={op}: C {c}, Python {py}")

    differential()

    @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(st.integers(0, 255), st.lists(st.tuples(st.integers(1, 13), st.binary(max_size=300)), max_size=5))
    def encode_roundtrip(code: int, fields: list[tuple[int, bytes]]) -> None:
        got = c_encode(lib, code, fields)
        want = P.encode_frame(code, {P.Tag(t): v for t, v in fields})  # a dict keeps one value per tag
        if len({t for t, _ in fields}) == len(fields) and got != want:
            failures.append(f"encode {code} {fields!r}: C {got!r} != Python {want!r}")

    encode_roundtrip()
    leaks = ctypes.CDLL(None).__lsan_do_recoverable_leak_check()
    print(json.dumps({"vectors": count, "fuzzed": examples["n"], "failures": failures[:20], "lsan": leaks}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
