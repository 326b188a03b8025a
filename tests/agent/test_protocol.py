"""The agent protocol codec against the shared vectors, plus property-based fuzzing of the decoder."""

from __future__ import annotations

import doctest
import json
import struct
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import hsmcert.agent
from hsmcert.agent import audit, protocol
from hsmcert.agent.protocol import (
    REASONS,
    Frame,
    Op,
    ProtocolError,
    Status,
    Tag,
    check_response,
    decode_frame,
    encode_frame,
)
from hsmcert.errors import HsmcertError

VECTORS = json.loads((Path(__file__).parents[1] / "vectors" / "agent_frames.json").read_text())


def _decode(vector: dict[str, Any]) -> Frame:
    data = bytes.fromhex(vector["hex"])
    frame = decode_frame(data)
    if vector["direction"] == "request":
        protocol.check_request(frame)
    else:
        op = Op[vector["for_op"]] if "for_op" in vector else None
        check_response(frame, op)
    return frame


@pytest.mark.parametrize("vector", VECTORS["valid"], ids=lambda v: v["name"])
def test_valid_vectors_decode_to_their_meaning(vector: dict[str, Any]) -> None:
    frame = _decode(vector)
    assert frame.version == vector["version"] == 1
    if vector["direction"] == "request":
        assert frame.code == Op[vector["op"]]
    else:
        assert frame.code == Status[vector["status"]]
    expected = {Tag[f["tag"]]: bytes.fromhex(f["hex"]) for f in vector["fields"]}
    assert frame.fields == expected
    for f in vector["fields"]:
        if "text" in f:
            assert frame.text(Tag[f["tag"]]) == f["text"]
    # Re-encoding in the vector's field order gives the same bytes.
    assert encode_frame(frame.code, {Tag[f["tag"]]: bytes.fromhex(f["hex"]) for f in vector["fields"]}) == (
        bytes.fromhex(vector["hex"])
    )


@pytest.mark.parametrize("vector", VECTORS["invalid"], ids=lambda v: v["name"])
def test_invalid_vectors_are_refused_for_their_reason(vector: dict[str, Any]) -> None:
    assert vector["reason"] in REASONS
    with pytest.raises(ProtocolError) as caught:
        _decode(vector)
    assert caught.value.reason == vector["reason"]
    assert caught.value.closes_connection is vector["closes_connection"]
    assert isinstance(caught.value, HsmcertError)
    assert caught.value.message.endswith(".")


def test_every_reason_has_a_vector_and_a_description() -> None:
    used = {v["reason"] for v in VECTORS["invalid"]}
    assert used == set(REASONS) == set(VECTORS["reasons"])


def test_largest_frame_is_accepted_and_one_more_byte_is_not() -> None:
    ref = b"managedhsm:h:k"
    room = protocol.MAX_LENGTH - 2 - (3 + len(ref)) - (3 + 8) - 3
    frame = encode_frame(Op.DECRYPT, {Tag.KEYREF: ref, Tag.ALG: b"RSA-OAEP", Tag.CIPHERTEXT: b"\x01" * room})
    assert struct.unpack(">I", frame[:4])[0] == protocol.MAX_LENGTH
    assert decode_frame(frame, request=True).fields[Tag.CIPHERTEXT] == b"\x01" * room
    with pytest.raises(ProtocolError) as caught:
        encode_frame(
            Op.DECRYPT, {Tag.KEYREF: ref, Tag.ALG: b"RSA-OAEP", Tag.CIPHERTEXT: b"\x01" * (room + 1)}
        )
    assert caught.value.reason == "length"


def test_version_negotiation_picks_the_highest_common_version() -> None:
    assert protocol.choose_version(b"\x01") == 1
    assert protocol.choose_version(b"\x02\x01\x07") == 1
    assert protocol.choose_version(b"\x02\x03") is None


def test_docstring_examples() -> None:
    for module in (protocol, hsmcert.agent, audit):
        result = doctest.testmod(module)
        assert result.failed == 0 and result.attempted > 0


_tags = st.sampled_from(list(Tag))
_fields = st.dictionaries(_tags, st.binary(max_size=300), max_size=6)


@given(code=st.integers(0, 255), fields=_fields)
def test_encode_then_decode_is_identity(code: int, fields: dict[Tag, bytes]) -> None:
    frame = decode_frame(encode_frame(code, fields))
    assert frame == Frame(1, code, fields)


@settings(max_examples=400)
@given(st.binary(max_size=600))
def test_decoder_accepts_or_raises_protocol_error_on_garbage(data: bytes) -> None:
    for request in (True, False, None):
        try:
            frame = decode_frame(data, request=request)
        except ProtocolError as exc:
            assert exc.reason in REASONS
        else:
            assert encode_frame(frame.code, frame.fields) == data


@settings(max_examples=400)
@given(st.binary(min_size=2, max_size=400))
def test_decoder_on_garbage_bodies_with_a_correct_length(body: bytes) -> None:
    data = struct.pack(">I", len(body)) + body
    try:
        frame = decode_frame(data, request=True)
    except ProtocolError as exc:
        assert exc.reason in REASONS
    else:
        assert frame.version == 1 and frame.code in set(Op)


@given(fields=_fields, cut=st.integers(1, 50))
def test_truncated_frames_are_refused(fields: dict[Tag, bytes], cut: int) -> None:
    data = encode_frame(Op.SIGN, fields)
    truncated = data[: max(0, len(data) - cut)]
    with pytest.raises(ProtocolError) as caught:
        decode_frame(truncated)
    assert caught.value.reason in ("short", "length")
