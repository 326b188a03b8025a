"""RFC 8555 through certbot's ``acme`` library: accounts, orders, revocation, account key rollover.

:class:`AcmeClient` wraps :class:`acme.client.ClientV2` and adds what a real CA demands of a client:

- ``badNonce`` answers are retried with a fresh nonce (up to :data:`NONCE_RETRIES` times; acme retries once);
- ``Retry-After`` is honoured while polling authorizations and orders, within a deadline;
- a ``rateLimited`` answer becomes one sentence with the time the server asked to wait;
- an invalid authorization or order is reported in one line per identifier, naming it and the reason;
- authorizations the server reuses (already ``valid``) are not answered again.

Every expected failure is an :class:`hsmcert.errors.HsmcertError`.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from acme import client as acme_client
from acme import errors as acme_errors
from acme import messages
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from josepy.b64 import b64decode
from josepy.errors import DeserializationError
from josepy.json_util import JSONObjectWithFields
from josepy.json_util import field as jose_field
from josepy.jwk import JWK

from hsmcert.acme.account import Account, check_directory_url
from hsmcert.acme.keys import AccountKey
from hsmcert.errors import (
    AlreadyExistsError,
    HsmcertError,
    PermissionDeniedError,
    ServiceError,
    TlsTrustError,
    UnreachableError,
    UsageError,
    VerificationError,
)

if TYPE_CHECKING:
    import requests
    from cryptography import x509

    from hsmcert.acme.challenges import Responder

NONCE_RETRIES = 15
"""How many times a request the server refused with ``badNonce`` is sent again with a fresh nonce."""
DEFAULT_TIMEOUT = 300.0
"""Seconds an order may take, from the first authorization to the certificate."""
USER_AGENT = "hsmcert-acme"
_SPKI = (Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
REASONS = {
    "unspecified": 0,
    "keyCompromise": 1,
    "affiliationChanged": 3,
    "superseded": 4,
    "cessationOfOperation": 5,
}
"""Revocation reasons RFC 8555 servers accept (RFC 5280 CRLReason codes)."""


class _Network(acme_client.ClientNetwork):
    """acme's network layer, retrying ``badNonce`` more than once and keeping the last response."""

    last_response: requests.Response | None = None

    def post(self, *args: Any, **kwargs: Any) -> requests.Response:
        for attempt in range(NONCE_RETRIES + 1):
            try:
                return self._post_once(*args, **kwargs)
            except messages.Error as error:
                if error.code != "badNonce" or attempt == NONCE_RETRIES:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _send_request(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:
        response = super()._send_request(method, url, *args, **kwargs)
        self.last_response = response
        return response


class _KeyChange(JSONObjectWithFields):
    """The inner payload of an account key rollover (RFC 8555 section 7.3.5): account URL, old key."""

    account: str = jose_field("account")
    old_key: JWK = jose_field("oldKey", decoder=JWK.from_json)


def _retry_after(response: requests.Response | None) -> float | None:
    if response is None or "Retry-After" not in response.headers:
        return None
    when = acme_client.ClientV2.retry_after(response, 0)
    return max(0.0, (when - datetime.datetime.now()).total_seconds())


def _name(authzr: messages.AuthorizationResource) -> str:
    """The identifier as ordered: ``*.example.com`` for a wildcard's authorization (which says ``example.com``)."""
    value = str(authzr.body.identifier.value)
    return f"*.{value}" if authzr.body.wildcard else value


def _problem(error: messages.Error) -> str:
    text = str(error.detail or error.description or error.typ).rstrip(".")
    return f"{error.code or error.typ}: {text}" if error.code else str(text)


def _identifier_failures(error: messages.Error) -> list[str]:
    lines = []
    for sub in error.subproblems or ():
        name = sub.identifier.value if sub.identifier is not None else "?"
        lines.append(f"{name}: {_problem(sub)}")
    return lines


def server_error(error: messages.Error, what: str, response: requests.Response | None) -> HsmcertError:
    """The HsmcertError for a problem document the server answered ``what`` with (``response``: its answer)."""
    code = error.code or ""
    detail = str(error.detail or error.description or error.typ).rstrip(".")
    status = response.status_code if response is not None else None
    if code == "rateLimited":
        wait = _retry_after(response)
        until = ""
        if wait is not None:
            stamp = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=wait)
            until = f" (the server asks to wait {wait:.0f} s, until {stamp:%Y-%m-%d %H:%M:%S} UTC)"
        return ServiceError(
            f"The ACME server's rate limit stops {what}: {detail}{until}.",
            "Wait before trying again; renewals count against the same limits, so do not retry in a loop.",
            status=status or 429,
            code=code,
            retry_after=wait,
            transient=True,
        )
    if code in ("unauthorized", "externalAccountRequired", "userActionRequired", "accountDoesNotExist"):
        remedy = {
            "externalAccountRequired": "This CA needs External Account Binding: pass --eab-kid and --eab-hmac-key.",
            "userActionRequired": "Read the server's terms (hsmcert acme register shows them) and register again.",
            "accountDoesNotExist": "Register first: hsmcert acme register.",
        }.get(code, "Check the account and that it may order these names.")
        return PermissionDeniedError(f"The ACME server refused {what}: {detail}.", remedy)
    failures = _identifier_failures(error)
    if failures:
        return HsmcertError(
            f"The ACME server refused {what}: {'; '.join(failures)}.", "Fix the names and order again."
        )
    if code in (
        "malformed",
        "badCSR",
        "rejectedIdentifier",
        "unsupportedIdentifier",
        "caa",
        "badRevocationReason",
        "alreadyRevoked",
        "badPublicKey",
        "badSignatureAlgorithm",
    ):
        return UsageError(f"The ACME server refused {what}: {code}: {detail}.")
    return ServiceError(
        f"The ACME server refused {what}: {code or error.typ}: {detail}.",
        status=status,
        code=code,
        retry_after=_retry_after(response),
    )


