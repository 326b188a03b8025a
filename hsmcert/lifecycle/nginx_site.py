"""A managed certificate served by an ``hsmcert nginx`` site: the site's record, and its redeployment.

``hsmcert nginx --manage NAME`` records the site's arguments in the certificate's ``nginx`` table
(:func:`site_record`). After a renewal, :func:`redeploy` renders the site again for the key version the new
certificate is for (its key reference pins ``?version=``), writes the files that changed, then runs
nginx's ``-t`` and reload sequence (:func:`hsmcert.nginx.reload`). nginx's old workers finish their
connections with the old certificate and key version (which keeps working in the HSM), new workers start
with the new pair: no handshake sees a certificate with the wrong key. When anything fails the site's files
are put back and nginx keeps serving the old configuration.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hsmcert.generated import Saved
    from hsmcert.lifecycle.state import ManagedCert, Store
    from hsmcert.nginx import ReloadResult, Site

_PATHS = ("cert", "out_dir", "ca", "socket", "nginx_conf")


def site_record(site: Site, *, nginx_conf: Path | None = None, nginx: str = "nginx") -> dict[str, Any]:
    """The ``nginx`` table of a managed certificate for ``site`` (as validated by hsmcert.nginx)."""
    table: dict[str, Any] = {
        "server_name": site.server_name,
        "cert": str(site.cert),
        "out_dir": str(site.out_dir),
        "site_conf": str(site.site_conf),
        "mode": site.mode,
        "app_protocol": site.app_protocol,
        "socket": str(site.socket),
        "nginx_version": ".".join(map(str, site.nginx_version)),
        "nginx_group": site.nginx_group,
        "http2": site.http2,
        "nginx": nginx,
    }
    for name, value in (
        ("listen", site.listen),
        ("http_listen", site.http_listen),
        ("upstream", site.upstream),
        ("ca", site.ca),
        ("timeout_ms", site.timeout_ms),
        ("nginx_conf", nginx_conf),
    ):
        if value is not None:
            table[name] = value if isinstance(value, int) else str(value)
    return table


def managed_site(store: Store, name: str, site: Site, table: dict[str, Any]) -> ManagedCert:
    """The record of the managed certificate ``name`` served by ``site`` (``hsmcert nginx --manage``), to
    save once the site is written: an existing record whose files include ``site.cert``, or a new one for
    a self-signed certificate. ``site.key`` is pinned already."""
    from dataclasses import replace

    from hsmcert.errors import UsageError
    from hsmcert.lifecycle.inventory import read_leaf
    from hsmcert.lifecycle.register import is_self_signed, record_for

    owner = store.by_file(site.cert)
    if owner is not None and owner.name != name:
        raise UsageError(f"{site.cert} is managed as {owner.name!r}.", f"Pass --manage {owner.name}.")
    if name in store:
        record = store.get(name)
        if owner is None:
            raise UsageError(
                f"The managed certificate {name!r} is written to {', '.join(record.files().values())}, "
                f"not {site.cert}.",
                "Pass one of its files as --cert.",
            )
        return replace(record, key=site.key, nginx=table)
    leaf = read_leaf(site.cert)
    if not is_self_signed(leaf):
        raise UsageError(
            f"{site.cert} is not managed yet, and hsmcert cannot tell who issued it.",
            f"Register it first: hsmcert cert adopt {site.cert} --key REF --name {name} --issuer KIND ... "
            f"(or hsmcert issue --manage {name}), then run this again.",
        )
    issuer = {"kind": "self-signed"}
    return record_for(name, leaf, key=site.key, issuer=issuer, files={"fullchain": site.cert}, nginx=table)


def site_of(table: dict[str, Any], key: str) -> Site:
    """The validated :class:`~hsmcert.nginx.Site` of a record's ``nginx`` table, for ``key``."""
    from hsmcert import nginx as lib

    def path(name: str) -> Path | None:
        value = table.get(name)
        return Path(str(value)) if value else None

    return lib.validate(
        lib.Site(
            key=key,
            cert=Path(str(table["cert"])),
            server_name=str(table["server_name"]),
            out_dir=path("out_dir") or lib.DEFAULT_OUT_DIR,
            mode=table.get("mode", "server"),
            listen=table.get("listen"),
            http_listen=table.get("http_listen"),
            upstream=table.get("upstream"),
            ca=path("ca"),
            app_protocol=table.get("app_protocol", "grpc"),
            socket=path("socket") or lib.DEFAULT_SOCKET,
            nginx_version=lib.parse_version(str(table.get("nginx_version", "1.22.1"))),
            http2=bool(table.get("http2", False)),
            nginx_group=str(table.get("nginx_group", "www-data")),
            timeout_ms=table.get("timeout_ms"),
        )
    )


def redeploy(table: dict[str, Any], key: str) -> tuple[Saved, ReloadResult]:
    """Render the site for ``key``, write what changed, ``nginx -t`` and reload; the files are put back
    (and the error raised) when any step fails. Returns the previous files and nginx's answer."""
    from hsmcert import generated
    from hsmcert import nginx as lib

    site = site_of(table, key)
    planned = generated.plan(lib.generate(site))
    saved = generated.snapshot(planned)
    try:
        generated.apply(planned)
        conf = Path(table["nginx_conf"]) if table.get("nginx_conf") else None
        result = lib.reload(site, conf=conf, nginx=str(table.get("nginx", "nginx")))
    except BaseException:
        generated.restore(saved)
        raise
    return saved, result


__all__ = ["managed_site", "redeploy", "site_of", "site_record"]
