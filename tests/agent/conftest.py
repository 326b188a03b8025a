"""Keys for the agent tests, made once per session in the shared emulator."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

import pytest

HSM = "local-hsm"


@pytest.fixture(scope="session")
def agent_keys(emulator: Any) -> dict[str, str]:
    """References of an RSA 2048 key and EC P-256 / P-384 keys in the emulator's default Managed HSM."""
    from hsmcert.session import default_session

    refs: dict[str, str] = {}
    for name, kty, kwargs in (
        ("rsa", "RSA", {"size": 2048}),
        ("p256", "EC", {"curve": "P-256"}),
        ("p384", "EC", {"curve": "P-384"}),
    ):
        ref = f"managedhsm:{HSM}:agent-{name}-{uuid4().hex[:8]}"
        default_session().keys.create(ref, kty, **kwargs)
        refs[name] = ref
    return refs
