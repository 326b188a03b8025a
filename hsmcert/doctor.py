"""What is wrong and how to fix it: credentials, endpoint, reachability, the permissions on a key.

Each check yields a :class:`Check` with a verdict, a one-line detail and, when it failed, the remedy.
Checks that depend on a failed one are skipped (reported with ``ok=None``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hsmcert.errors import HsmcertError, UsageError

if TYPE_CHECKING:
    from hsmcert.session import Session


@dataclass
class Check:
    name: str
    ok: bool | None
    """True passed, False failed, None skipped."""
    detail: str
    remedy: str | None = None
    exit_code: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"check": self.name, "ok": self.ok, "detail": self.detail, "remedy": self.remedy}


def _failed(name: str, exc: HsmcertError) -> Check:
    return Check(name, False, exc.message, exc.remedy, exc.exit_code)


def _token_scope(key: str | None, vault: str | None) -> str:
    """The audience of the service the checks are about: Key Vault for a vault, else Managed HSM."""
    from hsmcert.azure import credentials as creds
    from hsmcert.keyref import parse_keyref

    if vault:
        return creds.VAULT_SCOPE
    if key:
        try:
            if parse_keyref(key).kind == "vault":
                return creds.VAULT_SCOPE
        except HsmcertError:
            pass  # reported by the endpoint check
    return creds.MANAGED_HSM_SCOPE


def run_checks(
    *,
    key: str | None = None,
    hsm: str | None = None,
    vault: str | None = None,
    session: Session,
    sign: bool = True,
) -> Iterator[Check]:
    """Run the checks in order, through ``session``; stop early where later checks cannot mean anything."""
    from hsmcert.azure import credentials as creds
    from hsmcert.keyref import KeyRef, parse_keyref

    # 1. Which credential, and does it get a token?
    try:
        chosen = session.credential_name()
    except UsageError as exc:
        yield _failed("credential", exc)
        return
    present = session.configured_credentials()
    yield Check(
        "credential configuration",
        True,
        f"selected: {chosen}; configured here: {', '.join(present) or 'none'}",
    )
    try:
        who = creds.describe(session.credential, _token_scope(key, vault))
    except HsmcertError as exc:
        yield _failed("token", exc)
        return
    yield Check(
        "token",
        True,
        f"{who.credential} signed in as object id {who.object_id or '?'} in tenant {who.tenant_id or '?'}",
    )

    # 2. Which service, where?
    ref: KeyRef | None = None
    try:
        if key:
            ref = parse_keyref(key)
            kind, name = ref.kind, ref.service
        elif hsm or vault:
            kind, name = ("managedhsm", str(hsm)) if hsm else ("vault", str(vault))
        else:
            return
        resolved = session.endpoint(ref) if ref else session.service_endpoint(kind, name)
    except HsmcertError as exc:
        yield _failed("endpoint", exc)
        return
    ca = f", trusting {resolved.ca_bundle}" if resolved.ca_bundle else ""
    yield Check("endpoint", True, f"{kind}:{name} -> {resolved.url} (from {resolved.source}{ca})")
    if resolved.ca_bundle and not os.path.exists(resolved.ca_bundle):
        yield Check(
            "CA bundle",
            False,
            f"The CA bundle {resolved.ca_bundle} does not exist.",
            "Point --ca-bundle / HSMCERT_CA_BUNDLE at the CA file of the endpoint.",
            1,
        )
        return

    # 3. Reachable, and allowed to read?
    if ref is None:
        try:
            keys = session.keys.list(kind, name)
        except HsmcertError as exc:
            yield _failed("list keys", exc)
            return
        yield Check("list keys", True, f"{len(keys)} key(s) visible in {kind}:{name}")
        return

    try:
        opened = session.open_key(ref, refresh=True)
    except HsmcertError as exc:
        yield _failed("read key", exc)
        return
    ops = opened.info.jwk.get("key_ops", [])
    yield Check(
        "read key",
        True,
        f"{opened.ref}: {opened.kty} {opened.curve or opened.key_size}, operations {', '.join(ops)}",
    )
    if ops and "sign" not in ops:
        yield Check(
            "key operations",
            False,
            f"{ref} does not allow sign (key_ops: {', '.join(ops)}).",
            "Create a key for signing: hsmcert key create --kty RSA|EC ...",
            4,
        )
        return
    if not sign:
        yield Check("sign", None, "skipped (--no-sign)")
        return

    # 4. Allowed to sign? (one real signature over a random digest, verified locally)
    import secrets

    from hsmcert.jwa import ALGORITHMS

    alg = opened.default_algorithm()
    digest = secrets.token_bytes(ALGORITHMS[alg].digest_size)
    try:
        opened.sign_digest(alg, digest)
    except HsmcertError as exc:
        yield _failed("sign", exc)
        return
    yield Check("sign", True, f"{alg} signature made in the HSM and verified locally")
