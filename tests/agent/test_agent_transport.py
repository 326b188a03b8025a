"""The agent's pooled transport takes its proxy and CAs from the environment the way requests does."""

from __future__ import annotations

from pathlib import Path

import pytest

from hsmcert.agent.transport import environment_proxy, proxy_manager
from hsmcert.azure.keycache import CachePolicy
from hsmcert.errors import UsageError


def test_proxy_login_scheme_and_no_proxy_ranges(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", "user:p%40ss@proxy.corp:3128")
    proxy = environment_proxy("https://contoso.managedhsm.azure.net")
    assert proxy == "http://user:p%40ss@proxy.corp:3128"
    manager = proxy_manager(proxy, {})
    assert manager.proxy_headers["proxy-authorization"] == "Basic dXNlcjpwQHNz"  # user:p@ss
    monkeypatch.setenv("NO_PROXY", "10.0.0.0/8,.internal")
    assert environment_proxy("https://10.1.2.3:8443") is None
    assert environment_proxy("https://hsm.internal") is None
    assert environment_proxy("https://contoso.managedhsm.azure.net") is not None
    with pytest.raises(UsageError, match="not supported"):
        proxy_manager("gopher://proxy.corp:70", {})


def test_a_ca_directory_is_accepted(tmp_path: Path) -> None:
    from hsmcert.agent.transport import PooledTransport

    transport = PooledTransport(
        "https://127.0.0.1:9", ca_bundle=str(tmp_path), connection_timeout=1, read_timeout=1,
        pool_maxsize=1, pool_block=False, cache=CachePolicy(),
    )  # fmt: skip
    assert transport.pool.ca_cert_dir == str(tmp_path) and transport.pool.ca_certs is None


def test_a_request_for_another_host_is_refused_not_sent_to_the_pools_host() -> None:
    from azure.core.exceptions import ServiceRequestError
    from azure.core.rest import HttpRequest

    from hsmcert.agent.transport import PooledTransport

    transport = PooledTransport(
        "https://contoso.managedhsm.azure.net", ca_bundle=None, connection_timeout=1, read_timeout=1,
        pool_maxsize=1, pool_block=False, cache=CachePolicy(),
    )  # fmt: skip
    with pytest.raises(ServiceRequestError, match="is not on"):
        transport.send(HttpRequest("GET", "https://elsewhere.example/keys/k"))
