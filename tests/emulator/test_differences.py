"""Each difference from Azure that docs/emulator.md ("Differences from Azure") lists, shown as it is, and a
check that every item of that list names a test that exists (so the list stays true)."""

from __future__ import annotations

import ast
import http.client
import json
import os
import re
import ssl
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

from tests.emulator.conftest import Token, unique
from tests.fixtures.emulator import start_emulator

ROOT = Path(__file__).resolve().parents[2]


def _call(emulator: Any, url: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """One request over HTTPS as the administrator; the status and the JSON answer (None when empty)."""
    host, port = url.removeprefix("https://").split(":")
    context = ssl.create_default_context(cafile=str(emulator.ca))
    conn = http.client.HTTPSConnection(host, int(port), context=context, timeout=30)
    # the audience the SDKs ask for after the service's challenge: right for a Managed HSM and a vault alike
    token = emulator.token(audience=f"https://0.0.1:{port}")
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    try:
        conn.request(method, path, None if body is None else json.dumps(body), headers)
        response = conn.getresponse()
        raw = response.read()
        return response.status, json.loads(raw) if raw else None
    finally:
        conn.close()


def test_key_names_are_case_sensitive(key_client: Any) -> None:
    name = unique("Case")
    key_client.create_ec_key(name, curve="P-256", hardware_protected=True)
    with pytest.raises(ResourceNotFoundError):
        key_client.get_key(name.lower())


@pytest.mark.parametrize(
    ("kind", "method", "path"),
    [
        ("vault", "GET", "/secrets"),
        ("vault", "GET", "/secrets/s"),
        ("managedhsm", "POST", "/keys/k/0123456789abcdef0123456789abcdef/release"),
        ("managedhsm", "POST", "/keys/k/0123456789abcdef0123456789abcdef/export"),
        ("managedhsm", "POST", "/backup"),
        ("managedhsm", "POST", "/restore"),
        ("managedhsm", "POST", "/securitydomain/download"),
        ("vault", "GET", "/certificates/issuers/one"),
        ("vault", "GET", "/certificates/contacts/x"),
    ],
)
def test_apis_that_are_not_served(emulator: Any, kind: str, method: str, path: str) -> None:
    status, answer = _call(emulator, emulator.url(kind), method, f"{path}?api-version=7.5", {})
    assert status in (404, 405), answer


def test_a_key_backup_restores_only_with_the_same_master_key(
    emulator: Any, key_client: Any, tmp_path: Path
) -> None:
    from azure.keyvault.keys import KeyClient

    name = unique("bak")
    key_client.create_ec_key(name, curve="P-256", hardware_protected=True)
    blob = key_client.backup_key(name)
    other = start_emulator(tmp_path / "other")
    try:
        token = other.token()
        client = KeyClient(other.url("managedhsm"), Token(token), connection_verify=str(other.ca))
        with pytest.raises(HttpResponseError) as info:
            client.restore_key_backup(blob)
        assert info.value.status_code == 400
    finally:
        other.stop()


def test_a_self_certificate_is_complete_while_its_create_answer_says_in_progress(emulator: Any) -> None:
    name = unique("self")
    policy = {"x509_props": {"subject": "CN=self.example.test"}, "issuer": {"name": "Self"}}
    status, answer = _call(
        emulator,
        emulator.url("vault"),
        "POST",
        f"/certificates/{name}/create?api-version=7.5",
        {"policy": policy},
    )
    assert (status, answer["status"]) == (202, "inProgress")
    status, certificate = _call(
        emulator, emulator.url("vault"), "GET", f"/certificates/{name}?api-version=7.5"
    )
    assert status == 200 and certificate["cer"]


def test_aes_cbc_fills_the_last_block_with_zeros(key_client: Any, crypto: Any) -> None:
    client = crypto(key_client.create_oct_key(unique("cbc"), size=128, hardware_protected=True))
    iv = os.urandom(16)
    sealed = client.encrypt("A128CBC", b"abc", iv=iv).ciphertext
    assert client.decrypt("A128CBC", sealed, iv=iv).plaintext == b"abc" + bytes(13)


def _section() -> str:
    text = (ROOT / "docs" / "emulator.md").read_text()
    return text.split("\n## Differences from Azure\n", 1)[1].split("\n## ", 1)[0]


def test_every_listed_difference_names_a_test_that_exists() -> None:
    items = re.findall(r"^- (.*?)(?=^- |\Z)", _section(), re.S | re.M)
    assert len(items) >= 5
    for item in items:
        cited = re.findall(r"`(tests/[\w/]+\.py)::(\w+)`", item)
        assert cited, f"this difference names no test: {item[:80]}"
        for path, name in cited:
            tree = ast.parse((ROOT / path).read_text())
            defined = {
                node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            }
            assert name in defined, f"{path}::{name} does not exist"
