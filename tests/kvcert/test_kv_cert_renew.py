"""hsmcert renew of a certificate whose issuer is a Key Vault certificate object: a new version in the vault,
its certificate written (leaf and full chain), the record following the key version the vault made."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from hsmcert.pki.lint import lint_certificate
from tests.lifecycle.conftest import config_dir as config_dir  # certificates.toml of the test's own
from tests.pki.helpers import assert_chain_verifies

from .conftest import VAULT, issue_for, ok, unique


def _json(cli: Any, *args: str) -> Any:
    return json.loads(ok(cli("--output", "json", *args)).out)


def _renew(cli: Any, name: str) -> dict[str, Any]:
    report = _json(cli, "renew", name, "--force")
    assert report["renewed"] == 1 and report["results"][0]["name"] == name, report
    return dict(report["results"][0])


def test_renew_makes_a_new_version_of_a_self_issued_object(
    cli: Any, config_dir: Path, tmp_path: Path
) -> None:
    name = unique("renew")
    made = _json(
        cli, "kv-cert", "create", "--vault", VAULT, name, "--subj", f"/CN={name}.test", "--san",
        f"DNS:{name}.test", "--kty", "EC-HSM", "--validity-months", "3",
    )  # fmt: skip
    cert = tmp_path / "site.pem"
    ok(cli("kv-cert", "download", "--vault", VAULT, name, "-o", str(cert)))
    ok(cli("cert", "adopt", str(cert), "--key", made["key"], "--name", name, "--issuer", "kv-cert",
           "--param", f"vault={VAULT}"))  # fmt: skip
    before = cert.read_bytes()

    outcome = _renew(cli, name)
    shown = _json(cli, "kv-cert", "show", "--vault", VAULT, name)
    assert shown["version"] != made["version"]
    assert outcome["key"] == shown["key"]  # the record follows the key version the vault made
    after = x509.load_pem_x509_certificate(cert.read_bytes())
    assert cert.read_bytes() != before and format(after.serial_number, "x") == shown["serial"]
    assert Path(f"{cert}.previous").read_bytes() == before
    assert lint_certificate(after.public_bytes(Encoding.DER)) == []
    listed = _json(cli, "cert", "list")
    mine = [c for c in listed["certificates"] if c["name"] == name]
    assert mine and mine[0]["key"] == shown["key"]


def test_renew_merges_a_chain_from_an_hsm_ca_into_an_unknown_issuer_object(
    cli: Any, config_dir: Path, hsm_ca: dict[str, Any], tmp_path: Path
) -> None:
    name = unique("renew-ca")
    ok(
        cli(
            "kv-cert", "create", "--vault", VAULT, name, "--subj", f"/CN={name}.test", "--san", f"DNS:{name}.test",
            "--kty", "RSA-HSM", "--size", "2048", "--issuer", "Unknown",
        )
    )  # fmt: skip
    csr = tmp_path / "first.csr"
    ok(cli("kv-cert", "pending", "--vault", VAULT, name, "-o", str(csr)))
    merged = _json(
        cli,
        "kv-cert",
        "merge",
        "--vault",
        VAULT,
        name,
        "--chain",
        str(issue_for(csr, hsm_ca, tmp_path / "c.pem")),
    )
    leaf_file, fullchain = tmp_path / "c.leaf.pem", tmp_path / "fullchain.pem"
    ok(
        cli(
            "cert", "adopt", str(leaf_file), "--key", merged["key"], "--name", name, "--issuer", "kv-cert",
            "--param", f"vault={VAULT}", "--ca-key", hsm_ca["key"], "--ca-cert", str(hsm_ca["cert"]),
            "--fullchain", str(fullchain),
        )
    )  # fmt: skip

    _renew(cli, name)
    shown = _json(cli, "kv-cert", "show", "--vault", VAULT, name)
    assert shown["version"] != merged["version"] and shown["state"] == "ok"
    assert shown["issuer"] == "CN=Vault Test Root,O=hsmcert tests"
    assert_chain_verifies(fullchain, Path(hsm_ca["cert"]))
    assert_chain_verifies(leaf_file, Path(hsm_ca["cert"]))
    leaf = x509.load_pem_x509_certificate(leaf_file.read_bytes())
    assert format(leaf.serial_number, "x") == shown["serial"]


def test_download_manage_registers_the_object_for_renew(
    cli: Any, config_dir: Path, hsm_ca: dict[str, Any], tmp_path: Path
) -> None:
    name = unique("managed")
    ok(cli("kv-cert", "create", "--vault", VAULT, name, "--subj", f"/CN={name}.test", "--kty", "EC-HSM"))
    cert = tmp_path / "managed.pem"
    ok(cli("kv-cert", "download", "--vault", VAULT, name, "-o", str(cert), "--manage", name))
    listed = [c for c in _json(cli, "cert", "list")["certificates"] if c["name"] == name]
    assert listed and listed[0]["key"].startswith(f"vault:{VAULT}:{name}?version=")
    before = cert.read_bytes()
    _renew(cli, name)
    assert cert.read_bytes() != before

    # an object whose renewals wait for a CA is managed only with one
    pending = unique("managed-ca")
    ok(
        cli(
            "kv-cert",
            "create",
            "--vault",
            VAULT,
            pending,
            "--subj",
            f"/CN={pending}.test",
            "--issuer",
            "Unknown",
        )
    )
    csr = tmp_path / "p.csr"
    ok(cli("kv-cert", "pending", "--vault", VAULT, pending, "-o", str(csr)))
    chain = issue_for(csr, hsm_ca, tmp_path / "p-chain.pem")
    ok(cli("kv-cert", "merge", "--vault", VAULT, pending, "--chain", str(chain)))
    refused = cli(
        "kv-cert", "download", "--vault", VAULT, pending, "-o", str(tmp_path / "p.pem"), "--manage", pending
    )
    assert refused.code == 2 and "--ca-key" in refused.err and not (tmp_path / "p.pem").exists()
    ok(
        cli(
            "kv-cert", "download", "--vault", VAULT, pending, "-o", str(tmp_path / "p.pem"), "--manage", pending,
            "--ca-key", hsm_ca["key"], "--ca-cert", str(hsm_ca["cert"]),
        )
    )  # fmt: skip
    _renew(cli, pending)
    assert_chain_verifies(tmp_path / "p.pem", Path(hsm_ca["cert"]))
