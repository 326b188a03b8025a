"""Guards a user relies on without seeing them: the linter does flag a bad certificate, serials are
random over their full width, and --force replaces a file only when asked."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from hsmcert.pki.certificate import SERIAL_BITS, random_serial
from tests.fixtures.x509_local import self_signed
from tests.hsm.conftest import run_cli

from .helpers import assert_csr_verifies


def test_the_linter_flags_a_ca_certificate_that_breaks_rfc_5280(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    careless = self_signed(
        key, "careless CA", extensions=[(x509.BasicConstraints(ca=True, path_length=None), False)]
    )
    path = tmp_path / "careless.pem"
    path.write_bytes(careless.public_bytes(serialization.Encoding.PEM))
    result = run_cli("--output", "json", "inspect", "--lint", str(path))
    assert result.code == 6, result.err
    findings = " ".join(json.loads(result.out)["lint"])
    for code in (
        "pkix.certificate_skid_ca_missing",
        "pkix.basic_constraints_extension_not_critical",
        "pkix.ca_certificate_no_ku_extension",
    ):
        assert code in findings


def test_serials_are_positive_random_and_use_the_full_width() -> None:
    serials = [random_serial() for _ in range(256)]
    assert len(set(serials)) == 256
    assert all(0 < s < 2**SERIAL_BITS for s in serials)
    # a counter or a short random field would never reach the top bits
    assert max(s.bit_length() for s in serials) >= SERIAL_BITS - 2
    assert sum(s >> (SERIAL_BITS - 1) for s in serials) > 64  # about half have the top bit set


def test_force_replaces_an_existing_file_and_nothing_else_does(keys_p256: str, tmp_path: Path) -> None:
    out = tmp_path / "www.csr"
    out.write_text("an old request\n")
    refused = run_cli("csr", "--key", keys_p256, "--subj", "/CN=www.example", "-o", str(out))
    assert refused.code == 7 and out.read_text() == "an old request\n"
    replaced = run_cli("csr", "--key", keys_p256, "--subj", "/CN=www.example", "-o", str(out), "--force")
    assert replaced.code == 0, replaced.err
    assert_csr_verifies(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["www.csr"]  # no temporary file left


def test_pem_is_the_default_and_der_on_request(keys_p256: str, tmp_path: Path) -> None:
    pem, der = tmp_path / "a.pem", tmp_path / "a.der"
    assert run_cli("selfsign", "--key", keys_p256, "--subj", "/CN=a.example", "-o", str(pem)).code == 0
    assert (
        run_cli("selfsign", "--key", keys_p256, "--subj", "/CN=a.example", "--der", "-o", str(der)).code == 0
    )
    assert pem.read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
    assert x509.load_der_x509_certificate(der.read_bytes()).subject.rfc4514_string() == "CN=a.example"


@pytest.fixture(scope="module")
def keys_p256(emulator: Any) -> str:
    from uuid import uuid4

    from hsmcert.session import default_session

    ref = f"managedhsm:local-hsm:pki-guard-{uuid4().hex[:8]}"
    default_session().keys.create(ref, "EC", curve="P-256")
    return ref


def test_an_unwritable_output_is_refused_before_the_hsm_signs(
    emulator: Any, keys_p256: str, tmp_path: Path
) -> None:
    key = keys_p256.rsplit(":", 1)[1]

    def signs() -> int:
        return sum(1 for e in emulator.audit() if e.get("key") == key and e["operation"] == "sign")

    before = signs()
    for out, expected in (
        (tmp_path / "missing" / "x.csr", "does not exist"),
        (tmp_path, "is a directory"),
    ):
        result = run_cli("csr", "--key", keys_p256, "--subj", "/CN=x", "-o", str(out), "--force")
        assert result.code == 1 and expected in result.err, result.err
        assert "Traceback" not in result.err and "bug" not in result.err
    assert signs() == before
    # a directory nobody may create files in, root included
    result = run_cli("provider", "pem-ref", "--key", keys_p256, "-o", "/proc/hsmcert-key.pem")
    assert result.code == 1 and "Cannot write /proc/hsmcert-key.pem" in result.err, result.err
    assert "bug" not in result.err
