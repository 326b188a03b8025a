"""Key rotation and the certificates it leaves behind.

After ``hsmcert key rotate``, a certificate still holds the public key of the version it was made for: it
keeps working (older versions stay enabled), but the key's current version is another. :func:`bound_to`
names the managed certificates bound to a version other than the current one; ``key rotate`` warns about
them, and ``key rotate --renew`` reissues them for the new version (:func:`hsmcert.lifecycle.renewal.renew`,
which for an hsmcert nginx site switches certificate and pinned key reference together).
"""

from __future__ import annotations

from hsmcert.keyref import parse_keyref
from hsmcert.lifecycle.state import ManagedCert, Store


def bound_to(store: Store, ref: str, current_version: str) -> list[ManagedCert]:
    """The managed certificates of the key ``ref`` whose recorded version is not ``current_version``."""
    base = parse_keyref(ref).with_version(None)
    found = []
    for cert in store:
        recorded = parse_keyref(cert.key)
        if recorded.with_version(None) == base and recorded.version != current_version:
            found.append(cert)
    return found


__all__ = ["bound_to"]
