"""hsmcert nginx: rendering, version detection, managed files, bad input, and nginx -t on the output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hsmcert import generated
from hsmcert import nginx as lib
from hsmcert.errors import VerificationError
from tests.fixtures.nginx import LocalPki, free_port

pytestmark = pytest.mark.process  # every test here starts a process (see tests/fixtures/process_marks.py)

REF = "managedhsm:local-hsm:tls-key"
STORE_VERSION = "1.29.0"


def hsmcert(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "OPENSSL_CONF"}
    env["NO_COLOR"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "hsmcert", *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=60
    )


def test_detected_version_is_what_nginx_reports() -> None:
    reported = subprocess.run(["nginx", "-v"], capture_output=True, text=True, check=True).stderr
    version = lib.detect_version()
    assert ".".join(map(str, version)) in reported
    assert lib.parse_version("nginx version: nginx/1.29.4 (Ubuntu)") == (1, 29, 4)


def test_store_uri_from_nginx_1_29(tmp_path: Path, local_pki: LocalPki) -> None:
    out = tmp_path / "out"
    result = hsmcert(
        "--output", "json", "nginx", "--key", REF, "--cert", str(local_pki.server_cert),
        "--server-name", "www.example.com", "-o", str(out), "--nginx-version", STORE_VERSION,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["key_as"] == "store"
    site = (out / "www.example.com.conf").read_text()
    assert f'ssl_certificate_key "store:{REF}";' in site
    assert "ssl_protocols TLSv1.2 TLSv1.3;" in site
    assert not (out / "keys").exists()
    written = {Path(f["path"]).relative_to(out).as_posix() for f in data["files"]}
    assert written == {
        "www.example.com.conf",
        "openssl.cnf",
        "systemd/hsmcert-agent.socket",
        "systemd/hsmcert-agent.service",
        "systemd/nginx.service.d/hsmcert.conf",
    }
    for name in written:
        assert generated.state_of((out / name).read_text()) == "managed", name
    dropin = (out / "systemd/nginx.service.d/hsmcert.conf").read_text()
    assert f"Environment=OPENSSL_CONF={out / 'openssl.cnf'}" in dropin
    cnf = (out / "openssl.cnf").read_text()
    assert cnf.index("default = ") < cnf.index("hsmcert = "), "the default provider must come first"
    assert "socket = /run/hsmcert/agent.sock" in cnf


def test_rerun_is_unchanged_and_edits_are_never_overwritten(tmp_path: Path, local_pki: LocalPki) -> None:
    out = tmp_path / "out"
    args = [
        "--output", "json", "nginx", "--key", REF, "--cert", str(local_pki.server_cert),
        "--server-name", "www.example.com", "-o", str(out), "--nginx-version", STORE_VERSION,
    ]  # fmt: skip
    assert hsmcert(*args).returncode == 0
    again = json.loads(hsmcert(*args).stdout)
    assert {f["action"] for f in again["files"]} == {"unchanged"}

    # A new listen address updates an untouched file.
    updated = json.loads(hsmcert(*args, "--listen", "8443").stdout)
    assert {f["action"] for f in updated["files"] if f["path"].endswith(".conf")} >= {"update"}

    # The user edits the site; the next run refuses, names the file and writes nothing at all.
    site = out / "www.example.com.conf"
    edited = site.read_text().replace('listen "8443"', 'listen "8443" reuseport')
    site.write_text(edited)
    cnf_before = (out / "openssl.cnf").read_text()
    refused = hsmcert(*args, "--socket", "/run/other.sock")
    assert refused.returncode == 7  # already exists (docs/cli.md)
    assert f"{site} (edited since hsmcert wrote it)" in refused.stderr
    assert "--force" in refused.stderr and "Traceback" not in refused.stderr
    assert site.read_text() == edited
    assert (out / "openssl.cnf").read_text() == cnf_before

    forced = hsmcert(*args, "--socket", "/run/other.sock", "--force")
    assert forced.returncode == 0, forced.stderr
    assert "reuseport" not in site.read_text()
    assert "/run/other.sock" in (out / "openssl.cnf").read_text()


def test_file_not_written_by_hsmcert_is_refused(tmp_path: Path, local_pki: LocalPki) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "openssl.cnf").write_text("# my own\n")
    result = hsmcert(
        "nginx", "--key", REF, "--cert", str(local_pki.server_cert), "--server-name", "a.example",
        "-o", str(out), "--nginx-version", STORE_VERSION,
    )  # fmt: skip
    assert result.returncode == 7  # already exists (docs/cli.md)
    assert "not written by hsmcert" in result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["openssl.cnf"]


@pytest.mark.parametrize(
    ("args", "code", "phrase"),
    [
        (["--key", "managedhsm:x:k"], 2, "Invalid key reference"),
        (["--cert", "/nonexistent.pem"], 3, "does not exist"),
        (["--server-name", "bad name;"], 2, "not a host name"),
        (["--mode", "server-sidecar", "--upstream", "/run/app.sock"], 2, "needs --ca"),
        (["--mode", "sideways"], 2, "Unknown mode"),
        (["--listen", "443;"], 2, "not a port"),
    ],
)
def test_bad_input_is_one_clear_error(
    tmp_path: Path, local_pki: LocalPki, args: list[str], code: int, phrase: str
) -> None:
    base = {
        "--key": REF,
        "--cert": str(local_pki.server_cert),
        "--server-name": "www.example.com",
        "-o": str(tmp_path / "out"),
        "--nginx-version": STORE_VERSION,
    }
    extra = dict(zip(args[::2], args[1::2], strict=True))
    merged = [item for pair in {**base, **extra}.items() for item in pair]
    result = hsmcert("nginx", *merged)
    assert result.returncode == code, result.stderr
    assert phrase in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def _site(tmp_path: Path, pki: LocalPki, **kwargs: object) -> lib.Site:
    fields: dict[str, object] = {
        "key": REF,
        "cert": pki.server_cert,
        "server_name": "localhost",
        "out_dir": tmp_path / "out",
        "local_key": pki.server_key,
    }
    fields.update(kwargs)
    return lib.validate(lib.Site(**fields))  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", ["server", "server-sidecar", "client-sidecar"])
@pytest.mark.parametrize("app_protocol", ["grpc", "http"])
def test_generated_configs_pass_nginx_t(
    tmp_path: Path, local_pki: LocalPki, mode: str, app_protocol: str
) -> None:
    listen = None if mode == "client-sidecar" else f"127.0.0.1:{free_port()}"
    upstream = {
        "server": None if app_protocol == "grpc" else "http://127.0.0.1:9",
        "server-sidecar": str(tmp_path / "app.sock"),
        "client-sidecar": "127.0.0.1:8443",
    }[mode]
    site = _site(
        tmp_path,
        local_pki,
        mode=mode,
        listen=listen if listen else str(tmp_path / "client.sock"),
        upstream=upstream,
        ca=local_pki.ca,
        app_protocol=app_protocol,
        http2=True,
    )
    generated.write_all(lib.generate(site))
    report = lib.check_site(site)
    assert "test is successful" in report


def test_nginx_t_failure_names_the_cause(tmp_path: Path, local_pki: LocalPki) -> None:
    site = _site(tmp_path, local_pki, local_key=local_pki.client_key, listen=f"127.0.0.1:{free_port()}")
    generated.write_all(lib.generate(site))
    with pytest.raises(VerificationError, match="key values mismatch"):
        lib.check_site(site)


def test_systemd_units_pass_systemd_analyze(tmp_path: Path, local_pki: LocalPki) -> None:
    out = tmp_path / "out"
    result = hsmcert(
        "nginx", "--key", REF, "--cert", str(local_pki.server_cert), "--server-name", "www.example.com",
        "-o", str(out), "--nginx-version", STORE_VERSION, "--socket", "/run/hsmcert/agent.sock",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    units = [out / "systemd" / "hsmcert-agent.socket", out / "systemd" / "hsmcert-agent.service"]
    service = units[1].read_text()
    assert f"ExecStart={sys.executable} -m hsmcert agent --socket /run/hsmcert/agent.sock" in service
    verify = subprocess.run(
        ["systemd-analyze", "verify", *map(str, units)], capture_output=True, text=True, timeout=60
    )
    assert verify.returncode == 0, verify.stderr


def test_check_refuses_a_config_rendered_for_another_nginx(tmp_path: Path, local_pki: LocalPki) -> None:
    result = hsmcert(
        "nginx", "--key", REF, "--cert", str(local_pki.server_cert), "--server-name", "www.example.com",
        "-o", str(tmp_path / "out"), "--nginx-version", STORE_VERSION, "--check",
    )  # fmt: skip
    assert result.returncode == 2
    assert "rendered for nginx 1.29.0" in result.stderr
    assert not (tmp_path / "out").exists()


def test_timeout_ms_reaches_the_providers_openssl_cnf(tmp_path: Path, local_pki: LocalPki) -> None:
    common = ["nginx", "--key", REF, "--cert", str(local_pki.server_cert), "--server-name", "t.example"]
    default = hsmcert(*common, "-o", str(tmp_path / "default"), "--nginx-version", STORE_VERSION)
    tuned = hsmcert(
        *common, "-o", str(tmp_path / "tuned"), "--nginx-version", STORE_VERSION, "--timeout-ms", "2500"
    )
    assert default.returncode == 0 and tuned.returncode == 0, default.stderr + tuned.stderr
    assert "timeout_ms = 10000" in (tmp_path / "default" / "openssl.cnf").read_text()
    assert "timeout_ms = 2500" in (tmp_path / "tuned" / "openssl.cnf").read_text()


@pytest.mark.parametrize(
    ("listen", "upstream", "server_name"),
    [
        ("[::1]:{port}", "grpc://127.0.0.1:50051", "a.example *.b.example"),
        ("*:{port}", "https://localhost:8443/v1/", "_"),
        ("unix:{dir}/front door.sock", "http://[::1]:8080/a;b=c/%7Euser", ".example.org"),
    ],
)
def test_ordinary_values_pass_validation_and_nginx_t(
    tmp_path: Path, local_pki: LocalPki, listen: str, upstream: str, server_name: str
) -> None:
    """The checks refuse syntax, not the values nginx users write every day."""
    site = _site(
        tmp_path,
        local_pki,
        listen=listen.format(port=free_port(), dir=tmp_path),
        upstream=upstream,
        server_name=server_name,
    )
    assert "test is successful" in lib.check_site(site)
