"""The agent opens a key once: later public-key requests and signatures cost the HSM no further reads."""

from __future__ import annotations

import hashlib
from typing import Any
from uuid import uuid4


def test_one_hsm_read_serves_every_later_request(agent_factory: Any, emulator: Any) -> None:
    from hsmcert.session import default_session

    name = f"agent-cache-{uuid4().hex[:8]}"
    ref = f"managedhsm:local-hsm:{name}"
    default_session().keys.create(ref, "RSA", size=2048)
    before = len(emulator.audit())
    agent = agent_factory()
    digest = hashlib.sha256(b"cache").digest()
    with agent.client() as client:
        first = client.pubkey(ref)
        for _ in range(10):
            assert client.pubkey(ref) == first
            client.sign(ref, "PS256", digest)
    ops = [e["operation"] for e in emulator.audit()[before:] if e.get("key") == name]
    assert ops.count("sign") == 10
    assert ops.count("get") <= 1, ops
