"""Keyless TLS configuration for nginx: render, test with ``nginx -t``, reload only after a passing test.

:func:`generate` turns a :class:`Site` into the files nginx needs (the server include, the key reference,
openssl.cnf, systemd units), all managed (:mod:`hsmcert.generated`). nginx >= 1.29 reads the key straight
from the provider's store (``ssl_certificate_key "store:managedhsm:..."``); older nginx (Debian 12 ships
1.22.1) reads a PEM file that wraps the key reference, which the provider's decoder turns into the HSM key.

>>> parse_version("nginx version: nginx/1.22.1")
(1, 22, 1)
>>> uses_store((1, 29, 0)), uses_store((1, 22, 1))
(True, False)
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from hsmcert import syntax
from hsmcert.errors import HsmcertError, NotFoundError, UsageError, VerificationError
from hsmcert.generated import ManagedFile
from hsmcert.keyref import parse_keyref
from hsmcert.templates import render

Version = tuple[int, int, int]
Mode = Literal["server", "server-sidecar", "client-sidecar"]
AppProtocol = Literal["http", "grpc"]
MODES: tuple[Mode, ...] = ("server", "server-sidecar", "client-sidecar")
STORE_SINCE: Version = (1, 29, 0)
"""The first nginx that accepts ``ssl_certificate_key "store:URI"``."""
DEFAULT_SOCKET = Path("/run/hsmcert/agent.sock")
DEFAULT_OUT_DIR = Path("/etc/hsmcert/nginx")
AUDIT_LOG = "/var/log/hsmcert/agent.jsonl"
_SOURCE = "hsmcert nginx"
_CHECK_TIMEOUT = 60.0


def parse_version(text: str) -> Version:
    """The version in ``nginx -v`` output (``nginx version: nginx/1.22.1``) or a plain ``1.22.1``."""
    match = re.search(r"(?:nginx/|^)(\d+)\.(\d+)(?:\.(\d+))?", text.strip())
    if match is None:
        raise UsageError(
            f"Cannot read an nginx version from {text.strip()!r}.", "Give it as X.Y.Z, e.g. 1.22.1."
        )
    return int(match.group(1)), int(match.group(2)), int(match.group(3) or 0)


def find_nginx(nginx: str | os.PathLike[str] = "nginx") -> str:
    """The path of the nginx binary (``nginx`` is looked up in PATH and in /usr/sbin)."""
    found = shutil.which(str(nginx)) or shutil.which(str(nginx), path="/usr/sbin:/usr/local/sbin")
    if found is None:
        raise NotFoundError(
            f"nginx was not found ({nginx}).",
            "Install it (apt-get install nginx), pass --nginx PATH, or --nginx-version X.Y.Z to render "
            "for another machine without checking.",
        )
    return found


def detect_version(nginx: str | os.PathLike[str] = "nginx") -> Version:
    """Ask the nginx binary for its version (``nginx -v`` prints it on stderr)."""
    binary = find_nginx(nginx)
    result = subprocess.run([binary, "-v"], capture_output=True, text=True, timeout=30, check=False)
    return parse_version(result.stderr or result.stdout)


def uses_store(version: Version) -> bool:
    """Whether this nginx takes the key as a ``store:`` URI rather than as a PEM file."""
    return version >= STORE_SINCE


def _slug(text: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9.-]+", "_", text.strip()).strip("._-")
    return slug or "site"


@dataclass(frozen=True)
class Site:
    """What ``hsmcert nginx`` is asked to configure.

    ``upstream`` depends on the mode: for ``server`` an optional ``proxy_pass`` URL (without it nginx answers
    itself); for ``server-sidecar`` the application's Unix socket; for ``client-sidecar`` the server
    sidecar's ``host:port``. ``listen`` defaults to 443 (server), 8443 (server-sidecar) and, for
    client-sidecar, the Unix socket the application connects to. ``ca`` is the CA that the peer's certificate
    must come from (both sidecars). ``http_listen`` (server only) adds a plain-HTTP server there that
    answers ACME HTTP-01 challenges from :attr:`acme_challenge_dir` and redirects the rest to HTTPS.
    ``local_key`` replaces the HSM key with a key file (the benchmark's
    baseline, and tests that run without the provider).
    """

    key: str
    cert: Path
    server_name: str
    out_dir: Path = DEFAULT_OUT_DIR
    mode: Mode = "server"
    listen: str | None = None
    upstream: str | None = None
    ca: Path | None = None
    app_protocol: AppProtocol = "grpc"
    socket: Path = DEFAULT_SOCKET
    nginx_version: Version = (1, 22, 1)
    http2: bool = False
    local_key: Path | None = None
    timeout_ms: int | None = None
    nginx_group: str = "www-data"
    http_listen: str | None = None
    agent_command: tuple[str, ...] = field(default_factory=lambda: (sys.executable, "-m", "hsmcert", "agent"))

    @property
    def slug(self) -> str:
        suffix = "" if self.mode == "server" else f"-{self.mode}"
        return _slug(self.server_name) + suffix

    @property
    def site_conf(self) -> Path:
        return self.out_dir / f"{self.slug}.conf"

    @property
    def openssl_cnf(self) -> Path:
        return self.out_dir / "openssl.cnf"

    @property
    def key_file(self) -> Path:
        ref = parse_keyref(self.key)
        return self.out_dir / "keys" / f"{_slug(ref.service)}-{_slug(ref.key)}.pem"

    @property
    def systemd_dir(self) -> Path:
        return self.out_dir / "systemd"

    @property
    def acme_challenge_dir(self) -> Path:
        """Where ``hsmcert acme`` writes HTTP-01 answers that nginx serves (with ``http_listen``)."""
        return acme_challenge_dir(self.out_dir)


def acme_challenge_dir(out_dir: Path) -> Path:
    """The directory whose files the site of ``out_dir`` serves under ``/.well-known/acme-challenge/``."""
    return Path(out_dir) / "acme-challenge"


def _upstream(site: Site) -> str | None:
    """``--upstream`` checked against what the mode makes of it."""
    if site.upstream is None:
        return None
    if site.mode == "server":
        return syntax.upstream_url(site.upstream)
    if site.mode == "server-sidecar":
        return syntax.absolute_path(site.upstream.removeprefix("unix:"), "--upstream", socket=True)
    found_host, found_port = syntax.host_port(site.upstream, "--upstream")
    return f"{found_host}:{found_port}"


def _listen(site: Site) -> str:
    """``--listen`` (or the mode's default) as nginx's ``listen`` takes it."""
    listen = site.listen
    if listen is None:
        if site.mode == "client-sidecar":
            return f"/run/hsmcert/{_slug(site.server_name)}-client.sock"
        return "443" if site.mode == "server" else "8443"
    if site.mode == "client-sidecar":
        unix = listen.removeprefix("unix:")
        if not unix.startswith("/"):
            raise UsageError(
                f"--listen {listen!r}: the client sidecar listens on a Unix socket.",
                "Give an absolute path such as /run/app/api.sock.",
            )
        return syntax.absolute_path(unix, "--listen", socket=True)
    if listen.startswith("unix:/"):
        return "unix:" + syntax.absolute_path(listen.removeprefix("unix:"), "--listen", socket=True)
    return _tcp_listen(
        listen, "--listen", "For example 443, 127.0.0.1:8443, [::1]:8443 or unix:/run/site.sock."
    )


def _tcp_listen(listen: str, option: str, hint: str) -> str:
    """A port, ``*:port`` or ``address:port`` as nginx's ``listen`` takes it."""
    if (listen.isascii() and listen.isdigit()) or listen.startswith("*:"):
        syntax.port(listen.removeprefix("*:"), option)
        return listen
    try:
        where, _ = syntax.host_port(listen, option)
    except UsageError:
        raise UsageError(f"{option} {listen!r} is not a port or address:port.", hint) from None
    if not where.startswith("["):
        try:
            ipaddress.IPv4Address(where)
        except ValueError:
            raise UsageError(f"{option} {listen!r} is not a port or address:port.", hint) from None
    return listen


def validate(site: Site) -> Site:
    """Check every value a user gives against where it goes, and fill in the mode's defaults.

    Bad input is a UsageError (exit 2); nothing is rendered from a value that failed here. The templates
    quote every value again (:mod:`hsmcert.templates`), so a value that slipped through is still inert.
    """
    if site.mode not in MODES:
        raise UsageError(f"Unknown mode {site.mode!r}.", f"Use one of: {', '.join(MODES)}.")
    if site.app_protocol not in ("grpc", "http"):
        raise UsageError(f"--app-protocol {site.app_protocol!r} is not grpc or http.", "Use grpc or http.")
    parse_keyref(site.key)
    names = syntax.server_names(site.server_name)
    if site.mode == "client-sidecar" and len(names) != 1:
        raise UsageError(
            f"--server-name {site.server_name!r}: the client sidecar checks one name.", "Give one DNS name."
        )
    syntax.account_name(site.nginx_group, "--nginx-group")
    socket = syntax.absolute_path(site.socket, "--socket", socket=True)
    out_dir = syntax.absolute_path(site.out_dir, "--out-dir")
    files: dict[str, str | None] = {}
    for path, what, option in (
        (site.cert, "certificate", "--cert"),
        (site.ca, "CA certificate", "--ca"),
        (site.local_key, "key", "--local-key"),
    ):
        files[option] = None if path is None else syntax.absolute_path(path, option)
        if path is not None and not Path(path).is_file():
            raise NotFoundError(f"The {what} file {path} does not exist.", "Check the path.")
    if site.timeout_ms is not None:
        from hsmcert.provider import check_timeout_ms

        check_timeout_ms(site.timeout_ms)
    if site.mode != "server" and site.ca is None:
        raise UsageError(
            f"--mode {site.mode} needs --ca FILE, the CA that issued the other side's certificate.",
            "Both sidecars verify each other (mutual TLS).",
        )
    if site.mode != "server" and not site.upstream:
        what = (
            "the application's Unix socket"
            if site.mode == "server-sidecar"
            else "the server sidecar's host:port"
        )
        raise UsageError(f"--mode {site.mode} needs --upstream: {what}.", "See hsmcert nginx --help.")
    ca, local_key = files["--ca"], files["--local-key"]
    http_listen = site.http_listen
    if http_listen is not None:
        if site.mode != "server":
            raise UsageError(f"--http-listen is for --mode server, not {site.mode}.")
        http_listen = _tcp_listen(http_listen, "--http-listen", "For example 80 or 127.0.0.1:8080.")
    return replace(
        site,
        http_listen=http_listen,
        listen=_listen(site),
        upstream=_upstream(site),
        socket=Path(socket),
        cert=Path(str(files["--cert"])),
        ca=Path(ca) if ca else None,
        out_dir=Path(out_dir),
        local_key=Path(local_key) if local_key else None,
    )


def _key_directive(site: Site) -> Path | str:
    if site.local_key is not None:
        return site.local_key
    if uses_store(site.nginx_version):
        return f"store:{parse_keyref(site.key)}"
    return site.key_file


def pem_reference(key: str) -> str:
    """The PEM file that stands for an HSM key for nginx < 1.29 (it holds the reference, no key material)."""
    from hsmcert import provider

    return provider.pem_ref(parse_keyref(key)).decode("ascii")


def generate(site: Site) -> list[ManagedFile]:
    """The managed files for ``site`` (already :func:`validate`-d), in the order they are written."""
    names = "hsmcert_" + re.sub(r"[^A-Za-z0-9]", "_", site.slug)
    tls: dict[str, object] = {
        "server_name": site.server_name,
        "server_names": site.server_name.split(" "),
        "site_conf": site.site_conf,
        "openssl_cnf": site.openssl_cnf,
        "listen": site.listen,
        "key_file": _key_directive(site),
        "cert_file": site.cert,
        "ca_file": site.ca,
        "session_cache": f"shared:{names}:10m",
        "upstream_name": names,
        "http2": site.http2,
        "grpc": site.app_protocol == "grpc",
        "upstream": site.upstream,
        "app_listen": None,
        "peer": None,
        "http_listen": site.http_listen,
        "acme_challenge_dir": f"{site.acme_challenge_dir}/",
    }
    if site.mode == "server-sidecar":
        tls["app_listen"] = f"unix:{site.upstream}"
    elif site.mode == "client-sidecar":
        tls["app_listen"] = f"unix:{site.listen}"
        tls["peer"] = site.upstream
    files = [
        ManagedFile(site.site_conf, render(f"nginx/{site.mode}.conf.j2", **tls), "nginx include", _SOURCE),
    ]
    if site.local_key is None and not uses_store(site.nginx_version):
        files.append(ManagedFile(site.key_file, pem_reference(site.key), "key reference (PEM)", _SOURCE))
    from hsmcert import provider

    cnf = provider.openssl_cnf(site.socket, timeout_ms=site.timeout_ms or provider.DEFAULT_TIMEOUT_MS)
    files.append(ManagedFile(site.openssl_cnf, cnf, "OpenSSL configuration", _SOURCE))
    units = {
        "socket": site.socket,
        "group": site.nginx_group,
        "exec_start": [*site.agent_command, "--socket", site.socket, "--audit", AUDIT_LOG],
        "openssl_cnf": site.openssl_cnf,
    }
    for template, name, what in (
        ("systemd/hsmcert-agent.socket.j2", "hsmcert-agent.socket", "systemd socket unit"),
        ("systemd/hsmcert-agent.service.j2", "hsmcert-agent.service", "systemd service unit"),
        ("systemd/nginx-dropin.conf.j2", "nginx.service.d/hsmcert.conf", "systemd drop-in for nginx"),
    ):
        files.append(ManagedFile(site.systemd_dir / name, render(template, **units), what, _SOURCE))
    return files


def standalone_conf(
    prefix: Path,
    includes: Sequence[Path],
    *,
    workers: int = 1,
    daemon: bool = True,
    user: str | None = None,
    log_level: str = "warn",
    worker_connections: int = 1024,
    access_log: bool = False,
) -> str:
    """A complete nginx.conf for an nginx with its own prefix, wrapping generated includes."""
    return render(
        "nginx/standalone.conf.j2",
        prefix=prefix,
        includes=list(includes),
        workers=workers,
        daemon=daemon,
        user=user,
        log_level=log_level,
        worker_connections=worker_connections,
        access_log=access_log,
    )


def _env(openssl_cnf: Path | None) -> dict[str, str]:
    env = dict(os.environ)
    if openssl_cnf is not None:
        env["OPENSSL_CONF"] = str(openssl_cnf)
    return env


def _nginx_messages(output: str) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    relevant = [line for line in lines if "[emerg]" in line or "[alert]" in line or "[crit]" in line]
    return " / ".join(relevant or lines[-3:]) or "no output"


def check_config(
    conf: Path | None = None,
    *,
    nginx: str | os.PathLike[str] = "nginx",
    openssl_cnf: Path | None = None,
    prefix: Path | None = None,
    dump: bool = False,
) -> str:
    """Run ``nginx -t`` (on ``conf``, or nginx's default configuration); raise VerificationError on failure.

    Returns nginx's report; with ``dump``, ``nginx -T``, whose report also holds the whole configuration.
    ``openssl_cnf`` is set as OPENSSL_CONF, as the systemd drop-in does for the service, so nginx loads
    the HSM key through the provider exactly as it will when it runs.
    """
    command = [find_nginx(nginx), "-T" if dump else "-t"]
    if prefix is not None:
        command += ["-p", f"{prefix}/", "-e", str(prefix / "error.log")]
    if conf is not None:
        command += ["-c", str(conf)]
    try:
        result = subprocess.run(
            command,
            capture_output=True,
            text=True,
            env=_env(openssl_cnf),
            timeout=_CHECK_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise VerificationError(
            f"nginx -t did not finish within {_CHECK_TIMEOUT:.0f} s.",
            "Is the hsmcert agent running and able to reach the HSM? Try: hsmcert doctor --key REF",
        ) from exc
    report = result.stderr + result.stdout
    if result.returncode != 0:
        raise VerificationError(
            f"nginx rejected the configuration: {_nginx_messages(report)}",
            "Nothing was reloaded. Fix the cause above; for a key error check that the agent runs "
            "(hsmcert doctor --key REF).",
        )
    return report


def ensure_checkable(site: Site, nginx: str | os.PathLike[str] = "nginx") -> None:
    """Refuse to ``nginx -t`` a configuration rendered for an nginx that reads keys differently."""
    installed = detect_version(nginx)
    if site.local_key is None and uses_store(installed) != uses_store(site.nginx_version):
        rendered = ".".join(map(str, site.nginx_version))
        raise UsageError(
            f"The configuration was rendered for nginx {rendered}, but this nginx is "
            f"{'.'.join(map(str, installed))}: they read HSM keys differently, so nginx -t here proves nothing.",
            "Check it on the machine it is for, or drop --nginx-version.",
        )


def pin_version(site: Site) -> tuple[Site, str | None]:
    """``site`` with its key reference pinned (``?version=``) to the version its certificate holds, asked of
    the agent, so that a key rotation never pairs this certificate with another version. Unchanged when
    the reference names a version already, for a local key, or when the certificate is another key's
    (:func:`check_certificate` says so); the sentence returned says why it could not be pinned."""
    from hsmcert import preflight
    from hsmcert.pki.io import load_certificates
    from hsmcert.pki.signing import spki_der

    ref = parse_keyref(site.key)
    if site.local_key is not None or ref.version:
        return site, None
    try:
        spki, version = preflight.hsm_public_key(site.socket, site.key)
    except VerificationError as exc:
        return site, f"The key reference is not pinned to a version: {exc.message}"
    if spki_der(load_certificates(site.cert)[0].public_key()) != spki:
        return site, None
    return replace(site, key=str(ref.with_version(version))), None


def check_certificate(site: Site, *, required: bool = True) -> str | None:
    """Compare the certificate with the HSM key nginx will serve it with (the version the reference names,
    as the agent reports it); a VerificationError when it is another key's.

    When the agent cannot be asked, that is a VerificationError too if ``required`` (``--check``); otherwise
    the returned sentence says that the comparison was skipped and why.
    """
    from hsmcert import preflight

    if site.local_key is not None:
        return None
    try:
        spki, version = preflight.hsm_public_key(site.socket, site.key)
    except VerificationError as exc:
        if required:
            raise
        return f"The certificate was not compared with the HSM key: {exc.message}"
    ref = parse_keyref(site.key).with_version(None)
    preflight.certificate_matches(site.cert, spki, f"{ref} (version {version})")
    return None


def check_site(site: Site, *, nginx: str | os.PathLike[str] = "nginx", nginx_conf: Path | None = None) -> str:
    """Test ``site`` without touching its output directory; raise VerificationError on any failure.

    For an HSM key, first the certificate against the HSM key's public key (the version the reference
    names, asked of the agent). Then the files are rendered into a staging directory and ``nginx -t``
    runs there, in a scratch nginx.conf, with the staged openssl.cnf (so the HSM key loads through the
    provider and the agent). Last, when run as root, what ``nginx -t`` cannot see: that nginx's workers
    (the ``user`` of ``nginx_conf``, else of nginx's own nginx.conf, else www-data) may connect to the
    agent socket (:mod:`hsmcert.preflight`).
    """
    from hsmcert import preflight

    ensure_checkable(site, nginx)
    check_certificate(site)
    with tempfile.TemporaryDirectory(prefix="hsmcert-nginx-check-") as scratch:
        prefix = Path(scratch)
        staged = replace(site, out_dir=prefix / "staged")
        for file in generate(staged):
            file.path.parent.mkdir(parents=True, exist_ok=True)
            file.path.write_text(file.text)
        conf = prefix / "nginx.conf"
        conf.write_text(standalone_conf(prefix, [staged.site_conf]))
        report = check_config(conf, nginx=nginx, openssl_cnf=staged.openssl_cnf, prefix=prefix)
    if site.local_key is None and os.geteuid() == 0:
        # Not root: nginx runs its workers as the user who starts it, who can reach what this one can.
        who = preflight.worker(nginx_conf or preflight.main_conf_path(find_nginx(nginx)))
        preflight.worker_can_reach(site.socket, who)
    return report


def _pid_file(dump: str, nginx: str) -> Path | None:
    match = re.search(r'^\s*pid\s+(?:"((?:\\.|[^"\\])*)"|([^;\s"]+))\s*;', dump, re.MULTILINE)
    if match:
        quoted = match.group(1)
        return Path(re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else match.group(2))
    info = subprocess.run([find_nginx(nginx), "-V"], capture_output=True, text=True, timeout=30, check=False)
    match = re.search(r"--pid-path=(\S+)", info.stderr)
    return Path(match.group(1)) if match else None


def _running_master(pid_file: Path | None) -> int | None:
    if pid_file is None:
        return None
    try:
        pid = int(pid_file.read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def _children(pid: int) -> set[int]:
    """The processes whose parent is ``pid`` (nginx's workers and cache processes)."""
    found: set[int] = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[1] == str(pid):
            found.add(int(stat.parent.name))
    return found


@dataclass(frozen=True)
class ReloadResult:
    report: str
    included: bool
    """Whether nginx's configuration includes the generated site (else the reload changed nothing)."""


def reload(
    site: Site, *, conf: Path | None = None, nginx: str | os.PathLike[str] = "nginx", timeout: float = 10.0
) -> ReloadResult:
    """Test nginx's own configuration with the hsmcert OpenSSL settings, then ``nginx -s reload``.

    Then waits for the master to start new workers, the sign that it took the configuration: a master
    started without OPENSSL_CONF cannot load the HSM key, keeps its old workers, and this raises.
    """
    binary = find_nginx(nginx)
    report = check_config(conf, nginx=binary, openssl_cnf=site.openssl_cnf, dump=True)
    included = f"# configuration file {site.site_conf}:" in report
    master = _running_master(_pid_file(report, binary))
    if master is None:
        raise HsmcertError(
            "nginx is not running, so there is nothing to reload.",
            f"Start it with OPENSSL_CONF={site.openssl_cnf} (install the systemd drop-in from "
            f"{site.systemd_dir}/nginx.service.d/, then: systemctl daemon-reload && systemctl start nginx).",
        )
    before = _children(master)
    command = [binary, "-s", "reload"] + (["-c", str(conf)] if conf else [])
    # nginx -s reads the whole configuration (keys included) before it signals the master
    result = subprocess.run(
        command, capture_output=True, text=True, env=_env(site.openssl_cnf), timeout=30, check=False
    )
    if result.returncode != 0:
        raise HsmcertError(
            f"nginx -s reload failed: {_nginx_messages(result.stderr)}", "See nginx's error log."
        )
    # A master that accepts the new configuration starts new workers; one that rejects it keeps the old ones.
    deadline = time.monotonic() + timeout
    while not (_children(master) - before):
        if time.monotonic() > deadline:
            raise HsmcertError(
                f"nginx did not take the new configuration within {timeout:.0f} s; the old one still serves.",
                "See nginx's error log. If it cannot load the key, nginx was probably started without "
                f"OPENSSL_CONF={site.openssl_cnf}: install {site.systemd_dir}/nginx.service.d/hsmcert.conf "
                "into /etc/systemd/system/nginx.service.d/, then: systemctl daemon-reload && "
                "systemctl restart nginx",
            )
        time.sleep(0.05)
    return ReloadResult(report, included)
