"""A slow or throttling HSM: the agent answers within its deadline, waits as long as Retry-After asks, and
recovers by itself when the HSM is well again."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from hsmcert.agent.client import AgentError
from hsmcert.agent.protocol import Status

DIGEST = hashlib.sha256(b"slow hsm").digest()


@pytest.fixture
def ref(emulator: Any) -> str:
    """A key of these tests' own: a request the HSM finishes after the agent gave up lands in no other
    test's audit count."""
    from uuid import uuid4

    from hsmcert.session import default_session

    made = f"managedhsm:local-hsm:agent-slow-{uuid4().hex[:8]}"
    default_session().keys.create(made, "EC", curve="P-256")
    return made


@pytest.fixture
def faults(emulator: Any) -> Iterator[Any]:
    yield emulator.set_faults
    emulator.set_faults()


def test_a_hung_hsm_is_unavailable_within_the_deadline_then_recovers(
    agent_factory: Any, ref: str, faults: Any
) -> None:
    agent = agent_factory("--deadline", "1.5")
    with agent.client() as client:
        client.pubkey(ref)
        faults(latency_ms=4000)
        began = time.monotonic()
        with pytest.raises(AgentError) as caught:
            client.sign(ref, "ES256", DIGEST)
        waited = time.monotonic() - began
        assert caught.value.status is Status.UNAVAILABLE, caught.value
        assert 1.0 <= waited < 3.0, f"answered after {waited:.2f} s with a 1.5 s deadline"
        faults()
        assert len(client.sign(ref, "ES256", DIGEST)) >= 64  # the same agent, no restart


def test_retry_after_is_waited_for(agent_factory: Any, emulator: Any, ref: str, faults: Any) -> None:
    agent = agent_factory("--deadline", "20")
    key = ref.rsplit(":", 1)[1]
    with agent.client() as client:
        client.pubkey(ref)
        before = len(emulator.audit())
        faults(throttle=1.0, retry_after=3)
        # the HSM is well again long before Retry-After ends; 1.5 s leaves a slow machine time to send the
        # first request (every request made while the fault is on gets the 429)
        threading.Timer(1.5, faults).start()
        began = time.monotonic()
        signature = client.sign(ref, "ES256", DIGEST)
        waited = time.monotonic() - began
    assert len(signature) >= 64
    assert waited >= 2.9, f"retried after {waited:.2f} s although the HSM said Retry-After: 3"
    signs = [e for e in emulator.audit()[before:] if e.get("operation") == "sign" and e.get("key") == key]
    assert len(signs) == 1  # refused attempts sign nothing; the retry signed once
