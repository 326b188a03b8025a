"""The agent wire protocol (docs/agent-protocol.md): frames, their strict decoding, and request checks.

A frame is ``length (4, big-endian) | version (1) | op or status (1) | fields``; a field is
``tag (1) | len (2, big-endian) | value``. Decoding is strict: every rule of the specification is checked
and a violation raises :class:`ProtocolError` whose ``reason`` is one of :data:`REASONS` (the same names
the test vectors in ``tests/vectors/agent_frames.json`` use).

>>> frame = encode_frame(Op.HELLO, {Tag.VERSIONS: b"\\x01"})
>>> frame.hex()
'0000000601010b000101'
>>> decode_frame(frame, request=True)
Frame(version=1, code=1, fields={<Tag.VERSIONS: 11>: b'\\x01'})
>>> decode_frame(bytes.fromhex("00000002"))
Traceback (most recent call last):
...
hsmcert.agent.protocol.ProtocolError: The frame is 4 bytes but its length field says 2 bytes follow it.
"""

from __future__ import annotations

import re
import socket
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import IntEnum

from hsmcert import jwa
from hsmcert.errors import HsmcertError

PROTOCOL_VERSION = 1
SUPPORTED_VERSIONS = (1,)
HEADER_SIZE = 4
MIN_LENGTH = 2
MAX_LENGTH = 65536
MAX_FIELD = 65535


class Op(IntEnum):
    HELLO = 1
    PUBKEY = 2
    SIGN = 3
    DECRYPT = 4


class Status(IntEnum):
    OK = 0
    BAD_REQUEST = 1
    NOT_FOUND = 2
    DENIED = 3
    UNAVAILABLE = 4
    UNSUPPORTED = 5
    INTERNAL = 6


class Tag(IntEnum):
    KEYREF = 1
    ALG = 2
    DIGEST = 3
    CIPHERTEXT = 4
    SPKI = 5
    KEYTYPE = 6
    KEYVERSION = 7
    SIGNATURE = 8
    PLAINTEXT = 9
    MESSAGE = 10
    VERSIONS = 11
    CLIENT = 12
    AGENT = 13


DECRYPT_ALGORITHMS = tuple(a for a in jwa.DECRYPT_ALGORITHMS if a != "RSA1_5")
"""The decryption algorithms of the protocol (docs/agent-protocol.md): the OAEP ones of Key Vault."""

# Why a frame was refused. Framing reasons make the agent close the connection after answering.
FRAMING_REASONS = (
    "short",  # fewer than the 4 length bytes, or fewer bytes than the length says
    "length",  # length < 2 or > 65536
    "trailing",  # more bytes than the length says
    "version",  # frame version is not 1
    "field-truncated",  # a field header or value runs past the end of the frame
    "duplicate-tag",
    "unknown-tag",
)
REQUEST_REASONS = (
    "unknown-op",
    "missing-field",
    "unexpected-field",  # a known tag that this op does not take
    "bad-value",  # wrong encoding or value: bad UTF-8, unknown algorithm, wrong digest length, ...
)
RESPONSE_REASONS = ("unknown-status",)
REASONS = FRAMING_REASONS + REQUEST_REASONS + RESPONSE_REASONS


