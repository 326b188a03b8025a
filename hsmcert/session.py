"""One object for everything hsmcert does with Managed HSM and Key Vault, configured once.

A :class:`Session` is built once from explicit values (the CLI's flags), the environment and the config file:
where each service is (:class:`~hsmcert.config.EndpointResolver`), which identity to use (a credential
and its token cache), the CA bundle to trust, the HTTPS connection pool and retry settings
(:class:`TransportOptions`) and the public-key cache (:class:`~hsmcert.azure.keycache.CachePolicy`). It reads
the environment when it is built and never again; the SDK clients (one connection pool per endpoint) and the
cached public keys belong to it and go with it. The command line builds one per command, the agent one for
its lifetime, and a program as many as it needs, like ``requests.Session`` or ``httpx.Client``.

>>> import os, tempfile
>>> from pathlib import Path
>>> from cryptography.hazmat.primitives import hashes
>>> from cryptography.hazmat.primitives.asymmetric import ec
>>> from hsmcert.emulator import control
>>> work = Path(tempfile.mkdtemp())
>>> emulator = control.start(work / "emulator", exit_with=os.getpid())
>>> environ = {
...     "HSMCERT_EMULATOR": str(emulator.data_dir),  # what `eval "$(hsmcert emulator start)"` exports
...     "HSMCERT_ACCESS_TOKEN": control.token(emulator.data_dir),
...     "HSMCERT_CACHE_DIR": str(work / "cache"),
... }
>>> with Session(environ=environ) as session:
...     created = session.keys.create("managedhsm:local-hsm:doc-key", "EC")
...     key = session.private_key("managedhsm:local-hsm:doc-key")  # a cryptography private key
...     signature = key.sign(b"hello", ec.ECDSA(hashes.SHA256()))
...     key.public_key().verify(signature, b"hello", ec.ECDSA(hashes.SHA256()))
...     [k.name for k in session.keys.list("managedhsm", "local-hsm") if k.name == "doc-key"]
['doc-key']
>>> control.stop(emulator.data_dir)
True
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from hsmcert.azure.clients import MAX_SERVICES, TransportOptions
from hsmcert.config import Endpoint, EndpointResolver
from hsmcert.keyref import KeyRef, Kind, parse_keyref
from hsmcert.lru import LruDict

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

    from hsmcert.azure.arm import Arm, ArmEndpoint
    from hsmcert.azure.clients import ServiceClients
    from hsmcert.azure.grant import GrantPlan
    from hsmcert.azure.hsm import HsmKey
    from hsmcert.azure.keycache import CachePolicy, KeyCache
    from hsmcert.azure.keys import KeyDetails, KeySummary
    from hsmcert.signer import HsmPrivateKey


class Session:
    """Endpoints, credential, transport and caches for Managed HSM and Key Vault (thread-safe).

    ``endpoint``/``ca_bundle``: one URL for every reference and the CA to trust (the CLI's ``--endpoint`` and
    ``--ca-bundle``); ``credential``: a credential name (``auto``, ``env-token``, ...; see
    :mod:`hsmcert.azure.credentials`) or any azure-core token credential; ``transport``: pool, timeouts and
    retries; ``cache``: the public-key cache's policy (default: from the environment), or a cache to share;
    ``environ``: the variables to read instead of the process environment. Nothing is contacted until a key
    or service is used.
    """

    def __init__(
        self,
        *,
        endpoint: str | None = None,
        ca_bundle: str | None = None,
        credential: str | TokenCredential | None = None,
        client_id: str | None = None,
        transport: TransportOptions | None = None,
        cache: CachePolicy | KeyCache | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        from hsmcert.azure.keycache import CachePolicy, KeyCache

        self._environ = dict(os.environ if environ is None else environ)
        self.resolver = EndpointResolver(endpoint=endpoint, ca_bundle=ca_bundle, environ=self._environ)
        self.transport = transport or TransportOptions()
        if not isinstance(cache, KeyCache):
            cache = KeyCache(cache or CachePolicy.from_environment(self._environ))
        self.key_cache: KeyCache = cache
        self._credential_choice = credential
        self._client_id = client_id
        self._credential: Any = None if credential is None or isinstance(credential, str) else credential
        # The clients of the endpoints used last (each with its pool); a dropped one is closed.
        self._clients: LruDict[tuple[str, str | None], ServiceClients] = LruDict(
            MAX_SERVICES, lambda _, service: self._drop(service)
        )
        self._drop_listeners: list[Callable[[ServiceClients], None]] = []
        self._arm: Arm | None = None
        self._lock = threading.RLock()
        self.keys = Keys(self)

    def __repr__(self) -> str:
        return f"Session({self.resolver!r}, credential={self._credential_choice or 'auto'!r})"

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pools and the credential this session built."""
        with self._lock:
            clients = list(self._clients.values())
            self._clients.clear()
            built = self._credential if isinstance(self._credential_choice, str | None) else None
            arm, self._arm = self._arm, None
        if arm is not None:
            arm.close()
        for service in clients:
            service.close()
        if built is not None:
            built.close()

    def on_drop(self, listener: Callable[[ServiceClients], None]) -> None:
        """Call ``listener`` with the clients of each endpoint the session drops (least recently used beyond
        :data:`~hsmcert.azure.clients.MAX_SERVICES`), once they are closed: whoever keeps objects that use
        them (the agent's opened keys) lets them go."""
        with self._lock:
            self._drop_listeners.append(listener)

    def _drop(self, service: ServiceClients) -> None:
        service.close()
        for listener in list(self._drop_listeners):
            listener(service)

    # -- configuration --------------------------------------------------------------------------------

    @property
    def credential(self) -> TokenCredential:
        """The credential (built on first use from the environment the session read, then kept)."""
        with self._lock:
            if self._credential is None:
                from hsmcert.azure.credentials import build_credential

                choice = self._credential_choice
                self._credential = build_credential(
                    choice if isinstance(choice, str) else None,
                    client_id=self._client_id,
                    environ=self._environ,
                )
            credential: TokenCredential = self._credential
            return credential

    def credential_name(self) -> str:
        """The credential asked for: a name, ``auto``, or ``custom`` for a credential object given."""
        from hsmcert.azure.credentials import selected_name

        choice = self._credential_choice
        if choice is not None and not isinstance(choice, str):
            return "custom"
        return selected_name(choice, self._environ)

    def configured_credentials(self) -> list[str]:
        """The credentials the automatic chain would try with this session's environment (for doctor)."""
        from hsmcert.azure.credentials import configured

        return configured(self._environ)

    def endpoint(self, ref: KeyRef | str) -> Endpoint:
        """Where the service of ``ref`` is, and the CA bundle to trust for it."""
        return self.resolver.resolve(_ref(ref))

    def service_endpoint(self, kind: Kind, name: str) -> Endpoint:
        """Where the Managed HSM or vault ``name`` is."""
        return self.resolver.service(kind, name)

    def clients(self, endpoint: Endpoint) -> ServiceClients:
        """The SDK clients of ``endpoint`` (one connection pool), built on first use and kept."""
        from hsmcert.azure.clients import ServiceClients

        key = (endpoint.url, endpoint.ca_bundle)
        with self._lock:
            found = self._clients.get(key)
            if found is None:
                found = ServiceClients.build(endpoint, self.credential, self.transport, self.key_cache)
                self._clients[key] = found
            return found

    # -- keys -----------------------------------------------------------------------------------------

    def open_key(self, ref: KeyRef | str, *, refresh: bool = False) -> HsmKey:
        """Open ``ref`` (one GET, or none when its public key is cached) with its version pinned.

        ``refresh``: ask the service even when the public key is cached (checks access, enabled, expiry).
        """
        from hsmcert.azure.hsm import open_key

        ref = _ref(ref)
        return open_key(ref, self.clients(self.endpoint(ref)), refresh=refresh)

    def private_key(self, ref: KeyRef | str) -> HsmPrivateKey:
        """``ref`` as a pyca/cryptography private key whose ``sign`` and ``decrypt`` run in the HSM."""
        from hsmcert.signer import private_key_for

        return private_key_for(self.open_key(ref))

    # -- Resource Manager and access ------------------------------------------------------------------

    @property
    def environ(self) -> Mapping[str, str]:
        """The environment the session read when it was built (read-only)."""
        return MappingProxyType(self._environ)

    def arm_endpoint(self) -> ArmEndpoint:
        """Where Azure Resource Manager is: ``HSMCERT_ARM_URL``, else the one a configured emulator publishes
        (``[arm]`` in its ``endpoints.toml``), else the config file's ``[arm] url``, else Azure's. The CA
        bundle: the emulator's for the emulator's Resource Manager, else the config's, else the default."""
        from hsmcert.azure.arm import ArmEndpoint
        from hsmcert.config import emulator_config

        data_dir = self.resolver.emulator_dir()
        published = (emulator_config(data_dir) or {}) if data_dir is not None else {}
        raw = published.get("arm")
        emulator_arm: dict[str, Any] = raw if isinstance(raw, dict) else {}
        emulator_ca = str(emulator_arm.get("ca_bundle") or (data_dir / "ca.pem")) if data_dir else None
        explicit = (self._environ.get("HSMCERT_ARM_URL") or "").rstrip("/")
        if explicit:
            is_emulator = bool(emulator_arm) and str(emulator_arm.get("url", "")).rstrip("/") == explicit
            if is_emulator:  # what `emulator start` exports with HSMCERT_EMULATOR
                return ArmEndpoint(explicit, emulator_ca, "emulator")
            return ArmEndpoint(explicit, None, "environment")
        if emulator_arm.get("url"):
            return ArmEndpoint(str(emulator_arm["url"]).rstrip("/"), emulator_ca, "emulator")
        configured = self.resolver.config.get("arm")
        if isinstance(configured, dict) and isinstance(configured.get("url"), str):
            ca = configured.get("ca_bundle")
            return ArmEndpoint(
                configured["url"].rstrip("/"), str(ca) if isinstance(ca, str) else None, "config"
            )
        return ArmEndpoint()

    def arm(self) -> Arm:
        """A Resource Manager client with the session's credential (built on first use, then kept)."""
        from hsmcert.azure.arm import Arm

        with self._lock:
            if self._arm is None:
                self._arm = Arm(self.arm_endpoint(), self.credential, self.transport)
            return self._arm

    def default_hsm(self) -> str | None:
        """The Managed HSM commands use when none is named: ``HSMCERT_HSM``, else the config file's
        ``[defaults] hsm``, else ``local-hsm`` when references go to the emulator."""
        from hsmcert.errors import UsageError

        named = self._environ.get("HSMCERT_HSM")
        if named:
            return named
        defaults = self.resolver.config.get("defaults", {})
        if not isinstance(defaults, dict) or not isinstance(defaults.get("hsm", ""), str):
            raise UsageError(
                f"In the config file {self.resolver.config_path}, [defaults] hsm must be a string.",
                "Fix or remove the file.",
            )
        if defaults.get("hsm"):
            return str(defaults["hsm"])
        if (
            self.resolver.endpoint is None
            and self.resolver.env_endpoint is None
            and self.resolver.emulator_dir()
        ):
            return "local-hsm"
        return None

    def with_credential(self, credential: TokenCredential) -> Session:
        """A new session like this one (endpoints, transport, environment) acting as ``credential``."""
        return Session(
            endpoint=self.resolver.endpoint,
            ca_bundle=self.resolver.ca_bundle,
            credential=credential,
            transport=self.transport,
            environ=self._environ,
        )

    def grant(self, plan: GrantPlan) -> GrantPlan:
        """Apply a role-assignment plan (:func:`hsmcert.azure.grant.plan_grant`) to its Managed HSM."""
        from azure.keyvault.administration import KeyVaultAccessControlClient

        from hsmcert.azure.grant import apply_grant

        service = self.clients(self.service_endpoint("managedhsm", plan.target.service))
        client = KeyVaultAccessControlClient(service.url, self.credential, **service.client_kwargs())
        with service.translating(plan.target.label, "role management"):
            return apply_grant(plan, client)


