"""Nothing a user passes to ``hsmcert nginx`` or ``hsmcert provider openssl-cnf`` becomes a directive.

An injection corpus runs against every option that takes a value. Each attempt is either refused (exit 2,
one error line, no file written) or rendered inert, which is proven three ways: every generated file has
the same structure as for a plain value (the value stayed inside one quoted token), ``nginx -t`` passes on
the include with the HSM key loaded through the agent (so nginx read the quoted paths as the real paths),
and ``systemd-analyze verify`` passes on the units. A running nginx shows the issue's /leak/ attack inert.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hsmcert import nginx as lib
from tests.fixtures.nginx import LocalCa, NginxFactory, curl, free_port
from tests.hsm.conftest import run_cli
from tests.nginx.test_nginx_hsm import HsmKey, new_key

pytestmark = pytest.mark.e2e

CORPUS = {
    "newline": "\nExecStartPre=/bin/touch /tmp/hsmcert-pwned",
    "semicolon": ";",
    "open-brace": "{",
    "close-brace": "} location /leak/ { alias /etc/; autoindex on; } #",
    "hash": "#x",
    "quotes": "\"'",
    "dollar": "$host",
    "space": " --allow 0:*",
    "nul": "\x00",
    "dotdot": "/../..",
    "question": "?api-version=1",
    "percent-0a": "%0aExecStartPre=/bin/id",
    "backslash": "\\",
    "percent": "%n",
}


@dataclass
class Stage:
    """A short directory (Unix socket paths are limited), an HSM key, its certificate, the agent."""

    dir: Path
    key: HsmKey
    cert: Path
    ca: Path
    agent_socket: Path


@pytest.fixture(scope="module")
def stage(
    emulator: Any, agent: Any, native: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stage]:
    key = new_key("EC")
    ca = LocalCa.create(tmp_path_factory.mktemp("inject-ca"))
    with tempfile.TemporaryDirectory(prefix="hi-", dir="/tmp") as tmp:
        directory = Path(tmp)
        cert = ca.issue(key.public_key, "www.example.com", directory / "cert.pem")
        yield Stage(directory, key, cert, ca.path, agent.socket)


def _prepare(value: str, source: Path | None) -> None:
    """Make the file (a copy of ``source``) or agent socket (a symlink) that the path ``value`` names."""
    try:
        target = Path(os.path.abspath(value))
        os.makedirs(os.path.dirname(value), exist_ok=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        if source is None or target.exists() or target.is_symlink():
            return
        if source.is_socket():
            target.symlink_to(source)
        else:
            shutil.copyfile(source, target)
    except (OSError, ValueError):
        pass  # a name the file system refuses (NUL): only the refusal is tested


def _skeleton(text: str, kind: str) -> list[str]:
    """A generated file's structure: directives and punctuation, with every value blanked."""
    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if kind == "nginx":
        blanked = re.sub(r'"(?:\\.|[^"\\])*"', '"…"', "\n".join(lines))
        return re.sub(r"#[^\n]*", "", blanked).split()
    # systemd units and openssl.cnf: the names set, per section
    return [line.split("=", 1)[0].strip() if "=" in line else line.strip() for line in lines]


def _kind(path: Path) -> str:
    return "nginx" if path.suffix == ".conf" and "systemd" not in path.parts else "other"


@dataclass(frozen=True)
class Case:
    option: str
    mode: str
    value: str  # the payload replaces {} in it
    source: str | None = None  # "cert", "ca" or "agent": a file or socket the path must name


