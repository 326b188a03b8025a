"""A small Microsoft-Entra-ID-compatible login endpoint, so azure-identity's service-principal and
workload-identity credentials get real tokens from the emulator.

Served on its own HTTPS port (``https://127.0.0.1:<login port>``, the emulator's CA), for the emulator's
tenant only:

- ``GET /{tenant}/v2.0/.well-known/openid-configuration``: what MSAL's tenant discovery reads;
- ``POST /{tenant}/oauth2/v2.0/token`` with ``grant_type=client_credentials``, ``scope`` (``<resource>/.default``
  of a resource the emulator serves: :func:`served`),
  ``client_id`` and either ``client_secret`` or ``client_assertion`` (``client_assertion_type=
  urn:ietf:params:oauth:client-assertion-type:jwt-bearer``). The answer is an access token of :func:`auth.issue` for the
  principal whose object id is the client id, in Entra's JSON shape; failures are Entra-shaped
  (``error``, ``error_description`` with an ``AADSTS`` code) with status 400 or 401.

Secrets are derived, not stored: a client's secret is an HMAC of its object id under the emulator's token key
(:func:`client_secret`), and a federated token (:func:`federated_token`) is an HS256 JWT for the audience
``api://AzureADTokenExchange`` whose subject is the client id, signed with a key derived from the same key.
``hsmcert emulator credentials`` prints both as shell exports.

Federated identity credentials, as Entra keeps them on an application: :func:`add_federated_credential` tells
the emulator (``federation.json`` in its data directory) to accept, as the client assertion of a principal,
a JWT from an outside issuer (a CI system's OIDC provider: GitHub Actions, Azure Pipelines, or a test's
stand-in) signed with a key of the issuer's JWKS (RS256 or ES256/384/512), for the audience
``api://AzureADTokenExchange``, whose ``sub`` is the credential's subject
(``repo:contoso/app:ref:refs/heads/main``, ``sc://org/project/connection``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from hsmcert.emulator import auth
from hsmcert.emulator.api import Request, Response, loads_json
from hsmcert.emulator.arm import AUDIENCES as ARM_AUDIENCES
from hsmcert.timestamps import rfc3339

if TYPE_CHECKING:
    from hsmcert.emulator.process import Emulator

FEDERATED_AUDIENCE = "api://AzureADTokenExchange"
FEDERATED_ISSUER = "https://hsmcert.invalid/emulator/federation"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
_RESERVED_SCOPES = {"openid", "profile", "offline_access", "email"}


def client_secret(token_secret: bytes, client_id: str) -> str:
    """The client secret of a principal (a name or an object id): stable while ``token.key`` is.

    >>> s = client_secret(b"k" * 32, "alice")
    >>> s == client_secret(b"k" * 32, auth.principal_id("alice")) and s != client_secret(b"k" * 32, "bob")
    True
    """
    digest = hmac.new(
        token_secret, b"client-secret\0" + auth.principal_id(client_id).encode(), hashlib.sha256
    )
    return auth._b64(digest.digest())


def _federation_key(token_secret: bytes) -> bytes:
    return hmac.new(token_secret, b"federated-token-key", hashlib.sha256).digest()


def federated_token(token_secret: bytes, client_id: str, lifetime: int = auth.TOKEN_LIFETIME) -> str:
    """A federated (workload identity) token for the principal ``client_id``, accepted as its client assertion."""
    now = int(time.time())
    claims = {
        "iss": FEDERATED_ISSUER,
        "aud": FEDERATED_AUDIENCE,
        "sub": auth.principal_id(client_id),
        "iat": now,
        "nbf": now - 60,
        "exp": now + lifetime,
        "jti": str(uuid.uuid4()),
    }
    return auth.sign_jwt(_federation_key(token_secret), claims)


def check_assertion(token_secret: bytes, assertion: str, client_id: str) -> str | None:
    """Why ``assertion`` is not a valid client assertion of ``client_id`` (None: it is).

    >>> key = b"k" * 32
    >>> check_assertion(key, federated_token(key, "ci"), "ci") is None
    True
    >>> check_assertion(key, federated_token(key, "ci"), "other")
    'the assertion is for another client'
    >>> check_assertion(key, federated_token(key, "ci")[:-2] + "AA", "ci")
    'the signature is invalid'
    """
    try:
        claims = auth.read_jwt(_federation_key(token_secret), assertion)
    except ValueError as exc:
        return str(exc).replace("the token", "the assertion")
    now = time.time()
    exp, nbf = claims.get("exp"), claims.get("nbf", 0)
    if not isinstance(exp, int) or not isinstance(nbf, int) or exp <= now or nbf > now + 300:
        return "the assertion is expired or not yet valid"
    if claims.get("aud") != FEDERATED_AUDIENCE:
        return f"the audience must be {FEDERATED_AUDIENCE}"
    if claims.get("sub") != auth.principal_id(client_id):
        return "the assertion is for another client"
    return None


FEDERATION_FILE = "federation.json"


@dataclass(frozen=True)
class FederatedCredential:
    """A principal accepts tokens of ``issuer`` (signed with a key of ``jwks``) about ``subject``."""

    principal: str
    """The object id (client id) of the principal the assertion signs in."""
    issuer: str
    subject: str
    jwks: dict[str, Any]
    audience: str = FEDERATED_AUDIENCE


def federated_credentials(data_dir: Path) -> list[FederatedCredential]:
    """The federated credentials the emulator of ``data_dir`` trusts (none when the file is absent)."""
    try:
        entries = json.loads((Path(data_dir) / FEDERATION_FILE).read_text())
        return [FederatedCredential(**entry) for entry in entries]
    except FileNotFoundError:
        return []
    except (ValueError, TypeError):
        return []


def add_federated_credential(
    data_dir: Path,
    principal: str,
    issuer: str,
    subject: str,
    jwks: dict[str, Any],
    audience: str = FEDERATED_AUDIENCE,
) -> FederatedCredential:
    """Trust tokens of ``issuer`` about ``subject`` as client assertions of ``principal`` (a name or an object
    id), as ``az ad app federated-credential create`` does in Entra; read by the running emulator at once."""
    entry = FederatedCredential(auth.principal_id(principal), issuer, subject, jwks, audience)
    current = [
        c
        for c in federated_credentials(data_dir)
        if (c.principal, c.issuer, c.subject) != (entry.principal, issuer, subject)
    ]
    fd, tmp = tempfile.mkstemp(prefix=".federation.", dir=data_dir)
    with os.fdopen(fd, "w") as fh:
        json.dump([asdict(c) for c in [*current, entry]], fh)
    os.replace(tmp, Path(data_dir) / FEDERATION_FILE)
    return entry


_JWS_HASHES = {
    "RS256": "SHA256",
    "RS384": "SHA384",
    "RS512": "SHA512",
    "ES256": "SHA256",
    "ES384": "SHA384",
    "ES512": "SHA512",
}


def _jws_valid(jwk: dict[str, Any], alg: str, signing_input: bytes, signature: bytes) -> bool:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

    from hsmcert import jwa
    from hsmcert.azure.keyinfo import public_key_from_jwk
    from hsmcert.errors import HsmcertError

    try:
        key = public_key_from_jwk(jwk)
        hash_alg = jwa.hash_for(_JWS_HASHES[alg])
        if alg.startswith("RS") and isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, signing_input, padding.PKCS1v15(), hash_alg)
            return True
        if alg.startswith("ES") and isinstance(key, ec.EllipticCurvePublicKey):
            size = (key.curve.key_size + 7) // 8
            if len(signature) != 2 * size:
                return False
            der = jwa.raw_to_der(signature, size)
            key.verify(der, signing_input, ec.ECDSA(hash_alg))
            return True
    except (InvalidSignature, ValueError, KeyError, TypeError, HsmcertError):
        return False
    return False


def check_external_assertion(
    assertion: str, client_id: str, trusted: Sequence[FederatedCredential]
) -> str | None:
    """Why ``assertion`` (a JWT of an outside issuer) is not a client assertion of ``client_id`` under one of
    its federated credentials in ``trusted`` (None: it is)."""
    parts = assertion.split(".")
    try:
        header = loads_json(auth._unb64(parts[0]))
        claims = loads_json(auth._unb64(parts[1]))
        signature = auth._unb64(parts[2])
    except (ValueError, IndexError, UnicodeDecodeError):
        return "the assertion is not a JWT"
    if not isinstance(header, dict) or not isinstance(claims, dict):
        return "the assertion is not a JWT"
    principal = auth.principal_id(client_id)
    mine = [c for c in trusted if c.principal == principal]
    if not mine:
        return "the client has no federated credential"
    issuer = claims.get("iss")
    mine = [c for c in mine if c.issuer == issuer]
    if not mine:
        return f"no federated credential of the client trusts the issuer {str(issuer)[:200]!r}"
    alg = str(header.get("alg"))
    if alg not in _JWS_HASHES:
        return f"the assertion's algorithm {alg[:20]!r} is not supported"
    signing_input = f"{parts[0]}.{parts[1]}".encode()
    kid = header.get("kid")
    keys = [k for c in mine for k in c.jwks.get("keys", []) if kid is None or k.get("kid") == kid]
    if not any(_jws_valid(k, alg, signing_input, signature) for k in keys):
        return "the signature is invalid"
    now = time.time()
    exp, nbf = claims.get("exp"), claims.get("nbf", 0)
    if not isinstance(exp, int) or not isinstance(nbf, int) or exp <= now or nbf > now + 300:
        return "the assertion is expired or not yet valid"
    audiences = claims.get("aud")
    audiences = audiences if isinstance(audiences, list) else [audiences]
    subject = claims.get("sub")
    for credential in mine:
        if credential.audience in audiences and credential.subject == subject:
            return None
    if not any(c.audience in audiences for c in mine):
        return f"the audience must be {mine[0].audience}"
    return f"the subject {str(subject)[:200]!r} matches no federated credential of the client"


def openid_configuration(base_url: str, tenant: str) -> dict[str, Any]:
    """The tenant's OpenID configuration (the fields MSAL and OIDC clients read)."""
    root = f"{base_url}/{tenant}"
    return {
        "issuer": f"{root}/v2.0",
        "authorization_endpoint": f"{root}/oauth2/v2.0/authorize",
        "token_endpoint": f"{root}/oauth2/v2.0/token",
        "device_authorization_endpoint": f"{root}/oauth2/v2.0/devicecode",
        "jwks_uri": f"{root}/discovery/v2.0/keys",
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt"],
        "grant_types_supported": ["client_credentials"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["HS256"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "tenant_region_scope": None,
        "cloud_instance_name": "hsmcert.invalid",
    }


class LoginError(Exception):
    def __init__(self, status: int, error: str, code: int, description: str) -> None:
        super().__init__(description)
        self.status, self.error, self.code, self.description = status, error, code, description

    def body(self) -> dict[str, Any]:
        return {
            "error": self.error,
            "error_description": f"AADSTS{self.code}: {self.description}",
            "error_codes": [self.code],
            "timestamp": rfc3339(time.time()),
            "trace_id": str(uuid.uuid4()),
            "correlation_id": str(uuid.uuid4()),
        }


def _form(body: bytes) -> dict[str, str]:
    try:
        pairs = parse_qsl(
            body.decode("utf-8"), keep_blank_values=True, strict_parsing=False, max_num_fields=64
        )
    except (UnicodeDecodeError, ValueError):
        raise LoginError(400, "invalid_request", 900144, "The request body is not a valid form.") from None
    form: dict[str, str] = {}
    for name, value in pairs:
        if name in form:
            raise LoginError(400, "invalid_request", 90015, f"The parameter '{name[:40]}' is duplicated.")
        form[name] = value
    return form


def _audience(scope: str) -> str:
    resources = [s for s in scope.split() if s.lower() not in _RESERVED_SCOPES]
    if len(resources) != 1 or not resources[0].endswith("/.default") or len(resources[0]) <= 9:
        raise LoginError(
            400,
            "invalid_scope",
            1002012,
            f"The provided value for scope {scope[:200]!r} is not valid. Client credential flows must have "
            "a scope value with /.default suffixed to the resource identifier (application ID URI).",
        )
    return resources[0][: -len("/.default")]


def served(resource: str) -> bool:
    """Whether the emulator serves ``resource``: Azure's Managed HSM or Key Vault audience, or a resource of
    the form a service's 401 challenge names (``https://0.0.1:<port>``, ``https://localhost:<port>``; any
    port, as a service may be reached through a relay); with or without one trailing slash.

    >>> served("https://vault.azure.net/"), served("https://0.0.1:8443"), served("https://localhost:9000/")
    (True, True, True)
    >>> served("https://management.azure.com/"), served("https://storage.azure.com/"), served("https://0.0.1")
    (True, False, False)
    """
    resource = resource[:-1] if resource.endswith("/") else resource
    if resource in auth.AUDIENCES.values() or resource in ARM_AUDIENCES:
        return True
    try:
        parts = urlsplit(resource)
        port = parts.port
    except ValueError:
        return False
    host = parts.hostname or ""
    local = host in ("0.0.1", "localhost") or host.endswith(".localhost")
    return parts.scheme == "https" and local and port is not None and parts.path == ""


def token_response(
    token_secret: bytes,
    body: bytes,
    serves: Callable[[str], bool] = lambda resource: True,
    lifetime: int = auth.TOKEN_LIFETIME,
    federation: Sequence[FederatedCredential] = (),
) -> dict[str, Any]:
    """The answer to a token request (raises LoginError with Entra's error for a refused one): a token for
    a resource ``serves`` accepts, valid for ``lifetime`` seconds."""
    form = _form(body)
    for required in ("grant_type", "client_id", "scope"):
        if not form.get(required):
            raise LoginError(
                400, "invalid_request", 900144, f"The request body must contain the parameter: '{required}'."
            )
    grant = form["grant_type"]
    if grant != "client_credentials":
        raise LoginError(
            400,
            "unsupported_grant_type",
            70003,
            f"The app requested an unsupported grant type {grant[:60]!r}; the emulator supports "
            "client_credentials only.",
        )
    client_id = form["client_id"]
    if len(client_id) > 200:
        raise LoginError(400, "unauthorized_client", 700016, "The client id is too long.")
    audience = _audience(form["scope"])
    if not serves(audience):
        raise LoginError(
            400,
            "invalid_resource",
            500011,
            f"The resource principal named {audience[:200]} was not found in the tenant named {auth.TENANT_ID}. "
            "The emulator serves https://managedhsm.azure.net, https://vault.azure.net and "
            "https://management.azure.com only.",
        )
    if "client_secret" in form:
        if not hmac.compare_digest(
            form["client_secret"].encode(), client_secret(token_secret, client_id).encode()
        ):
            raise LoginError(
                401,
                "invalid_client",
                7000215,
                f"Invalid client secret provided for the client {client_id!r}. Get the emulator's secret "
                "with: hsmcert emulator credentials --principal NAME.",
            )
    elif "client_assertion" in form:
        if form.get("client_assertion_type") != ASSERTION_TYPE:
            raise LoginError(
                400, "invalid_request", 50027, f"The client_assertion_type must be {ASSERTION_TYPE}."
            )
        assertion = form["client_assertion"]
        problem = (
            check_external_assertion(assertion, client_id, federation)
            if _alg_of(assertion) not in (None, "HS256")
            else check_assertion(token_secret, assertion, client_id)
        )
        if problem is not None:
            raise LoginError(401, "invalid_client", 700211, f"The client assertion was refused: {problem}.")
    else:
        raise LoginError(
            401,
            "invalid_client",
            7000218,
            "The request body must contain the parameter: 'client_assertion' or 'client_secret'.",
        )
    access = auth.issue(token_secret, client_id, audience, lifetime)
    return {
        "token_type": "Bearer",
        "expires_in": lifetime,
        "ext_expires_in": lifetime,
        "access_token": access,
    }


def _alg_of(token: str) -> str | None:
    try:
        header = loads_json(auth._unb64(token.split(".")[0]))
    except (ValueError, UnicodeDecodeError):
        return None
    return str(header.get("alg")) if isinstance(header, dict) else None


def check_tenant(tenant: str) -> None:
    """Refuse every tenant but the emulator's (Entra's invalid_tenant)."""
    if tenant.lower() != auth.TENANT_ID:
        raise LoginError(
            400,
            "invalid_tenant",
            90002,
            f"Tenant {tenant[:60]!r} not found; the emulator's tenant is {auth.TENANT_ID}.",
        )


# --- handlers: each answers one route of :mod:`hsmcert.emulator.routes` ------------------------------------


def configuration(emulator: Emulator, req: Request) -> Response:
    return Response(200, openid_configuration(req.base_url, auth.TENANT_ID))


def token(emulator: Emulator, req: Request) -> Response:
    """A token request; each one answered is written to the audit log (operation ``login-token``, with the
    token's audience and ``exp``)."""
    answer = token_response(
        emulator.token_secret,
        req.body,
        served,
        emulator.token_lifetime,
        federated_credentials(emulator.data_dir),
    )
    claims = auth.read_jwt(emulator.token_secret, answer["access_token"])
    emulator.audit.record(
        operation="login-token",
        principal=claims["oid"],
        result="ok",
        status=200,
        audience=claims["aud"],
        expires=claims["exp"],
    )
    return Response(200, answer)


def credential_env(
    token_secret: bytes, principal: str, authority: str, federated_token_file: str | None, mhsm: bool
) -> dict[str, str]:
    """The variables a service-principal (or, with a token file, workload-identity) credential needs."""
    client_id = auth.principal_id(principal)
    if federated_token_file:
        return {
            "AZURE_AUTHORITY_HOST": authority,
            "AZURE_TENANT_ID": auth.TENANT_ID,
            "AZURE_CLIENT_ID": client_id,
            "AZURE_FEDERATED_TOKEN_FILE": federated_token_file,
        }
    prefix = "MHSM" if mhsm else "AZURE"
    return {
        "AZURE_AUTHORITY_HOST": authority,
        f"{prefix}_TENANT_ID": auth.TENANT_ID,
        f"{prefix}_CLIENT_ID": client_id,
        f"{prefix}_CLIENT_SECRET": client_secret(token_secret, client_id),
    }
