"""The emulator process: its state (services, store, secrets, faults, audit), its ports, start-up from the
data directory and shutdown; ``python -m hsmcert.emulator.process --data DIR`` is what ``hsmcert emulator
start`` runs.

Ports, all on 127.0.0.1 (:mod:`hsmcert.emulator.endpoints` says what each answers): one HTTPS port per Managed
HSM / Key Vault (the Key Vault REST API), an HTTPS login port (Entra-ID-compatible tokens), and a plain-HTTP
control port (managed-identity tokens, status, services, faults, stop). Their numbers are remembered in the
store, so they stay the same across restarts; ``state.json`` and ``endpoints.toml`` publish them.
"""

from __future__ import annotations

import argparse
import fcntl
import logging
import os
import signal
import ssl
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hsmcert.config import EMULATOR_ENDPOINTS
from hsmcert.emulator import arm, arm_keyvault, auth, control, endpoints, http11
from hsmcert.emulator.api import ApiError, loads_json
from hsmcert.emulator.arm import Arm
from hsmcert.emulator.audit import AuditLog
from hsmcert.emulator.faults import SERVICE_NAME, Faults, parse_faults
from hsmcert.emulator.files import private_secret, read_json, write_json
from hsmcert.emulator.service import Service
from hsmcert.emulator.store import Store
from hsmcert.errors import HsmcertError
from hsmcert.timestamps import log_to

log = logging.getLogger("hsmcert.emulator")

DEFAULT_SERVICES = (("managedhsm", "local-hsm"), ("vault", "local-vault"))


@dataclass
class Options:
    """Settings of an emulator process beyond faults and token lifetime."""

    subscription: str | None = None
    """The Resource Manager subscription of a new data directory (default :data:`arm.DEFAULT_SUBSCRIPTION`)."""
    propagation_delay: float | None = None
    """Seconds before a new role assignment takes effect (None: as recorded, at first 0)."""
    vault_access_policies: bool = False
    """Vaults made from now on use access policies instead of Azure RBAC."""


