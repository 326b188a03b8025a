"""hsmcert's credential caches a token per scope and asks for a new one five minutes before it expires."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from azure.core.credentials import AccessToken

from hsmcert.azure.credentials import Credential


class Issuer:
    """An identity provider that hands out numbered tokens living ``lifetime`` seconds."""

    def __init__(self, lifetime: int) -> None:
        self.lifetime = lifetime
        self.issued = 0

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.issued += 1
        return AccessToken(f"token-{self.issued}", int(time.time()) + self.lifetime)


def test_a_token_is_reused_while_it_has_more_than_five_minutes_left() -> None:
    issuer = Issuer(3600)
    credential = Credential("test", [("test", issuer)])
    tokens = {credential.get_token("https://managedhsm.azure.net/.default").token for _ in range(50)}
    assert tokens == {"token-1"} and issuer.issued == 1
    credential.get_token("https://vault.azure.net/.default")
    assert issuer.issued == 2  # one cache entry per scope


def test_a_token_close_to_expiry_is_replaced_before_it_expires() -> None:
    issuer = Issuer(299)  # already inside the five-minute margin
    credential = Credential("test", [("test", issuer)])
    first = credential.get_token("https://managedhsm.azure.net/.default")
    second = credential.get_token("https://managedhsm.azure.net/.default")
    assert (first.token, second.token) == ("token-1", "token-2")


def test_a_claims_challenge_always_gets_a_fresh_token() -> None:
    issuer = Issuer(3600)
    credential = Credential("test", [("test", issuer)])
    credential.get_token("s")
    credential.get_token("s", claims='{"access_token":{"nbf":{"essential":true}}}')
    assert issuer.issued == 2


def test_no_token_in_the_repr_of_a_credential() -> None:
    credential = Credential("test", [("test", Issuer(3600))])
    token = credential.get_token("s").token
    assert token not in repr(credential)


def test_doctor_lists_what_the_automatic_chain_would_try(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hsmcert.azure.credentials import configured
    from hsmcert.session import Session

    for name in ("AZURE_TENANT_ID", "MHSM_CLIENT_ID", "MHSM_CLIENT_SECRET", "HSMCERT_ACCESS_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    token_file = tmp_path / "federated"
    token_file.write_text("a.b.c")
    # client id, secret and token file but no tenant: neither service principal nor workload identity
    monkeypatch.setenv("AZURE_CLIENT_ID", "00000000-0000-0000-0000-000000000001")
    monkeypatch.setenv("AZURE_CLIENT_SECRET", "s")
    monkeypatch.setenv("AZURE_FEDERATED_TOKEN_FILE", str(token_file))
    chain = [n for n, _ in Session(credential="auto").credential.candidates if n != "managed-identity"]
    assert [n for n in configured() if n != "managed-identity"] == chain
    assert "service-principal" not in chain and "workload-identity" not in chain
    monkeypatch.setenv("AZURE_TENANT_ID", "00000000-0000-0000-0000-0000000000aa")
    chain = [n for n, _ in Session(credential="auto").credential.candidates if n != "managed-identity"]
    assert [n for n in configured() if n != "managed-identity"] == chain
    assert chain[:2] == ["service-principal", "workload-identity"]
