"""What the provider says when something fails, as openssl prints it (sanitizer build).

Every failure puts one error on OpenSSL's queue naming the provider's source file, line and function
that raised it; a message too long for OpenSSL's 1,024-byte error text is shortened in the middle
instead of being dropped (OpenSSL 3.0 stores an empty text then); bad openssl.cnf values are refused.
"""

from __future__ import annotations

import base64
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.native.conftest import HsmKeys, run
from tests.native.test_faults import _PEM_READ

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ROOT / "native" / "src"
# OpenSSL's error line: CODE:error:HEX:lib:function:reason:file:line:text
ERROR_LINE = re.compile(r"^[0-9A-F]+:error:[0-9A-F]+:hsmcert:([^:]*):[^:]*:(src/\w+\.c):(\d+):(.*)$", re.M)


def _sanitizer_clean(result: Any) -> None:
    assert result.returncode != 23, result.stderr[-3000:]
    assert "Sanitizer" not in result.stderr and "runtime error" not in result.stderr, result.stderr[-3000:]


def _errors(stderr: str) -> list[tuple[str, str, int, str]]:
    return [(m[1], m[2], int(m[3]), m[4]) for m in ERROR_LINE.finditer(stderr)]


def _raise_line(file: str, text: str) -> int:
    """The line of the hsmcert_raise call whose message contains ``text``."""
    lines = (SOURCES.parent / file).read_text().splitlines()
    for i, line in enumerate(lines):
        if text in line:
            start = max(i for i in range(i + 1) if "hsmcert_raise(" in lines[i])
            return start + 1
    raise AssertionError(f"{text!r} is not in {file}")


def _pem_file(ref: str, path: Path) -> Path:
    """A PEM key reference written by hand (hsmcert's own writer refuses references this long)."""

    def der(tag: int, value: bytes) -> bytes:
        n = len(value)
        size = bytes([n]) if n < 0x80 else bytes([0x81, n]) if n < 0x100 else bytes([0x82, n >> 8, n & 0xFF])
        return bytes([tag]) + size + value

    body = der(0x30, der(0x0C, b"hsmcert key reference v1") + der(0x0C, ref.encode()))
    b64 = base64.b64encode(body).decode()
    lines = [b64[i : i + 64] for i in range(0, len(b64), 64)]
    path.write_text(
        "\n".join(
            ["-----BEGIN HSMCERT KEY REFERENCE-----", *lines, "-----END HSMCERT KEY REFERENCE-----", ""]
        )
    )
    return path


@pytest.mark.parametrize("extra", ["x" * 500, "x" * 600, "x" * 950, "x" * 5000, "\u00e9" * 475])
def test_a_long_key_reference_gets_the_agents_error(
    native: Any, agent: Any, hsm_keys: HsmKeys, tmp_path: Path, extra: str
) -> None:
    """References over ~490 characters made the message too long for OpenSSL, which printed nothing.
    Shortened texts keep whole UTF-8 characters (the output is decoded strictly)."""
    env = native.asan_openssl_env(agent.socket)
    ref = hsm_keys.ec + extra
    shown = ref.encode()[:120].decode(errors="ignore")
    result = run(["openssl", "pkey", "-in", ref, "-pubout"], env)
    _sanitizer_clean(result)
    assert result.returncode == 1
    errors = _errors(result.stderr)
    assert len(errors) == 1, result.stderr[-3000:]
    function, file, _, text = errors[0]
    assert (function, file) == ("hsmcert_key_fetch", "src/keymgmt.c")
    assert text.startswith(f"Cannot load the key {shown}...: Invalid key reference")
    assert text.endswith("(agent status BAD_REQUEST)"), text
    assert len(text) < 1024
    if len(extra) == 5000:
        assert "the reference is longer than 1024 characters" in text
    else:
        assert "is not a valid key name" in text
    if extra == "x" * 950:  # the agent's sentence quotes the whole reference: shortened in the middle
        assert " [...] " in text
    elif extra[0] == "x":
        assert " [...] " not in text
    # the same through a PEM key reference read the way nginx, curl, haproxy and stunnel read keys
    pem = _pem_file(ref, tmp_path / "long.key")
    python_env = {**env, "ASAN_OPTIONS": "detect_leaks=0:exitcode=23"}  # CPython is not leak-clean at exit
    result = run([sys.executable, "-c", _PEM_READ, str(pem)], python_env)
    _sanitizer_clean(result)
    assert result.returncode == 1
    assert f"Cannot load the key {shown}...: Invalid key reference" in result.stderr, result.stderr[-3000:]
    assert "(agent status BAD_REQUEST)" in result.stderr


