"""--manage on selfsign and issue; key rotate's warning and --renew."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hsmcert.lifecycle.state import Store
from tests.hsm.conftest import run_cli

from .conftest import Ca, make_key


def test_selfsign_manage_records_what_it_wrote(hsm_session: Any, config_dir: Path, tmp_path: Path) -> None:
    ref = make_key(hsm_session)
    out = tmp_path / "s.pem"
    done = run_cli(
        "selfsign",
        "--key",
        ref,
        "--subj",
        "/O=Acme/CN=s.example.com",
        "--days",
        "45",
        "--alg",
        "ES256",
        "-o",
        str(out),
        "--manage",
        "s",
    )
    assert done.code == 0, done.err
    record = Store(config_dir / "certificates.toml").get("s")
    assert (record.subject, record.sans, record.days, record.alg, record.profile, record.cert) == (
        "/O=Acme/CN=s.example.com",
        ["DNS:s.example.com"],
        45,
        "ES256",
        "tls-server",
        str(out),
    )
    assert record.issuer == {"kind": "self-signed"} and "?version=" in record.key


def test_manage_is_refused_before_anything_is_signed(
    hsm_session: Any, config_dir: Path, tmp_path: Path
) -> None:
    ref = make_key(hsm_session)
    to_stdout = run_cli("selfsign", "--key", ref, "--subj", "/CN=x.example.com", "--manage", "x")
    assert to_stdout.code == 2 and "-o FILE" in to_stdout.err
    bad_name = run_cli(
        "selfsign",
        "--key",
        ref,
        "--subj",
        "/CN=x.example.com",
        "-o",
        str(tmp_path / "x.pem"),
        "--manage",
        "../x",
    )
    assert bad_name.code == 2 and not (tmp_path / "x.pem").exists()
    no_key = run_cli(
        "issue", "--ca-key", ref, "--ca-cert", "/nonexistent", "--csr", "/nonexistent", "--manage", "x"
    )
    assert no_key.code in (2, 3)


def test_issue_manage_checks_the_csr_key(hsm_session: Any, config_dir: Path, ca: Ca, tmp_path: Path) -> None:
    ref, other = make_key(hsm_session), make_key(hsm_session, "other")
    assert (
        run_cli("csr", "--key", ref, "--subj", "/CN=i.example.com", "-o", str(tmp_path / "i.csr")).code == 0
    )
    args = ["issue", "--ca-key", ca.key, "--ca-cert", str(ca.cert), "--csr", str(tmp_path / "i.csr")]
    wrong = run_cli(*args, "-o", str(tmp_path / "i.pem"), "--manage", "i", "--key", other)
    assert wrong.code == 6 and not (tmp_path / "i.pem").exists()
    assert len(Store(config_dir / "certificates.toml")) == 0
    right = run_cli(*args, "-o", str(tmp_path / "i.pem"), "--manage", "i", "--key", ref)
    assert right.code == 0, right.err
    record = Store(config_dir / "certificates.toml").get("i")
    assert record.issuer["ca_key"].startswith(ca.key + "?version=") and record.key.startswith(
        ref + "?version="
    )


def test_key_rotate_warns_and_renews(hsm_session: Any, config_dir: Path, tmp_path: Path) -> None:
    ref = make_key(hsm_session)
    for name in ("one", "two"):
        out = tmp_path / f"{name}.pem"
        made = run_cli(
            "selfsign", "--key", ref, "--subj", f"/CN={name}.example.com", "-o", str(out), "--manage", name
        )
        assert made.code == 0, made.err
    warned = run_cli("--output", "json", "key", "rotate", "--key", ref)
    assert warned.code == 0, warned.err
    assert json.loads(warned.out)["managed_certificates"] == ["one", "two"]
    assert "hsmcert renew one two" in warned.err
    listed = json.loads(run_cli("--output", "json", "cert", "list").out)["certificates"]
    assert {c["name"]: c["state"] for c in listed} == {"one": "key-rotated", "two": "key-rotated"}

    renewed = run_cli("--output", "json", "key", "rotate", "--key", ref, "--renew")
    assert renewed.code == 0, renewed.err
    data = json.loads(renewed.out)
    assert [r["status"] for r in data["renewals"]] == ["renewed", "renewed"]
    store = Store(config_dir / "certificates.toml")
    assert {c.key for c in store} == {f"{ref}?version={data['version']}"}
    listed = json.loads(run_cli("--output", "json", "cert", "list").out)["certificates"]
    assert {c["state"] for c in listed} == {"ok"}


def test_csr_manage_tracks_a_certificate_an_outside_ca_signs(
    hsm_session: Any, config_dir: Path, ca: Ca, tmp_path: Path
) -> None:
    from cryptography import x509

    ref = make_key(hsm_session)
    csr, cert = tmp_path / "ext.csr", tmp_path / "ext.pem"
    no_cert = run_cli("csr", "--key", ref, "--subj", "/CN=ext.example.com", "-o", str(csr), "--manage", "ext")
    assert no_cert.code == 2 and not csr.exists()
    made = run_cli(
        "csr", "--key", ref, "--subj", "/CN=ext.example.com", "--san", "DNS:ext.example.com",
        "-o", str(csr), "--manage", "ext", "--cert", str(cert),
    )  # fmt: skip
    assert made.code == 0, made.err
    record = Store(config_dir / "certificates.toml").get("ext")
    assert record.issuer == {"kind": "manual", "csr": str(csr)} and record.cert == str(cert)
    waiting = json.loads(run_cli("--output", "json", "cert", "list").out)["certificates"]
    assert [c["state"] for c in waiting] == ["unreadable"]

    # the outside CA answers
    signed = run_cli(
        "issue", "--ca-key", ca.key, "--ca-cert", str(ca.cert), "--csr", str(csr), "-o", str(cert)
    )
    assert signed.code == 0, signed.err
    listed = json.loads(run_cli("--output", "json", "cert", "list").out)["certificates"]
    assert [(c["name"], c["state"]) for c in listed] == [("ext", "ok")]

    first = csr.read_bytes()
    renewal = run_cli("renew", "ext", "--force")
    assert renewal.code == 1 and "a new CSR" in renewal.err and str(cert) in renewal.err
    again = x509.load_pem_x509_csr(csr.read_bytes())
    assert csr.read_bytes() != first and again.is_signature_valid
    assert again.subject == x509.load_pem_x509_csr(first).subject
