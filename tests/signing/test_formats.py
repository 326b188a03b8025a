"""hsmcert sign / verify-signature, every format, on the emulator with RSA (PKCS#1 v1.5 and PSS) and EC keys.

What hsmcert writes is checked by the verifier a downstream user runs: openssl dgst and openssl cms,
sha256sum, securesystemslib and in-toto for DSSE, osslsigncode for Authenticode. A changed file and the
wrong key are refused by verify-signature with exit 6.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from cryptography.hazmat.primitives import serialization

from tests.hsm.conftest import CliResult, run_cli

from .loopback import QuietHandler, serving
from .pe import minimal_pe

HSM = "local-hsm"


@dataclass
class Key:
    ref: str
    alg: str
    pub: Path
    cert: Path
    public_key: Any


def ok(result: CliResult) -> CliResult:
    assert result.code == 0, result.out + result.err
    return result


def run(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=120, cwd=cwd)


@pytest.fixture(scope="module")
def keys(emulator: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Key]]:
    """An RSA key signing with PKCS#1 v1.5 and with PSS, an EC key; each with its public key and a
    self-signed code-signing certificate."""
    from hsmcert.session import default_session

    work = tmp_path_factory.mktemp("signing-keys")
    old = os.environ.get("HSMCERT_CACHE_DIR")
    os.environ["HSMCERT_CACHE_DIR"] = str(work / "cache")
    rsa = f"managedhsm:{HSM}:sign-rsa-{uuid4().hex[:8]}"
    ec = f"managedhsm:{HSM}:sign-ec-{uuid4().hex[:8]}"
    default_session().keys.create(rsa, "RSA", size=2048)
    default_session().keys.create(ec, "EC", curve="P-256")
    found = {}
    for name, ref, alg in (("rsa-pkcs1", rsa, "RS256"), ("rsa-pss", rsa, "PS256"), ("ec", ec, "ES256")):
        public_key = default_session().open_key(ref).public_key
        pub = work / f"{name}.pub"
        pub.write_bytes(
            public_key.public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        cert = work / f"{name}.crt"
        ok(
            run_cli(
                "selfsign",
                "--key",
                ref,
                "--subj",
                f"/CN={name} release",
                "--profile",
                "code-signing",
                "--alg",
                alg,
                "-o",
                str(cert),
            )
        )
        found[name] = Key(ref, alg, pub, cert, public_key)
    yield found
    if old is None:
        os.environ.pop("HSMCERT_CACHE_DIR", None)
    else:
        os.environ["HSMCERT_CACHE_DIR"] = old


@pytest.fixture
def files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    monkeypatch.chdir(tmp_path)
    made = []
    for i in range(3):
        path = Path(f"app-{i}.tar.gz")
        path.write_bytes(os.urandom(1000 + i))
        made.append(path)
    return made


def sign(key: Key, *args: str | Path) -> CliResult:
    return run_cli("sign", "--key", key.ref, "--alg", key.alg, *[str(a) for a in args])


def verify(*args: str | Path) -> CliResult:
    return run_cli("verify-signature", *[str(a) for a in args])


def tamper(path: Path, at: int = -3) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 1
    path.write_bytes(bytes(data))


ALL = pytest.mark.parametrize("name", ["rsa-pkcs1", "rsa-pss", "ec"])


@ALL
@pytest.mark.parametrize("fmt", ["raw", "raw-base64"])
def test_raw_signatures_pass_openssl_dgst(
    keys: dict[str, Key], files: list[Path], name: str, fmt: str
) -> None:
    key, other = keys[name], keys["ec" if name != "ec" else "rsa-pkcs1"]
    ok(sign(key, "--format", fmt, *files))
    pss = ["-sigopt", "rsa_padding_mode:pss"] if key.alg.startswith("PS") else []
    for path in files:
        sig = Path(f"{path}.sig") if fmt == "raw" else Path(f"{path}.sig.b64")
        if fmt == "raw-base64":
            Path("decoded.sig").write_bytes(base64.b64decode(sig.read_text()))
            sig = Path("decoded.sig")
        checked = run("openssl", "dgst", "-sha256", *pss, "-verify", key.pub, "-signature", sig, path)
        assert checked.returncode == 0 and "Verified OK" in checked.stdout, checked.stderr
    assert ok(verify(*files, "--pubkey", key.pub)).out.count("ok ") == 3
    assert verify(files[0], "--pubkey", other.pub).code == 6
    tamper(files[1])
    bad = verify(files[1], "--key", key.ref)
    assert bad.code == 6 and "BAD" in bad.out


@ALL
def test_cms_passes_openssl_cms_verify(keys: dict[str, Key], files: list[Path], name: str) -> None:
    key, other = keys[name], keys["ec" if name != "ec" else "rsa-pkcs1"]
    ok(sign(key, "--format", "cms", "--cert", key.cert, *files))
    for path in files:
        checked = run(
            "openssl",
            "cms",
            "-verify",
            "-binary",
            "-inform",
            "DER",
            "-in",
            f"{path}.p7s",
            "-content",
            path,
            "-CAfile",
            key.cert,
            "-purpose",
            "any",
            "-out",
            os.devnull,
        )
        assert checked.returncode == 0, checked.stderr
    assert ok(verify(files[0], "--ca", key.cert)).out.startswith("ok ")
    assert verify(files[0], "--cert", other.cert).code == 6
    assert verify(files[0], "--format", "cms", "--key", other.ref).code == 6
    tamper(files[2])
    assert verify(files[2], "--cert", key.cert).code == 6


@ALL
def test_dsse_envelope_passes_securesystemslib_and_in_toto(
    keys: dict[str, Key], files: list[Path], name: str
) -> None:
    from in_toto.models.metadata import Envelope
    from securesystemslib.signer import SSlibKey

    key = keys[name]
    Path("provenance.json").write_text(json.dumps({"buildType": "https://example.com/ci/v1"}))
    ok(
        sign(
            key,
            "--format",
            "dsse",
            "-o",
            "release.intoto.jsonl",
            "--predicate",
            "provenance.json",
            "--predicate-type",
            "https://slsa.dev/provenance/v1",
            *files,
        )
    )
    doc = json.loads(Path("release.intoto.jsonl").read_text())
    scheme = {"RS256": "rsa-pkcs1v15-sha256", "PS256": "rsassa-pss-sha256", "ES256": "ecdsa-sha2-nistp256"}[
        key.alg
    ]
    sslib_key = SSlibKey.from_crypto(key.public_key, keyid=doc["signatures"][0]["keyid"], scheme=scheme)
    envelope = Envelope.from_dict(doc)
    assert sslib_key.keyid in envelope.verify([sslib_key], 1)
    statement = json.loads(envelope.pae().split(b" ", 4)[4])
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["predicateType"] == "https://slsa.dev/provenance/v1"
    assert statement["predicate"] == {"buildType": "https://example.com/ci/v1"}
    import hashlib

    assert {s["name"]: s["digest"]["sha256"] for s in statement["subject"]} == {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in files
    }
    assert ok(verify(*files, "--signature", "release.intoto.jsonl", "--key", key.ref)).out.count("ok ") == 3
    tamper(files[0])
    assert verify(files[0], "--signature", "release.intoto.jsonl", "--pubkey", key.pub).code == 6


@ALL
def test_checksums_pass_openssl_and_sha256sum(keys: dict[str, Key], files: list[Path], name: str) -> None:
    key = keys[name]
    ok(sign(key, "--format", "checksums", *files))
    pss = ["-sigopt", "rsa_padding_mode:pss"] if key.alg.startswith("PS") else []
    checked = run(
        "openssl", "dgst", "-sha256", *pss, "-verify", key.pub, "-signature", "SHA256SUMS.sig", "SHA256SUMS"
    )
    assert checked.returncode == 0, checked.stderr
    assert run("sha256sum", "-c", "SHA256SUMS").returncode == 0
    assert ok(verify("SHA256SUMS", "--pubkey", key.pub)).out.count("ok ") == 4
    tamper(files[1])
    bad = verify("SHA256SUMS", "--pubkey", key.pub)
    assert bad.code == 6 and f"BAD {files[1]}" in bad.out


@pytest.mark.parametrize("name", ["rsa-pkcs1", "ec"])
def test_authenticode_passes_osslsigncode_verify(
    keys: dict[str, Key], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.chdir(tmp_path)
    key, other = keys[name], keys["ec" if name != "ec" else "rsa-pkcs1"]
    exes = []
    for i in range(2):
        exe = Path(f"tool-{i}.exe")
        exe.write_bytes(minimal_pe(f"tool {i}".encode()))
        exes.append(exe)
    ok(sign(key, "--format", "authenticode", "--cert", key.cert, *exes))
    for exe in exes:
        checked = run("osslsigncode", "verify", "-in", exe, "-CAfile", key.cert)
        assert checked.returncode == 0, checked.stdout + checked.stderr
    assert ok(verify(exes[0], "--cert", key.cert)).out.startswith("ok ")
    assert verify(exes[0], "--cert", other.cert).code == 6
    tamper(exes[1], at=0x210)  # in the code section
    assert verify(exes[1], "--ca", key.cert).code == 6


def test_authenticode_refuses_pss(keys: dict[str, Key], tmp_path: Path) -> None:
    exe = tmp_path / "tool.exe"
    exe.write_bytes(minimal_pe(b"pss"))
    key = keys["rsa-pss"]
    refused = sign(key, "--format", "authenticode", "--cert", key.cert, exe)
    assert refused.code == 2 and "PSS" in refused.err
    assert exe.read_bytes() == minimal_pe(b"pss")


TSA_CONF = """[ tsa ]
default_tsa = tsa_config1
[ tsa_config1 ]
serial = {serial}
crypto_device = builtin
signer_digest = sha256
default_policy = 1.2.3.4.1
other_policies = 1.2.3.4.5
certs = {cert}
digests = sha256, sha384, sha512
accuracy = secs:1
ordering = yes
tsa_name = no
ess_cert_id_chain = no
ess_cert_id_alg = sha256
"""


@pytest.fixture
def tsa(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """An RFC 3161 timestamp server on loopback (openssl ts -reply behind a small HTTP handler): (URL, its
    certificate)."""
    work = tmp_path_factory.mktemp("tsa")
    key, cert = work / "tsa.key", work / "tsa.crt"
    made = run(
        "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", key, "-out", cert, "-subj", "/CN=Test TSA", "-days", "2",
        "-addext", "extendedKeyUsage=critical,timeStamping", "-addext", "keyUsage=critical,digitalSignature",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    (work / "serial").write_text("01\n")
    conf = work / "tsa.cnf"
    conf.write_text(TSA_CONF.format(serial=work / "serial", cert=cert))
    import threading

    lock = threading.Lock()

    class Handler(QuietHandler):
        def do_POST(self) -> None:
            query = self.rfile.read(int(self.headers["Content-Length"]))
            with lock:
                (work / "q.tsq").write_bytes(query)
                answered = run(
                    "openssl", "ts", "-reply", "-config", conf, "-queryfile", work / "q.tsq",
                    "-signer", cert, "-inkey", key, "-out", work / "r.tsr",
                )  # fmt: skip
                reply = (work / "r.tsr").read_bytes() if answered.returncode == 0 else b""
            self.answer(200 if reply else 500, reply, "application/timestamp-reply")

    with serving(Handler) as url:
        yield url, cert


def test_authenticode_with_an_rfc3161_timestamp(
    keys: dict[str, Key], tsa: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, tsa_cert = tsa
    monkeypatch.chdir(tmp_path)
    exe = Path("stamped.exe")
    exe.write_bytes(minimal_pe(b"stamped"))
    key = keys["rsa-pkcs1"]
    ok(sign(key, "--format", "authenticode", "--cert", key.cert, "--timestamp-url", url, exe))
    checked = run("osslsigncode", "verify", "-in", exe, "-CAfile", key.cert, "-TSA-CAfile", tsa_cert)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "Timestamp Server Signature verification: ok" in checked.stdout


def test_authenticode_failures_leave_the_file_alone(keys: dict[str, Key], tmp_path: Path) -> None:
    key = keys["rsa-pkcs1"]
    text = tmp_path / "notes.exe"
    text.write_text("not a program")
    refused = sign(key, "--format", "authenticode", "--cert", key.cert, text)
    assert refused.code == 2 and "not a file Authenticode signs" in refused.err
    exe = tmp_path / "tool.exe"
    exe.write_bytes(minimal_pe(b"unstamped"))
    failed = sign(
        key, "--format", "authenticode", "--cert", key.cert, "--timestamp-url", "http://127.0.0.1:9", exe
    )
    assert failed.code == 1 and "--timestamp-url" in failed.err and "Traceback" not in failed.err
    assert exe.read_bytes() == minimal_pe(b"unstamped") and text.read_text() == "not a program"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.exe", "tool.exe"]