@dataclass
class Issued:
    """A certificate the ACME server issued: the leaf, its chain (issuer first), and what happened."""

    leaf: x509.Certificate
    chain: list[x509.Certificate]
    fullchain_pem: str
    order_url: str
    reused: list[str] = field(default_factory=list)
    """Identifiers whose authorization the server reused (no challenge answered)."""
    validated: list[str] = field(default_factory=list)


class AcmeClient:
    """One ACME server (its directory URL) and, once :meth:`load_account` or :meth:`register` ran, an account."""

    def __init__(
        self, directory: str, key: AccountKey, *, server_ca: str | None = None, timeout: int = 45
    ) -> None:
        self.directory_url = check_directory_url(directory)
        self.key = key
        self.server_ca = server_ca
        verify: Any = server_ca if server_ca else True
        self.net = _Network(key.jwk, alg=key.alg, verify_ssl=verify, user_agent=USER_AGENT, timeout=timeout)
        with self.translating("reading the directory"):
            self.directory = acme_client.ClientV2.get_directory(directory, self.net)
        self.client = acme_client.ClientV2(self.directory, self.net)
        self.account: messages.RegistrationResource | None = None

    # -- errors -------------------------------------------------------------------------------------

    @contextmanager
    def translating(self, what: str) -> Iterator[None]:
        """Turn what acme and requests raise into one HsmcertError saying ``what`` failed and why."""
        import requests

        server = self.directory_url
        try:
            yield
        except HsmcertError:
            raise
        except messages.Error as error:
            raise server_error(error, what, self.net.last_response) from error
        except acme_errors.ValidationError as error:
            lines = []
            for authzr in error.failed_authzrs:
                for chall in authzr.body.challenges:
                    if chall.error is not None:
                        lines.append(f"{_name(authzr)} ({chall.chall.typ}): {_problem(chall.error)}")
            raise VerificationError(
                "The ACME server could not validate " + "; ".join(lines) + ".",
                "Check that the name points at this responder (DNS, firewall, port 80) and try again.",
            ) from error
        except acme_errors.IssuanceError as error:
            lines = _identifier_failures(error.error) or [_problem(error.error)]
            raise HsmcertError(
                f"The order became invalid: {'; '.join(lines)}.", "Fix the cause and order again."
            ) from error
        except acme_errors.TimeoutError as error:
            raise UnreachableError(
                f"{what}: the ACME server did not finish before the deadline.",
                "Try again later, or raise --timeout.",
            ) from error
        except acme_errors.ConflictError as error:
            raise AlreadyExistsError(f"{what}: the server says it exists already ({error}).") from error
        except requests.exceptions.SSLError as error:
            raise TlsTrustError(
                f"The TLS certificate of the ACME server {server} is not trusted.",
                "Pass --server-ca with the CA bundle that issued it (for a test CA such as pebble).",
            ) from error
        except requests.exceptions.RequestException as error:
            raise UnreachableError(
                f"Cannot reach the ACME server {server} ({what}): {type(error).__name__}.",
                "Check the URL and the network connection.",
            ) from error
        except acme_errors.Error as error:
            raise HsmcertError(
                f"{what}: the ACME exchange failed: {error or type(error).__name__}."
            ) from error
        except DeserializationError as error:
            raise HsmcertError(f"{what}: the ACME server sent something unexpected: {error}.") from error
        except (TypeError, ValueError, AttributeError, KeyError) as error:  # an answer of the wrong shape
            raise HsmcertError(
                f"{what}: the ACME server sent something unexpected ({type(error).__name__}: {error})."
            ) from error

    # -- accounts ---------------------------------------------------------------------------------

    @property
    def terms_of_service(self) -> str | None:
        meta = getattr(self.directory, "meta", None)
        return getattr(meta, "terms_of_service", None) if meta is not None else None

    def register(
        self,
        contact: Sequence[str] = (),
        *,
        agree_tos: bool = False,
        eab_kid: str | None = None,
        eab_hmac_key: str | None = None,
    ) -> tuple[messages.RegistrationResource, bool]:
        """Create the account of this key (or find it, if the key has one); True when it was created."""
        if (eab_kid is not None and eab_hmac_key is None) or (eab_hmac_key is not None and eab_kid is None):
            raise UsageError(
                "--eab-kid and --eab-hmac-key go together.", "Give both, as the CA handed them out."
            )
        if self.client.external_account_required() and eab_kid is None:
            try:
                self.account = self._existing()  # a key registered before needs no binding again
                return self.account, False
            except PermissionDeniedError:
                pass
            raise UsageError(
                f"{self.directory_url} requires External Account Binding.",
                "Pass --eab-kid and --eab-hmac-key from the CA's account page.",
            )
        tos = self.terms_of_service
        if tos and not agree_tos:
            raise UsageError(
                f"The ACME server's terms of service must be agreed to: {tos}",
                "Read them, then pass --agree-tos.",
            )
        emails = []
        for item in contact:
            if not item.startswith("mailto:") or "@" not in item:
                raise UsageError(
                    f"--contact {item!r} is not a mailto: address.", "For example mailto:admin@example.com."
                )
            emails.append(item)
        fields: dict[str, Any] = {
            "contact": tuple(emails),
            "terms_of_service_agreed": bool(agree_tos) or None,
        }
        if eab_kid is not None:
            assert eab_hmac_key is not None
            try:
                b64decode(eab_hmac_key)
            except (ValueError, DeserializationError) as exc:
                raise UsageError(
                    "--eab-hmac-key is not base64url.", "Paste the key exactly as the CA gave it."
                ) from exc
            fields["external_account_binding"] = messages.ExternalAccountBinding.from_data(
                account_public_key=self.key.jwk.public_key(),
                kid=eab_kid,
                hmac_key=eab_hmac_key,
                directory=self.directory,
            )
        new = messages.NewRegistration(**{k: v for k, v in fields.items() if v is not None})
        try:
            with self.translating("the new account"):
                self.account = self.client.new_account(new)
            return self.account, True
        except AlreadyExistsError:
            self.account = self._existing()
            return self.account, False

    def _existing(self) -> messages.RegistrationResource:
        with self.translating("looking up the account"):
            response = self.client._post(
                self.directory["newAccount"], messages.NewRegistration(only_return_existing=True)
            )
            regr = self.client._regr_from_response(response)
        self.net.account = regr
        return regr

    def load_account(self, account: Account) -> messages.RegistrationResource:
        """Use the registered ``account`` (its URL; the key must be the account's)."""
        regr = messages.RegistrationResource(uri=account.uri, body=messages.Registration())
        self.net.account = regr
        self.account = regr
        return regr

    def rollover(self, new_key: AccountKey) -> None:
        """Replace the account's key with ``new_key`` (RFC 8555 7.3.5); afterwards this client signs with it."""
        from acme import jws

        account = self._require_account()
        try:
            url = self.directory["keyChange"]
        except KeyError:
            url = None
        if not url:
            raise HsmcertError(f"{self.directory_url} does not offer account key rollover (no keyChange).")
        inner_payload = (
            _KeyChange(account=account.uri, old_key=self.key.jwk.public_key()).json_dumps().encode()
        )
        inner = jws.JWS.sign(inner_payload, key=new_key.jwk, alg=new_key.alg, nonce=None, url=url)
        with self.translating("the account key rollover"):
            self.client._post(url, inner)
        self.key = new_key
        self.net.key, self.net.alg = new_key.jwk, new_key.alg

    def deactivate(self) -> None:
        account = self._require_account()
        with self.translating("deactivating the account"):
            self.client.deactivate_registration(account)

    def _require_account(self) -> messages.RegistrationResource:
        if self.account is None:
            raise UsageError("No ACME account is loaded.", "Register first: hsmcert acme register.")
        return self.account

    # -- orders -----------------------------------------------------------------------------------

    def issue(
        self,
        csr_pem: bytes,
        responders: Callable[[str], Responder],
        *,
        timeout: float = DEFAULT_TIMEOUT,
        progress: Callable[[str], None] = lambda _: None,
    ) -> Issued:
        """Order a certificate for the CSR's names, answer each pending authorization with
        ``responders(identifier)``, finalize, and download the chain. Responders are cleaned up whatever
        happens."""
        from cryptography import x509

        self._require_account()
        with self.translating("the new order"):
            order = self.client.new_order(csr_pem)
        used: list[Responder] = []
        answered: list[tuple[messages.AuthorizationResource, messages.ChallengeBody]] = []
        reused: list[str] = []
        try:
            for authzr in order.authorizations:
                name = _name(authzr)
                if authzr.body.status == messages.STATUS_VALID:
                    reused.append(name)
                    continue
                if authzr.body.status != messages.STATUS_PENDING:
                    raise HsmcertError(
                        f"The authorization for {name} is {authzr.body.status}.", "Order again."
                    )
                responder = responders(name)
                challb = self._challenge(authzr, responder.challenge_type)
                if responder not in used:
                    used.append(responder)
                progress(f"{name}: {responder.challenge_type} through {responder.description}")
                responder.present(name, challb, self.key)
                answered.append((authzr, challb))
            for responder in used:
                responder.ready()
            deadline = time.monotonic() + timeout  # from when the answers are up (DNS waits not counted)
            for authzr, challb in answered:
                response = challb.chall.response(self.key.jwk)
                with self.translating(f"answering the challenge for {_name(authzr)}"):
                    self.client.answer_challenge(challb, response)
            self._wait_for_authorizations([a for a, _ in answered], deadline)
        finally:
            problems = [p for r in used for p in r.cleanup()]
            for problem in problems:
                progress(f"cleanup: {problem}")
        wall_deadline = datetime.datetime.now() + datetime.timedelta(
            seconds=max(1.0, deadline - time.monotonic())
        )
        with self.translating("finalizing the order"):
            done = self.client.finalize_order(order, wall_deadline)
        with self.translating("reading the issued certificate"):
            pems = _split_pem(done.fullchain_pem)
            certs = [x509.load_pem_x509_certificate(p.encode()) for p in pems]
        if not certs:
            raise HsmcertError("The ACME server returned no certificate.")
        return Issued(
            leaf=certs[0],
            chain=certs[1:],
            fullchain_pem=done.fullchain_pem,
            order_url=str(done.uri),
            reused=reused,
            validated=[_name(a) for a, _ in answered],
        )

    @staticmethod
    def _challenge(authzr: messages.AuthorizationResource, typ: str) -> messages.ChallengeBody:
        for challb in authzr.body.challenges:
            if challb.chall.typ == typ:
                return challb
        name = _name(authzr)
        offered = ", ".join(c.chall.typ for c in authzr.body.challenges) or "none"
        hint = (
            "Use DNS-01 (--dns-hook-present) for a wildcard name."
            if authzr.body.wildcard
            else "Choose another method."
        )
        raise UsageError(f"The ACME server does not offer {typ} for {name} (it offers {offered}).", hint)

    def _wait_for_authorizations(
        self, pending: list[messages.AuthorizationResource], deadline: float
    ) -> None:
        failed: list[messages.AuthorizationResource] = []
        for authzr in pending:
            name = _name(authzr)
            while True:
                with self.translating(f"polling the authorization for {name}"):
                    authzr, response = self.client.poll(authzr)
                status = authzr.body.status
                if status == messages.STATUS_VALID:
                    break
                if status not in (messages.STATUS_PENDING, messages.STATUS_PROCESSING):
                    failed.append(authzr)
                    break
                wait = _retry_after(response)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise UnreachableError(
                        f"The ACME server did not validate {name} before the deadline.",
                        "Try again later, or raise --timeout.",
                    )
                time.sleep(min(remaining, max(0.5, min(wait if wait is not None else 1.0, 30.0))))
        if failed:
            raise self._validation_failure(failed)

    def _validation_failure(self, failed: list[messages.AuthorizationResource]) -> HsmcertError:
        try:
            with self.translating("validation"):
                raise acme_errors.ValidationError(failed)
        except HsmcertError as exc:
            return exc

    # -- certificates -----------------------------------------------------------------------------

    def revoke(self, cert: x509.Certificate, reason: str = "unspecified") -> None:
        """Revoke ``cert``, signed by the account, or, on a client built with the certificate's own key and
        no account (RFC 8555 7.6), by that key."""
        if reason not in REASONS:
            raise UsageError(
                f"--reason {reason!r} is not a revocation reason.", f"Use one of: {', '.join(REASONS)}."
            )
        if self.account is None and self.key.thumbprint() != _thumbprint_of(cert):
            raise UsageError(
                "The certificate is not for this key; without the account only its own key may revoke it.",
                "Give the certificate's key, or revoke through the account (no --key).",
            )
        with self.translating("the revocation"):
            self.client.revoke(cert, REASONS[reason])


