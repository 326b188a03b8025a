"""A long agent run with short-lived tokens: hsmcert's credential (a service principal signing in at the
emulator's login endpoint) keeps a token while it has more than five minutes left, fetches the next one in
those last five minutes, before the old one expires, and no signature fails meanwhile; with tokens shorter
than that window, a run across several expiries signs each time with a token still valid."""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import os
import time
from typing import Any

DIGEST = hashlib.sha256(b"token refresh").digest()
# Five minutes (the refresh window of the credential and of the SDK) and five seconds: each token is used
# from the cache for about five seconds, then replaced while it still has five minutes to live.
LIFETIME = 305
RUN = 16.0


def _when(entry: dict[str, Any]) -> float:
    return dt.datetime.fromisoformat(str(entry["time"]).replace("Z", "+00:00")).timestamp()


def _run(
    agent_factory: Any, emulator: Any, ref: str, lifetime: int, seconds: float, pause: float
) -> tuple[int, list[dict[str, Any]], list[dict[str, Any]]]:
    """Sign with ``ref`` through an agent signed in as a service principal for ``seconds``, tokens lasting
    ``lifetime``: the number of signatures, the tokens issued and the signatures the emulator audited."""
    from hsmcert.emulator import control

    running = control.require_running(emulator.data_dir)
    env = {**os.environ, **control.credentials(emulator.data_dir, "admin")}
    env["HSMCERT_CREDENTIAL"] = "service-principal"
    before = len(emulator.audit())
    running.control("PUT", "/control/tokens", {"lifetime": lifetime})
    signs = 0
    try:
        agent = agent_factory(env=env)
        with agent.client() as client:
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                assert len(client.sign(ref, "ES256", DIGEST)) >= 64
                signs += 1
                time.sleep(pause)
    finally:
        running.control("PUT", "/control/tokens", {"lifetime": 24 * 3600})
    entries = emulator.audit()[before:]
    admin = emulator.principal_id("admin")
    issued = [e for e in entries if e.get("operation") == "login-token" and e.get("principal") == admin]
    key = ref.rsplit(":", 1)[1]
    signed = [e for e in entries if e.get("operation") == "sign" and e.get("key") == key]
    assert len(signed) == signs and all(e["result"] == "ok" for e in signed)
    return signs, issued, signed


def test_the_credential_fetches_a_new_token_before_the_old_one_expires(
    agent_factory: Any, emulator: Any, agent_keys: dict[str, str]
) -> None:
    signs, issued, _ = _run(agent_factory, emulator, agent_keys["p256"], LIFETIME, RUN, 0.1)
    assert all(e["expires"] - _when(e) <= LIFETIME + 1 for e in issued)
    # refreshed during the run, yet far fewer tokens than signatures: each one was kept while it could be
    assert len(issued) >= 2, issued
    assert len(issued) < signs / 3, (len(issued), signs)
    for previous, new in itertools.pairwise(issued):
        fetched = _when(new)
        assert fetched < previous["expires"], "a token was fetched only after the old one had expired"
        assert previous["expires"] - fetched <= 301, "a token was replaced long before its last five minutes"


def test_a_run_across_several_expiries_signs_with_valid_tokens_only(
    agent_factory: Any, emulator: Any, agent_keys: dict[str, str]
) -> None:
    lifetime = 4
    _, issued, signed = _run(agent_factory, emulator, agent_keys["p256"], lifetime, 3.5 * lifetime, 0.3)
    first_expiry = min(e["expires"] for e in issued)
    assert _when(signed[-1]) > first_expiry + lifetime, "the run did not outlast two token lifetimes"
    for entry in signed:
        when = _when(entry)
        # a token fetched before this signature (the audit's clock has milliseconds) still valid then
        valid = [e for e in issued if _when(e) <= when + 0.001 and e["expires"] > when]
        assert valid, f"the signature at {entry['time']} had no unexpired token"