class Emulator:
    """The state of one emulator process: services, store, tokens, faults, audit."""

    def __init__(
        self,
        data_dir: Path,
        faults: Faults | None = None,
        token_lifetime: int = auth.TOKEN_LIFETIME,
        options: Options | None = None,
    ) -> None:
        from hsmcert.emulator.arm_authorization import ArmRoles
        from hsmcert.emulator.ca import ensure_ca

        self.data_dir = data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(data_dir, 0o700)
        self.ca_path, cert, key = ensure_ca(data_dir)
        self.ssl_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ssl_context.minimum_version = ssl.TLSVersion.TLSv1_2
        self.ssl_context.load_cert_chain(cert, key)
        self.store = Store(data_dir)
        self.token_secret = private_secret(data_dir / "token.key")
        self.identity_secret = private_secret(data_dir / "identity.secret", 24).hex()
        self.verifier = auth.TokenVerifier(self.token_secret)
        self.token_lifetime = token_lifetime  # of the tokens the login and managed-identity endpoints issue
        self.admin = auth.principal_id(auth.ADMIN)
        self.audit = AuditLog(data_dir / "audit.jsonl")
        self.faults = faults or Faults()
        self.services: dict[tuple[str, str], Service] = {}
        self.servers: list[http11.Server] = []
        self.options = options or Options()
        self.arm = Arm(self.store)
        self.arm_roles = ArmRoles(self.arm)
        self.control_port = 0
        self.login_port = 0
        self.arm_port = 0
        self.imds_port = 0
        self.stopping = threading.Event()
        self.ready = False
        self._lock = threading.RLock()

    # --- start-up ---------------------------------------------------------------------------------------

    def start(self) -> None:
        remembered: dict[str, Any] = {}
        loaded: dict[str, list[tuple[str, str, Any, bytes | None]]] = {}
        for _service, ident, data, _sealed in self.store.load("service"):
            remembered[ident] = data
        for kind in Arm.KINDS:
            for _service, ident, data, _sealed in self.store.load(kind):
                self.arm.load(kind, ident, data)
        self._configure_arm()
        for kind in (
            "key",
            "deletedkey",
            "rotationpolicy",
            "setting",
            "roledef",
            "roleassign",
            "certificate",
            "certop",
            "deletedcert",
        ):
            for service, ident, data, sealed in self.store.load(kind):
                loaded.setdefault(service, []).append((kind, ident, data, sealed))
        control = remembered.pop("control", None)
        self.control_port = self._serve_control(int(control["port"]) if control else 0)
        self.store.put("", "service", "control", {"port": self.control_port})
        login = remembered.pop("login", None)
        self.login_port = self._serve_login(int(login["port"]) if login else 0)
        self.store.put("", "service", "login", {"port": self.login_port})
        known = remembered.pop("arm", None)
        self.arm_port = self._serve(endpoints.arm_endpoint(self), int(known["port"]) if known else 0)
        self.store.put("", "service", "arm", {"port": self.arm_port})
        known = remembered.pop("imds", None)
        server = http11.bind(endpoints.imds_endpoint(self), int(known["port"]) if known else 0)
        self._run(server)
        self.imds_port = int(server.server_address[1])
        self.store.put("", "service", "imds", {"port": self.imds_port})
        for data in remembered.values():
            restored = self._add(data["kind"], data["name"], int(data["port"]), fresh=False)
            for kind, obj_id, obj, sealed in loaded.get(restored.name, []):
                restored.load_object(kind, obj_id, obj, sealed)
            restored.finish_loading()
        for kind, name in DEFAULT_SERVICES:
            self.service(kind, name)
        self.ready = True
        self.write_state()

    def _serve_control(self, port: int) -> int:
        server = http11.bind(endpoints.control_endpoint(self), port)
        self._run(server)
        return int(server.server_address[1])

    def _serve_login(self, port: int) -> int:
        return self._serve(endpoints.login_endpoint(self), port)

    def _serve(self, answer: http11.Answer, port: int) -> int:
        """Serve ``answer`` over HTTPS (the emulator's CA) on ``port`` (0: a free one); the port."""
        server = http11.bind(answer, port, self.ssl_context)
        self._run(server)
        return int(server.server_address[1])

    def _configure_arm(self) -> None:
        """Resource Manager settings of this start: subscription (a new data directory only), propagation
        delay; the administrator's roles."""
        wanted = self.options.subscription
        if wanted and wanted.lower() != self.arm.subscription.lower():
            if self.arm.assignments:
                raise HsmcertError(
                    f"This data directory's subscription is {self.arm.subscription}; it cannot change to {wanted}.",
                )
            self.arm.subscription = wanted.lower()
        self.arm.set_config("subscription", self.arm.subscription)
        if self.options.propagation_delay is not None:
            self.arm.propagation_delay = self.options.propagation_delay
            self.arm.set_config("propagation", self.arm.propagation_delay)
        self.arm_roles.bootstrap(self.admin)

    def _run(self, server: http11.Server) -> None:
        self.servers.append(server)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True).start()

    def _add(self, kind: str, name: str, port: int, fresh: bool) -> Service:
        service = Service(self.store, kind, name, port)
        server = http11.bind(endpoints.service_endpoint(self, service), port, self.ssl_context)
        bound = service.port = int(server.server_address[1])
        self.services[(kind, name)] = service
        service.rbac.delay = lambda: self.arm.propagation_delay
        if fresh and kind == "managedhsm":
            service.rbac.bootstrap(self.admin)
        if fresh or bound != port:
            self.store.put("", "service", f"{kind}:{name}", {"kind": kind, "name": name, "port": bound})
        if kind == "vault":
            from hsmcert.emulator.certificates import Certificates

            service.certificates = Certificates(service)
            if fresh:
                arm_keyvault.new_vault(self, name, self.options.vault_access_policies)

            def guard(req: Any, operation: str, service: Service = service) -> None:
                arm_keyvault.authorize(self, service, req, operation)

            service.guard = guard
        self._run(server)
        return service

    def service(self, kind: str, name: str) -> Service:
        """The service of that kind and name, created (with its own port) when new."""
        if kind not in ("managedhsm", "vault"):
            raise ApiError(400, "BadParameter", f"Unknown service kind {kind!r}; use managedhsm or vault.")
        if not SERVICE_NAME.fullmatch(name):
            raise ApiError(400, "BadParameter", f"The service name {name[:70]!r} is invalid.")
        with self._lock:
            existing = self.services.get((kind, name))
            if existing is not None:
                return existing
            service = self._add(kind, name, 0, fresh=True)
            if self.ready:
                self.write_state()
            return service

    def write_state(self) -> None:
        # The endpoints first: once state.json names this process, `start` returns and clients resolve.
        control.write_endpoints(
            self.data_dir,
            f"https://127.0.0.1:{self.login_port}",
            {f"{k}:{n}": f"https://127.0.0.1:{s.port}" for (k, n), s in self.services.items()},
            arm_url=f"https://127.0.0.1:{self.arm_port}",
            imds_url=f"http://127.0.0.1:{self.imds_port}",
            subscription=self.arm.subscription,
        )
        write_json(
            self.data_dir / "state.json",
            {
                "pid": os.getpid(),
                "control_port": self.control_port,
                "login_port": self.login_port,
                "arm_port": self.arm_port,
                "imds_port": self.imds_port,
                "subscription": self.arm.subscription,
                "started": int(time.time()),
                "services": {f"{k}:{n}": s.port for (k, n), s in self.services.items()},
            },
        )

    def shutdown(self) -> None:
        self.stopping.set()
        # The published endpoints go first: no new client is sent here.
        (self.data_dir / EMULATOR_ENDPOINTS).unlink(missing_ok=True)
        stoppers = [threading.Thread(target=server.shutdown) for server in self.servers]
        for stopper in stoppers:
            stopper.start()
        for stopper, server in zip(stoppers, self.servers, strict=True):
            stopper.join()
            server.server_close()
        self.audit.close()
        self.store.close()
        # The state file goes last: once it is gone, `stop` in another process may read the data directory.
        state = self.data_dir / "state.json"
        data = read_json(state)
        if isinstance(data, dict) and data.get("pid") == os.getpid():
            state.unlink(missing_ok=True)


