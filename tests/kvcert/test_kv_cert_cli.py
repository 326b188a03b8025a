"""hsmcert kv-cert end to end against the emulator's vault: create (Self and Unknown), pending CSR, merge of a
chain issued by an HSM CA key, show, list, versions, renew, download; the certificate's key signs through a
``vault:`` key reference. openssl and pkilint check every CSR and certificate written."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from hsmcert.pki.lint import lint_certificate
from tests.pki.helpers import assert_chain_verifies, assert_csr_verifies, openssl

from .conftest import VAULT, issue_for, ok, unique


def _json(cli: Any, *args: str) -> dict[str, Any]:
    result = ok(cli("--output", "json", *args))
    document: dict[str, Any] = json.loads(result.out)
    assert document["schema"] == 1
    return document


def _spki(obj: Any) -> bytes:
    from cryptography.hazmat.primitives.serialization import PublicFormat

    return bytes(obj.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo))


def test_unknown_issuer_csr_then_merge_of_a_chain_from_an_hsm_ca(
    cli: Any, hsm_ca: dict[str, Any], tmp_path: Path
) -> None:
    name = unique("www")
    made = _json(
        cli, "kv-cert", "create", "--vault", VAULT, name, "--subj", "/O=Example/CN=www.example.test",
        "--san", "DNS:www.example.test,IP:192.0.2.10", "--kty", "EC-HSM", "--curve", "P-256",
        "--validity-months", "6", "--issuer", "Unknown",
    )  # fmt: skip
    assert made["pending"] is True and made["status"] == "inProgress" and made["issuer"] == "Unknown"

    csr_path = tmp_path / "www.csr"
    ok(cli("kv-cert", "pending", "--vault", VAULT, name, "-o", str(csr_path)))
    assert_csr_verifies(csr_path)
    csr = x509.load_pem_x509_csr(csr_path.read_bytes())
    assert csr.subject.rfc4514_string() == "CN=www.example.test,O=Example"
    sans = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(v) for v in sans.get_values_for_type(x509.IPAddress)] == ["192.0.2.10"]

    # while pending: shown as such, and there is no certificate to download
    shown = _json(cli, "kv-cert", "show", "--vault", VAULT, name)
    assert shown["state"] == "pending" and shown["expires_on"] is None
    assert cli("kv-cert", "download", "--vault", VAULT, name, "-o", str(tmp_path / "x.pem")).code == 3
    assert not (tmp_path / "x.pem").exists()

    chain = issue_for(csr_path, hsm_ca, tmp_path / "chain.pem", days=60)
    merged = _json(cli, "kv-cert", "merge", "--vault", VAULT, name, "--chain", str(chain))
    assert merged["state"] == "ok" and merged["issuer"] == "CN=Vault Test Root,O=hsmcert tests"
    assert 58 <= merged["days_left"] <= 60
    assert merged["key"] == f"vault:{VAULT}:{name}?version={merged['version']}"

    out = tmp_path / "www.pem"
    ok(cli("kv-cert", "download", "--vault", VAULT, name, "-o", str(out)))
    assert_chain_verifies(out, Path(hsm_ca["cert"]))
    leaf = x509.load_pem_x509_certificate(out.read_bytes())
    assert _spki(leaf) == _spki(csr)
    assert lint_certificate(leaf.public_bytes(Encoding.DER)) == []

    listed = _json(cli, "kv-cert", "list", "--vault", VAULT)
    mine = [c for c in listed["certificates"] if c["name"] == name]
    assert len(mine) == 1 and mine[0]["state"] == "ok" and mine[0]["days_left"] == merged["days_left"]
    assert mine[0]["expires_on"] == merged["expires_on"]
    table = ok(cli("kv-cert", "list", "--vault", VAULT)).out
    assert name in table and "days left" in table

    # the second merge finds no pending operation
    again = cli("kv-cert", "merge", "--vault", VAULT, name, "--chain", str(chain))
    assert again.code == 3 and "no pending operation" in again.err and "Traceback" not in again.err


def test_self_issuer_then_renew_makes_a_new_version_with_the_same_policy(cli: Any, tmp_path: Path) -> None:
    name = unique("self")
    made = _json(
        cli, "kv-cert", "create", "--vault", VAULT, name, "--subj", "CN=self.example.test",
        "--san", "DNS:self.example.test", "--kty", "RSA-HSM", "--size", "2048", "--validity-months", "3",
    )  # fmt: skip
    assert made["pending"] is False and made["state"] == "ok"
    assert made["policy"]["exportable"] is False and made["policy"]["kty"] == "RSA-HSM"
    first = tmp_path / "first.cer"
    ok(cli("kv-cert", "download", "--vault", VAULT, name, "--format", "der", "-o", str(first)))
    cert = x509.load_der_x509_certificate(first.read_bytes())
    assert cert.subject == cert.issuer and cert.subject.rfc4514_string() == "CN=self.example.test"
    assert lint_certificate(first.read_bytes()) == []
    done = openssl("x509", "-inform", "DER", "-in", first, "-noout", "-checkend", str(80 * 86400))
    assert done.returncode == 0, done.stdout  # valid 3 months from now
    pem = tmp_path / "first.pem"
    ok(cli("kv-cert", "download", "--vault", VAULT, name, "-o", str(pem)))
    assert_chain_verifies(pem, pem)  # self-signed by the certificate's own key

    renewed = _json(cli, "kv-cert", "renew", "--vault", VAULT, name)
    assert renewed["version"] != made["version"] and renewed["policy"] == made["policy"]
    assert renewed["thumbprint_sha1"] != made["thumbprint_sha1"]
    versions = _json(cli, "kv-cert", "versions", "--vault", VAULT, name)["versions"]
    assert [v["version"] for v in versions] == [made["version"], renewed["version"]]
    # each version has its own key version; the old certificate keeps its key
    old = _json(cli, "kv-cert", "show", "--vault", VAULT, name, "--version", made["version"])
    assert old["thumbprint_sha1"] == made["thumbprint_sha1"]
    new_key = _json(cli, "key", "show", "--key", f"vault:{VAULT}:{name}")
    assert new_key["version"] == renewed["version"]


def test_the_certificates_key_signs_through_a_vault_key_reference(cli: Any, tmp_path: Path) -> None:
    name = unique("keyless")
    made = _json(
        cli, "kv-cert", "create", "--vault", VAULT, name, "--subj", "/CN=keyless.example.test",
        "--san", "DNS:keyless.example.test", "--kty", "EC-HSM", "--curve", "P-384",
    )  # fmt: skip
    cert_path = tmp_path / "cert.pem"
    ok(cli("kv-cert", "download", "--vault", VAULT, name, "-o", str(cert_path)))
    csr_path = tmp_path / "again.csr"
    # the reference kv-cert show prints, and the unversioned spelling (the latest key version)
    for ref in (made["key"], f"vault:{VAULT}:{name}"):
        ok(cli("csr", "--key", ref, "--subj", "/CN=keyless.example.test", "-o", str(csr_path), "--force"))
        assert_csr_verifies(csr_path)
        csr = x509.load_pem_x509_csr(csr_path.read_bytes())
        assert _spki(csr) == _spki(x509.load_pem_x509_certificate(cert_path.read_bytes()))
    checked = ok(cli("verify", str(cert_path), "--key", made["key"]))
    assert "FAIL" not in checked.out


def test_errors_are_one_line_with_the_documented_exit_code(
    cli: Any, hsm_ca: dict[str, Any], tmp_path: Path
) -> None:
    def fails(code: int, *args: str) -> str:
        result = cli(*args)
        assert result.code == code, (args, result.code, result.err)
        assert "Traceback" not in result.err and result.err.startswith("error: ")
        return result.err

    assert "no Key Vault named 'no-such-vault'" in fails(
        3, "kv-cert", "show", "--vault", "no-such-vault", "x"
    )
    assert "There is no certificate" in fails(3, "kv-cert", "show", "--vault", VAULT, unique("none"))
    assert "There is no certificate" in fails(3, "kv-cert", "renew", "--vault", VAULT, unique("none"))
    fails(3, "kv-cert", "pending", "--vault", VAULT, unique("none"), "-o", str(tmp_path / "p.csr"))
    fails(2, "kv-cert", "create", "--vault", VAULT, unique(), "--subj", "/CN=a", "--kty", "oct")
    fails(2, "kv-cert", "create", "--vault", VAULT, unique(), "--subj", "/CN=a", "--issuer", "DigiCert")
    fails(2, "kv-cert", "create", "--vault", VAULT, unique(), "--kty", "EC-HSM")  # no subject, no SAN
    fails(2, "kv-cert", "create", "--vault", VAULT, unique(), "--subj", "/CN=a", "--validity-months", "0")

    # a chain whose first certificate is not for the pending key: one line, exit 6, nothing merged
    name = unique("wrong")
    ok(cli("kv-cert", "create", "--vault", VAULT, name, "--subj", "/CN=wrong.test", "--issuer", "Unknown"))
    err = fails(6, "kv-cert", "merge", "--vault", VAULT, name, "--chain", str(hsm_ca["cert"]))
    assert "does not carry the public key of the pending certificate" in err
    assert len(err.strip().splitlines()) == 2  # the sentence and its remedy
    assert _json(cli, "kv-cert", "show", "--vault", VAULT, name)["state"] == "pending"
    # a second create of the same name is refused; a renew while a merge is awaited names the way out
    assert "already exists" in fails(7, "kv-cert", "create", "--vault", VAULT, name, "--subj", "/CN=x")
    assert "kv-cert cancel" in fails(1, "kv-cert", "renew", "--vault", VAULT, name)
    ok(cli("kv-cert", "cancel", "--vault", VAULT, name))
    assert "no pending operation" in fails(
        3, "kv-cert", "merge", "--vault", VAULT, name, "--chain", str(hsm_ca["cert"])
    )

    # a merge with a chain that is not a certificate file, and a merge into a Self certificate
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    fails(2, "kv-cert", "merge", "--vault", VAULT, name, "--chain", str(junk))
    selfname = unique("self")
    ok(cli("kv-cert", "create", "--vault", VAULT, selfname, "--subj", "/CN=s.test"))
    assert "no pending operation" in fails(
        3, "kv-cert", "merge", "--vault", VAULT, selfname, "--chain", str(hsm_ca["cert"])
    )


def test_download_is_atomic_and_never_replaces_a_file_without_force(cli: Any, tmp_path: Path) -> None:
    name = unique("dl")
    ok(cli("kv-cert", "create", "--vault", VAULT, name, "--subj", "/CN=dl.test", "--kty", "EC-HSM"))
    out = tmp_path / "dl.pem"
    out.write_text("keep me\n")
    assert cli("kv-cert", "download", "--vault", VAULT, name, "-o", str(out)).code == 7
    assert out.read_text() == "keep me\n"
    ok(cli("kv-cert", "download", "--vault", VAULT, name, "-o", str(out), "--force"))
    assert x509.load_pem_x509_certificate(out.read_bytes()).subject.rfc4514_string() == "CN=dl.test"
    assert [p.name for p in tmp_path.iterdir()] == ["dl.pem"]  # no temporary file left
    document = _json(
        cli, "kv-cert", "download", "--vault", VAULT, name, "--format", "der", "-o", str(tmp_path / "dl.cer")
    )
    assert document["format"] == "der" and document["version"]


def test_a_caller_without_access_is_told_which_certificate_role_to_get(
    cli: Any, emulator: Any, monkeypatch: Any
) -> None:
    monkeypatch.setenv("HSMCERT_ACCESS_TOKEN", emulator.token("kv-outsider", "https://vault.azure.net"))
    result = cli("kv-cert", "list", "--vault", VAULT, "--credential", "env-token")
    assert result.code == 4, result.err
    assert "Key Vault Certificate User" in result.err and "Traceback" not in result.err
