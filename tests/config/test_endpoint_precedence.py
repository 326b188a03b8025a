"""Where a reference goes: --endpoint > environment > config file > Azure, as docs/configuration.md says."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from hsmcert.config import resolve_endpoint
from hsmcert.errors import UsageError
from hsmcert.keyref import parse_keyref
from tests.hsm.conftest import run_cli

REF = parse_keyref("managedhsm:contoso:tls")


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


def test_each_level_wins_over_the_next(config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    got = resolve_endpoint(REF)
    assert (got.url, got.ca_bundle, got.source) == (
        "https://hsm.example.internal",
        "/etc/ssl/private-ca.pem",
        "config",
    )
    other = resolve_endpoint(parse_keyref("managedhsm:fabrikam:tls"))
    assert (other.url, other.ca_bundle, other.source) == (
        "https://fabrikam.managedhsm.azure.net",
        None,
        "default",
    )

    monkeypatch.setenv("HSMCERT_ENDPOINT", "https://env.example:8443/")
    monkeypatch.setenv("HSMCERT_CA_BUNDLE", "/env-ca.pem")
    got = resolve_endpoint(REF)
    assert (got.url, got.ca_bundle, got.source) == ("https://env.example:8443", "/env-ca.pem", "environment")

    got = resolve_endpoint(REF, endpoint="https://flag.example", ca_bundle="/flag-ca.pem")
    assert (got.url, got.ca_bundle, got.source) == ("https://flag.example", "/flag-ca.pem", "flag")


def test_a_flag_ca_bundle_replaces_the_config_one(config: Path) -> None:
    assert resolve_endpoint(REF, ca_bundle="/mine.pem").ca_bundle == "/mine.pem"


def test_vault_references_resolve_to_key_vault(config: Path) -> None:
    got = resolve_endpoint(parse_keyref("vault:contoso:tls"))
    assert (got.url, got.source) == ("https://contoso.vault.azure.net", "default")


def test_a_config_entry_without_url_is_named(config: Path) -> None:
    config.write_text('[endpoints."managedhsm:contoso"]\nca_bundle = "/x.pem"\n')
    with pytest.raises(UsageError, match=re.escape('endpoints."managedhsm:contoso" has no url')):
        resolve_endpoint(REF)


def test_a_broken_config_file_is_one_clear_line_and_exit_2(
    config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config.write_text("[endpoints\nurl = \n")
    monkeypatch.setenv("HSMCERT_ACCESS_TOKEN", "not-used")
    result = run_cli("key", "show", "--key", "managedhsm:contoso:tls", "--credential", "env-token")
    assert result.code == 2, result.err
    assert f"Cannot read the config file {config}" in result.err
    assert "Traceback" not in result.err


def test_the_emulator_named_in_the_config_file_serves_references(
    emulator: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir = Path(emulator.data_dir)
    monkeypatch.delenv("HSMCERT_EMULATOR", raising=False)
    monkeypatch.delenv("HSMCERT_ENDPOINT", raising=False)
    path = tmp_path / "config.toml"
    path.write_text(f'[emulator]\ndata_dir = "{data_dir}"\n')
    monkeypatch.setenv("HSMCERT_CONFIG", str(path))
    got = resolve_endpoint(parse_keyref("managedhsm:local-hsm:k"))
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
        resolve_endpoint(REF)


def test_a_service_name_outside_a_reference_is_checked_before_it_becomes_a_url(config: Path) -> None:
    from hsmcert.config import resolve_service

    with pytest.raises(UsageError, match="not a valid HSM or vault name"):
        resolve_service("managedhsm", "evil.example/x?")
    result = run_cli("key", "list", "--hsm", "evil.example/x?")
    assert result.code == 2 and "not a valid HSM or vault name" in result.err
