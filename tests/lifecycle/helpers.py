"""Certificates with chosen validity for the HSM keys of the tests (the controlled clock of expiry tests)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from hsmcert.pki.io import encode


def dated_selfsigned(
    key: Any, path: Path, *, start_days_ago: float, lifetime_days: float, cn: str = "www.example.com"
) -> Path:
    """A self-signed tls-server certificate of ``key`` valid from ``start_days_ago`` days ago for
    ``lifetime_days`` days, written to ``path``."""
    from cryptography import x509

    from hsmcert.pki.certificate import make_certificate
    from hsmcert.pki.profiles import get_profile
    from hsmcert.pki.subject import parse_subject

    start = dt.datetime.now(dt.timezone.utc).replace(microsecond=0) - dt.timedelta(days=start_days_ago)
    name = parse_subject(f"/CN={cn}")
    signed = make_certificate(
        signing_key=key,
        issuer=name,
        issuer_public_key=key.public_key(),
        issuer_ski=None,
        subject=name,
        subject_public_key=key.public_key(),
        sans=[x509.DNSName(cn)],
        profile=get_profile("tls-server"),
        not_before=start,
        not_after=start + dt.timedelta(days=lifetime_days),
    )
    path.write_bytes(encode(signed.obj))
    return path
