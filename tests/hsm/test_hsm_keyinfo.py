"""A key whose attributes the SDK cannot turn into dates is one clear error, not a crash in hsmcert."""

from __future__ import annotations

import pytest
from azure.keyvault.keys import KeyVaultKey
from azure.keyvault.keys._generated.models import KeyBundle

from hsmcert.azure.keyinfo import KeyInfo
from hsmcert.errors import HsmcertError


def _key(attributes: dict[str, object]) -> KeyVaultKey:
    """The SDK's own key object for a service answer with these attributes."""
    bundle = KeyBundle(
        {
            "key": {"kid": "https://hsm.example/keys/k/" + "0" * 32, "kty": "EC-HSM", "crv": "P-256"},
            "attributes": {"enabled": True, "created": 1, "updated": 2, **attributes},
        }
    )
    return KeyVaultKey._from_key_bundle(bundle)


@pytest.mark.parametrize("name", ["exp", "nbf", "created"])
def test_an_out_of_range_timestamp_is_one_clear_error(name: str) -> None:
    with pytest.raises(HsmcertError, match=r"invalid timestamp 100000000000000000000000 for the key https"):
        KeyInfo.from_sdk(_key({name: 10**23}))


def test_timestamps_in_range_are_kept() -> None:
    info = KeyInfo.from_sdk(_key({"exp": 253402300799, "nbf": 0}))
    assert (info.expires_on, info.not_before, info.created, info.updated) == (253402300799, 0, 1, 2)
