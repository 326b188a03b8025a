"""A minimal Windows PE32+ executable (headers and one code section), to sign with Authenticode in tests."""

from __future__ import annotations

import struct


def minimal_pe(payload: bytes = b"") -> bytes:
    """A valid PE32+ image whose .text section holds ``ret`` followed by ``payload`` (at most 500 bytes)."""
    assert len(payload) <= 500
    dos = bytearray(0x80)
    dos[0:2] = b"MZ"
    struct.pack_into("<I", dos, 0x3C, 0x80)
    coff = struct.pack("<HHIIIHH", 0x8664, 1, 0, 0, 0, 240, 0x22)
    optional = struct.pack(
        "<HBBIIIIIQIIHHHHHHIIIIHHQQQQII",
        0x20B,
        14,
        0,
        0x200,
        0,
        0,
        0x1000,
        0x1000,
        0x140000000,
        0x1000,
        0x200,
        6,
        0,
        0,
        0,
        6,
        0,
        0,
        0x2000,
        0x200,
        0,
        3,
        0x8160,
        0x100000,
        0x1000,
        0x100000,
        0x1000,
        0,
        16,
    ) + bytes(16 * 8)
    assert len(optional) == 240
    section = struct.pack("<8sIIIIIIHHI", b".text", 0x200, 0x1000, 0x200, 0x200, 0, 0, 0, 0, 0x60000020)
    headers = bytes(dos) + b"PE\0\0" + coff + optional + section
    headers += bytes(0x200 - len(headers))
    text = (b"\xc3" + payload).ljust(0x200, b"\0")
    return headers + text