def test_a_reference_longer_than_a_frame_is_refused_by_the_provider(
    native: Any, agent: Any, hsm_keys: HsmKeys
) -> None:
    env = native.asan_openssl_env(agent.socket)
    result = run(["openssl", "pkey", "-in", hsm_keys.ec + "x" * 40000, "-pubout"], env)
    _sanitizer_clean(result)
    errors = _errors(result.stderr)
    assert len(errors) == 1, result.stderr[-3000:]
    assert errors[0][3].endswith(": the key reference is longer than 32768 bytes."), errors[0][3]


def test_errors_name_the_file_and_line_that_raised_them(native: Any, agent: Any, hsm_keys: HsmKeys) -> None:
    env = native.asan_openssl_env(agent.socket)
    result = run(["openssl", "req", "-new", "-key", hsm_keys.rsa, "-subj", "/CN=x", "-sha1", "-noout"], env)
    _sanitizer_clean(result)
    assert result.returncode == 1
    found = [e for e in _errors(result.stderr) if "SHA-256, SHA-384 or SHA-512 digests, not" in e[3]]
    assert found, result.stderr
    function, file, line, _ = found[0]
    assert (function, file) == ("fetch_md", "src/signature.c")
    assert line == _raise_line(file, "The HSM signs SHA-256, SHA-384 or SHA-512 digests")

    result = run(["openssl", "pkey", "-in", hsm_keys.ec], env)
    _sanitizer_clean(result)
    found = [e for e in _errors(result.stderr) if "stays in the HSM" in e[3]]
    assert found, result.stderr
    assert found[0][:3] == ("km_export", "src/keymgmt.c", _raise_line("src/keymgmt.c", "stays in the HSM"))


@pytest.mark.parametrize("value", ["10s", "0", "-5", "99999999999999999999", "", "1e3", "3600001"])
def test_a_bad_timeout_in_openssl_cnf_is_refused(native: Any, tmp_path: Path, value: str) -> None:
    """OpenSSL drops errors raised while it reads openssl.cnf: the refusal comes with each key load."""
    env = native.asan_openssl_env(tmp_path / "agent.sock")
    conf = Path(env["OPENSSL_CONF"])
    text = conf.read_text()
    assert "timeout_ms = 10000\n" in text
    conf.write_text(text.replace("timeout_ms = 10000\n", f"timeout_ms = {value}\n"))
    result = run(["openssl", "pkey", "-in", "managedhsm:hsm:key", "-pubout"], env)
    _sanitizer_clean(result)
    assert result.returncode != 0
    assert (
        f"timeout_ms = {value} in the provider's openssl.cnf section is not a whole number of milliseconds"
        in (result.stderr)
    ), result.stderr[-3000:]


def test_a_bad_pss_salt_length_is_refused(native: Any, agent: Any, hsm_keys: HsmKeys) -> None:
    env = native.asan_openssl_env(agent.socket)
    for salt in ("32x", "lots", "99999999999"):
        result = run(
            ["openssl", "req", "-new", "-key", hsm_keys.rsa, "-subj", "/CN=x", "-sigopt", "rsa_padding_mode:pss",
             "-sigopt", f"rsa_pss_saltlen:{salt}", "-noout"],
            env,
        )  # fmt: skip
        _sanitizer_clean(result)
        assert result.returncode != 0
        assert f"The RSA-PSS salt length {salt} is not digest, max, auto or a byte count" in result.stderr, (
            result.stderr[-3000:]
        )
