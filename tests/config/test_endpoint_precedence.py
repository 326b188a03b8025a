"""Where a reference goes: --endpoint > environment > config file > Azure, as docs/configuration.md says."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from hsmcert.config import Endpoint, EndpointResolver
from hsmcert.errors import UsageError
from hsmcert.keyref import KeyRef, parse_keyref
from tests.hsm.conftest import run_cli

REF = parse_keyref("managedhsm:contoso:tls")


def resolve(ref: KeyRef, environ: dict[str, str], **flags: str) -> Endpoint:
    """``ref`` resolved by a resolver of ``environ`` and the flags, as a Session builds it."""
    return EndpointResolver(environ=environ, **flags).resolve(ref)


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("HSMCERT_ENDPOINT", "HSMCERT_CA_BUNDLE", "HSMCERT_EMULATOR"):
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / "config.toml"
    path.write_text(
        '[endpoints."managedhsm:contoso"]\n'
        'url = "https://hsm.example.internal/"\n'
        'ca_bundle = "/etc/ssl/private-ca.pem"\n'
    )
    monkeypatch.setenv("HSMCERT_CONFIG", str(path))
    return path


def test_each_level_wins_over_the_next(config: Path) -> None:
    env = {"HSMCERT_CONFIG": str(config)}
    got = resolve(REF, env)
    assert (got.url, got.ca_bundle, got.source) == (
        "https://hsm.example.internal",
        "/etc/ssl/private-ca.pem",
        "config",
    )
    other = resolve(parse_keyref("managedhsm:fabrikam:tls"), env)
    assert (other.url, other.ca_bundle, other.source) == (
        "https://fabrikam.managedhsm.azure.net",
        None,
        "default",
    )

    env |= {"HSMCERT_ENDPOINT": "https://env.example:8443/", "HSMCERT_CA_BUNDLE": "/env-ca.pem"}
    got = resolve(REF, env)
    assert (got.url, got.ca_bundle, got.source) == ("https://env.example:8443", "/env-ca.pem", "environment")

    got = resolve(REF, env, endpoint="https://flag.example", ca_bundle="/flag-ca.pem")
    assert (got.url, got.ca_bundle, got.source) == ("https://flag.example", "/flag-ca.pem", "flag")


def test_a_flag_ca_bundle_replaces_the_config_one(config: Path) -> None:
    assert resolve(REF, {"HSMCERT_CONFIG": str(config)}, ca_bundle="/mine.pem").ca_bundle == "/mine.pem"


def test_vault_references_resolve_to_key_vault(config: Path) -> None:
    got = resolve(parse_keyref("vault:contoso:tls"), {"HSMCERT_CONFIG": str(config)})
    assert (got.url, got.source) == ("https://contoso.vault.azure.net", "default")


def test_a_config_entry_without_url_is_named(config: Path) -> None:
    config.write_text('[endpoints."managedhsm:contoso"]\nca_bundle = "/x.pem"\n')
    with pytest.raises(UsageError, match=re.escape('endpoints."managedhsm:contoso" has no url')):
        resolve(REF, {"HSMCERT_CONFIG": str(config)})


def test_a_broken_config_file_is_one_clear_line_and_exit_2(
    config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config.write_text("[endpoints\nurl = \n")
    monkeypatch.setenv("HSMCERT_ACCESS_TOKEN", "not-used")
    result = run_cli("key", "show", "--key", "managedhsm:contoso:tls", "--credential", "env-token")
    assert result.code == 2, result.err
    assert f"Cannot read the config file {config}" in result.err
    assert "Traceback" not in result.err


def test_the_emulator_named_in_the_config_file_serves_references(emulator: Any, tmp_path: Path) -> None:
    data_dir = Path(emulator.data_dir)
    path = tmp_path / "config.toml"
    path.write_text(f'[emulator]\ndata_dir = "{data_dir}"\n')
    got = resolve(parse_keyref("managedhsm:local-hsm:k"), {"HSMCERT_CONFIG": str(path)})
    assert got.source == "emulator" and got.url.startswith("https://127.0.0.1:")
    assert got.ca_bundle == str(data_dir / "ca.pem")


@pytest.mark.parametrize(
    ("text", "entry"),
    [
        ('emulator = "x"\n', "[emulator]"),
        ("[emulator]\ndata_dir = 3\n", "emulator.data_dir"),
        ('endpoints = "x"\n', "[endpoints]"),
        ('[endpoints]\n"managedhsm:contoso" = 1\n', 'endpoints."managedhsm:contoso"'),
        ('[endpoints."managedhsm:contoso"]\nurl = ["a"]\n', 'endpoints."managedhsm:contoso".url'),
    ],
)
def test_a_config_value_of_the_wrong_type_is_named(config: Path, text: str, entry: str) -> None:
    config.write_text(text)
    with pytest.raises(UsageError, match=re.escape(entry)):
        resolve(REF, {"HSMCERT_CONFIG": str(config)})


def test_a_service_name_outside_a_reference_is_checked_before_it_becomes_a_url(config: Path) -> None:
    with pytest.raises(UsageError, match="not a valid HSM or vault name"):
        EndpointResolver(environ={"HSMCERT_CONFIG": str(config)}).service("managedhsm", "evil.example/x?")
    result = run_cli("key", "list", "--hsm", "evil.example/x?")
    assert result.code == 2 and "not a valid HSM or vault name" in result.err
