"""Renewal: a new certificate for a managed one, from the same issuer, checked, written, deployed.

For each certificate, :func:`renew` does, in order (any failure stops that certificate only, and leaves
its files and nginx as they were):

1. decide: renew only when due (:mod:`hsmcert.lifecycle.expiry`: renew-due, expired, or key-rotated),
   unless ``force`` or ``rotate_key``; a missing or unreadable file is due;
2. choose the key version: the recorded one; the key's current version when the certificate's key was
   rotated since (or its file is missing); a new version made now with ``rotate_key``;
3. ask the record's issuer (:mod:`hsmcert.lifecycle.issuers`) for a leaf and its chain, with the recorded
   subject, SANs, profile, validity and algorithm;
4. check it before anything is written: the leaf's public key is the HSM key's, its signature verifies
   with its issuer's public key, and pkilint finds nothing at WARNING or above (an issuer may relax this);
5. write leaf, full chain and chain atomically, the old files kept as ``<file>.previous``
   (:mod:`hsmcert.lifecycle.files`);
6. for an hsmcert nginx site, render it for the new key version and run ``nginx -t`` then reload
   (:mod:`hsmcert.lifecycle.nginx_site`); if that fails the files of step 5 are put back;
7. record the new key version in certificates.toml;
8. run the deploy hooks (:mod:`hsmcert.lifecycle.hooks`); a failing hook fails the renewal, but the new
   certificate stays.

Re-running is safe: a certificate that is not due is skipped.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

from hsmcert.errors import HsmcertError, VerificationError
from hsmcert.lifecycle.expiry import DUE_STATES, Policy, State, parse_before, state_of
from hsmcert.timestamps import rfc3339

if TYPE_CHECKING:
    from cryptography import x509

    from hsmcert.lifecycle.issuers import Issued
    from hsmcert.lifecycle.state import ManagedCert, Store
    from hsmcert.session import Session
    from hsmcert.signer import HsmPrivateKey

Status = Literal["renewed", "skipped", "failed"]


@dataclass(frozen=True)
class Options:
    """How :func:`renew` runs: ``force`` renews what is not due; ``rotate_key`` makes a new key version
    first; ``deploy_hooks`` run after the certificate's own; ``policy`` replaces its renewal point."""

    force: bool = False
    rotate_key: bool = False
    deploy_hooks: Sequence[str] = ()
    policy: Policy | None = None
    now: dt.datetime | None = None


@dataclass
class Outcome:
    """What happened to one certificate."""

    name: str
    status: Status
    reason: str
    state: State | None = None
    key: str | None = None
    serial: str | None = None
    not_after: str | None = None
    files: dict[str, str] = field(default_factory=dict)
    previous: dict[str, str] = field(default_factory=dict)
    nginx_reloaded: bool = False
    remedy: str | None = None
    """What to do about a failure."""
    hooks: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "reason": self.reason,
            "remedy": self.remedy,
            "state_before": self.state,
            "key": self.key,
            "serial": self.serial,
            "not_after": self.not_after,
            "files": self.files,
            "previous": self.previous,
            "nginx_reloaded": self.nginx_reloaded,
            "hooks": self.hooks,
            "notes": self.notes,
        }


def verify_issued(issued: Issued, public_key: Any, *, lint_severity: str = "WARNING") -> None:
    """Refuse (VerificationError) a new certificate that is not for ``public_key``, whose signature does not
    verify with its issuer's key, or that pkilint finds fault with at ``lint_severity`` or worse."""
    from hsmcert.pki.io import encode
    from hsmcert.pki.lint import lint_certificate
    from hsmcert.pki.signing import same_public_key, signature_is_valid

    leaf = issued.leaf
    if not same_public_key(leaf.public_key(), public_key):
        raise VerificationError(
            "The issuer returned a certificate for another public key than the HSM key's; nothing was written.",
            "Check the issuer's configuration (a Key Vault certificate object or ACME account of another key?).",
        )
    if not signature_is_valid(issued.issuer_certificate.public_key(), leaf):
        raise VerificationError(
            "The new certificate's signature does not verify with its issuer's public key; nothing was written.",
            "Check the CA certificate and key the issuer uses.",
        )
    findings = lint_certificate(encode(leaf, der=True), severity=lint_severity)
    if findings:
        raise VerificationError(
            f"pkilint refuses the new certificate ({'; '.join(findings[:3])}); nothing was written.",
            "Check the record's subject, SANs and profile.",
        )


def _pem(*certs: x509.Certificate) -> bytes:
    from hsmcert.pki.io import encode

    return b"".join(encode(c) for c in certs)


def current_state(
    record: ManagedCert, session: Session, *, now: dt.datetime, policy: Policy | None
) -> tuple[State | None, bool]:
    """The certificate's state now (None when its file cannot be read), and whether its public key is its
    HSM key's current version (asked of the HSM, bypassing the public-key cache)."""
    from hsmcert.keyref import parse_keyref
    from hsmcert.lifecycle.inventory import read_leaf
    from hsmcert.pki.signing import spki_der

    current = session.open_key(str(parse_keyref(record.key).with_version(None)), refresh=True).spki_der
    try:
        leaf = read_leaf(record.served_file)
    except HsmcertError:
        return None, False
    key_current = spki_der(leaf.public_key()) == current
    state = state_of(
        leaf.not_valid_before_utc,
        leaf.not_valid_after_utc,
        now=now,
        policy=policy or parse_before(record.renew_before),
        key_current=key_current,
    )
    if state == "ok" and policy is None and _issuer_suggests_renewal(record, leaf, session, now):
        state = "renew-due"
    return state, key_current


