"""The emulator process: one HTTPS port per Managed HSM / Key Vault, and a plain-HTTP control port.

Data plane (``https://127.0.0.1:<port>``, one port per service): the Key Vault REST API, HTTP/1.1 keep-alive,
a 401 challenge the unchanged Azure SDKs accept, bearer tokens checked on every request, Managed HSM RBAC,
faults, an audit line per operation. Control plane (``http://127.0.0.1:<control port>``): the App-Service-style
managed-identity endpoint (``/msi/token``) and ``/control/*`` (services, faults, status, stop), both guarded by
the secret in ``identity.secret``. Login (``https://127.0.0.1:<login port>``): a small Entra-ID-compatible token
endpoint for service principals and workload identities (:mod:`hsmcert.emulator.login`).

Run with ``python -m hsmcert.emulator.server --data DIR`` (what ``hsmcert emulator start`` does).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import itertools
import json
import logging
import os
import re
import signal
import socket
import ssl
import sys
import threading
import time
import traceback
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from hsmcert.azure import roles
from hsmcert.config import EMULATOR_ENDPOINTS
from hsmcert.emulator import auth, control, keys, login
from hsmcert.emulator.api import MAX_BODY, ApiError, Request, Response, loads_json
from hsmcert.emulator.audit import AuditLog
from hsmcert.emulator.faults import Faults, parse_faults
from hsmcert.emulator.files import private_secret, read_json, write_json
from hsmcert.emulator.service import Service
from hsmcert.emulator.store import Store
from hsmcert.errors import HsmcertError

log = logging.getLogger("hsmcert.emulator")

DEFAULT_SERVICES = (("managedhsm", "local-hsm"), ("vault", "local-vault"))
_HOST_RE = re.compile(r"^[A-Za-z0-9.\-\[\]:]{1,255}$")
_CRYPTO_OPS = ("sign", "verify", "encrypt", "decrypt", "wrapkey", "unwrapkey")
# Operations whose data action is not in hsmcert.azure.roles.OPERATION_ACTIONS.
_EXTRA_ACTIONS = {
    "deleted-list": "keys/deletedKeys/read/action",
    "rotationpolicy-get": "keys/read/action",
    "rotationpolicy-set": "keys/write/action",
}


def challenge_resource(host: str, kind: str) -> str:
    """The resource a 401 challenge names, so that the SDK's ``verify_challenge_resource`` check passes.

    The SDK wants the request host to end with ``"." + resource host``: for ``127.0.0.1:8443`` that is
    ``0.0.1:8443``, for ``hsm.localhost:8443`` it is ``localhost:8443``. A bare ``localhost`` cannot pass
    (clients then need ``verify_challenge_resource=False``): answer Azure's own audience.

    >>> challenge_resource("127.0.0.1:8443", "managedhsm")
    'https://0.0.1:8443'
    >>> challenge_resource("hsm.localhost:9000", "vault")
    'https://localhost:9000'
    >>> challenge_resource("localhost:9000", "vault")
    'https://vault.azure.net'
    """
    hostname = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    if "." in hostname and not hostname.startswith("["):
        return "https://" + host.split(".", 1)[1]
    return "https://managedhsm.azure.net" if kind == "managedhsm" else "https://vault.azure.net"


class Emulator:
    """The state of one emulator process: services, store, tokens, faults, audit."""

    def __init__(self, data_dir: Path, faults: Faults | None = None) -> None:
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
        self.admin = auth.principal_id(auth.ADMIN)
        self.audit = AuditLog(data_dir / "audit.jsonl")
        self.faults = faults or Faults()
        self.services: dict[tuple[str, str], Service] = {}
        self.servers: list[ThreadingHTTPServer] = []
        self.control_port = 0
        self.login_port = 0
        self.stopping = threading.Event()
        self.ready = False
        self._lock = threading.RLock()

    # --- start-up ---------------------------------------------------------------------------------------

    def start(self) -> None:
        remembered: dict[str, Any] = {}
        loaded: dict[str, list[tuple[str, str, Any, bytes | None]]] = {}
        for _service, ident, data, _sealed in self.store.load("service"):
            remembered[ident] = data
        for kind in (
            "key",
            "deletedkey",
            "rotationpolicy",
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
        server = _bind(ControlServer, port, ControlHandler)
        server.emulator = self
        self._run(server)
        return int(server.server_address[1])

    def _serve_login(self, port: int) -> int:
        server = _bind(LoginServer, port, LoginHandler)
        server.emulator = self
        server.ssl_context = self.ssl_context
        self._run(server)
        return int(server.server_address[1])

    def _run(self, server: ThreadingHTTPServer) -> None:
        self.servers.append(server)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True).start()

    def _add(self, kind: str, name: str, port: int, fresh: bool) -> Service:
        server = _bind(ServiceServer, port, ServiceHandler)
        bound = int(server.server_address[1])
        service = Service(self.store, kind, name, bound)
        server.emulator = self
        server.service = service
        server.ssl_context = self.ssl_context
        self.services[(kind, name)] = service
        if fresh and kind == "managedhsm":
            service.rbac.bootstrap(self.admin)
        if fresh or bound != port:
            self.store.put("", "service", f"{kind}:{name}", {"kind": kind, "name": name, "port": bound})
        if kind == "vault":
            from hsmcert.emulator.certificates import Certificates

            service.certificates = Certificates(service)
        self._run(server)
        return service

    def service(self, kind: str, name: str) -> Service:
        """The service of that kind and name, created (with its own port) when new."""
        if kind not in ("managedhsm", "vault"):
            raise ApiError(400, "BadParameter", f"Unknown service kind {kind!r}; use managedhsm or vault.")
        if not re.fullmatch(r"[0-9a-zA-Z][0-9a-zA-Z-]{0,62}", name):
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
        )
        write_json(
            self.data_dir / "state.json",
            {
                "pid": os.getpid(),
                "control_port": self.control_port,
                "login_port": self.login_port,
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

    # --- the data plane ---------------------------------------------------------------------------------

    def dispatch(self, service: Service, req: Request) -> Response:
        operation, key, handler = route(service, req)
        if service.kind == "managedhsm" and operation is not None:
            action = _EXTRA_ACTIONS.get(operation) or roles.OPERATION_ACTIONS[operation]
            scope = "/" if operation == "rng" else roles.key_scope(key)
            service.rbac.require(req, action, scope)
        response: Response = handler()
        if response.audit is not None and operation is not None:
            response.audit.setdefault("operation", operation)
        return response


def route(service: Service, req: Request) -> tuple[str | None, str | None, Any]:
    """(operation, key name, handler) for a request; ApiError 404/405 for unknown routes and methods."""
    segs = req.path.split("/")[1:]
    lowered = [s.lower() for s in segs]
    method = req.method
    if "providers" in lowered:
        if service.kind != "managedhsm":
            raise _not_found(req)
        i = lowered.index("providers")
        if len(segs) < i + 3 or lowered[i + 1] != "microsoft.authorization" or len(segs) > i + 4:
            raise _not_found(req)
        scope = "/" + "/".join(segs[:i])
        ident = segs[i + 3] if len(segs) == i + 4 and segs[i + 3] else None
        return None, None, lambda: service.rbac.handle(req, scope, segs[i + 2], ident)
    if len(segs) > 1 and segs[-1] == "" and not (lowered[0] == "keys" and len(segs) == 3):
        segs, lowered = segs[:-1], lowered[:-1]
    n = len(segs)
    head = lowered[0] if segs else ""
    if head == "keys":
        if n == 1:
            return _only(req, "GET", "list", None, lambda: keys.handle_list(service, req))
        name = segs[1]
        if n == 2:
            if name.lower() == "restore":
                return _only(req, "POST", "restore", None, lambda: service.handle_restore(req))
            if method == "PUT":
                return "import", name, lambda: keys.handle_import(service, req, name)
            if method == "DELETE":
                return "delete", name, lambda: service.handle_delete(req, name)
            return _only(req, "GET", "get", name, lambda: keys.handle_get(service, req, name, ""))
        third = lowered[2]
        if n == 3:
            simple = {
                "create": ("POST", "create", lambda: keys.handle_create(service, req, name)),
                "versions": ("GET", "versions", lambda: keys.handle_versions(service, req, name)),
                "backup": ("POST", "backup", lambda: service.handle_backup(req, name)),
                "rotate": ("POST", "rotate", lambda: keys.handle_rotate(service, req, name)),
            }
            if third in simple:
                want, op, handler = simple[third]
                return _only(req, want, op, name, handler)
            if third == "rotationpolicy":
                if method not in ("GET", "PUT"):
                    raise _method(req)
                op = "rotationpolicy-get" if method == "GET" else "rotationpolicy-set"
                return op, name, lambda: keys.handle_rotation_policy(service, req, name)
            version = segs[2]
            if version and not re.fullmatch(r"[0-9a-fA-F]{32}", version):
                raise ApiError(
                    404, "KeyNotFound", f"A key with (name/id) {name[:130]}/{version[:40]} was not found."
                )
            if method == "PATCH":
                return "update", name, lambda: keys.handle_update(service, req, name, version)
            return _only(req, "GET", "get", name, lambda: keys.handle_get(service, req, name, version))
        if n == 4 and lowered[3] in _CRYPTO_OPS:
            version, op = segs[2], lowered[3]
            return _only(req, "POST", op, name, lambda: keys.handle_crypto(service, req, name, version, op))
        raise _not_found(req)
    if head == "deletedkeys":
        if n == 1:
            return _only(req, "GET", "deleted-list", None, lambda: service.handle_deleted_list(req))
        name = segs[1]
        if n == 2:
            if method == "DELETE":
                return "purge", name, lambda: service.handle_purge(req, name)
            return _only(req, "GET", "deleted-get", name, lambda: service.handle_deleted_get(req, name))
        if n == 3 and lowered[2] == "recover":
            return _only(req, "POST", "recover", name, lambda: service.handle_recover(req, name))
        raise _not_found(req)
    if head == "rng" and n == 1:
        return _only(req, "POST", "rng", None, lambda: _random_bytes(req))
    if head in ("certificates", "deletedcertificates") and service.certificates is not None:
        routed: tuple[str | None, str | None, Any] = service.certificates.route(req, segs)
        return routed
    raise _not_found(req)


def _only(req: Request, method: str, op: str, key: str | None, handler: Any) -> tuple[str, str | None, Any]:
    if req.method != method:
        raise _method(req)
    return op, key, handler


def _not_found(req: Request) -> ApiError:
    return ApiError(404, "NotFound", f"The route {req.method} {req.path[:200]} does not exist.")


def _method(req: Request) -> ApiError:
    return ApiError(405, "MethodNotAllowed", f"The method {req.method} is not allowed for {req.path[:200]}.")


def _random_bytes(req: Request) -> Response:
    from hsmcert.emulator.api import b64u, bad, field_of

    count = field_of(req.json(), "count", int, required=True)
    if not 1 <= count <= 128:
        raise bad("The count must be between 1 and 128.")
    return Response(200, {"value": b64u(os.urandom(count))}, audit={"count": count})


# --- HTTP servers --------------------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256
    allow_reuse_address = True
    emulator: Emulator


class _TlsServer(_Server):
    ssl_context: ssl.SSLContext

    def finish_request(self, request: Any, client_address: Any) -> None:
        request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        request.settimeout(120)
        try:
            tls = self.ssl_context.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError):
            return
        try:
            self.RequestHandlerClass(tls, client_address, self)  # type: ignore[arg-type]
        except (OSError, ssl.SSLError):
            pass
        finally:
            with contextlib.suppress(OSError):
                tls.close()


class ServiceServer(_TlsServer):
    service: Service


class LoginServer(_TlsServer):
    pass


class ControlServer(_Server):
    pass


def _bind(cls: type[_Server], port: int, handler: Any) -> Any:
    try:
        return cls(("127.0.0.1", port), handler)
    except OSError:
        if port == 0:
            raise
        return cls(("127.0.0.1", 0), handler)


_JSON = json.JSONEncoder(separators=(",", ":"))
# Parsed query strings seen first (a client sends the same ``?api-version=7.5`` on every request).
_QUERY_CACHE: dict[str, dict[str, str]] = {}
_REQUEST_IDS = itertools.count(1)
_REQUEST_ID_PREFIX = str(uuid.uuid4())[:24]


def _request_id() -> str:
    """A unique ``x-ms-request-id`` (UUID-shaped: a random prefix for this process and a counter)."""
    return f"{_REQUEST_ID_PREFIX}{next(_REQUEST_IDS) % (1 << 48):012x}"


class _Headers(dict[str, str]):
    """Request headers by lower-case name; ``get`` is case-insensitive."""

    def get(self, name: str, default: Any = None) -> Any:
        return super().get(name.lower(), default)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "hsmcert-emulator"
    sys_version = ""
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.client_address[0], *args)

    def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        payload = b"" if body is None or status == 204 else _JSON.encode(body).encode()
        reason = self.responses.get(status, ("",))[0]
        head = (
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json; charset=utf-8\r\n"
            f"Content-Length: {len(payload)}\r\nx-ms-request-id: {_request_id()}\r\n"
            "x-ms-keyvault-service-version: hsmcert-emulator\r\nCache-Control: no-cache\r\n"
        )
        if self.close_connection:
            head += "Connection: close\r\n"
        for name, value in (headers or {}).items():
            head += f"{name}: {value}\r\n"
        if self.command == "HEAD":
            payload = b""
        self.wfile.write((head + "\r\n").encode("latin-1") + payload)
        if log.isEnabledFor(logging.DEBUG):
            self.log_request(status, len(payload))

    def parse_request(self) -> bool:
        """Parse the request line and headers (a lean replacement of http.server's email-based parser)."""
        self.command = ""
        self.request_version = "HTTP/1.1"
        self.close_connection = True
        raw: bytes = getattr(self, "raw_requestline", b"")
        self.requestline = requestline = str(raw, "iso-8859-1").rstrip("\r\n")
        words = requestline.split()
        if len(words) != 3 or not words[2].startswith("HTTP/1.") or not words[1].startswith("/"):
            self.send_error(400, "Bad request line")
            return False
        self.command, self.path, self.request_version = words
        lines = self._header_lines()
        if lines is None:
            return False
        headers = _Headers()
        for line in lines:
            name, sep, value = line.decode("iso-8859-1").partition(":")
            if not sep or not name.strip():
                self.send_error(400, "Bad header line")
                return False
            headers[name.strip().lower()] = value.strip()
        self.headers = headers  # type: ignore[assignment]
        connection = headers.get("connection", "").lower()
        self.close_connection = connection == "close" or (
            self.request_version == "HTTP/1.0" and connection != "keep-alive"
        )
        if headers.get("expect", "").lower() == "100-continue":
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        return True

    def _header_block(self) -> bytes | None:
        """All header lines at once (without the blank line) when they already sit in the read buffer with
        CRLF line ends, as a client's request normally does; None: read them line by line."""
        peek = getattr(self.rfile, "peek", None)
        if peek is None:
            return None
        buffered: bytes = peek(1)
        if buffered.startswith(b"\r\n"):
            self.rfile.read(2)
            return b""
        end = buffered.find(b"\r\n\r\n")
        if end < 0 or buffered.count(b"\n", 0, end) != buffered.count(b"\r\n", 0, end):
            return None
        block: bytes = self.rfile.read(end + 4)
        return block[:end]

    def _header_lines(self) -> list[bytes] | None:
        """The header lines of the request (None: refused, the error answer sent)."""
        block = self._header_block()
        if block is not None:
            lines = block.split(b"\r\n") if block else []
            if len(lines) <= 100:
                return lines
            self.send_error(431, "Too many headers")
            return None
        lines = []
        for _ in range(101):
            line = self.rfile.readline(65537)
            if len(line) > 65536:
                self.send_error(431, "Header line too long")
                return None
            if line in (b"\r\n", b"\n", b""):
                return lines
            lines.append(line)
        self.send_error(431, "Too many headers")
        return None

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Errors of the HTTP layer itself (bad request line, unknown method...) in Azure's JSON shape."""
        if code == 501:
            code = 405
        self.close_connection = True
        codes = {400: "BadRequest", 405: "MethodNotAllowed", 414: "RequestUriTooLong", 431: "HeadersTooLarge"}
        error = ApiError(code, codes.get(code, "BadRequest"), message or self.responses.get(code, ("",))[0])
        with contextlib.suppress(OSError):
            self._send(code, error.body())

    def _read_body(self) -> bytes | None:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            self.close_connection = True
            self._send(411, ApiError(411, "LengthRequired", "Send a Content-Length.").body())
            return None
        declared = self.headers.get("Content-Length") or "0"
        length = int(declared) if declared.isascii() and declared.isdigit() and len(declared) < 16 else -1
        if length < 0 or length > MAX_BODY:
            self.close_connection = True
            if MAX_BODY < length <= 8 * MAX_BODY:  # read it, so that the client sees the answer
                remaining = length
                while remaining > 0:
                    chunk = self.rfile.read(min(remaining, 1 << 16))
                    if not chunk:
                        break
                    remaining -= len(chunk)
            code = 413 if length > MAX_BODY else 400
            message = "The request body is too large." if code == 413 else "The Content-Length is invalid."
            self._send(code, ApiError(code, "BadParameter", message).body())
            return None
        return self.rfile.read(length) if length else b""

    def _split(self) -> tuple[str, dict[str, str]]:
        path, _, query = self.path.partition("?")
        if "#" in self.path or self.path.startswith("//"):  # what urlsplit treats apart
            parts = urlsplit(self.path)
            path, query = parts.path, parts.query
        if not query:
            return path or "/", {}
        if query in _QUERY_CACHE:
            return path or "/", dict(_QUERY_CACHE[query])
        parsed = dict(parse_qsl(query, keep_blank_values=True))
        if len(_QUERY_CACHE) < 64:
            _QUERY_CACHE[query] = parsed
        return path or "/", dict(parsed)


class ServiceHandler(_Handler):
    server: ServiceServer

    def do_GET(self) -> None:
        self._handle()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_GET

    def _handle(self) -> None:
        emulator = self.server.emulator
        service = self.server.service
        faults = emulator.faults
        if faults.active() and faults.applies_to(service.name):
            if faults.latency_ms:
                time.sleep(faults.latency_ms / 1000)
            fault = faults.decide()
            if fault == "drop":
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            if fault is not None:
                self._read_body()
                error = (
                    ApiError(429, "Throttled", "Rate limit exceeded (fault injected by the emulator).")
                    if fault == "throttle"
                    else ApiError(
                        503, "ServiceUnavailable", "Service unavailable (fault injected by the emulator)."
                    )
                )
                headers = {"Retry-After": str(faults.retry_after)} if fault == "throttle" else {}
                self._send(error.status, error.body(), headers)
                return
        body = self._read_body()
        if body is None:
            return
        path, query = self._split()
        host = self.headers.get("Host", "")
        if not _HOST_RE.match(host):
            host = f"127.0.0.1:{service.port}"
        caller = None
        authorization = self.headers.get("Authorization", "")
        if authorization[:7].lower() == "bearer ":
            caller = emulator.verifier.verify(authorization[7:].strip())
        if caller is None:
            resource = challenge_resource(host, service.kind)
            challenge = f'Bearer authorization="https://login.microsoftonline.com/", resource="{resource}"'
            if authorization:
                challenge += ', error="invalid_token"'
            message = (
                "Request is missing a Bearer or PoP token." if not authorization else "The token is invalid."
            )
            self._send(
                401,
                ApiError(401, "Unauthorized", f"AKV10000: {message}").body(),
                {"WWW-Authenticate": challenge},
            )
            return
        req = Request(self.command, path, query, body, f"https://{host}", caller.object_id, caller.name)
        try:
            response = emulator.dispatch(service, req)
        except ApiError as exc:
            response = Response(exc.status, exc.body(), exc.headers, audit=_failure_audit(service, req))
            if response.audit is not None:
                response.audit["code"] = exc.code
        except HsmcertError as exc:
            response = Response(400, ApiError(400, "BadParameter", exc.message).body())
        except Exception:
            log.error("internal error on %s %s:\n%s", self.command, path, traceback.format_exc())
            response = Response(
                500, ApiError(500, "InternalError", "The emulator failed; see emulator.log.").body()
            )
        if response.audit is not None:
            status = response.status
            result = "ok" if status < 400 else ("denied" if status in (401, 403) else "error")
            emulator.audit.record(
                principal=caller.object_id,
                principal_name=caller.name,
                service=service.name,
                kind=service.kind,
                **{"key": None, "version": None, **response.audit},
                result=result,
                status=status,
            )
        self._send(response.status, response.body, response.headers)


def _failure_audit(service: Service, req: Request) -> dict[str, Any] | None:
    """What a refused or failed request records: its operation and key when the route is known."""
    try:
        operation, key, _ = route(service, req)
    except ApiError:
        return None
    if operation is None:
        return {"operation": "rbac"}
    entry: dict[str, Any] = {"operation": operation, "key": key}
    parts = req.path.split("/")
    if operation in _CRYPTO_OPS and len(parts) > 3 and parts[3]:
        entry["version"] = parts[3]
    return entry


class ControlHandler(_Handler):
    server: ControlServer

    def do_GET(self) -> None:
        self._handle()

    do_POST = do_PUT = do_GET

    def _handle(self) -> None:
        emulator = self.server.emulator
        body = self._read_body()
        if body is None:
            return
        path, query = self._split()
        if path == "/msi/token":
            if self.headers.get("X-IDENTITY-HEADER") != emulator.identity_secret:
                self._send(401, {"error": "invalid_request", "error_description": "Wrong X-IDENTITY-HEADER."})
                return
            resource = query.get("resource", "https://managedhsm.azure.net")
            principal = (
                query.get("client_id") or query.get("object_id") or query.get("principal_id") or auth.ADMIN
            )
            token = auth.issue(emulator.token_secret, principal, resource)
            self._send(
                200,
                {
                    "access_token": token,
                    "expires_on": int(time.time()) + auth.TOKEN_LIFETIME,
                    "resource": resource,
                    "token_type": "Bearer",
                    "client_id": auth.principal_id(principal),
                },
            )
            return
        if self.headers.get("X-Hsmcert-Control") != emulator.identity_secret:
            self._send(
                401, {"error": {"code": "Unauthorized", "message": "Wrong or missing control secret."}}
            )
            return
        try:
            data = loads_json(body) if body.strip() else {}
            if not isinstance(data, dict):
                raise ValueError("not an object")
        except ValueError as exc:
            message = f"The body must be a JSON object ({str(exc)[:80]})."
            self._send(400, ApiError(400, "BadParameter", message).body())
            return
        try:
            self._control(emulator, path, data)
        except ApiError as exc:
            self._send(exc.status, exc.body())
        except HsmcertError as exc:
            self._send(400, ApiError(400, "BadParameter", exc.message).body())

    def _control(self, emulator: Emulator, path: str, data: dict[str, Any]) -> None:
        if path == "/control/status":
            self._send(200, _status(emulator))
        elif path == "/control/services" and self.command == "POST":
            service = emulator.service(str(data.get("kind")), str(data.get("name")))
            self._send(200, {"kind": service.kind, "name": service.name, "port": service.port})
        elif path == "/control/faults" and self.command == "PUT":
            emulator.faults = parse_faults(data)
            emulator.audit.record(
                operation="faults", principal=None, result="ok", faults=emulator.faults.to_dict()
            )
            self._send(200, emulator.faults.to_dict())
        elif path == "/control/stop" and self.command == "POST":
            self._send(200, {"stopping": True})
            emulator.stopping.set()
        else:
            self._send(
                404, ApiError(404, "NotFound", f"No control route {self.command} {path[:100]}.").body()
            )


class LoginHandler(_Handler):
    """The Entra-ID-compatible login endpoint (see :mod:`hsmcert.emulator.login`)."""

    server: LoginServer

    def do_GET(self) -> None:
        self._handle()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def _handle(self) -> None:
        body = self._read_body()
        if body is None:
            return
        path, _ = self._split()
        base_url = f"https://127.0.0.1:{self.server.emulator.login_port}"
        try:
            status, answer = login.handle(
                self.server.emulator.token_secret, self.command, path, body, base_url
            )
        except Exception:
            log.error("internal error on login %s %s:\n%s", self.command, path, traceback.format_exc())
            status, answer = 500, {"error": "server_error", "error_description": "The emulator failed."}
        self._send(status, answer)


def _status(emulator: Emulator) -> dict[str, Any]:
    return {
        "pid": os.getpid(),
        "data_dir": str(emulator.data_dir),
        "control_port": emulator.control_port,
        "login_port": emulator.login_port,
        "login_url": f"https://127.0.0.1:{emulator.login_port}",
        "services": [
            {"kind": s.kind, "name": s.name, "url": f"https://127.0.0.1:{s.port}", "keys": len(s.keys)}
            for s in emulator.services.values()
        ],
        "faults": emulator.faults.to_dict(),
    }


# --- process entry point -------------------------------------------------------------------------------


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def run(data_dir: Path, faults: Faults | None = None, exit_with: int | None = None) -> int:
    """Serve until SIGTERM/SIGINT, a control stop, or (``exit_with``) the end of that process."""
    data_dir.mkdir(parents=True, exist_ok=True)
    lock = (data_dir / "emulator.lock").open("a")
    try:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        print(f"hsmcert emulator: another emulator already runs from {data_dir}.", file=sys.stderr)
        return 1
    emulator = Emulator(data_dir, faults)

    def stop(signum: int, frame: Any) -> None:
        emulator.stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    emulator.start()
    log.info("emulator ready: control port %s, %d services", emulator.control_port, len(emulator.services))
    for service in emulator.services.values():
        log.info("%s %s: https://127.0.0.1:%d", service.kind, service.name, service.port)
    while not emulator.stopping.wait(1.0):
        if exit_with is not None and not _alive(exit_with):
            log.info("process %d has ended: stopping", exit_with)
            break
    emulator.shutdown()
    lock.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hsmcert.emulator.server")
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--faults", default="{}", help="JSON object of fault settings")
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument(
        "--exit-with", type=int, help="stop when the process of this pid ends (test sessions)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(levelname)s %(message)s"
    )
    try:
        settings = loads_json(args.faults)
        if not isinstance(settings, dict):
            raise ValueError("not a JSON object")
        faults = parse_faults(settings)
    except (ValueError, HsmcertError) as exc:
        print(f"hsmcert emulator: bad --faults: {exc}", file=sys.stderr)
        return 2
    return run(args.data.resolve(), faults, args.exit_with)


if __name__ == "__main__":
    sys.exit(main())
