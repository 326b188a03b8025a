"""The certificates of hsmcert nginx sites in cert list, and what nginx --manage accepts (no nginx runs)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from hsmcert.errors import UsageError
from hsmcert.lifecycle.nginx_site import managed_site, site_record
from hsmcert.lifecycle.state import Store
from hsmcert.nginx import Site, validate
from tests.hsm.conftest import run_cli

REF = "managedhsm:contoso:www?version=" + "ab" * 16


def local_cert(tmp_path: Path, name: str, *, self_signed: bool = True) -> Path:
    """A certificate with a local key (the site files only name it)."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import Encoding
    from cryptography.x509.oid import NameOID

    key, signer = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    issuer = subject if self_signed else x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Some CA")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(key if self_signed else signer, hashes.SHA256())
    )
    path = tmp_path / f"{name}.pem"
    path.write_bytes(cert.public_bytes(Encoding.PEM))
    return path


@pytest.mark.process  # hsmcert nginx needs the built provider, which make test builds
def test_cert_list_reads_the_sites_hsmcert_nginx_wrote(tmp_path: Path, config_dir: Path) -> None:
    cert = local_cert(tmp_path, "site.example.com")
    out = tmp_path / "nginx"
    made = run_cli(
        "nginx", "--key", REF, "--cert", str(cert), "--server-name", "site.example.com", "-o", str(out),
        "--nginx-version", "1.22.1", "--socket", str(tmp_path / "no-agent.sock"),
    )  # fmt: skip
    assert made.code == 0, made.err
    (out / "other.conf").write_text(
        'server { ssl_certificate "/not/hsmcert.pem"; }\n'
    )  # not hsmcert's: ignored
    listed = run_cli("--output", "json", "cert", "list", "--offline", "--nginx-dir", str(out))
    assert listed.code == 0, listed.err
    [entry] = json.loads(listed.out)["certificates"]
    assert (entry["source"], entry["path"], entry["key"], entry["state"]) == ("nginx", str(cert), REF, "ok")
    assert entry["nginx_site"] == str(out / "site.example.com.conf")
    assert entry["key_current"] is None


def _site(tmp_path: Path, cert: Path) -> Site:
    return validate(Site(key=REF, cert=cert, server_name="www.example.com", out_dir=tmp_path / "out"))


def test_manage_attaches_a_site_to_its_certificate(tmp_path: Path) -> None:
    store = Store(tmp_path / "certificates.toml")
    cert = local_cert(tmp_path, "www.example.com")
    site = _site(tmp_path, cert)
    record = managed_site(store, "www", site, site_record(site))
    assert (record.issuer_kind, record.fullchain, record.key) == ("self-signed", str(cert), REF)
    assert record.nginx is not None and record.nginx["site_conf"] == str(
        tmp_path / "out" / "www.example.com.conf"
    )
    store.put(record)
    with pytest.raises(UsageError, match="managed as 'www'"):
        managed_site(store, "other", site, site_record(site))
    elsewhere = _site(tmp_path, local_cert(tmp_path, "b.example.com"))
    with pytest.raises(UsageError, match=r"not .*b\.example\.com\.pem"):
        managed_site(store, "www", elsewhere, site_record(elsewhere))


def test_manage_needs_the_issuer_of_a_ca_issued_certificate(tmp_path: Path) -> None:
    store = Store(tmp_path / "certificates.toml")
    site = _site(tmp_path, local_cert(tmp_path, "ca.example.com", self_signed=False))
    with pytest.raises(UsageError) as caught:
        managed_site(store, "www", site, site_record(site))
    assert "hsmcert cert adopt" in str(caught.value.remedy)


def test_a_site_record_renders_the_same_site(tmp_path: Path) -> None:
    from hsmcert.lifecycle.nginx_site import site_of

    site = validate(
        Site(
            key=REF, cert=local_cert(tmp_path, "w.example.com"), server_name="w.example.com",
            out_dir=tmp_path / "out", listen="127.0.0.1:8443", upstream="http://127.0.0.1:8080", http2=True,
            timeout_ms=5000,
        )
    )  # fmt: skip
    assert site_of(site_record(site), REF) == site
    other: Any = "managedhsm:contoso:www?version=" + "cd" * 16
    assert site_of(site_record(site), other).key == other
