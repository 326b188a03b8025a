"""hsmcert nginx: keyless TLS configuration for nginx (server, or mutual-TLS sidecars)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from hsmcert.agent import SOCKET_ENV
from hsmcert.cli._common import ForceOpt, KeyOpt, emit, log, waiting

_MODES = "server, server-sidecar or client-sidecar"


def nginx(
    key: KeyOpt,
    cert: Annotated[Path, typer.Option("--cert", help="The certificate (chain) file nginx presents.")],
    server_name: Annotated[
        str,
        typer.Option(
            "--server-name", help="The site's DNS name; for client-sidecar, the name the server must prove."
        ),
    ],
    out_dir: Annotated[
        Path, typer.Option("--out-dir", "-o", help="Directory for the generated files.")
    ] = Path("/etc/hsmcert/nginx"),
    mode: Annotated[str, typer.Option("--mode", help=f"What to configure: {_MODES}.")] = "server",
    listen: Annotated[
        str | None,
        typer.Option(
            "--listen",
            help="Port or address:port (server 443, server-sidecar 8443); client-sidecar: the Unix socket "
            "the application connects to.",
        ),
    ] = None,
    upstream: Annotated[
        str | None,
        typer.Option(
            "--upstream",
            help="server: proxy_pass URL (optional); server-sidecar: the application's Unix socket; "
            "client-sidecar: the server sidecar's host:port.",
        ),
    ] = None,
    ca: Annotated[
        Path | None, typer.Option("--ca", help="Sidecars: the CA that issued the other side's certificate.")
    ] = None,
    app_protocol: Annotated[
        str, typer.Option("--app-protocol", help="Sidecars: what the application speaks: grpc or http.")
    ] = "grpc",
    socket: Annotated[
        Path,
        typer.Option(
            "--socket", help="The hsmcert agent's socket, as nginx's workers reach it.", envvar=SOCKET_ENV
        ),
    ] = Path("/run/hsmcert/agent.sock"),
    timeout_ms: Annotated[
        int | None,
        typer.Option(
            "--timeout-ms",
            help="How long nginx waits for one signature before failing the handshake (1 to 3600000).",
        ),
    ] = None,
    http2: Annotated[bool, typer.Option("--http2", help="server: also offer HTTP/2.")] = False,
    http_listen: Annotated[
        str | None,
        typer.Option(
            "--http-listen",
            help="server: also listen for plain HTTP here (e.g. 80): answer ACME HTTP-01 challenges from "
            "OUT_DIR/acme-challenge/ (hsmcert acme issue --nginx OUT_DIR) and redirect the rest to HTTPS.",
        ),
    ] = None,
    nginx_bin: Annotated[str, typer.Option("--nginx", help="The nginx binary.")] = "nginx",
    nginx_version: Annotated[
        str | None,
        typer.Option("--nginx-version", help="Render for this nginx version instead of asking the binary."),
    ] = None,
    nginx_conf: Annotated[
        Path | None,
        typer.Option(
            "--nginx-conf",
            help="nginx's main configuration file: its user directive names the workers' user (--check "
            "makes sure they can reach the agent); --reload tests it. Default: nginx's own.",
        ),
    ] = None,
    nginx_group: Annotated[
        str, typer.Option("--nginx-group", help="systemd: the group of nginx's workers (may use the socket).")
    ] = "www-data",
    check: Annotated[
        bool,
        typer.Option(
            "--check",
            help="Before writing anything: nginx -t on the configuration rendered in a staging directory, "
            "the certificate against the HSM key, and the agent socket as nginx's workers see it.",
        ),
    ] = False,
    reload: Annotated[
        bool,
        typer.Option("--reload", help="Test nginx's configuration, then reload nginx if the test passes."),
    ] = False,
    force: ForceOpt = False,
    manage: Annotated[
        str | None,
        typer.Option(
            "--manage",
            metavar="NAME",
            help="Register the site with the managed certificate NAME: hsmcert renew then redeploys it and "
            "reloads nginx (docs/lifecycle.md).",
        ),
    ] = None,
) -> None:
    """Write the nginx include, key reference, openssl.cnf and systemd units for keyless TLS.

    Files hsmcert wrote before are updated; a file you edited (or did not come from hsmcert) is never
    replaced without --force. Example:

      hsmcert nginx --key managedhsm:contoso:tls --cert /etc/ssl/www.pem --server-name www.example.com --check
    """
    from hsmcert import generated
    from hsmcert import nginx as lib
    from hsmcert.errors import HsmcertError
    from hsmcert.syntax import nginx_string

    version = lib.parse_version(nginx_version) if nginx_version else lib.detect_version(nginx_bin)
    site = lib.validate(
        lib.Site(
            key=key,
            cert=cert,
            server_name=server_name,
            out_dir=out_dir,
            mode=mode,  # type: ignore[arg-type]
            listen=listen,
            upstream=upstream,
            ca=ca,
            app_protocol=app_protocol,  # type: ignore[arg-type]  # checked by lib.validate
            socket=socket,
            nginx_version=version,
            http2=http2,
            http_listen=http_listen,
            nginx_group=nginx_group,
            timeout_ms=timeout_ms,
        )
    )
    record = None
    if manage:  # the certificate's key version, pinned, and the record to save once the site is written
        from dataclasses import replace

        from hsmcert.cli._common import session
        from hsmcert.lifecycle.inventory import read_leaf
        from hsmcert.lifecycle.nginx_site import managed_site, site_record
        from hsmcert.lifecycle.register import key_for
        from hsmcert.lifecycle.state import Store, check_name

        check_name(manage)
        with waiting(f"reading {key} from the HSM"):
            site = replace(site, key=key_for(read_leaf(site.cert), key, session()))
        store = Store()
        record = managed_site(store, manage, site, site_record(site, nginx_conf=nginx_conf, nginx=nginx_bin))
    else:
        with waiting("asking the agent which key version the certificate holds"):
            site, unpinned = lib.pin_version(site)
        if unpinned:
            log(f"warning: {unpinned} A key rotation would pair the certificate with the new version.")
    planned = generated.plan(lib.generate(site), force=force)
    if check or reload:
        # Tested in a staging directory: a failure leaves every file of out_dir as it was.
        with waiting("checking the site: the certificate against the HSM key, then nginx -t"):
            lib.check_site(site, nginx=nginx_bin, nginx_conf=nginx_conf)
        log("nginx -t: the configuration is valid, the key loads and matches the certificate")
    else:
        with waiting("comparing the certificate with the HSM key"):
            skipped = lib.check_certificate(site, required=False)
        if skipped:
            log(f"warning: {skipped} Run with --check once the agent runs.")
    saved = generated.snapshot(planned)
    generated.apply(planned)
    done = planned
    data: dict[str, Any] = {
        "mode": site.mode,
        "nginx_version": ".".join(map(str, version)),
        "key_as": "store" if lib.uses_store(version) else "pem-reference",
        "site_conf": str(site.site_conf),
        "openssl_cnf": str(site.openssl_cnf),
        "files": [
            {"path": str(p.file.path), "action": p.action, "description": p.file.description} for p in done
        ],
        "checked": False,
        "reloaded": False,
    }
    for item in done:
        log(f"{item.action:<15} {item.file.path}  ({item.file.description})")
    data["checked"] = check or reload
    if reload:
        try:
            with waiting("reloading nginx and waiting for its new workers"):
                result = lib.reload(site, conf=nginx_conf, nginx=nginx_bin)
        except HsmcertError:
            generated.restore(saved)  # nothing reloaded: nothing changed either
            log("the previous files are back in place")
            raise
        data["reloaded"] = True
        log("nginx reloaded")
        if not result.included:
            log(
                f"warning: nginx's configuration does not include {site.site_conf}; add "
                f"'include {nginx_string(site.site_conf)};'"
            )
    if record is not None:
        store.put(record)
        store.save()
        data["managed"] = record.name
        log(
            f"managing {record.name}: hsmcert renew {record.name} renews the certificate and reloads this site"
        )
    emit(data, lambda: _next_steps(site, data))


def _next_steps(site: Any, data: dict[str, Any]) -> str:
    from shlex import quote

    from hsmcert.syntax import nginx_string

    steps = [f"wrote {site.site_conf} (key as {data['key_as']}, nginx {data['nginx_version']})"]
    if not data["reloaded"]:
        steps += [
            "next:",
            f"  include {nginx_string(site.site_conf)}; inside http {{ }} of nginx.conf",
            f"  cp {quote(str(site.systemd_dir))}/hsmcert-agent.* /etc/systemd/system/",
            f"  cp -r {quote(str(site.systemd_dir / 'nginx.service.d'))} /etc/systemd/system/",
            "  systemctl daemon-reload && systemctl enable --now hsmcert-agent.socket && systemctl restart nginx",
        ]
    return "\n".join(steps)


def register(app: typer.Typer) -> None:
    app.command("nginx")(nginx)
