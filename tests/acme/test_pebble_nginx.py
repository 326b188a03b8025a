"""ACME and keyless nginx end to end: pebble validates names through the site ``hsmcert nginx --http-listen``
wrote, the certificate is for an HSM key, nginx serves it through the provider and the agent, and curl
trusts only pebble's root; ``hsmcert renew`` then renews it through the same site.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.acme.test_pebble import hsmcert, new_key, ok, openssl_verify, register
from tests.fixtures.nginx import NginxFactory, curl, free_port
from tests.fixtures.pebble import Pebble

pytestmark = pytest.mark.e2e
NAMES = ("site.example.test", "www.site.example.test")


def serial_served(port: int, pebble: Pebble, name: str, expected: str) -> str:
    """The serial of the certificate nginx serves once its new workers answer (a reload is asynchronous)."""
    deadline = time.monotonic() + 60
    while True:
        served = _serial_served(port, pebble, name)
        if served == expected or time.monotonic() > deadline:
            return served
        time.sleep(0.5)


def _serial_served(port: int, pebble: Pebble, name: str) -> str:
    result = curl(f"https://{name}:{port}/", "-w", "%{http_code}", "-o", "/dev/null", ca=pebble.root,
                  resolve=f"{name}:{port}:127.0.0.1")  # fmt: skip
    if result.returncode != 0:
        return f"not served: {result.stderr}"
    assert result.stdout == "200"
    shown = subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", name, "-CAfile", str(pebble.root),
         "-verify_return_error"],
        input="", capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    serial = subprocess.run(["openssl", "x509", "-noout", "-serial"], input=shown.stdout, capture_output=True,
                            text=True, timeout=60, check=True).stdout  # fmt: skip
    return serial.strip().split("=", 1)[1].lower().lstrip("0")


def test_keyless_nginx_site_validates_serves_and_renews(
    tmp_path: Path, pebble: Pebble, emulator: Any, agent: Any, native: Any, nginx_factory: NginxFactory
) -> None:
    config = tmp_path / "config"
    register(config, pebble)
    key = new_key("EC")
    cert, fullchain = tmp_path / "site.pem", tmp_path / "site-fullchain.pem"
    # A placeholder until the CA answers: nginx needs a certificate to start.
    ok(hsmcert(config, "selfsign", "--key", key, "--subj", f"/CN={NAMES[0]}", "--san", f"DNS:{NAMES[0]}",
               "-o", str(fullchain)))  # fmt: skip
    main_conf = tmp_path / "main.conf"
    main_conf.write_text("user root;\n")  # the test's nginx runs its workers as root
    https = free_port()
    out = tmp_path / "nginx"
    site = ok(hsmcert(config, "--output", "json", "nginx", "--key", key, "--cert", str(fullchain),
                      "--server-name", " ".join(NAMES), "-o", str(out), "--listen", f"127.0.0.1:{https}",
                      "--http-listen", f"127.0.0.1:{pebble.http_port}", "--socket", str(agent.socket),
                      "--check", "--nginx-conf", str(main_conf)))  # fmt: skip
    nginx = nginx_factory(
        [Path(site["site_conf"])], ports=[https, pebble.http_port], openssl_cnf=out / "openssl.cnf"
    )
    issued = ok(hsmcert(config, "--output", "json", "acme", "issue", "--key", key, "--directory", pebble.url,
                        *(a for n in NAMES for a in ("-d", n)), "--nginx", str(out), "--cert", str(cert),
                        "--fullchain", str(fullchain), "--force"))  # fmt: skip
    openssl_verify(pebble, fullchain, cert)
    assert not (out / "acme-challenge").exists()  # answers (and the directory made for them) removed
    nginx.reload()
    assert serial_served(https, pebble, NAMES[1], issued["serial"]) == issued["serial"]

    # Not due yet (a third of the lifetime is left): renew skips it; past the renewal point it renews.
    skipped = json.loads(hsmcert(config, "--output", "json", "renew", "--all").stdout)
    assert [r["status"] for r in skipped["results"]] == ["skipped"], skipped
    renewed = hsmcert(config, "--output", "json", "renew", issued["name"], "--force")
    assert renewed.returncode == 0, renewed.stderr + renewed.stdout
    outcome = json.loads(renewed.stdout)["results"][0]
    assert outcome["status"] == "renewed" and outcome["serial"] != issued["serial"]
    openssl_verify(pebble, fullchain, cert)
    nginx.reload()
    assert serial_served(https, pebble, NAMES[0], outcome["serial"]) == outcome["serial"]
