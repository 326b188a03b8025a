"""HTTP/1.1 for the emulator's ports: the request line, headers and body read strictly, JSON answers written.

One :class:`Handler` serves every port. It parses a request into an :class:`Incoming`, hands it to its server's
``answer`` function (what the port does: :mod:`hsmcert.emulator.endpoints`), and writes the
:class:`~hsmcert.emulator.api.Response` back on the same keep-alive connection. Errors of HTTP itself (a bad
request line, too many or too long headers, a chunked or oversized body) are answered here in Azure's error
shape and close the connection; nothing a client sends ends a connection without an answer.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import socket
import ssl
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from hsmcert.emulator.api import MAX_BODY, ApiError, Response

log = logging.getLogger("hsmcert.emulator")

MAX_HEADERS = 100
MAX_HEADER_LINE = 65536
LINGER_SECONDS = 2.0
LINGER_BYTES = 1 << 20


@dataclass
class Incoming:
    """One parsed HTTP request."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    """By lower-case name."""
    body: bytes = field(repr=False)


Answer = Callable[[Incoming], Response]


def _linger(sock: socket.socket) -> None:
    """Close a connection gently: stop sending, then read and drop what the client still sends (at most
    1 MiB for 2 s). Closing with unread input resets the connection, and the client may lose the answer
    written just before (a refused request line, too many headers)."""
    with contextlib.suppress(OSError, ValueError):
        sock.shutdown(socket.SHUT_WR)  # on a TLS socket this also leaves TLS: what follows is dropped unread
        sock.settimeout(LINGER_SECONDS)
        deadline = time.monotonic() + LINGER_SECONDS
        received = 0
        while received < LINGER_BYTES and time.monotonic() < deadline:
            chunk = sock.recv(1 << 16)
            if not chunk:
                break
            received += len(chunk)


class Server(ThreadingHTTPServer):
    """A plain-HTTP port; ``answer`` says what it answers."""

    daemon_threads = True
    request_queue_size = 256
    allow_reuse_address = True
    answer: Answer

    def shutdown_request(self, request: Any) -> None:
        _linger(request)
        self.close_request(request)


class TlsServer(Server):
    """An HTTPS port: TLS is set up in the connection's own thread, so a slow handshake blocks no one."""

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
            _linger(tls)
            with contextlib.suppress(OSError):
                tls.close()


def bind(answer: Answer, port: int, context: ssl.SSLContext | None = None) -> Server:
    """A server on 127.0.0.1:``port`` (another free port when that one is taken), HTTPS with ``context``."""
    cls = TlsServer if context is not None else Server
    try:
        server = cls(("127.0.0.1", port), Handler)
    except OSError:
        if port == 0:
            raise
        server = cls(("127.0.0.1", 0), Handler)
    server.answer = answer
    if isinstance(server, TlsServer) and context is not None:
        server.ssl_context = context
    return server


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


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "hsmcert-emulator"
    sys_version = ""
    server: Server
    fields: _Headers

    def do_GET(self) -> None:
        self._handle()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_GET

    def _handle(self) -> None:
        body = self._read_body()
        if body is None:
            return
        path, query = self._split()
        incoming = Incoming(self.command, path, query, self.fields, body)
        try:
            response = self.server.answer(incoming)
        except Exception:
            log.error("internal error on %s %s:\n%s", self.command, path, traceback.format_exc())
            error = ApiError(500, "InternalError", "The emulator failed; see emulator.log.")
            response = Response(500, error.body())
        if response.drop:
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self._send(response.status, response.body, response.headers)

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
        self.headers = self.fields = headers  # type: ignore[assignment]
        connection = headers.get("connection", "").lower()
        self.close_connection = connection == "close" or (
            self.request_version == "HTTP/1.0" and connection != "keep-alive"
        )
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
            if len(lines) <= MAX_HEADERS:
                return lines
            self.send_error(431, "Too many headers")
            return None
        lines = []
        for _ in range(MAX_HEADERS + 1):
            line = self.rfile.readline(MAX_HEADER_LINE + 1)
            if len(line) > MAX_HEADER_LINE:
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
        """The request body (None: refused, the error answer sent)."""
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
        if self.headers.get("Expect", "").lower() == "100-continue":  # a body it will read: ask for it
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
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