class Keys:
    """Create, list, show and rotate the keys of a session's services (``session.keys``)."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def _clients(self, ref: KeyRef) -> ServiceClients:
        return self._session.clients(self._session.endpoint(ref))

    def create(self, ref: KeyRef | str, kty: str, **options: Any) -> KeyDetails:
        """A new non-exportable key (see :func:`hsmcert.azure.keys.create_key` for ``options``)."""
        from hsmcert.azure.keys import create_key

        ref = _ref(ref)
        return create_key(ref, kty, self._clients(ref), **options)

    def show(self, ref: KeyRef | str) -> KeyDetails:
        """The key (the given version, or the latest) with its public key and properties."""
        from hsmcert.azure.keys import show_key

        ref = _ref(ref)
        return show_key(ref, self._clients(ref))

    def rotate(self, ref: KeyRef | str) -> KeyDetails:
        """A new version of the key (same type, size, operations and tags)."""
        from hsmcert.azure.keys import rotate_key

        ref = _ref(ref)
        return rotate_key(ref, self._clients(ref))

    def list(self, kind: Kind, name: str, *, label: str | None = None) -> list[KeySummary]:
        """The keys of a Managed HSM or vault, sorted by name (optionally only those with a label)."""
        from hsmcert.azure.keys import list_keys

        service = self._session.clients(self._session.service_endpoint(kind, name))
        return list_keys(kind, name, service, label=label)


def _ref(ref: KeyRef | str) -> KeyRef:
    return parse_keyref(ref) if isinstance(ref, str) else ref


_defaults: dict[tuple[str, ...], Session] = {}
_defaults_lock = threading.Lock()

# The variables a Session reads (endpoints, config file, credentials, cache): the default session is
# rebuilt when one of them changes.
_SESSION_VARIABLES = (
    "HSMCERT_ENDPOINT",
    "HSMCERT_CA_BUNDLE",
    "HSMCERT_EMULATOR",
    "HSMCERT_CONFIG",
    "HSMCERT_KEY_CACHE",
    "HSMCERT_KEY_CACHE_TTL",
    "HSMCERT_CACHE_DIR",
)


def default_session() -> Session:
    """The session of code that uses hsmcert without making one (``signer.load_private_key(ref)``): built
    from the process environment, rebuilt when a variable it reads has changed, and sharing the process-wide
    public-key cache of its policy (:func:`hsmcert.azure.keycache.shared`). Programs that care make their own Session."""
    from hsmcert.azure import credentials, keycache

    names = (*_SESSION_VARIABLES, *credentials.ENV_KEYS)
    key = tuple(os.environ.get(name, "") for name in names)
    with _defaults_lock:
        found = _defaults.get(key)
        if found is None:
            environ = dict(os.environ)
            policy = keycache.CachePolicy.from_environment(environ)
            found = _defaults[key] = Session(cache=keycache.shared(policy), environ=environ)
        return found


__all__ = ["Keys", "Session", "TransportOptions", "default_session"]