class ProtocolError(HsmcertError):
    """A frame that breaks the protocol; ``reason`` says which rule (one of :data:`REASONS`)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(
            message, "The client and agent disagree on the protocol; see docs/agent-protocol.md."
        )
        self.reason = reason

    @property
    def closes_connection(self) -> bool:
        """True when the frame itself could not be parsed, so the agent answers and hangs up."""
        return self.reason in FRAMING_REASONS


@dataclass(frozen=True)
class Frame:
    """One decoded frame: ``code`` is the op of a request or the status of a response."""

    version: int
    code: int
    fields: dict[Tag, bytes]

    def text(self, tag: Tag) -> str | None:
        value = self.fields.get(tag)
        return None if value is None else value.decode("utf-8")


def encode_frame(
    code: int, fields: Mapping[Tag, bytes] | Mapping[int, bytes] | None = None, *, version: int = 1
) -> bytes:
    """Encode one frame. Raises ProtocolError when a value or the whole frame is too long."""
    parts = [struct.pack(">BB", version, int(code))]
    for tag, value in (fields or {}).items():
        if len(value) > MAX_FIELD:
            raise ProtocolError(
                "length", f"The {_tag_name(int(tag))} field is {len(value)} bytes (max 65535)."
            )
        parts.append(struct.pack(">BH", int(tag), len(value)))
        parts.append(bytes(value))
    body = b"".join(parts)
    if len(body) > MAX_LENGTH:
        raise ProtocolError("length", f"The frame would be {len(body)} bytes long (max {MAX_LENGTH}).")
    return struct.pack(">I", len(body)) + body


def frame_length(header: bytes) -> int:
    """The body length announced by a 4-byte header; raises ProtocolError when out of range."""
    if len(header) != HEADER_SIZE:
        raise ProtocolError("short", f"The frame ended after {len(header)} of the 4 length bytes.")
    (length,) = struct.unpack(">I", header)
    if length < MIN_LENGTH or length > MAX_LENGTH:
        raise ProtocolError("length", f"The frame length {length} is outside {MIN_LENGTH}..{MAX_LENGTH}.")
    return int(length)


def decode_body(body: bytes) -> Frame:
    """Decode what follows the length field (its size already checked by :func:`frame_length`)."""
    if len(body) < MIN_LENGTH:
        raise ProtocolError("short", f"The frame body is {len(body)} bytes; it needs at least 2.")
    version, code = body[0], body[1]
    if version != PROTOCOL_VERSION:
        raise ProtocolError("version", f"The frame has protocol version {version}; this agent speaks 1.")
    fields: dict[Tag, bytes] = {}
    pos = 2
    while pos < len(body):
        if pos + 3 > len(body):
            raise ProtocolError("field-truncated", f"A field header at byte {pos + 4} runs past the frame.")
        tag, size = struct.unpack_from(">BH", body, pos)
        pos += 3
        if pos + size > len(body):
            raise ProtocolError(
                "field-truncated", f"The field with tag {tag} claims {size} bytes; {len(body) - pos} remain."
            )
        try:
            known = Tag(tag)
        except ValueError:
            raise ProtocolError("unknown-tag", f"Unknown field tag {tag}.") from None
        if known in fields:
            raise ProtocolError("duplicate-tag", f"The {known.name} field appears twice.")
        fields[known] = body[pos : pos + size]
        pos += size
    return Frame(version, code, fields)


def decode_frame(data: bytes, *, request: bool | None = None) -> Frame:
    """Decode exactly one whole frame (length field included).

    ``request=True`` also checks the op and its fields (:func:`check_request`), ``request=False`` checks
    a response (:func:`check_response`); ``None`` checks framing only.
    """
    length = frame_length(data[:HEADER_SIZE])
    if len(data) - HEADER_SIZE != length:
        reason = "short" if len(data) - HEADER_SIZE < length else "trailing"
        raise ProtocolError(
            reason, f"The frame is {len(data)} bytes but its length field says {length} bytes follow it."
        )
    frame = decode_body(data[HEADER_SIZE:])
    if request is True:
        check_request(frame)
    elif request is False:
        check_response(frame)
    return frame


# ---------------------------------------------------------------------------------------------------------
# What each op takes

_REQUIRED: dict[Op, frozenset[Tag]] = {
    Op.HELLO: frozenset({Tag.VERSIONS}),
    Op.PUBKEY: frozenset({Tag.KEYREF}),
    Op.SIGN: frozenset({Tag.KEYREF, Tag.ALG, Tag.DIGEST}),
    Op.DECRYPT: frozenset({Tag.KEYREF, Tag.ALG, Tag.CIPHERTEXT}),
}
_OPTIONAL: dict[Op, frozenset[Tag]] = {
    Op.HELLO: frozenset({Tag.CLIENT}),
    Op.PUBKEY: frozenset(),
    Op.SIGN: frozenset({Tag.KEYVERSION}),
    Op.DECRYPT: frozenset({Tag.KEYVERSION}),
}
_RESPONSE_FIELDS: dict[Op, frozenset[Tag]] = {
    Op.HELLO: frozenset({Tag.VERSIONS, Tag.AGENT}),
    Op.PUBKEY: frozenset({Tag.SPKI, Tag.KEYTYPE, Tag.KEYVERSION}),
    Op.SIGN: frozenset({Tag.SIGNATURE}),
    Op.DECRYPT: frozenset({Tag.PLAINTEXT}),
}
_VERSION_TEXT = re.compile(r"[0-9A-Za-z]{1,64}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _tag_name(tag: int) -> str:
    try:
        return Tag(tag).name
    except ValueError:
        return f"tag {tag}"


def _utf8(frame: Frame, tag: Tag, *, ascii_only: bool = False) -> str:
    value = frame.fields[tag]
    try:
        text = value.decode("ascii" if ascii_only else "utf-8")
    except UnicodeDecodeError:
        kind = "ASCII" if ascii_only else "UTF-8"
        raise ProtocolError("bad-value", f"The {tag.name} field is not {kind}.") from None
    if not text or _CONTROL.search(text):
        raise ProtocolError("bad-value", f"The {tag.name} field is empty or holds control characters.")
    return text


def check_request(frame: Frame) -> Op:
    """Check that a decoded request has a known op, exactly the fields it needs and sane values."""
    try:
        op = Op(frame.code)
    except ValueError:
        raise ProtocolError("unknown-op", f"Unknown operation {frame.code}.") from None
    present = set(frame.fields)
    missing = _REQUIRED[op] - present
    if missing:
        names = ", ".join(sorted(t.name for t in missing))
        raise ProtocolError("missing-field", f"{op.name} needs the field(s) {names}.")
    extra = present - _REQUIRED[op] - _OPTIONAL[op]
    if extra:
        names = ", ".join(sorted(t.name for t in extra))
        raise ProtocolError("unexpected-field", f"{op.name} does not take the field(s) {names}.")
    if op is Op.HELLO:
        if not frame.fields[Tag.VERSIONS]:
            raise ProtocolError("bad-value", "HELLO lists no protocol versions.")
        if Tag.CLIENT in frame.fields:
            _utf8(frame, Tag.CLIENT)
        return op
    _utf8(frame, Tag.KEYREF)
    if Tag.KEYVERSION in frame.fields:
        version = _utf8(frame, Tag.KEYVERSION, ascii_only=True)
        if not _VERSION_TEXT.fullmatch(version):
            raise ProtocolError("bad-value", f"The key version {version!r} is not a version identifier.")
    if op is Op.PUBKEY:
        return op
    alg = _utf8(frame, Tag.ALG, ascii_only=True)
    if op is Op.SIGN:
        if alg not in jwa.ALGORITHMS:
            raise ProtocolError(
                "bad-value", f"Unknown signature algorithm {alg!r}; use one of {', '.join(jwa.ALGORITHMS)}."
            )
        size = len(frame.fields[Tag.DIGEST])
        if not jwa.digest_size_ok(alg, size):
            sizes = jwa.ECDSA_DIGEST_SIZES
            wanted = (
                f"{sizes.start} to {sizes.stop - 1}"
                if jwa.ALGORITHMS[alg].kty == "EC"
                else str(jwa.ALGORITHMS[alg].digest_size)
            )
            raise ProtocolError("bad-value", f"{alg} signs a digest of {wanted} bytes, not {size} bytes.")
    else:
        if alg not in DECRYPT_ALGORITHMS:
            raise ProtocolError(
                "bad-value",
                f"Unknown decryption algorithm {alg!r}; use one of {', '.join(DECRYPT_ALGORITHMS)}.",
            )
        if not frame.fields[Tag.CIPHERTEXT]:
            raise ProtocolError("bad-value", "The CIPHERTEXT field is empty.")
    return op


def check_response(frame: Frame, op: Op | None = None) -> Status:
    """Check a decoded response: a known status; an error carries MESSAGE; OK carries ``op``'s fields."""
    try:
        status = Status(frame.code)
    except ValueError:
        raise ProtocolError("unknown-status", f"Unknown status {frame.code}.") from None
    if status is not Status.OK:
        if Tag.MESSAGE not in frame.fields:
            raise ProtocolError("missing-field", f"The {status.name} response carries no MESSAGE.")
        if set(frame.fields) != {Tag.MESSAGE}:
            raise ProtocolError("unexpected-field", "An error response carries only MESSAGE.")
        _utf8(frame, Tag.MESSAGE)
        return status
    if op is not None:
        wanted = _RESPONSE_FIELDS[op]
        if set(frame.fields) - wanted:
            raise ProtocolError("unexpected-field", f"The {op.name} response has fields it should not.")
        if wanted - set(frame.fields):
            raise ProtocolError("missing-field", f"The {op.name} response lacks fields.")
        if op is Op.HELLO and len(frame.fields[Tag.VERSIONS]) != 1:
            raise ProtocolError("bad-value", "The HELLO response must choose exactly one version.")
    return status


