"""Which Azure identity hsmcert uses, chosen explicitly or found by one printable chain.

azure-identity does the work; this module only chooses, names and explains. The chain, in order (the
first credential whose configuration is present and that returns a token wins):

==================  ===========================================================================
name                configured by
==================  ===========================================================================
env-token           ``HSMCERT_ACCESS_TOKEN``, or ``AZURE_CLI_ACCESS_TOKEN`` (compatibility with
                    Azure's OpenSSL provider): a bearer token used as it is
service-principal   ``AZURE_CLIENT_ID`` + ``AZURE_CLIENT_SECRET`` (or ``AZURE_CLIENT_CERTIFICATE_PATH``)
                    + ``AZURE_TENANT_ID``; or ``MHSM_CLIENT_ID`` + ``MHSM_CLIENT_SECRET`` (+
                    ``MHSM_TENANT_ID`` or ``AZURE_TENANT_ID``), the variables of Azure's PKCS#11 library
workload-identity   ``AZURE_FEDERATED_TOKEN_FILE`` + ``AZURE_CLIENT_ID`` + ``AZURE_TENANT_ID`` (Kubernetes)
github-actions      ``ACTIONS_ID_TOKEN_REQUEST_URL`` + ``ACTIONS_ID_TOKEN_REQUEST_TOKEN`` (a job with
                    ``permissions: id-token: write``) + ``AZURE_CLIENT_ID`` + ``AZURE_TENANT_ID``: the job's
                    OIDC token for ``api://AzureADTokenExchange`` is the federated client assertion
azure-pipelines     ``SYSTEM_OIDCREQUESTURI`` + ``SYSTEM_ACCESSTOKEN`` + the service connection's
                    ``AZURESUBSCRIPTION_SERVICE_CONNECTION_ID``, ``AZURESUBSCRIPTION_CLIENT_ID`` and
                    ``AZURESUBSCRIPTION_TENANT_ID`` (or ``AZURE_CLIENT_ID``/``AZURE_TENANT_ID``)
managed-identity    the machine's identity (IMDS, App Service ``IDENTITY_ENDPOINT``); a user-assigned
                    identity by ``HSMCERT_MANAGED_IDENTITY_CLIENT_ID`` (or ``AZURE_CLIENT_ID``)
azure-cli           ``az login``
==================  ===========================================================================

``--credential NAME`` or ``HSMCERT_CREDENTIAL=NAME`` picks one (``auto``, the default, walks the chain).
``AZURE_AUTHORITY_HOST`` may name another login host than Azure's (the emulator's login endpoint, see
``hsmcert emulator credentials``): :func:`_authority_options` adapts the service-principal,
workload-identity and CI credentials to it.
Tokens are never printed or logged; :func:`describe` decodes only the claims that say who you are.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hsmcert.errors import PermissionDeniedError, UsageError

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

CREDENTIAL_NAMES = (
    "env-token",
    "service-principal",
    "workload-identity",
    "github-actions",
    "azure-pipelines",
    "managed-identity",
    "azure-cli",
)
AUTO = "auto"

# The token audience of each service kind (a challenge from the service may name another, e.g. the emulator).
MANAGED_HSM_SCOPE = "https://managedhsm.azure.net/.default"
VAULT_SCOPE = "https://vault.azure.net/.default"

_REMEDY = (
    "Sign in with one of: az login; a managed identity; AZURE_CLIENT_ID/AZURE_CLIENT_SECRET/AZURE_TENANT_ID; "
    "HSMCERT_ACCESS_TOKEN. Choose one with --credential or HSMCERT_CREDENTIAL; "
    "see docs/authentication.md and run hsmcert doctor."
)

_RENEW_ENV_CREDENTIAL = (
    "Set HSMCERT_ACCESS_TOKEN (or AZURE_CLI_ACCESS_TOKEN) to a current access token, e.g. "
    "az account get-access-token --resource https://managedhsm.azure.net --query accessToken -o tsv; "
    "or unset it to use another credential (docs/authentication.md)."
)


def _env(env: Mapping[str, str], *names: str) -> str | None:
    """The first of ``names`` set (non-empty) in ``env``."""
    for name in names:
        value = env.get(name)
        if value:
            return value
    return None


def decode_claims(token: str) -> dict[str, Any]:
    """The claims of a JWT access token (not verified: for display and error messages only).

    >>> import base64, json
    >>> body = base64.urlsafe_b64encode(json.dumps({"oid": "x"}).encode()).decode().rstrip("=")
    >>> decode_claims(f"e30.{body}.sig")["oid"]
    'x'
    >>> decode_claims("not a jwt")
    {}
    """
    from hsmcert.tokens import claims_of

    return claims_of(token)


class StaticTokenCredential:
    """A bearer token taken from the environment, used as it is (its ``exp`` claim, else one hour)."""

    def __init__(self, token: str) -> None:
        self._token = token.strip()
        self.claims = decode_claims(self._token)
        from hsmcert.tokens import expiry

        # no usable exp claim: an hour (whoami and doctor call such a token what it is)
        exp = expiry(self._token)
        self._expires_on = exp if exp is not None else int(time.time()) + 3600

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.core.credentials import AccessToken

        return AccessToken(self._token, self._expires_on)

    def close(self) -> None:
        return None


@dataclass
class Credential:
    """The credential hsmcert hands to the Azure SDKs: one or a chain of azure-identity credentials.

    It remembers which credential answered (``answered``) and the claims of the last token it gave out
    (``claims``), so that ``whoami`` and error messages can say who was refused. It caches tokens per
    scope until five minutes before they expire.
    """

    name: str
    candidates: list[tuple[str, TokenCredential]] = field(repr=False)
    answered: str | None = None
    claims: dict[str, Any] = field(default_factory=dict, repr=False)
    # tokens never appear in a repr, a log line or a traceback's locals
    _tokens: dict[tuple[str, ...], Any] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.core.exceptions import ClientAuthenticationError

        cache_key = tuple(scopes)
        use_cache = not kwargs.get("claims")
        with self._lock:
            cached = self._tokens.get(cache_key)
            if use_cache and cached is not None and cached.expires_on - time.time() > 300:
                return cached
        failures: list[str] = []
        # The credential that answered before is asked first.
        order = sorted(self.candidates, key=lambda c: c[0] != self.answered)
        for name, credential in order:
            try:
                token = credential.get_token(*scopes, **kwargs)
            except ClientAuthenticationError as exc:
                failures.append(f"{name}: {_first_line(exc)}")
                continue
            with self._lock:
                self.answered = name
                self.claims = decode_claims(token.token)
                self._tokens[cache_key] = token
            _LAST_CLAIMS[0] = self.claims
            return token
        raise ClientAuthenticationError(
            message="no credential could get a token (" + "; ".join(failures or ["none configured"]) + ")"
        )

    def close(self) -> None:
        for _, credential in self.candidates:
            close = getattr(credential, "close", None)
            if callable(close):
                close()


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "message", None) or exc).strip()
    return text.splitlines()[0].rstrip(".") if text else type(exc).__name__


# Microsoft Entra ID's login hosts (public and sovereign clouds, and their aliases) that MSAL knows itself.
_AZURE_LOGIN_HOSTS = frozenset(
    {
        "login.microsoftonline.com",
        "login.microsoft.com",
        "login.windows.net",
        "sts.windows.net",
        "login.chinacloudapi.cn",
        "login.partner.microsoftonline.cn",
        "login.microsoftonline.us",
        "login-us.microsoftonline.com",
        "login.usgovcloudapi.net",
        "login.microsoftonline.de",
        "login.sovcloud-identity.fr",
        "login.sovcloud-identity.de",
        "login.sovcloud-identity.sg",
    }
)


def _authority_options(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """What an azure-identity credential needs for ``$AZURE_AUTHORITY_HOST`` (nothing for Azure's own hosts).

    A loopback host, or any host with ``HSMCERT_TRUST_AUTHORITY=1``: ``disable_instance_discovery`` (else
    MSAL asks login.microsoftonline.com whether it knows the host, and refuses it); when that host is the
    login endpoint the configured emulator publishes (``$HSMCERT_EMULATOR``, the config file, else the
    default data directory: see :mod:`hsmcert.config`), ``connection_verify`` with the emulator's CA. Other private authorities are verified as
    requests does (``REQUESTS_CA_BUNDLE``). Any other host keeps MSAL's check.
    """
    from urllib.parse import urlsplit

    env = os.environ if env is None else env
    authority = _env(env, "AZURE_AUTHORITY_HOST")
    if not authority:
        return {}
    parts = urlsplit(authority if "://" in authority else "https://" + authority)
    try:
        host, port = (parts.hostname or "").lower(), parts.port or 443
    except ValueError:  # a bad port: azure-identity reports the authority itself
        return {}
    if host in _AZURE_LOGIN_HOSTS:
        return {}
    loopback = host in ("127.0.0.1", "localhost", "::1")
    if not loopback and _env(env, "HSMCERT_TRUST_AUTHORITY") != "1":
        # MSAL's own check stays on: a secret goes to an unknown host only when the user says so.
        return {}
    options: dict[str, Any] = {"disable_instance_discovery": True}
    if loopback:
        from hsmcert.config import EndpointResolver, default_emulator_dir, emulator_login

        login = emulator_login(EndpointResolver(environ=env).emulator_dir() or default_emulator_dir())
        if login is not None and urlsplit(login[0]).port == port:
            options["connection_verify"] = login[1]
    return options


def _service_principal(env: Mapping[str, str]) -> TokenCredential | None:
    from azure.identity import CertificateCredential, ClientSecretCredential

    tenant = _env(env, "AZURE_TENANT_ID")
    client_id = _env(env, "AZURE_CLIENT_ID")
    secret = _env(env, "AZURE_CLIENT_SECRET")
    certificate = _env(env, "AZURE_CLIENT_CERTIFICATE_PATH")
    if client_id and tenant and secret:
        return ClientSecretCredential(tenant, client_id, secret, **_authority_options(env))
    if client_id and tenant and certificate:
        return CertificateCredential(
            tenant,
            client_id,
            certificate,
            password=_env(env, "AZURE_CLIENT_CERTIFICATE_PASSWORD"),
            **_authority_options(env),
        )
    mhsm_id, mhsm_secret = _env(env, "MHSM_CLIENT_ID"), _env(env, "MHSM_CLIENT_SECRET")
    mhsm_tenant = _env(env, "MHSM_TENANT_ID", "AZURE_TENANT_ID")
    if mhsm_id and mhsm_secret and mhsm_tenant:
        return ClientSecretCredential(mhsm_tenant, mhsm_id, mhsm_secret, **_authority_options(env))
    return None


def _workload_identity(env: Mapping[str, str]) -> TokenCredential | None:
    from azure.identity import WorkloadIdentityCredential

    token_file = _env(env, "AZURE_FEDERATED_TOKEN_FILE")
    client_id, tenant = _env(env, "AZURE_CLIENT_ID"), _env(env, "AZURE_TENANT_ID")
    if token_file and client_id and tenant:
        return WorkloadIdentityCredential(
            tenant_id=tenant, client_id=client_id, token_file_path=token_file, **_assertion_options(env)
        )
    return None


GITHUB_AUDIENCE = "api://AzureADTokenExchange"
"""The audience of the GitHub Actions OIDC token Entra accepts as a federated client assertion."""


def _assertion_options(env: Mapping[str, str]) -> dict[str, Any]:
    # a client assertion is posted to the authority's token endpoint directly (no MSAL discovery to disable)
    options = _authority_options(env)
    options.pop("disable_instance_discovery", None)
    return options


def github_oidc_token(request_url: str, request_token: str, audience: str = GITHUB_AUDIENCE) -> str:
    """The job's OIDC token from GitHub Actions' token endpoint (``$ACTIONS_ID_TOKEN_REQUEST_URL``, which
    already carries a query, with ``$ACTIONS_ID_TOKEN_REQUEST_TOKEN``) for ``audience``."""
    import requests
    from azure.core.exceptions import ClientAuthenticationError

    try:
        answer = requests.get(
            request_url,
            params={"audience": audience},
            headers={"Authorization": f"bearer {request_token}", "Accept": "application/json"},
            timeout=30,
        )
        value = answer.json().get("value") if answer.status_code == 200 else None
    except (requests.RequestException, ValueError, AttributeError) as exc:
        raise ClientAuthenticationError(
            message=f"cannot get the GitHub Actions OIDC token: {type(exc).__name__}"
        ) from None
    if not isinstance(value, str) or not value:
        raise ClientAuthenticationError(
            message=f"the GitHub Actions OIDC token endpoint answered {answer.status_code} without a token "
            "(does the job have permissions: id-token: write?)"
        )
    return value


def _github_actions(env: Mapping[str, str]) -> TokenCredential | None:
    from azure.identity import ClientAssertionCredential

    url, token = _env(env, "ACTIONS_ID_TOKEN_REQUEST_URL"), _env(env, "ACTIONS_ID_TOKEN_REQUEST_TOKEN")
    client_id, tenant = _env(env, "AZURE_CLIENT_ID"), _env(env, "AZURE_TENANT_ID")
    if not (url and token and client_id and tenant):
        return None
    return ClientAssertionCredential(
        tenant, client_id, lambda: github_oidc_token(url, token), **_assertion_options(env)
    )


def _azure_pipelines(env: Mapping[str, str]) -> TokenCredential | None:
    from azure.identity import AzurePipelinesCredential

    connection = _env(env, "AZURESUBSCRIPTION_SERVICE_CONNECTION_ID")
    access_token = _env(env, "SYSTEM_ACCESSTOKEN")
    client_id = _env(env, "AZURESUBSCRIPTION_CLIENT_ID", "AZURE_CLIENT_ID")
    tenant = _env(env, "AZURESUBSCRIPTION_TENANT_ID", "AZURE_TENANT_ID")
    if not (_env(env, "SYSTEM_OIDCREQUESTURI") and connection and access_token and client_id and tenant):
        return None
    return AzurePipelinesCredential(
        tenant_id=tenant,
        client_id=client_id,
        service_connection_id=connection,
        system_access_token=access_token,
        **_assertion_options(env),
    )


def _managed_identity(client_id: str | None, in_chain: bool, env: Mapping[str, str]) -> TokenCredential:
    from azure.identity import ManagedIdentityCredential

    client_id = client_id or _env(env, "HSMCERT_MANAGED_IDENTITY_CLIENT_ID")
    # AZURE_CLIENT_ID names an application, not a managed identity, next to a secret or a federated token
    federated = ("AZURE_CLIENT_SECRET", "AZURE_FEDERATED_TOKEN_FILE", "ACTIONS_ID_TOKEN_REQUEST_TOKEN")
    if client_id is None and not _env(env, *federated):
        client_id = _env(env, "AZURE_CLIENT_ID")
    kwargs: dict[str, Any] = {"client_id": client_id} if client_id else {}
    if in_chain:
        # In the automatic chain, probe IMDS with a short timeout instead of retrying for a minute.
        try:
            return ManagedIdentityCredential(_enable_imds_probe=True, **kwargs)
        except TypeError:  # pragma: no cover - an azure-identity without the private switch
            pass
    return ManagedIdentityCredential(**kwargs)


def _build(
    name: str, client_id: str | None, in_chain: bool, env: Mapping[str, str]
) -> TokenCredential | None:
    """One credential by name, or None when its configuration is absent."""
    if name == "env-token":
        token = _env(env, "HSMCERT_ACCESS_TOKEN", "AZURE_CLI_ACCESS_TOKEN")
        return StaticTokenCredential(token) if token else None
    if name == "service-principal":
        return _service_principal(env)
    if name == "workload-identity":
        return _workload_identity(env)
    if name == "github-actions":
        return _github_actions(env)
    if name == "azure-pipelines":
        return _azure_pipelines(env)
    if name == "managed-identity":
        return _managed_identity(client_id, in_chain, env)
    if name == "azure-cli":
        import shutil

        from azure.identity import AzureCliCredential

        if in_chain and shutil.which("az") is None:
            return None
        return AzureCliCredential()
    raise UsageError(f"Unknown credential {name!r}.", f"Use one of: {AUTO}, {', '.join(CREDENTIAL_NAMES)}.")


_MISSING = {
    "env-token": "set HSMCERT_ACCESS_TOKEN (or AZURE_CLI_ACCESS_TOKEN) to a bearer token",
    "service-principal": "set AZURE_CLIENT_ID, AZURE_CLIENT_SECRET and AZURE_TENANT_ID "
    "(or MHSM_CLIENT_ID, MHSM_CLIENT_SECRET and MHSM_TENANT_ID)",
    "workload-identity": "set AZURE_FEDERATED_TOKEN_FILE, AZURE_CLIENT_ID and AZURE_TENANT_ID",
    "github-actions": "run in a GitHub Actions job with permissions: id-token: write, and set AZURE_CLIENT_ID "
    "and AZURE_TENANT_ID (docs/ci.md)",
    "azure-pipelines": "run in an Azure Pipelines job with SYSTEM_ACCESSTOKEN: $(System.AccessToken) and set "
    "AZURESUBSCRIPTION_SERVICE_CONNECTION_ID, AZURESUBSCRIPTION_CLIENT_ID and AZURESUBSCRIPTION_TENANT_ID "
    "(docs/ci.md)",
    "azure-cli": "install the Azure CLI and run az login",
}

_NULL_HANDLER = logging.NullHandler()
# Environment variables that change what build_credential makes from the environment (the default session is
# rebuilt when one of them changes: hsmcert.session.default_session).
ENV_KEYS = (
    "HSMCERT_CREDENTIAL",
    "HSMCERT_ACCESS_TOKEN",
    "AZURE_CLI_ACCESS_TOKEN",
    "AZURE_CLIENT_ID",
    "AZURE_CLIENT_SECRET",
    "AZURE_CLIENT_CERTIFICATE_PATH",
    "AZURE_CLIENT_CERTIFICATE_PASSWORD",
    "AZURE_TENANT_ID",
    "AZURE_FEDERATED_TOKEN_FILE",
    "ACTIONS_ID_TOKEN_REQUEST_URL",
    "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
    "SYSTEM_OIDCREQUESTURI",
    "SYSTEM_ACCESSTOKEN",
    "AZURESUBSCRIPTION_SERVICE_CONNECTION_ID",
    "AZURESUBSCRIPTION_CLIENT_ID",
    "AZURESUBSCRIPTION_TENANT_ID",
    "AZURE_AUTHORITY_HOST",
    "HSMCERT_TRUST_AUTHORITY",
    "HSMCERT_EMULATOR",
    "HSMCERT_CONFIG",
    "MHSM_CLIENT_ID",
    "MHSM_CLIENT_SECRET",
    "MHSM_TENANT_ID",
    "HSMCERT_MANAGED_IDENTITY_CLIENT_ID",
    "IDENTITY_ENDPOINT",
    "IDENTITY_HEADER",
    "MSI_ENDPOINT",
)


def selected_name(name: str | None = None, environ: Mapping[str, str] | None = None) -> str:
    """The credential asked for: ``name``, else ``$HSMCERT_CREDENTIAL``, else ``auto``."""
    env = os.environ if environ is None else environ
    chosen = (name or _env(env, "HSMCERT_CREDENTIAL") or AUTO).strip().lower()
    if chosen != AUTO and chosen not in CREDENTIAL_NAMES:
        raise UsageError(
            f"Unknown credential {chosen!r}.", f"Use one of: {AUTO}, {', '.join(CREDENTIAL_NAMES)}."
        )
    return chosen


def build_credential(
    name: str | None = None, *, client_id: str | None = None, environ: Mapping[str, str] | None = None
) -> Credential:
    """A new credential: ``name`` (one of :data:`CREDENTIAL_NAMES` or ``auto``), else ``$HSMCERT_CREDENTIAL``,
    else the automatic chain, configured from ``environ`` (default: the process environment, read now).

    A :class:`hsmcert.session.Session` builds one and keeps it (with its token cache) for its lifetime.
    """
    env = os.environ if environ is None else environ
    chosen = selected_name(name, env)
    # azure-identity logs each failed credential as a warning; hsmcert reports failures itself, and
    # without a handler Python would print those warnings on stderr.
    logging.getLogger("azure").addHandler(_NULL_HANDLER)
    if chosen == AUTO:
        candidates = [(n, c) for n in CREDENTIAL_NAMES if (c := _build(n, client_id, True, env)) is not None]
    else:
        single = _build(chosen, client_id, False, env)
        if single is None:
            raise PermissionDeniedError(
                f"The {chosen} credential is not configured.", f"To use it, {_MISSING[chosen]}."
            )
        candidates = [(chosen, single)]
    return Credential(chosen, candidates)


def configured(environ: Mapping[str, str] | None = None) -> list[str]:
    """The credentials the automatic chain would try here, by name (for doctor).

    Built by the same code as the chain, so the two never disagree; ``managed-identity`` is listed when an
    identity endpoint is configured in the environment (IMDS on an Azure machine needs none).
    """
    env = os.environ if environ is None else environ
    present = []
    for name in CREDENTIAL_NAMES:
        if name == "managed-identity":
            if _env(env, "IDENTITY_ENDPOINT", "MSI_ENDPOINT"):
                present.append(name)
            continue
        built = _build(name, None, True, env)
        if built is not None:
            present.append(name)
            close = getattr(built, "close", None)
            if callable(close):
                close()
    return present


@dataclass(frozen=True)
class Identity:
    """Who a credential is, from the claims of a token it obtained (never the token itself)."""

    credential: str
    tenant_id: str | None
    object_id: str | None
    app_id: str | None
    name: str | None
    expires_on: int | None
    scope: str

    def to_json(self) -> dict[str, Any]:
        return {
            "credential": self.credential,
            "tenant_id": self.tenant_id,
            "object_id": self.object_id,
            "app_id": self.app_id,
            "name": self.name,
            "expires_on": self.expires_on,
            "scope": self.scope,
        }


def describe(credential: TokenCredential, scope: str = MANAGED_HSM_SCOPE) -> Identity:
    """Get a token for ``scope`` and say who it belongs to (raises PermissionDeniedError when none)."""
    from azure.core.exceptions import ClientAuthenticationError

    try:
        token = credential.get_token(scope)
    except ClientAuthenticationError as exc:
        raise PermissionDeniedError(f"Cannot get a token: {_first_line(exc)}.", _REMEDY) from exc
    from hsmcert.tokens import expiry, text_claim, token_problem

    # hsmcert's own Credential says which one answered; another credential is named by its class
    answered = str(
        getattr(credential, "answered", None)
        or getattr(credential, "name", None)
        or type(credential).__name__
    )
    problem = token_problem(token.token)
    if problem:
        remedy = _RENEW_ENV_CREDENTIAL if answered == "env-token" else _REMEDY
        raise PermissionDeniedError(f"The access token of {answered} {problem}.", remedy)
    claims = decode_claims(token.token)
    # only string claims are shown: a list or an object in a claim is not a tenant or a name
    return Identity(
        credential=answered,
        tenant_id=text_claim(claims, "tid"),
        object_id=text_claim(claims, "oid"),
        app_id=text_claim(claims, "appid", "azp"),
        name=text_claim(claims, "upn", "unique_name", "preferred_username", "name"),
        # a token from the environment without an exp claim has no known expiry (none is invented)
        expires_on=expiry(token.token) if answered == "env-token" else int(token.expires_on),
        scope=scope,
    )


_LAST_CLAIMS: list[dict[str, Any]] = [{}]


def last_object_id() -> str | None:
    """The object id of the most recent token any hsmcert credential obtained in this process."""
    from hsmcert.tokens import text_claim

    return text_claim(_LAST_CLAIMS[0], "oid")


AUTH_REMEDY = _REMEDY