CASES = [
    Case("--key", "server", "managedhsm:local-hsm:k{}"),
    Case("--cert", "server", "{dir}/c{}.pem", "cert"),
    Case("--server-name", "server", "www.example.com{}"),
    Case("--out-dir", "server", "{dir}/od/a/o{}"),
    Case("--listen", "server", "127.0.0.1:{port}{}"),
    Case("--upstream", "server", "http://127.0.0.1:9/app{}"),
    Case("--socket", "server", "{dir}/s{}.sock", "agent"),
    Case("--timeout-ms", "server", "100{}"),
    Case("--nginx-group", "server", "www-data{}"),
    Case("--mode", "server", "server{}"),
    Case("--nginx-version", "server", "1.22.1{}"),
    Case("--nginx", "server", "{dir}/nginx{}"),
    Case("--nginx-conf", "server", "{dir}/nginx{}.conf"),
    Case("--ca", "server-sidecar", "{dir}/ca{}.pem", "ca"),
    Case("--upstream", "server-sidecar", "{dir}/app{}.sock"),
    Case("--app-protocol", "server-sidecar", "http{}"),
    Case("--listen", "client-sidecar", "{dir}/l{}.sock"),
    Case("--upstream", "client-sidecar", "127.0.0.1:8443{}"),
]


def _args(stage: Stage, case: Case, payload: str | None, out: Path, port: int) -> list[str]:
    values = {
        "--key": stage.key.ref,
        "--cert": str(stage.cert),
        "--server-name": "www.example.com",
        "--out-dir": str(out),
        "--listen": f"127.0.0.1:{port}",
        "--socket": str(stage.agent_socket),
        "--nginx-version": "1.22.1",
        "--mode": case.mode,
        "--upstream": "http://127.0.0.1:9/app",
    }
    if case.mode != "server":
        values["--ca"] = str(stage.ca)
        values["--upstream"] = str(stage.dir / "app.sock")
    if case.mode == "client-sidecar":
        values["--listen"] = str(stage.dir / "client.sock")
        values["--upstream"] = "127.0.0.1:8443"
    if payload is not None:
        template = case.value.replace("{dir}", str(stage.dir)).replace("{port}", str(port))
        value = template.replace("{}", payload)
        sources = {"cert": stage.cert, "ca": stage.ca, "agent": stage.agent_socket}
        _prepare(value, sources.get(case.source or ""))
        if case.option == "--out-dir":
            out = Path(os.path.abspath(value)) if "\x00" not in value else out
        values[case.option] = value
    return [item for pair in values.items() for item in pair]


def _files(directory: Path) -> dict[Path, str]:
    return {p.relative_to(directory): p.read_text() for p in sorted(directory.rglob("*")) if p.is_file()}


def _tree(directory: Path) -> set[str]:
    return {str(p) for p in directory.rglob("*")}


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.mode}{c.option}")
def test_every_option_refuses_or_renders_inert(stage: Stage, case: Case, tmp_path: Path) -> None:
    port = free_port()
    base_out = stage.dir / f"base-{case.mode}"
    if not base_out.exists():
        baseline = run_cli("nginx", *_args(stage, case, None, base_out, port))
        assert baseline.code == 0, baseline.err
    base_files = _files(base_out)
    outcomes: dict[str, str] = {}
    for label, payload in CORPUS.items():
        out = stage.dir / f"o-{case.mode}{case.option}-{label}"
        args = _args(stage, case, payload, out, port)
        out = (
            Path(args[args.index("--out-dir") + 1])
            if "\x00" not in args[args.index("--out-dir") + 1]
            else out
        )
        before = _tree(stage.dir)
        result = run_cli("nginx", *args)
        assert "Traceback" not in result.err and "unexpected error" not in result.err, (label, result.err)
        if result.code != 0:
            assert result.code == 2, (label, result.code, result.err)
            assert result.err.lower().count("error:") == 1, (label, result.err)
            assert not any(line.startswith("ExecStartPre") for line in result.err.splitlines()), label
            assert _tree(stage.dir) == before, f"{label}: a refused run wrote files"
            outcomes[label] = "refused"
            continue
        outcomes[label] = "inert"
        _assert_inert(stage, out, base_files, label)
    # The values that reach a file as syntax can never get through.
    for must_refuse in ("newline", "nul"):
        assert (
            case.option in ("--nginx-version", "--nginx", "--nginx-conf")
            or outcomes[must_refuse] == "refused"
        )


