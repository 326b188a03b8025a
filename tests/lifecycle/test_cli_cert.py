"""hsmcert cert adopt | list | needs-renewal | forget against the emulator."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hsmcert.lifecycle.state import Store
from tests.hsm.conftest import run_cli

from .conftest import make_key
from .helpers import dated_selfsigned


def test_adopt_checks_the_key_and_records_the_certificate(
    hsm_session: Any, config_dir: Path, tmp_path: Path
) -> None:
    ref = make_key(hsm_session)
    other = make_key(hsm_session, "other")
    cert = dated_selfsigned(
        hsm_session.private_key(ref), tmp_path / "www.pem", start_days_ago=1, lifetime_days=90
    )

    refused = run_cli("cert", "adopt", str(cert), "--key", other)
    assert refused.code == 6, refused.err
    assert "is not the one of" in refused.err and "Traceback" not in refused.err
    assert not (config_dir / "certificates.toml").exists()

    done = run_cli("--output", "json", "cert", "adopt", str(cert), "--key", ref)
    assert done.code == 0, done.err
    record = Store(config_dir / "certificates.toml").get("www")
    assert record.key.startswith(ref + "?version=")
    assert (record.issuer_kind, record.cert, record.days, record.sans) == (
        "self-signed",
        str(cert),
        90,
        ["DNS:www.example.com"],
    )
    again = run_cli("cert", "adopt", str(cert), "--key", ref)
    assert again.code == 7  # the name exists


def test_adopt_of_a_ca_issued_certificate_needs_its_issuer(
    hsm_session: Any, config_dir: Path, ca: Any, tmp_path: Path
) -> None:
    ref = make_key(hsm_session)
    csr = tmp_path / "a.csr"
    assert run_cli("csr", "--key", ref, "--subj", "/CN=a.example.com", "-o", str(csr)).code == 0
    leaf = tmp_path / "a.pem"
    issued = run_cli(
        "issue", "--ca-key", ca.key, "--ca-cert", str(ca.cert), "--csr", str(csr), "-o", str(leaf)
    )
    assert issued.code == 0, issued.err
    missing = run_cli("cert", "adopt", str(leaf), "--key", ref)
    assert missing.code == 2 and "--issuer hsmcert-ca" in missing.err
    done = run_cli("cert", "adopt", str(leaf), "--key", ref, "--ca-key", ca.key, "--ca-cert", str(ca.cert))
    assert done.code == 0, done.err
    assert Store(config_dir / "certificates.toml").get("a").issuer == {
        "kind": "hsmcert-ca",
        "ca_key": ca.key,
        "ca_cert": str(ca.cert),
    }


def test_list_reports_the_states(hsm_session: Any, config_dir: Path, tmp_path: Path) -> None:
    fresh_key, old_key, rotated_key = (make_key(hsm_session, p) for p in ("fresh", "old", "rot"))
    files = tmp_path / "certs"
    files.mkdir()
    dated_selfsigned(
        hsm_session.private_key(fresh_key), files / "fresh.pem", start_days_ago=1, lifetime_days=90
    )
    dated_selfsigned(hsm_session.private_key(old_key), files / "old.pem", start_days_ago=70, lifetime_days=90)
    dated_selfsigned(
        hsm_session.private_key(old_key), files / "gone.crt", start_days_ago=100, lifetime_days=90
    )
    dated_selfsigned(
        hsm_session.private_key(rotated_key), files / "rot.pem", start_days_ago=1, lifetime_days=90
    )
    (files / "notes.txt").write_text("not a certificate")
    for name, key in (("fresh", fresh_key), ("old", old_key), ("rot", rotated_key)):
        assert run_cli("cert", "adopt", str(files / f"{name}.pem"), "--key", key).code == 0
    hsm_session.keys.rotate(rotated_key)

    listed = run_cli("--output", "json", "cert", "list", str(files))
    assert listed.code == 0, listed.err
    document = json.loads(listed.out)
    assert document["schema"] == 1
    by_path = {Path(c["path"]).name: c for c in document["certificates"]}
    assert set(by_path) == {"fresh.pem", "old.pem", "gone.crt", "rot.pem"}
    assert {n: c["state"] for n, c in by_path.items()} == {
        "fresh.pem": "ok",
        "old.pem": "renew-due",
        "gone.crt": "expired",
        "rot.pem": "key-rotated",
    }
    fresh = by_path["fresh.pem"]
    assert fresh["source"] == "managed" and fresh["name"] == "fresh" and fresh["key_current"] is True
    assert fresh["sans"] == ["DNS:www.example.com"] and fresh["days_left"] in (88, 89)
    assert fresh["not_after"].endswith("Z") and "T" in fresh["not_after"]
    assert by_path["gone.crt"]["source"] == "file" and by_path["gone.crt"]["key"] is None
    assert by_path["rot.pem"]["key_current"] is False

    text = run_cli("cert", "list", str(files))
    assert text.code == 0
    for word in ("fresh", "renew-due", "expired", "key-rotated", "www.example.com"):
        assert word in text.out


def test_needs_renewal_exit_codes(hsm_session: Any, config_dir: Path, tmp_path: Path) -> None:
    ref = make_key(hsm_session)
    key = hsm_session.private_key(ref)
    young = dated_selfsigned(key, tmp_path / "young.pem", start_days_ago=10, lifetime_days=90)
    due = dated_selfsigned(key, tmp_path / "due.pem", start_days_ago=65, lifetime_days=90)
    assert run_cli("cert", "needs-renewal", str(young)).code == 1
    assert run_cli("cert", "needs-renewal", str(due)).code == 0
    assert run_cli("cert", "needs-renewal", str(young), "--before", "85d").code == 0
    assert run_cli("cert", "needs-renewal", str(young), "--before", "5%").code == 1
    assert run_cli("cert", "needs-renewal", str(tmp_path / "missing.pem")).code == 3
    assert run_cli("cert", "needs-renewal", str(young), "--before", "soon").code == 2
    (tmp_path / "junk.pem").write_text("junk")
    assert run_cli("cert", "needs-renewal", str(tmp_path / "junk.pem")).code == 2

    assert run_cli("cert", "adopt", str(young), "--key", ref, "--name", "young").code == 0
    assert run_cli("cert", "needs-renewal", "young").code == 1
    hsm_session.keys.rotate(ref)
    rotated = run_cli("--output", "json", "cert", "needs-renewal", "young")
    assert rotated.code == 0 and json.loads(rotated.out)["state"] == "key-rotated"
    assert run_cli("cert", "needs-renewal", "young", "--offline").code == 1


def test_forget(hsm_session: Any, config_dir: Path, tmp_path: Path) -> None:
    ref = make_key(hsm_session)
    cert = dated_selfsigned(
        hsm_session.private_key(ref), tmp_path / "f.pem", start_days_ago=1, lifetime_days=30
    )
    assert run_cli("cert", "adopt", str(cert), "--key", ref).code == 0
    assert run_cli("cert", "forget", "f").code == 0
    assert len(Store(config_dir / "certificates.toml")) == 0 and cert.exists()
    assert run_cli("cert", "forget", "f").code == 3