def _thumbprint_of(cert: x509.Certificate) -> str:
    from josepy.b64 import b64encode

    return b64encode(JWK.load(cert.public_key().public_bytes(*_SPKI)).thumbprint()).decode()


def ari_renewal_time(
    directory: str, cert_pem: bytes, *, server_ca: str | None = None
) -> datetime.datetime | None:
    """When the CA suggests renewing ``cert_pem`` (ACME Renewal Information: a time drawn from its window),
    or None when the server offers no ARI or cannot be asked now (the lifetime rule then applies).
    Unauthenticated: no account key is needed."""
    import requests

    net = acme_client.ClientNetwork(None, verify_ssl=server_ca or True, user_agent=USER_AGENT, timeout=30)  # type: ignore[arg-type]
    try:
        client = acme_client.ClientV2(
            acme_client.ClientV2.get_directory(check_directory_url(directory), net), net
        )
        when, _ = client.renewal_time(cert_pem)
    except (
        acme_errors.Error,
        messages.Error,
        requests.exceptions.RequestException,
        DeserializationError,
        ValueError,
    ):
        return None
    finally:
        net.session.close()
    if when is not None and when.tzinfo is None:
        when = when.replace(tzinfo=datetime.timezone.utc)
    return when


def _split_pem(text: str) -> list[str]:
    end = "-----END CERTIFICATE-----"
    return [
        part.strip() + "\n" + end + "\n" for part in text.split(end) if "-----BEGIN CERTIFICATE-----" in part
    ]


__all__ = [
    "DEFAULT_TIMEOUT",
    "NONCE_RETRIES",
    "REASONS",
    "AcmeClient",
    "Issued",
    "ari_renewal_time",
    "server_error",
]