def _assert_inert(stage: Stage, out: Path, base: dict[Path, str], label: str) -> None:
    files = {name: text for name, text in _files(out).items() if name in base}
    assert set(files) == set(base), label
    changed = [
        name
        for name, text in files.items()
        if _skeleton(text, _kind(name)) != _skeleton(base[name], _kind(name))
    ]
    assert not changed, f"{label}: the value changed the structure of {changed}"
    differs = {name.parts[0] for name, text in files.items() if text != base[name]}
    if differs - {"systemd"}:
        _nginx_t(out, label)
    if "systemd" in differs:
        _systemd_verify(out, label)


def _nginx_t(out: Path, label: str) -> None:
    include = next(out / name for name in _files(out) if _kind(name) == "nginx" and len(name.parts) == 1)
    with tempfile.TemporaryDirectory(prefix="hi-t-") as scratch:
        prefix = Path(scratch)
        conf = prefix / "nginx.conf"
        conf.write_text(lib.standalone_conf(prefix, [include]))
        report = lib.check_config(conf, openssl_cnf=out / "openssl.cnf", prefix=prefix)
        assert "test is successful" in report, label


def _unit_value(unit: Path, key: str) -> str:
    values = [line.split("=", 1)[1] for line in unit.read_text().splitlines() if line.startswith(f"{key}=")]
    assert len(values) == 1, (unit, key, values)
    return values[0]


def _systemd_verify(out: Path, label: str) -> None:
    # The agent runs with exactly its own arguments, on the socket it listens on, whatever the path holds.
    service, socket = out / "systemd" / "hsmcert-agent.service", out / "systemd" / "hsmcert-agent.socket"
    argv = [
        arg.replace("%%", "%").replace("$$", "$") for arg in shlex.split(_unit_value(service, "ExecStart"))
    ]
    assert (
        argv[1:4] == ["-m", "hsmcert", "agent"]
        and argv[4] == "--socket"
        and argv[6:] == ["--audit", lib.AUDIT_LOG]
    )
    assert _unit_value(socket, "ListenStream").replace("%%", "%") == argv[5], label

    # systemd-analyze cannot open units in a directory whose name has blanks or '*': verify copies,
    # with a stand-in nginx.service for the drop-in.
    with tempfile.TemporaryDirectory(prefix="hi-u-") as plain:
        units = [
            Path(shutil.copy(out / "systemd" / name, plain))
            for name in ("hsmcert-agent.socket", "hsmcert-agent.service")
        ]
        shutil.copytree(out / "systemd" / "nginx.service.d", Path(plain) / "nginx.service.d")
        units.append(Path(plain) / "nginx.service")
        units[-1].write_text("[Service]\nExecStart=/bin/true\n")
        verify = subprocess.run(
            ["systemd-analyze", "verify", *map(str, units)], capture_output=True, text=True, timeout=60
        )
        assert verify.returncode == 0, (label, verify.stderr)


def test_the_leak_location_attack_is_refused(stage: Stage) -> None:
    attack = "http://127.0.0.1:1;\n } location /leak/ { alias /etc/; autoindex on; #"
    out = stage.dir / "leak-upstream"
    result = run_cli(
        "nginx", "--key", stage.key.ref, "--cert", str(stage.cert), "--server-name", "www.example.com",
        "-o", str(out), "--nginx-version", "1.22.1", "--upstream", attack,
    )  # fmt: skip
    assert result.code == 2, result.err
    assert "--upstream" in result.err and "is not a http or https or grpc or grpcs URL" in result.err
    assert not out.exists()


