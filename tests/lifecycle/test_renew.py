"""hsmcert renew: every shipped issuer, checked files, .previous copies, hooks, failures, idempotence."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from cryptography import x509

from hsmcert.lifecycle.state import Store
from hsmcert.pki.signing import same_public_key
from tests.hsm.conftest import run_cli
from tests.pki.helpers import assert_chain_verifies, assert_lint_clean

from .conftest import Ca, make_key
from .helpers import dated_selfsigned


def leaf(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificates(path.read_bytes())[0]


def test_self_signed_renewal_keeps_subject_sans_and_key(
    hsm_session: Any, config_dir: Path, tmp_path: Path
) -> None:
    ref = make_key(hsm_session)
    cert = dated_selfsigned(
        hsm_session.private_key(ref), tmp_path / "www.pem", start_days_ago=70, lifetime_days=90
    )
    old = cert.read_bytes()
    assert run_cli("cert", "adopt", str(cert), "--key", ref).code == 0

    done = run_cli("--output", "json", "renew", "www")
    assert done.code == 0, done.err
    report = json.loads(done.out)
    assert (report["renewed"], report["skipped"], report["failed"]) == (1, 0, 0)
    new = leaf(cert)
    assert new.subject == leaf(tmp_path / "www.pem.previous").subject
    assert (tmp_path / "www.pem.previous").read_bytes() == old
    assert same_public_key(new.public_key(), hsm_session.private_key(ref).public_key())
    assert new.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName
    ) == ["www.example.com"]
    assert (new.not_valid_after_utc - new.not_valid_before_utc).days == 90
    assert_lint_clean(new)
    done = subprocess.run(
        ["openssl", "verify", "-CAfile", cert, cert], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr

    again = run_cli("--output", "json", "renew", "www")  # idempotent: not due any more
    assert again.code == 0 and json.loads(again.out)["results"][0]["status"] == "skipped"
    assert leaf(cert) == new


def test_hsmcert_ca_renewal_writes_leaf_chain_and_fullchain(
    hsm_session: Any, config_dir: Path, ca: Ca, tmp_path: Path
) -> None:
    # an intermediate under the root, so that the chain has something to carry
    inter_key = make_key(hsm_session, "inter", "RSA", size=2048)
    assert (
        run_cli("csr", "--key", inter_key, "--subj", "/O=Test/CN=Issuing", "-o", str(tmp_path / "i.csr")).code
        == 0
    )
    inter = tmp_path / "issuing.pem"
    made = run_cli(
        "issue",
        "--ca-key",
        ca.key,
        "--ca-cert",
        str(ca.cert),
        "--csr",
        str(tmp_path / "i.csr"),
        "--profile",
        "intermediate-ca",
        "-o",
        str(inter),
    )
    assert made.code == 0, made.err
    ref = make_key(hsm_session, "api")
    assert (
        run_cli(
            "csr",
            "--key",
            ref,
            "--subj",
            "/CN=api.example.com",
            "--san",
            "DNS:api.example.com,IP:192.0.2.7",
            "-o",
            str(tmp_path / "api.csr"),
        ).code
        == 0
    )
    api = tmp_path / "api.pem"
    issued = run_cli(
        "issue",
        "--ca-key",
        inter_key,
        "--ca-cert",
        str(inter),
        "--csr",
        str(tmp_path / "api.csr"),
        "--days",
        "30",
        "-o",
        str(api),
        "--manage",
        "api",
        "--key",
        ref,
    )
    assert issued.code == 0, issued.err
    store = Store(config_dir / "certificates.toml")
    record = store.get("api")
    assert record.issuer["kind"] == "hsmcert-ca" and record.days == 30
    text = (config_dir / "certificates.toml").read_text()
    text = text.replace(
        f'cert = "{api}"',
        f'cert = "{api}"\nfullchain = "{tmp_path / "full.pem"}"\nchain = "{tmp_path / "chain.pem"}"',
    )
    (config_dir / "certificates.toml").write_text(text)

    done = run_cli("renew", "api", "--force")
    assert done.code == 0, done.err
    assert_chain_verifies(api, ca.cert, inter)
    full = x509.load_pem_x509_certificates((tmp_path / "full.pem").read_bytes())
    assert full == [leaf(api), leaf(inter)]
    assert x509.load_pem_x509_certificates((tmp_path / "chain.pem").read_bytes()) == [leaf(inter)]
    new = leaf(api)
    assert (
        new.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        == leaf(tmp_path / "api.pem.previous")
        .extensions.get_extension_for_class(x509.SubjectAlternativeName)
        .value
    )
    assert_lint_clean(new)


def test_hooks_get_the_documented_variables_and_no_credentials(
    hsm_session: Any, config_dir: Path, tmp_path: Path, monkeypatch: Any
) -> None:
    ref = make_key(hsm_session)
    cert = dated_selfsigned(
        hsm_session.private_key(ref), tmp_path / "h.pem", start_days_ago=1, lifetime_days=10
    )
    assert (
        run_cli(
            "cert", "adopt", str(cert), "--key", ref, "--deploy-hook", f"env > {tmp_path}/recorded.env"
        ).code
        == 0
    )
    monkeypatch.setenv("AZURE_CLIENT_SECRET", "do-not-leak")
    done = run_cli(
        "--output",
        "json",
        "renew",
        "h",
        "--force",
        "--deploy-hook",
        f"echo $HSMCERT_RENEWED_NAME >> {tmp_path}/second",
    )
    assert done.code == 0, done.err
    env = dict(
        line.split("=", 1) for line in (tmp_path / "recorded.env").read_text().splitlines() if "=" in line
    )
    result = json.loads(done.out)["results"][0]
    assert env["HSMCERT_RENEWED_NAME"] == "h"
    assert env["HSMCERT_RENEWED_CERT"] == str(cert)
    assert env["HSMCERT_RENEWED_FULLCHAIN"] == "" and env["HSMCERT_RENEWED_CHAIN"] == ""
    assert env["HSMCERT_RENEWED_PREVIOUS_CERT"] == f"{cert}.previous"
    assert env["HSMCERT_RENEWED_KEY"] == result["key"] and "?version=" in result["key"]
    assert env["HSMCERT_RENEWED_SERIAL"] == format(leaf(cert).serial_number, "x")
    assert env["HSMCERT_RENEWED_NOT_AFTER"] == result["not_after"]
    assert "AZURE_CLIENT_SECRET" not in env and "HSMCERT_ACCESS_TOKEN" not in env
    assert (tmp_path / "second").read_text() == "h\n"


def test_one_failure_does_not_stop_the_others(hsm_session: Any, config_dir: Path, tmp_path: Path) -> None:
    refs = [make_key(hsm_session, p) for p in ("a", "b", "c")]
    for name, ref in zip("abc", refs, strict=True):
        dated_selfsigned(
            hsm_session.private_key(ref), tmp_path / f"{name}.pem", start_days_ago=80, lifetime_days=90
        )
        assert run_cli("cert", "adopt", str(tmp_path / f"{name}.pem"), "--key", ref).code == 0
    fresh = make_key(hsm_session, "fresh")
    dated_selfsigned(
        hsm_session.private_key(fresh), tmp_path / "fresh.pem", start_days_ago=1, lifetime_days=90
    )
    assert run_cli("cert", "adopt", str(tmp_path / "fresh.pem"), "--key", fresh).code == 0
    before_b = (tmp_path / "b.pem").read_bytes()
    # b's issuer cannot work: its record names a CA certificate that is not there
    text = (config_dir / "certificates.toml").read_text()
    start = text.index("[certificates.b.issuer]")
    text = text[:start] + text[start:].replace(
        'kind = "self-signed"',
        f'kind = "hsmcert-ca"\nca_key = "{refs[0]}"\nca_cert = "{tmp_path}/no-ca.pem"',
        1,
    )
    (config_dir / "certificates.toml").write_text(text)

    done = run_cli("--output", "json", "renew", "--all")
    assert done.code == 1
    report = json.loads(done.out)
    statuses = {r["name"]: r["status"] for r in report["results"]}
    assert statuses == {"a": "renewed", "b": "failed", "c": "renewed", "fresh": "skipped"}
    assert (report["renewed"], report["skipped"], report["failed"]) == (2, 1, 1)
    assert "no-ca.pem" in {r["name"]: r["reason"] for r in report["results"]}["b"]
    assert (tmp_path / "b.pem").read_bytes() == before_b and not (tmp_path / "b.pem.previous").exists()
    assert "1 of 4 renewal(s) failed" in done.err

    failing_hook = run_cli("renew", "a", "--force", "--deploy-hook", "exit 3")
    assert failing_hook.code == 1 and "exited 3" in failing_hook.err


def test_a_hand_edited_record_of_the_wrong_type_fails_alone(
    hsm_session: Any, config_dir: Path, tmp_path: Path
) -> None:
    refs = [make_key(hsm_session, p) for p in ("x", "y")]
    for name, ref in zip("xy", refs, strict=True):
        dated_selfsigned(
            hsm_session.private_key(ref), tmp_path / f"{name}.pem", start_days_ago=80, lifetime_days=90
        )
        assert run_cli("cert", "adopt", str(tmp_path / f"{name}.pem"), "--key", ref).code == 0
    before_x = (tmp_path / "x.pem").read_bytes()
    state = config_dir / "certificates.toml"
    state.write_text(state.read_text() + "\n[certificates.x.nginx]\nlisten = 443\n")  # a number, not text

    done = run_cli("--output", "json", "renew", "--all")
    assert done.code == 1, done.err
    results = {r["name"]: r for r in json.loads(done.out)["results"]}
    assert results["x"]["status"] == "failed" and "certificates.toml" in results["x"]["remedy"]
    assert results["y"]["status"] == "renewed"
    assert (tmp_path / "x.pem").read_bytes() == before_x


def test_rotate_key_certifies_a_new_version(hsm_session: Any, config_dir: Path, tmp_path: Path) -> None:
    ref = make_key(hsm_session)
    cert = tmp_path / "r.pem"
    assert (
        run_cli(
            "selfsign", "--key", ref, "--subj", "/CN=r.example.com", "-o", str(cert), "--manage", "r"
        ).code
        == 0
    )
    first = Store(config_dir / "certificates.toml").get("r").key
    done = run_cli("renew", "r", "--rotate-key")
    assert done.code == 0, done.err
    second = Store(config_dir / "certificates.toml").get("r").key
    assert second != first and second.startswith(ref + "?version=")
    assert same_public_key(leaf(cert).public_key(), hsm_session.private_key(second).public_key())
    assert not same_public_key(leaf(cert).public_key(), hsm_session.private_key(first).public_key())


def test_renew_names_unknown_certificates_clearly(config_dir: Path) -> None:
    assert run_cli("renew", "nothing-here").code == 3
    assert run_cli("renew").code == 2
