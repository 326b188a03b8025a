"""Rotation without an outage: a managed hsmcert nginx site, renewed for a new key version under load.

Debian's nginx 1.22 serves a certificate issued by an hsmcert CA for an HSM key (the provider asks the
agent, the agent asks the emulator). ``key rotate --renew`` makes a new key version, issues a certificate for
it, rewrites the site's key reference pinned to that version, and runs nginx -t then reload, while a client
loop makes full handshakes: none fails, and the served certificate changes to the new key's.
"""

from __future__ import annotations

import ssl
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from hsmcert.lifecycle.state import Store
from hsmcert.pki.signing import same_public_key
from tests.fixtures.nginx import Load, Nginx, NginxFactory, curl, free_port, wait_until
from tests.hsm.conftest import run_cli

from .conftest import Ca, make_key

pytestmark = pytest.mark.e2e
NAME = "www.example.test"


def served_certificate(port: int) -> x509.Certificate:
    pem = ssl.get_server_certificate(("127.0.0.1", port), timeout=30)
    return x509.load_pem_x509_certificate(pem.encode())


@dataclass
class Site:
    nginx: Nginx
    port: int
    key: str
    cert: Path
    out: Path


@pytest.fixture
def site(
    tmp_path: Path,
    config_dir: Path,
    hsm_session: Any,
    ca: Ca,
    agent: Any,
    native: Any,
    nginx_factory: NginxFactory,
) -> Site:
    key = make_key(hsm_session, "site")
    csr, cert, out, port = tmp_path / "www.csr", tmp_path / "www.pem", tmp_path / "conf", free_port()
    assert run_cli("csr", "--key", key, "--subj", f"/CN={NAME}", "-o", str(csr)).code == 0
    issued = run_cli(
        "issue", "--ca-key", ca.key, "--ca-cert", str(ca.cert), "--csr", str(csr), "-o", str(cert),
        "--manage", "www", "--key", key,
    )  # fmt: skip
    assert issued.code == 0, issued.err
    conf = tmp_path / "nginx-prefix" / "nginx.conf"  # where nginx_factory writes the running nginx's
    made = subprocess.run(
        [sys.executable, "-m", "hsmcert", "nginx", "--key", key, "--cert", str(cert), "--server-name", NAME,
         "-o", str(out), "--listen", f"127.0.0.1:{port}", "--socket", str(agent.socket),
         "--nginx-conf", str(conf), "--manage", "www"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    record = Store(config_dir / "certificates.toml").get("www")
    assert record.nginx is not None and "?version=" in record.key
    key_file = next((out / "keys").iterdir())
    from hsmcert.provider import ref_of_pem

    assert ref_of_pem(key_file.read_bytes()) == record.key  # the reference nginx loads is pinned
    nginx = nginx_factory([out / f"{NAME}.conf"], ports=[port], openssl_cnf=out / "openssl.cnf", workers=2)
    return Site(nginx, port, key, cert, out)


def test_rotation_under_load_fails_no_handshake_and_switches_the_certificate(
    site: Site, ca: Ca, config_dir: Path, hsm_session: Any
) -> None:
    before = served_certificate(site.port)
    with Load(site.port, ca.cert, NAME) as load:
        wait_until(lambda: load.ok >= 5, 60, "handshakes before the rotation")
        rotated = run_cli("--output", "json", "key", "rotate", "--key", site.key, "--renew")
        assert rotated.code == 0, rotated.err
        count = load.ok
        wait_until(lambda: load.ok >= count + 5, 60, "handshakes after the rotation")
    assert load.failed == 0, load.errors[:3]

    after = served_certificate(site.port)
    record = Store(config_dir / "certificates.toml").get("www")
    assert after.serial_number != before.serial_number
    assert same_public_key(after.public_key(), hsm_session.private_key(record.key).public_key())
    assert not same_public_key(after.public_key(), before.public_key())
    assert x509.load_pem_x509_certificate(site.cert.read_bytes()) == after
    assert (site.cert.parent / "www.pem.previous").exists()


def test_a_failed_reload_leaves_the_old_certificate_serving(
    site: Site, ca: Ca, config_dir: Path, tmp_path: Path
) -> None:
    before = served_certificate(site.port)
    files = {p: p.read_bytes() for p in [site.cert, *site.out.rglob("*")] if p.is_file()}
    broken = tmp_path / "broken.conf"
    broken.write_text("not_a_directive on;\nevents {}\n")
    path = config_dir / "certificates.toml"
    path.write_text(path.read_text().replace(str(tmp_path / "nginx-prefix" / "nginx.conf"), str(broken)))

    done = run_cli("--output", "json", "renew", "www", "--rotate-key")
    assert done.code == 1
    assert "not_a_directive" in done.out
    assert {p: p.read_bytes() for p in files} == files  # certificate and site files as they were
    assert not (site.cert.parent / "www.pem.previous").exists()
    assert served_certificate(site.port) == before
    served = curl(f"https://{NAME}:{site.port}/", ca=ca.cert, resolve=f"{NAME}:{site.port}:127.0.0.1")
    assert served.returncode == 0, served.stderr