def run(
    data_dir: Path,
    faults: Faults | None = None,
    exit_with: int | None = None,
    token_lifetime: int = auth.TOKEN_LIFETIME,
    options: Options | None = None,
) -> int:
    """Serve until SIGTERM/SIGINT, a control stop, or (``exit_with``) the end of that process."""
    data_dir.mkdir(parents=True, exist_ok=True)
    lock = (data_dir / "emulator.lock").open("a")
    try:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        print(f"hsmcert emulator: another emulator already runs from {data_dir}.", file=sys.stderr)
        return 1
    emulator = Emulator(data_dir, faults, token_lifetime, options)

    def stop(signum: int, frame: Any) -> None:
        emulator.stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        emulator.start()
    except HsmcertError as exc:
        print(f"hsmcert emulator: {exc.message}", file=sys.stderr)
        emulator.shutdown()
        lock.close()
        return 2
    log.info("emulator ready: control port %s, %d services", emulator.control_port, len(emulator.services))
    for service in emulator.services.values():
        log.info("%s %s: https://127.0.0.1:%d", service.kind, service.name, service.port)
    while not emulator.stopping.wait(1.0):
        if exit_with is not None and not control.alive(exit_with):
            log.info("process %d has ended: stopping", exit_with)
            break
    emulator.shutdown()
    lock.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hsmcert.emulator.process")
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--faults", default="{}", help="JSON object of fault settings")
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument(
        "--token-lifetime", type=int, default=auth.TOKEN_LIFETIME, help="seconds of the tokens it issues"
    )
    parser.add_argument(
        "--exit-with", type=int, help="stop when the process of this pid ends (test sessions)"
    )
    parser.add_argument("--subscription", help="Resource Manager subscription id of a new data directory")
    parser.add_argument(
        "--propagation-delay", type=float, help="seconds before a role assignment takes effect"
    )
    parser.add_argument(
        "--vault-access-policies", action="store_true", help="new vaults use access policies, not Azure RBAC"
    )
    args = parser.parse_args(argv)
    log_to(None, logging.DEBUG if args.verbose else logging.INFO, "%(asctime)s %(levelname)s %(message)s")
    try:
        settings = loads_json(args.faults)
        if not isinstance(settings, dict):
            raise ValueError("not a JSON object")
        faults = parse_faults(settings)
    except (ValueError, HsmcertError) as exc:
        print(f"hsmcert emulator: bad --faults: {exc}", file=sys.stderr)
        return 2
    try:
        lifetime = auth.check_lifetime(args.token_lifetime, "--token-lifetime")
    except HsmcertError as exc:
        print(f"hsmcert emulator: {exc.message}", file=sys.stderr)
        return 2
    try:
        options = Options(
            arm.check_subscription_id(args.subscription) if args.subscription else None,
            arm.check_delay(args.propagation_delay) if args.propagation_delay is not None else None,
            args.vault_access_policies,
        )
    except HsmcertError as exc:
        print(f"hsmcert emulator: {exc.message}", file=sys.stderr)
        return 2
    return run(args.data.resolve(), faults, args.exit_with, lifetime, options)


if __name__ == "__main__":
    sys.exit(main())
