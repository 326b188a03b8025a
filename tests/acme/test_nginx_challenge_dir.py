"""The nginx site ``hsmcert nginx --http-listen`` writes serves ACME HTTP-01 answers from a directory.

A file written there after nginx started is served at once (no reload per challenge); everything else on
the plain-HTTP port redirects to HTTPS; the option is refused where it means nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hsmcert import generated
from hsmcert import nginx as lib
from tests.fixtures.nginx import LocalPki, NginxFactory, curl, free_port

REF = "managedhsm:local-hsm:tls-key"


def test_challenge_answers_are_served_without_a_reload(
    tmp_path: Path, local_pki: LocalPki, nginx_factory: NginxFactory
) -> None:
    https, http = free_port(), free_port()
    site = lib.validate(
        lib.Site(
            key=REF,
            cert=local_pki.server_cert,
            server_name="www.example.test",
            out_dir=tmp_path / "out",
            listen=f"127.0.0.1:{https}",
            http_listen=f"127.0.0.1:{http}",
            local_key=local_pki.server_key,
        )
    )
    generated.write_all(lib.generate(site))
    assert "test is successful" in lib.check_site(site)
    nginx_factory([site.site_conf], ports=[https, http])
    site.acme_challenge_dir.mkdir()
    (site.acme_challenge_dir / "tok-en_1").write_text("tok-en_1.thumbprint")
    answer = curl(f"http://www.example.test:{http}/.well-known/acme-challenge/tok-en_1",
                  resolve=f"www.example.test:{http}:127.0.0.1")  # fmt: skip
    assert answer.returncode == 0 and answer.stdout == "tok-en_1.thumbprint", answer.stderr
    missing = curl(f"http://127.0.0.1:{http}/.well-known/acme-challenge/other", "-o", "/dev/null",
                   "-w", "%{http_code}")  # fmt: skip
    assert missing.stdout == "404"
    redirect = curl(f"http://www.example.test:{http}/page?x=1", "-o", "/dev/null", "-w", "%{redirect_url}",
                    resolve=f"www.example.test:{http}:127.0.0.1")  # fmt: skip
    assert redirect.stdout == "https://www.example.test/page?x=1"


@pytest.mark.process
def test_http_listen_is_checked(tmp_path: Path, local_pki: LocalPki) -> None:
    env = {k: v for k, v in os.environ.items() if k != "OPENSSL_CONF"}
    base = [sys.executable, "-m", "hsmcert", "nginx", "--key", REF, "--cert", str(local_pki.server_cert),
            "--server-name", "www.example.test", "-o", str(tmp_path / "o"), "--nginx-version", "1.22.1"]  # fmt: skip
    bad = subprocess.run([*base, "--http-listen", "80;"], capture_output=True, text=True, env=env, timeout=60)
    assert bad.returncode == 2 and "--http-listen '80;' is not a port" in bad.stderr
    assert not (tmp_path / "o").exists()
    good = subprocess.run(
        [*base, "--http-listen", "8080"], capture_output=True, text=True, env=env, timeout=60
    )
    assert good.returncode == 0, good.stderr
    conf = (tmp_path / "o" / "www.example.test.conf").read_text()
    assert f'alias "{tmp_path / "o" / "acme-challenge"}/";' in conf
    assert 'listen "8080";' in conf