def test_a_running_nginx_serves_no_leak_from_a_hostile_path(
    stage: Stage, nginx_factory: NginxFactory, tmp_path: Path
) -> None:
    """A certificate path written to open a /leak/ location stays a path: nginx serves its own page."""
    cert = stage.dir / "leak" / "c; } location /leak/ { alias /etc/; autoindex on; } #.pem"
    cert.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(stage.cert, cert)
    port = free_port()
    out = stage.dir / "leak-out"
    result = run_cli(
        "nginx", "--key", stage.key.ref, "--cert", str(cert), "--server-name", "localhost", "-o", str(out),
        "--listen", f"127.0.0.1:{port}", "--socket", str(stage.agent_socket),
    )  # fmt: skip
    assert result.code == 0, result.err
    nginx_factory([out / "localhost.conf"], ports=[port], openssl_cnf=out / "openssl.cnf")
    page = curl(f"https://localhost:{port}/leak/", "-k", timeout=30)
    assert page.returncode == 0, page.stderr
    assert "hsmcert keyless TLS" in page.stdout and "passwd" not in page.stdout


def _pem_ref(directory: Path, ref: str) -> Path:
    result = run_cli("provider", "pem-ref", "--key", ref, "-o", str(directory / "ref.pem"), "--force")
    assert result.code == 0, result.err
    return directory / "ref.pem"


def test_provider_openssl_cnf_socket_paths_are_refused_or_inert(stage: Stage, native: Any) -> None:
    """Each accepted socket path reaches the provider as written: it loads the HSM key through it."""
    ref_pem = _pem_ref(stage.dir, stage.key.ref)
    outcomes = {}
    for label, payload in CORPUS.items():
        socket = f"{stage.dir}/p{payload}.sock"
        _prepare(socket, stage.agent_socket)
        cnf = stage.dir / f"openssl-{label}.cnf"
        before = _tree(stage.dir)
        result = run_cli("provider", "openssl-cnf", "--socket", socket, "-o", str(cnf))
        assert "Traceback" not in result.err, (label, result.err)
        if result.code != 0:
            assert result.code == 2 and result.err.lower().count("error:") == 1, (label, result.err)
            assert _tree(stage.dir) == before, label
            outcomes[label] = "refused"
            continue
        outcomes[label] = "inert"
        lines = [line for line in cnf.read_text().splitlines() if line and not line.startswith("#")]
        assert sum(line.startswith("socket = ") for line in lines) == 1, label
        env = {k: v for k, v in os.environ.items() if k != "OPENSSL_CONF"} | {"OPENSSL_CONF": str(cnf)}
        pkey = subprocess.run(
            ["openssl", "pkey", "-in", str(ref_pem), "-pubout"],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        assert pkey.returncode == 0 and "BEGIN PUBLIC KEY" in pkey.stdout, (label, pkey.stderr)
    assert outcomes["newline"] == outcomes["nul"] == "refused"
    assert outcomes["hash"] == outcomes["space"] == outcomes["quotes"] == "inert"


def test_provider_openssl_cnf_timeout_and_output_are_refused_or_inert(tmp_path: Path) -> None:
    """--timeout-ms takes a number only; -o names a file whatever it holds, and the text is the same."""
    common = ["provider", "openssl-cnf", "--socket", "/run/a.sock"]
    base = run_cli(*common, "-o", str(tmp_path / "base.cnf"))
    assert base.code == 0, base.err
    expected = (tmp_path / "base.cnf").read_text()
    for label, payload in CORPUS.items():
        timeout = run_cli(*common, "--timeout-ms", "100" + payload)
        assert timeout.code == 2 and "Traceback" not in timeout.err, (label, timeout.err)
        target = f"{tmp_path}/d/c{payload}.cnf"
        _prepare(target, None)
        before = _tree(tmp_path)
        written = run_cli(*common, "-o", target)
        assert "Traceback" not in written.err and "unexpected" not in written.err, (label, written.err)
        if written.code == 0:
            assert Path(os.path.abspath(target)).read_text() == expected, label
        else:
            assert written.code == 2 and _tree(tmp_path) == before, (label, written.err)
