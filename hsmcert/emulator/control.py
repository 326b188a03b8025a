"""Start, stop and find the emulator from other processes; the contract the rest of hsmcert uses.

A data directory holds everything of one emulator: ``ca.pem`` (trust this), ``state.json`` (pid and ports of
the running process: control, login, services), ``emulator.db`` (keys, roles...), ``master.key`` / ``token.key`` / ``identity.secret``
(0600 secrets), ``audit.jsonl`` and ``emulator.log``.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hsmcert.config import EMULATOR_ENDPOINTS, default_emulator_dir, emulator_start_command
from hsmcert.errors import NotFoundError, UnreachableError, UsageError

DEFAULT_HSM = "local-hsm"
DEFAULT_VAULT = "local-vault"
KINDS = ("managedhsm", "vault")


def default_data_dir() -> Path:
    """``$HSMCERT_EMULATOR``, else the user's data directory (``~/.local/share/hsmcert/emulator``)."""
    env = os.environ.get("HSMCERT_EMULATOR")
    return Path(env) if env else default_emulator_dir()


def start_command(data_dir: Path) -> str:
    return emulator_start_command(data_dir)


@dataclass(frozen=True)
class Running:
    """A running emulator as its state file describes it."""

    data_dir: Path
    pid: int
    control_port: int
    services: dict[str, int]
    login_port: int | None = None
    arm_port: int | None = None
    subscription: str | None = None
    imds_port: int | None = None

    @property
    def arm_url(self) -> str | None:
        """The emulator's Resource Manager (an ``HSMCERT_ARM_URL``); None for an older emulator."""
        return f"https://127.0.0.1:{self.arm_port}" if self.arm_port else None

    @property
    def ca(self) -> Path:
        return self.data_dir / "ca.pem"

    @property
    def control_url(self) -> str:
        return f"http://127.0.0.1:{self.control_port}"

    @property
    def login_url(self) -> str | None:
        """The Entra-ID-compatible login endpoint (an ``AZURE_AUTHORITY_HOST``); None for an older emulator."""
        return f"https://127.0.0.1:{self.login_port}" if self.login_port else None

    @property
    def identity_endpoint(self) -> str:
        return f"{self.control_url}/msi/token"

    def secret(self) -> str:
        return (self.data_dir / "identity.secret").read_bytes().hex()

    def url(self, kind: str, name: str) -> str:
        return f"https://127.0.0.1:{self.services[f'{kind}:{name}']}"

    def control(
        self, method: str, path: str, body: dict[str, Any] | None = None, timeout: float = 10.0
    ) -> Any:
        """Call the control endpoint; raises UnreachableError when the emulator does not answer."""
        data = json.dumps(body or {}).encode()
        request = urllib.request.Request(  # noqa: S310 - http://127.0.0.1 only
            self.control_url + path,
            data=data if method != "GET" else None,
            method=method,
            headers={"X-Hsmcert-Control": self.secret(), "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            try:
                message = json.loads(exc.read())["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = str(exc)
            if exc.code == 404:
                raise NotFoundError(f"The emulator found nothing: {message}") from None
            raise UsageError(f"The emulator refused: {message}") from None
        except (OSError, ValueError) as exc:
            raise UnreachableError(
                f"The emulator of {self.data_dir} does not answer ({exc}).", start_command(self.data_dir)
            ) from None

    def env(self) -> dict[str, str]:
        """The variables ``hsmcert emulator start`` exports."""
        env = {
            "HSMCERT_EMULATOR": str(self.data_dir),
            "HSMCERT_EMULATOR_CA": str(self.ca),
            "AZURE_MANAGEDHSM_URL": self.url("managedhsm", DEFAULT_HSM),
            "AZURE_KEYVAULT_URL": self.url("vault", DEFAULT_VAULT),
            "IDENTITY_ENDPOINT": self.identity_endpoint,
            "IDENTITY_HEADER": self.secret(),
        }
        if self.arm_url:
            env["HSMCERT_ARM_URL"] = self.arm_url
        if self.imds_port:
            env["HSMCERT_IMDS_URL"] = f"http://127.0.0.1:{self.imds_port}"
        return env


def alive(pid: int) -> bool:
    """Whether the process ``pid`` runs (one of another user counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def running(data_dir: Path) -> Running | None:
    """The emulator running from ``data_dir``, or None (a stale state file from a dead process is ignored)."""
    data_dir = Path(data_dir)
    try:
        state = json.loads((data_dir / "state.json").read_text())
        pid, port, services = int(state["pid"]), int(state["control_port"]), dict(state["services"])
        login_port = int(state["login_port"]) if state.get("login_port") else None
        arm_port = int(state["arm_port"]) if state.get("arm_port") else None
        subscription = str(state["subscription"]) if state.get("subscription") else None
        imds_port = int(state["imds_port"]) if state.get("imds_port") else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    if not alive(pid):
        return None
    return Running(
        data_dir.resolve(),
        pid,
        port,
        {str(k): int(v) for k, v in services.items()},
        login_port,
        arm_port,
        subscription,
        imds_port,
    )


def require_running(data_dir: Path) -> Running:
    found = running(data_dir)
    if found is None:
        raise UnreachableError(f"No emulator runs from {data_dir}.", f"Start it: {start_command(data_dir)}")
    return found


def service_endpoint(data_dir: Path, kind: str, name: str) -> tuple[str, Path]:
    """The base URL of the Managed HSM / vault ``name`` in the emulator of ``data_dir``, and its CA file.

    A service seen for the first time is created (with its own port, remembered across restarts).
    """
    if kind not in KINDS:
        raise UsageError(f"Unknown service kind {kind!r}.", "Use managedhsm or vault.")
    emulator = require_running(Path(data_dir))
    key = f"{kind}:{name}"
    if key not in emulator.services:
        answer = emulator.control("POST", "/control/services", {"kind": kind, "name": name})
        return f"https://127.0.0.1:{int(answer['port'])}", emulator.ca
    return emulator.url(kind, name), emulator.ca


def write_endpoints(
    data_dir: Path,
    login_url: str,
    services: dict[str, str],
    arm_url: str | None = None,
    subscription: str | None = None,
    imds_url: str | None = None,
) -> None:
    """Publish the endpoints of the emulator running from ``data_dir`` (``services``: ``kind:name`` ->
    URL) as plain configuration, ``endpoints.toml``, in the shape of hsmcert's config file; hsmcert
    resolves references by reading it (see :mod:`hsmcert.config`). ``[arm]`` names its Resource Manager
    (``url``, ``ca_bundle``, ``subscription``), ``[imds]`` its instance metadata service (``url``)."""
    from hsmcert.emulator.files import write_atomic

    ca = json.dumps(str(Path(data_dir) / "ca.pem"))  # a JSON string is a TOML basic string
    lines = [
        "# The endpoints of the hsmcert emulator running from this directory, in the shape of hsmcert's",
        "# config file. Written by the emulator when a service is added; removed when it stops.",
        "",
        "[login]",
        f"url = {json.dumps(login_url)}",
        f"ca_bundle = {ca}",
    ]
    if arm_url:
        lines += ["", "[arm]", f"url = {json.dumps(arm_url)}", f"ca_bundle = {ca}"]
        if subscription:
            lines.append(f"subscription = {json.dumps(subscription)}")
    if imds_url:
        lines += ["", "[imds]", f"url = {json.dumps(imds_url)}"]
    for key, url in sorted(services.items()):
        lines += ["", f"[endpoints.{json.dumps(key)}]", f"url = {json.dumps(url)}", f"ca_bundle = {ca}"]
    write_atomic(Path(data_dir) / EMULATOR_ENDPOINTS, ("\n".join(lines) + "\n").encode())


def _token_key(data_dir: Path) -> bytes:
    try:
        return (Path(data_dir) / "token.key").read_bytes()
    except FileNotFoundError:
        raise UsageError(
            f"{data_dir} holds no emulator (no token.key).",
            f"Start one first: {start_command(Path(data_dir))}",
        ) from None


def token(
    data_dir: Path,
    principal: str = "admin",
    audience: str = "https://managedhsm.azure.net",
    lifetime: int = 24 * 3600,
    valid_in: int = 0,
) -> str:
    """A bearer token for ``principal`` signed with the emulator's key (the emulator need not run), valid
    from ``valid_in`` seconds from now (negative: in the past) for ``lifetime`` seconds."""
    from hsmcert.emulator.auth import check_lifetime, check_principal, issue

    return issue(
        _token_key(data_dir), check_principal(principal), audience, check_lifetime(lifetime), valid_in
    )


def credentials(
    data_dir: Path,
    principal: str,
    federated_token_file: Path | None = None,
    mhsm: bool = False,
    force: bool = False,
) -> dict[str, str]:
    """The variables that let azure-identity sign in as ``principal`` at the emulator's login endpoint:
    a client secret, or (``federated_token_file``, written 0600) a federated token for workload identity."""
    from hsmcert.emulator import login
    from hsmcert.emulator.auth import check_principal

    check_principal(principal)
    emulator = require_running(Path(data_dir))
    if emulator.login_url is None:
        raise UsageError(
            f"The emulator of {data_dir} has no login endpoint (started by an older hsmcert).",
            "Restart it: hsmcert emulator stop, then " + start_command(Path(data_dir)),
        )
    secret = _token_key(emulator.data_dir)
    path = None
    if federated_token_file is not None:
        from hsmcert.output_files import write_output

        path = Path(os.path.abspath(federated_token_file.expanduser()))  # a link stays a link
        write_output(path, login.federated_token(secret, principal).encode(), force=force, mode=0o600)
    return login.credential_env(secret, principal, emulator.login_url, str(path) if path else None, mhsm)


def start(
    data_dir: Path,
    faults: dict[str, Any] | None = None,
    timeout: float = 30.0,
    exit_with: int | None = None,
    token_lifetime: int | None = None,
    arm: dict[str, Any] | None = None,
) -> Running:
    """Start the emulator in the background (or find it running); returns when it serves.

    ``exit_with``: a pid whose end stops the emulator too (a test session that may be killed).
    ``token_lifetime``: seconds of the tokens its login and managed-identity endpoints issue (default a day).
    ``arm``: Resource Manager settings: ``subscription`` (a new data directory's), ``propagation_delay``
    (seconds), ``vault_access_policies`` (new vaults use access policies); on a running emulator the last
    two apply from now on.
    """
    data_dir = Path(data_dir).resolve()
    found = running(data_dir)
    if found is not None:
        try:
            if token_lifetime is not None:
                found.control("PUT", "/control/tokens", {"lifetime": token_lifetime})
            if arm:
                wanted = arm.get("subscription")
                if wanted and found.subscription and wanted.lower() != found.subscription.lower():
                    raise UsageError(
                        f"The emulator of {data_dir} runs with the subscription {found.subscription}.",
                        "A data directory keeps its subscription: use another --data for another one.",
                    )
                changes = {k: v for k, v in arm.items() if k != "subscription" and v is not None}
                if changes:
                    found.control("PUT", "/control/arm", changes)
            if faults:
                found.control("PUT", "/control/faults", faults)
            else:
                found.control("GET", "/control/status", timeout=5)
            return found
        except UnreachableError:
            pass  # a state file whose pid now belongs to another process: start afresh
    data_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(data_dir, 0o700)
    (data_dir / "state.json").unlink(missing_ok=True)
    (data_dir / EMULATOR_ENDPOINTS).unlink(missing_ok=True)  # a killed emulator's stale endpoints
    log_path = data_dir / "emulator.log"
    command = [sys.executable, "-m", "hsmcert.emulator.process", "--data", str(data_dir)]
    if faults:
        command += ["--faults", json.dumps(faults)]
    if exit_with is not None:
        command += ["--exit-with", str(exit_with)]
    if token_lifetime is not None:
        command += ["--token-lifetime", str(token_lifetime)]
    arm = arm or {}
    if arm.get("subscription"):
        command += ["--subscription", str(arm["subscription"])]
    if arm.get("propagation_delay") is not None:
        command += ["--propagation-delay", str(arm["propagation_delay"])]
    if arm.get("vault_access_policies"):
        command.append("--vault-access-policies")
    with open(log_path, "ab") as log, open(os.devnull, "rb") as devnull:
        proc = subprocess.Popen(
            command, stdin=devnull, stdout=log, stderr=log, start_new_session=True, close_fds=True
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = running(data_dir)
        if found is not None and found.pid == proc.pid:
            return found
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace").strip().splitlines()[-5:]
            raise UnreachableError(
                "The emulator did not start: " + (" / ".join(tail) or f"exit code {proc.returncode}"),
                f"See {log_path}.",
            )
        time.sleep(0.05)
    proc.terminate()
    raise UnreachableError(f"The emulator did not start within {timeout:.0f} s.", f"See {log_path}.")


def stop(data_dir: Path, timeout: float = 15.0) -> bool:
    """Stop the emulator of ``data_dir``; False when none was running."""
    found = running(Path(data_dir))
    if found is None:
        return False
    try:
        found.control("POST", "/control/stop", timeout=5)
    except (UnreachableError, UsageError, NotFoundError):
        os.kill(found.pid, 15)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(found.pid) or running(Path(data_dir)) is None:
            return True
        time.sleep(0.05)
    os.kill(found.pid, 9)
    (Path(data_dir) / EMULATOR_ENDPOINTS).unlink(missing_ok=True)
    return True


def status(data_dir: Path) -> dict[str, Any]:
    found = require_running(Path(data_dir))
    answer: dict[str, Any] = found.control("GET", "/control/status")
    return answer


def set_faults(data_dir: Path, **settings: Any) -> dict[str, Any]:
    """Replace the running emulator's faults (no settings: none)."""
    answer: dict[str, Any] = require_running(Path(data_dir)).control("PUT", "/control/faults", settings)
    return answer


def shell_exports(env: dict[str, str]) -> str:
    lines = [f"{k}={shlex.quote(v)}; export {k};" for k, v in env.items()]
    return "\n".join(lines) + "\n"


def machines(data_dir: Path, method: str = "GET", body: dict[str, Any] | None = None) -> Any:
    """The running emulator's machines (``GET``), or add one (``POST``: ``kind``, ``name``, ``group``,
    ``user_assigned``, ``identity``, ``self``), or remove one (``DELETE``: ``kind``, ``name``, ``group``)."""
    emulator = require_running(Path(data_dir))
    path = {"GET": "/control/vms", "POST": "/control/vms", "DELETE": "/control/vms/remove"}[method]
    return emulator.control("GET" if method == "GET" else "POST", path, body)
