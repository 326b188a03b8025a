"""Within one process hsmcert keeps one kept-alive HTTPS connection per HSM: opening keys and signing many
times costs the HSM one TLS handshake, counted by a TCP relay in front of the emulator."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit
from uuid import uuid4

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding

from tests.agent.test_agent_pool import CountingProxy


def test_many_signatures_over_one_connection(emulator: Any) -> None:
    from hsmcert.session import Session, default_session
    from hsmcert.signer import load_private_key

    refs = [f"managedhsm:local-hsm:reuse-{kind}-{uuid4().hex[:8]}" for kind in ("ec", "rsa")]
    default_session().keys.create(refs[0], "EC", curve="P-256")
    default_session().keys.create(refs[1], "RSA", size=2048)
    target = urlsplit(emulator.url())
    proxy = CountingProxy((target.hostname or "127.0.0.1", target.port or 443))
    try:
        session = Session(endpoint=f"https://127.0.0.1:{proxy.port}", ca_bundle=str(emulator.ca))
        ec_key = load_private_key(refs[0], session=session)
        rsa_key = load_private_key(refs[1], session=session)
        for i in range(10):
            data = f"message {i}".encode()
            ec_key.sign(data, ec.ECDSA(hashes.SHA256()))
            rsa_key.sign(data, padding.PKCS1v15(), hashes.SHA256())
        assert proxy.connections == 1, f"the HSM saw {proxy.connections} TLS connections for 20 signatures"
    finally:
        proxy.close()