def _issuer_suggests_renewal(
    record: ManagedCert, leaf: x509.Certificate, session: Session, now: dt.datetime
) -> bool:
    """Whether the record's issuer suggests renewing by ``now`` (its optional ``renewal_time``: ACME
    Renewal Information); an explicit --before policy is not second-guessed."""
    from hsmcert.lifecycle import issuers

    try:
        suggest = getattr(issuers.get(record.issuer_kind), "renewal_time", None)
    except HsmcertError:
        return False
    when = suggest(record, leaf, session) if suggest is not None else None
    return when is not None and when <= now


def _choose_key(record: ManagedCert, session: Session, *, key_current: bool, rotate: bool) -> HsmPrivateKey:
    """The recorded version; the current one when the key was rotated since; a new one with ``rotate``."""
    from hsmcert.keyref import parse_keyref

    base = parse_keyref(record.key).with_version(None)
    if rotate:
        details = session.keys.rotate(base)
        return session.private_key(base.with_version(str(details.to_json()["version"])))
    if not key_current:
        return session.private_key(base)  # the current version, pinned when opened
    return session.private_key(record.key)


def _files(record: ManagedCert, issued: Issued) -> dict[str, bytes]:
    content = {
        "cert": _pem(issued.leaf),
        "fullchain": _pem(issued.leaf, *issued.chain),
        "chain": _pem(*issued.chain),
    }
    return {path: content[role] for role, path in record.files().items()}


def renew(record: ManagedCert, session: Session, store: Store, options: Options = Options()) -> Outcome:
    """Renew one certificate (module docstring); every expected failure is a ``failed`` outcome."""
    from hsmcert.lifecycle import files, issuers
    from hsmcert.lifecycle.expiry import now as clock

    now = options.now or clock()
    outcome = Outcome(record.name, "failed", "", files=record.files())
    try:
        state, key_current = current_state(record, session, now=now, policy=options.policy)
        outcome.state = state
        if not (options.force or options.rotate_key or state is None or state in DUE_STATES):
            outcome.status, outcome.reason = "skipped", "not due"
            return outcome
        issuer = issuers.get(record.issuer_kind)
        key = _choose_key(record, session, key_current=key_current, rotate=options.rotate_key)
        pinned = replace(record, key=str(key.ref))
        issued = issuer.issue(pinned, session, key)
        if issued.key is not None and issued.key != pinned.key:  # the issuer made the key version
            key = session.private_key(issued.key)
            pinned = replace(pinned, key=str(key.ref))
        verify_issued(issued, key.public_key(), lint_severity=issuers.lint_severity(issuer))
        saved, outcome.previous = files.install(_files(pinned, issued))
        if pinned.nginx:
            from hsmcert.lifecycle.nginx_site import redeploy

            try:
                redeploy(pinned.nginx, pinned.key)
            except BaseException:
                files.restore(saved)
                outcome.previous = {}
                raise
            outcome.nginx_reloaded = True
        store.put(pinned)
        store.save()
    except HsmcertError as exc:
        outcome.reason, outcome.remedy = exc.message, exc.remedy
        return outcome
    except (
        Exception
    ) as exc:  # e.g. a hand-edited value of the wrong type: this certificate fails, not the run
        outcome.reason = f"unexpected {type(exc).__name__}: {str(exc)[:200]}"
        outcome.remedy = (
            "Check its record in certificates.toml (docs/lifecycle.md); this may be a bug in hsmcert."
        )
        return outcome
    outcome.status, outcome.key, outcome.notes = "renewed", pinned.key, list(issued.notes)
    outcome.serial = format(issued.leaf.serial_number, "x")
    outcome.not_after = rfc3339(issued.leaf.not_valid_after_utc.timestamp())
    outcome.reason = "renewed" + (" with a new key version" if str(key.ref) != record.key else "")
    _run_hooks(outcome, [*pinned.deploy_hooks, *options.deploy_hooks])
    return outcome


def _run_hooks(outcome: Outcome, commands: Sequence[str]) -> None:
    from hsmcert.lifecycle.hooks import hook_variables, run_hook

    variables = hook_variables(
        outcome.name,
        outcome.files,
        outcome.previous,
        key=str(outcome.key),
        serial=str(outcome.serial),
        not_after=str(outcome.not_after),
    )
    for command in commands:
        result = run_hook(command, variables)
        outcome.hooks.append(result.to_json())
        if not result.ok:
            outcome.status = "failed"
            ended = "did not finish in time" if result.exit_code is None else f"exited {result.exit_code}"
            outcome.reason = f"the deploy hook {command!r} {ended} (the new certificate is in place)"


def renew_many(
    records: Sequence[ManagedCert], session: Session, store: Store, options: Options = Options()
) -> list[Outcome]:
    """:func:`renew` each record in turn; one failure does not stop the others."""
    return [renew(record, session, store, options) for record in records]


__all__ = ["Options", "Outcome", "current_state", "renew", "renew_many", "verify_issued"]
