"""Helpers of the emulator's tests: SDK clients against the session emulator, unique names."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

import pytest


def unique(prefix: str = "k") -> str:
    return f"{prefix}-{uuid4().hex[:10]}"


class Token:
    """A credential that hands out one emulator token (any object with get_token works with the SDKs)."""

    def __init__(self, token: str) -> None:
        self.token = token

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        import time

        from azure.core.credentials import AccessToken

        return AccessToken(self.token, int(time.time()) + 3600)

    def close(self) -> None:
        return None


@pytest.fixture(scope="session")
def credential() -> Any:
    """The administrator's identity through the managed-identity endpoint, as a plain SDK user has it."""
    from azure.identity import ManagedIdentityCredential

    return ManagedIdentityCredential()


@pytest.fixture(scope="session")
def hsm_url(emulator: Any) -> str:
    return str(emulator.url("managedhsm", "local-hsm"))


@pytest.fixture(scope="session")
def vault_url(emulator: Any) -> str:
    return str(emulator.url("vault", "local-vault"))


@pytest.fixture(scope="session")
def key_client(emulator: Any, hsm_url: str, credential: Any) -> Any:
    from azure.keyvault.keys import KeyClient

    return KeyClient(hsm_url, credential, connection_verify=str(emulator.ca))


@pytest.fixture(scope="session")
def vault_key_client(emulator: Any, vault_url: str, credential: Any) -> Any:
    from azure.keyvault.keys import KeyClient

    return KeyClient(vault_url, credential, connection_verify=str(emulator.ca))


@pytest.fixture(scope="session")
def crypto(emulator: Any, credential: Any) -> Any:
    """crypto(key_or_id) -> a CryptographyClient of the administrator for that key."""
    from azure.keyvault.keys.crypto import CryptographyClient

    def make(key: Any, cred: Any = None) -> Any:
        return CryptographyClient(key, cred or credential, connection_verify=str(emulator.ca))

    return make