def choose_version(offered: bytes) -> int | None:
    """The highest protocol version both sides speak, or None."""
    common = set(offered) & set(SUPPORTED_VERSIONS)
    return max(common) if common else None


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    """Read ``size`` bytes from a blocking socket; fewer only when the peer closed the stream."""
    chunks: list[bytes] = []
    remaining = size
    while remaining:
        chunk = sock.recv(min(remaining, 65536))
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def read_frame(recv_exactly: Callable[[int], bytes]) -> bytes | None:
    """Read one whole frame with ``recv_exactly(n)`` (returns fewer bytes only at end of stream).

    Returns None on a clean end of stream before a frame started; raises ProtocolError for a bad length
    or a frame cut short.
    """
    header = recv_exactly(HEADER_SIZE)
    if not header:
        return None
    length = frame_length(header)
    body = recv_exactly(length)
    if len(body) != length:
        raise ProtocolError("short", f"The connection closed {len(body)} bytes into a {length}-byte frame.")
    return header + body


__all__ = [
    "DECRYPT_ALGORITHMS",
    "MAX_LENGTH",
    "PROTOCOL_VERSION",
    "REASONS",
    "SUPPORTED_VERSIONS",
    "Frame",
    "Op",
    "ProtocolError",
    "Status",
    "Tag",
    "check_request",
    "check_response",
    "choose_version",
    "decode_body",
    "decode_frame",
    "encode_frame",
    "frame_length",
    "read_frame",
    "recv_exactly",
]
