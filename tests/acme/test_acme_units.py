"""What needs no server: problem documents as sentences, challenge-method and name checks, account paths,
the nginx site record keeping --http-listen, the DNS hook environment and cleanup."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests
from acme import messages

from hsmcert.acme.account import check_directory_url, server_slug
from hsmcert.acme.client import server_error
from hsmcert.acme.flow import Method, check_names
from hsmcert.errors import (
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    HsmcertError,
    PermissionDeniedError,
    ServiceError,
    UsageError,
)


def answer(status: int, **headers: str) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response.headers.update(headers)
    return response


def test_rate_limit_says_how_long_to_wait() -> None:
    error = messages.Error.with_code("rateLimited", detail="too many certificates for example.com")
    found = server_error(error, "the new order", answer(429, **{"Retry-After": "3600"}))
    assert isinstance(found, ServiceError) and found.exit_code == EXIT_UNREACHABLE and found.transient
    assert found.message.startswith("The ACME server's rate limit stops the new order: too many certificates")
    assert "wait 3600 s, until" in found.message and found.retry_after is not None
    assert 3590 <= found.retry_after <= 3600
    assert "do not retry in a loop" in str(found.remedy)


def test_problems_become_one_sentence_with_a_remedy() -> None:
    eab = server_error(messages.Error.with_code("externalAccountRequired", detail="EAB needed"), "x", None)
    assert isinstance(eab, PermissionDeniedError) and "--eab-kid" in str(eab.remedy)
    caa = server_error(messages.Error.with_code("caa", detail="CAA forbids"), "the new order", answer(403))
    assert (
        isinstance(caa, UsageError)
        and caa.message == "The ACME server refused the new order: caa: CAA forbids."
    )
    sub = messages.Error.with_code(
        "rejectedIdentifier",
        detail="some names are refused",
        subproblems=(
            messages.Error.with_code(
                "rejectedIdentifier",
                detail="forbidden name",
                identifier=messages.Identifier(typ=messages.IDENTIFIER_FQDN, value="bad.example"),
            ),
        ),
    )
    found = server_error(sub, "the new order", answer(400))
    assert (
        found.message
        == "The ACME server refused the new order: bad.example: rejectedIdentifier: forbidden name."
    )


@pytest.mark.parametrize(
    ("method", "message"),
    [
        (Method(), "Choose one challenge method"),
        (Method(webroot="/a", standalone=80), "(got --webroot, --standalone)"),
        (Method(standalone=70000), "is not a port"),
        (Method(nginx="/x", dns_hook_cleanup="true"), "--dns-hook-cleanup goes with --dns-hook-present"),
    ],
)
def test_one_challenge_method(method: Method, message: str) -> None:
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        method.check()


def test_method_round_trips_through_the_record(tmp_path: Path) -> None:
    method = Method(dns_hook_present="present", dns_hook_cleanup="cleanup", dns_propagation_seconds=5).check()
    assert Method.from_params({"directory": "https://x/dir", **method.params()}) == method
    assert Method(webroot="rel").check().webroot == str(Path("rel").absolute())


def test_names() -> None:
    assert check_names(["WWW.Example.com.", "www.example.com", "*.example.com"]) == [
        "www.example.com",
        "*.example.com",
    ]
    with pytest.raises(UsageError, match="at least one domain"):
        check_names([])
    with pytest.raises(UsageError) as bad:
        check_names(["not a name"])
    assert bad.value.exit_code == EXIT_USAGE


def test_directory_urls() -> None:
    assert server_slug("https://acme.example:8443/v2/directory") == "acme.example_8443-v2-directory"
    assert check_directory_url("http://127.0.0.1:14000/dir")
    for bad in ("http://acme.example/dir", "ftp://x/", "directory"):
        with pytest.raises(UsageError, match="is not an https URL"):
            check_directory_url(bad)


def test_nginx_site_record_keeps_http_listen(tmp_path: Path) -> None:
    from hsmcert import nginx as lib
    from hsmcert.lifecycle.nginx_site import site_of, site_record

    cert = tmp_path / "c.pem"
    cert.write_text("x")
    site = lib.validate(
        lib.Site(
            key="managedhsm:contoso:k",
            cert=cert,
            server_name="a.example",
            out_dir=tmp_path,
            http_listen="8080",
        )
    )
    again = site_of(site_record(site), "managedhsm:contoso:k")
    assert again.http_listen == "8080" and again.acme_challenge_dir == tmp_path / "acme-challenge"


def test_an_unreachable_server_is_one_sentence(tmp_path: Path) -> None:
    from hsmcert.acme.client import AcmeClient
    from hsmcert.acme.keys import create_key_file, file_account_key
    from hsmcert.errors import UnreachableError
    from tests.fixtures.nginx import free_port

    create_key_file(tmp_path / "k.pem")
    url = f"http://127.0.0.1:{free_port()}/dir"
    with pytest.raises(UnreachableError) as down:
        AcmeClient(url, file_account_key(tmp_path / "k.pem"))
    assert (
        down.value.message == f"Cannot reach the ACME server {url} (reading the directory): ConnectionError."
    )
    assert down.value.exit_code == EXIT_UNREACHABLE
    (tmp_path / "k.pem").chmod(0o644)
    with pytest.raises(Exception, match="may be read by others"):
        file_account_key(tmp_path / "k.pem")


@pytest.mark.process  # runs sh
def test_dns_hooks_get_the_record_but_not_hsmcerts_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hsmcert.acme.challenges import DnsHooks

    monkeypatch.setenv("AZURE_CLIENT_SECRET", "client-secret-4f1")
    monkeypatch.setenv("HSMCERT_ACCESS_TOKEN", "access-token-9c2")
    monkeypatch.setenv("HSMCERT_ACME_REGISTER_EAB_HMAC_KEY", "hmac-key-77d")
    seen = tmp_path / "env.txt"
    hooks = DnsHooks(present_command=f"env > {seen}", propagation_seconds=0)
    record = {"HSMCERT_ACME_RECORD_NAME": "_acme-challenge.example.test", "HSMCERT_ACME_TXT_VALUE": "v1"}
    hooks._run(hooks.present_command, record, "present")
    text = seen.read_text()
    assert "HSMCERT_ACME_TXT_VALUE=v1" in text
    assert not any(s in text for s in ("client-secret-4f1", "access-token-9c2", "hmac-key-77d")), text
    # a failing hook that prints its environment cannot echo a credential into hsmcert's message
    with pytest.raises(HsmcertError) as failed:
        hooks._run('echo "secret=$AZURE_CLIENT_SECRET" >&2; exit 3', record, "present")
    assert "client-secret-4f1" not in str(failed.value.message)
