"""ACME end to end against Let's Encrypt's test server pebble, with certificate keys in the emulator's HSM.

pebble rejects a share of good nonces (PEBBLE_WFE_NONCEREJECT) and reuses authorizations at random
(PEBBLE_AUTHZREUSE); every issued chain is checked with openssl verify against pebble's own root, fetched
from its management interface.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest

from tests.fixtures.pebble import EAB_HMAC_KEY, EAB_KID, Pebble

pytestmark = pytest.mark.e2e
HSM = "local-hsm"


def hsmcert(config: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "OPENSSL_CONF"}
    env.update(HSMCERT_CONFIG=str(config / "config.toml"), NO_COLOR="1")
    return subprocess.run(
        [sys.executable, "-m", "hsmcert", *args], capture_output=True, text=True, env=env, timeout=timeout
    )


def ok(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stderr}\n{result.stdout}"
    return json.loads(result.stdout) if result.stdout.strip().startswith("{") else {}


def new_key(kty: str = "EC") -> str:
    from hsmcert.session import default_session

    ref = f"managedhsm:{HSM}:acme-{kty.lower()}-{uuid4().hex[:8]}"
    if kty == "RSA":
        default_session().keys.create(ref, "RSA", size=2048)
    else:
        default_session().keys.create(ref, "EC", curve="P-256")
    return ref


def openssl_verify(pebble: Pebble, fullchain: Path, leaf: Path) -> None:
    """The leaf verifies against pebble's root only, through the chain the server returned."""
    result = subprocess.run(
        ["openssl", "verify", "-CAfile", str(pebble.root), "-untrusted", str(fullchain), str(leaf)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0 and f"{leaf}: OK" in result.stdout, result.stdout + result.stderr


def register(config: Path, pebble: Pebble, *extra: str) -> dict[str, Any]:
    return ok(hsmcert(config, "--output", "json", "acme", "register", "--directory", pebble.url,
                      "--server-ca", str(pebble.server_ca), "--agree-tos", "--contact", "mailto:ops@example.test",
                      *extra))  # fmt: skip


def test_standalone_issue_for_several_names(tmp_path: Path, pebble: Pebble, emulator: Any) -> None:
    config = tmp_path / "config"
    account = register(config, pebble)
    assert account["created"] is True and account["account_key"] == "file"
    key_file = config / "acme" / f"127.0.0.1_{pebble.port}-dir" / "account-key.pem"
    assert key_file.stat().st_mode & 0o777 == 0o600
    key = new_key()
    cert = tmp_path / "www.pem"
    issued = ok(hsmcert(config, "--output", "json", "acme", "issue", "--key", key, "--directory", pebble.url,
                        "-d", "www.example.test", "-d", "api.example.test", "-d", "example.test",
                        "--standalone", str(pebble.http_port), "--cert", str(cert)))  # fmt: skip
    fullchain = tmp_path / "www-fullchain.pem"
    openssl_verify(pebble, fullchain, cert)
    assert issued["files"]["chain"] == str(tmp_path / "www-chain.pem")
    assert set(issued["validated"]) | set(issued["reused_authorizations"]) == {
        "www.example.test", "api.example.test", "example.test"
    }  # fmt: skip
    assert "?version=" in issued["key"]
    first = cert.read_bytes()
    again = ok(hsmcert(config, "--output", "json", "acme", "issue", "--key", key, "--directory", pebble.url,
                       "-d", "www.example.test", "--standalone", str(pebble.http_port), "--cert", str(cert),
                       "--force"))  # fmt: skip
    assert again["serial"] != issued["serial"] and (tmp_path / "www.pem.previous").read_bytes() == first
    openssl_verify(pebble, fullchain, cert)


def signs(emulator: Any, key_ref: str) -> int:
    """How many signatures the emulator made with the key of ``key_ref``."""
    name = key_ref.split(":")[-1]
    return sum(
        1
        for line in emulator.audit()
        if (line.get("operation") or line.get("op")) == "sign"
        and name in str(line.get("key"))
        and line.get("result") == "ok"
    )


def test_external_account_binding(tmp_path: Path, pebble_factory: Any, emulator: Any) -> None:
    pebble = pebble_factory(eab=True)
    config = tmp_path / "config"
    refused = hsmcert(config, "acme", "register", "--directory", pebble.url, "--server-ca", str(pebble.server_ca),
                      "--agree-tos")  # fmt: skip
    assert refused.returncode == 2, refused.stderr
    assert "requires External Account Binding" in refused.stderr and "--eab-kid" in refused.stderr
    untrusted = hsmcert(config, "acme", "register", "--directory", pebble.url, "--agree-tos")
    assert untrusted.returncode == 5 and "The TLS certificate of the ACME server" in untrusted.stderr
    assert "--server-ca" in untrusted.stderr and "Traceback" not in untrusted.stderr
    half = hsmcert(config, "acme", "register", "--directory", pebble.url, "--server-ca", str(pebble.server_ca),
                   "--agree-tos", "--eab-kid", EAB_KID)  # fmt: skip
    assert half.returncode == 2 and "go together" in half.stderr
    account = register(config, pebble, "--eab-kid", EAB_KID, "--eab-hmac-key", EAB_HMAC_KEY)
    assert account["created"] is True
    again = register(config, pebble)  # the key has its account: found, not created twice
    assert again["created"] is False and again["account"] == account["account"]


def test_account_key_in_the_hsm_and_dns01_with_a_wildcard(
    tmp_path: Path, pebble: Pebble, emulator: Any
) -> None:
    config = tmp_path / "config"
    account_key = new_key("EC")
    before = signs(emulator, account_key)
    account = register(config, pebble, "--account-key", account_key)
    assert account["account_key"] == account_key
    assert not (config / "acme" / f"127.0.0.1_{pebble.port}-dir" / "account-key.pem").exists()
    present, cleanup = pebble.dns_hooks()
    journal = tmp_path / "hooks.log"
    present += f' && echo "present $HSMCERT_ACME_IDENTIFIER $HSMCERT_ACME_RECORD_NAME" >> {journal}'
    cleanup += f' && echo "cleanup $HSMCERT_ACME_IDENTIFIER $HSMCERT_ACME_RECORD_NAME" >> {journal}'
    key = new_key("RSA")
    cert = tmp_path / "wild.pem"
    issued = ok(hsmcert(config, "--output", "json", "acme", "issue", "--key", key, "--directory", pebble.url,
                        "-d", "*.dns.example.test", "-d", "dns.example.test", "--dns-hook-present", present,
                        "--dns-hook-cleanup", cleanup, "--dns-propagation-seconds", "0", "--cert", str(cert)))  # fmt: skip
    openssl_verify(pebble, tmp_path / "wild-fullchain.pem", cert)
    assert signs(emulator, account_key) > before  # every JWS of the account was signed in the HSM
    lines = journal.read_text().splitlines()
    presented = sorted(line.split(" ", 1)[1] for line in lines if line.startswith("present"))
    cleaned = sorted(line.split(" ", 1)[1] for line in lines if line.startswith("cleanup"))
    assert presented == cleaned  # every record published was removed
    assert set(issued["validated"]) == {p.split()[0] for p in presented}
    from cryptography import x509

    leaf = x509.load_pem_x509_certificate(cert.read_bytes())
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(sans.get_values_for_type(x509.DNSName)) == {"*.dns.example.test", "dns.example.test"}
    # The certificate's own HSM key revokes it, without the account (another key may not).
    wrong = hsmcert(
        config, "acme", "revoke", "--cert", str(cert), "--directory", pebble.url, "--key", account_key
    )
    assert wrong.returncode == 2 and "not for this key" in wrong.stderr, wrong.stderr
    ok(hsmcert(config, "acme", "revoke", "--cert", str(cert), "--directory", pebble.url, "--key", key,
               "--reason", "keyCompromise"))  # fmt: skip


def test_webroot_then_revoke(tmp_path: Path, pebble: Pebble, emulator: Any, nginx_factory: Any) -> None:
    config = tmp_path / "config"
    register(config, pebble)
    webroot = tmp_path / "www"
    webroot.mkdir()
    site = tmp_path / "webroot.conf"
    site.write_text(f'server {{ listen 127.0.0.1:{pebble.http_port}; root "{webroot}"; }}\n')
    nginx_factory([site], ports=[pebble.http_port])
    cert = tmp_path / "web.pem"
    ok(hsmcert(config, "acme", "issue", "--key", new_key(), "--directory", pebble.url, "-d", "web.example.test",
               "-d", "static.example.test", "--webroot", str(webroot), "--cert", str(cert)))  # fmt: skip
    openssl_verify(pebble, tmp_path / "web-fullchain.pem", cert)
    assert list(webroot.iterdir()) == []  # the challenge files and the directories made for them are gone
    revoked = ok(hsmcert(config, "--output", "json", "acme", "revoke", "--cert", str(cert),
                         "--directory", pebble.url, "--reason", "superseded"))  # fmt: skip
    assert revoked["revoked"] is True
    twice = hsmcert(config, "acme", "revoke", "--cert", str(cert), "--directory", pebble.url)
    assert twice.returncode == 2 and "alreadyRevoked" in twice.stderr, twice.stderr


def test_invalid_challenge_is_one_line_and_leaves_nothing(
    tmp_path: Path, pebble: Pebble, emulator: Any
) -> None:
    from tests.fixtures.nginx import free_port

    config = tmp_path / "config"
    register(config, pebble)
    cert = tmp_path / "bad.pem"
    # The responder listens where pebble does not look: validation fails.
    result = hsmcert(config, "acme", "issue", "--key", new_key(), "--directory", pebble.url,
                     "-d", f"bad-{uuid4().hex[:6]}.example.test", "--standalone", str(free_port()),
                     "--cert", str(cert), "--timeout", "120")  # fmt: skip
    assert result.returncode == 6, result.stderr
    error = next(line for line in result.stderr.splitlines() if line.startswith("error:"))
    assert (
        error.startswith("error: The ACME server could not validate bad-")
        and "(http-01): connection" in error
    ), error
    assert "Traceback" not in result.stderr
    assert list(tmp_path.glob("bad*")) == []
    cert.write_text("mine\n")  # an existing file is refused before anything is ordered
    exists = hsmcert(config, "acme", "issue", "--key", "managedhsm:local-hsm:no-such-key", "--directory", pebble.url,
                     "-d", "x.example.test", "--standalone", "1", "--cert", str(cert))  # fmt: skip
    assert exists.returncode == 7 and f"{cert} already exists" in exists.stderr, exists.stderr
    assert cert.read_text() == "mine\n"


def test_rollover_to_an_hsm_rsa_key_then_issue(tmp_path: Path, pebble: Pebble, emulator: Any) -> None:
    config = tmp_path / "config"
    account = register(config, pebble)
    new_account_key = new_key("RSA")  # RS256 JWS from the HSM (the register test covers ES256)
    rolled = ok(hsmcert(config, "--output", "json", "acme", "rollover", "--directory", pebble.url,
                        "--new-account-key", new_account_key))  # fmt: skip
    assert rolled["account"] == account["account"] and rolled["account_key"] == new_account_key
    before = signs(emulator, new_account_key)
    cert = tmp_path / "rolled.pem"
    ok(hsmcert(config, "acme", "issue", "--key", new_key(), "--directory", pebble.url, "-d", "rolled.example.test",
               "--standalone", str(pebble.http_port), "--cert", str(cert)))  # fmt: skip
    assert signs(emulator, new_account_key) > before
    # The old file key no longer opens the account; registering with it makes a new account.
    back = ok(hsmcert(config, "--output", "json", "acme", "rollover", "--directory", pebble.url,
                      "--new-account-key", "file"))  # fmt: skip
    assert back["account_key"] == "file" and back["account"] == account["account"]


def test_nonce_rejections_are_retried(tmp_path: Path, pebble_factory: Any, emulator: Any) -> None:
    pebble = pebble_factory(nonce_reject=50)  # acme's single retry alone fails one request in four
    config = tmp_path / "config"
    register(config, pebble)
    cert = tmp_path / "n.pem"
    ok(hsmcert(config, "acme", "issue", "--key", new_key(), "--directory", pebble.url, "-d", "n1.example.test",
               "-d", "n2.example.test", "--standalone", str(pebble.http_port), "--cert", str(cert)))  # fmt: skip
    openssl_verify(pebble, tmp_path / "n-fullchain.pem", cert)


def test_failing_dns_hook_is_named_and_cleaned_up(tmp_path: Path, pebble: Pebble, emulator: Any) -> None:
    config = tmp_path / "config"
    register(config, pebble)
    journal = tmp_path / "hooks.log"
    name = f"hook-{uuid4().hex[:6]}.example.test"
    result = hsmcert(config, "acme", "issue", "--key", new_key(), "--directory", pebble.url, "-d", name,
                     "--dns-hook-present", "echo 'zone is read-only' >&2; exit 3",
                     "--dns-hook-cleanup", f'echo "cleanup $HSMCERT_ACME_RECORD_NAME" >> {journal}',
                     "--dns-propagation-seconds", "0", "--cert", str(tmp_path / "h.pem"))  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert (
        f"error: The DNS present hook for _acme-challenge.{name} failed with exit code 3: zone is read-only"
        in result.stderr
    )
    assert journal.read_text() == f"cleanup _acme-challenge.{name}\n"
    assert not (tmp_path / "h.pem").exists()
