"""The agent's Unix-socket server: one thread per connection, requests answered in order.

The socket is created mode 0660 inside a directory created mode 0750 (``group`` makes both
group-owned, e.g. by ``www-data`` for nginx workers); under systemd socket activation
(``LISTEN_FDS``/``LISTEN_PID``) the socket passed as fd 3 is used as it is and left in place on exit.
Each caller's uid and pid come from ``SO_PEERCRED`` and go into the audit log and the allow-list check.
:meth:`AgentServer.stop` (called from the SIGTERM/SIGINT handlers of ``hsmcert agent``) stops
accepting, closes the connections, waits briefly for operations in flight and removes the socket.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import selectors
import socket
import stat
import struct
import threading
import time
from pathlib import Path
from typing import Any

from hsmcert import __version__
from hsmcert.agent import protocol
from hsmcert.agent.audit import AuditLog
from hsmcert.agent.backend import Backend, status_for
from hsmcert.agent.protocol import Frame, Op, ProtocolError, Status, Tag
from hsmcert.errors import HsmcertError, UsageError

log = logging.getLogger("hsmcert.agent")

AGENT_NAME = f"hsmcert-agent/{__version__}"
SD_LISTEN_FDS_START = 3
IDLE_TIMEOUT = 300.0
"""A connection that sends nothing for this long is closed (the provider reconnects on demand)."""


def systemd_listen_fd() -> int | None:
    """The socket systemd passed (``LISTEN_FDS`` for this pid), or None; unsets the variables."""
    pid = os.environ.get("LISTEN_PID")
    fds = os.environ.get("LISTEN_FDS")
    if not pid or not fds:
        return None
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(name, None)
    if not pid.isdigit() or int(pid) != os.getpid():
        return None
    if not fds.isdigit() or int(fds) < 1:
        return None
    if int(fds) > 1:
        log.warning("systemd passed %s sockets; the agent uses the first", fds)
    return SD_LISTEN_FDS_START


def peer_credentials(conn: socket.socket) -> tuple[int | None, int | None]:
    """(uid, pid) of the process at the other end of a Unix socket."""
    try:
        data = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError:
        return None, None
    pid, uid, _gid = struct.unpack("3i", data)
    return uid, pid


def _error_frame(status: Status, message: str) -> bytes:
    text = message.encode("utf-8")[:4000]
    return protocol.encode_frame(status, {Tag.MESSAGE: text.decode("utf-8", "ignore").encode("utf-8")})


class _Connection:
    """State of one client connection."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.uid, self.pid = peer_credentials(sock)
        self.client: str | None = None


class AgentServer:
    """Serves agent requests on a Unix socket with a :class:`Backend`."""

    def __init__(
        self,
        backend: Backend,
        *,
        socket_path: Path | str | None = None,
        listen_fd: int | None = None,
        audit: AuditLog | None = None,
        group: str | None = None,
    ) -> None:
        if socket_path is None and listen_fd is None:
            raise UsageError("The agent needs a socket path or a socket from systemd.")
        self.backend = backend
        self.socket_path = Path(socket_path) if socket_path is not None else None
        self.listen_fd = listen_fd
        self.audit = audit or AuditLog()
        self.group = group
        self._listener: socket.socket | None = None
        self._owns_path = False
        self._stopping = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self._connections: set[_Connection] = set()
        self._threads: set[threading.Thread] = set()
        self._lock = threading.Lock()

    # -- set-up -----------------------------------------------------------------------------------------

    def bind(self) -> None:
        """Create (or adopt) the listening socket."""
        if self.listen_fd is not None:
            sock = socket.socket(fileno=self.listen_fd)
            if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
                raise UsageError("The socket systemd passed is not a Unix stream socket.")
            name = sock.getsockname()
            if isinstance(name, str) and name and self.socket_path is None:
                self.socket_path = Path(name)
            self._listener = sock
        else:
            assert self.socket_path is not None
            self._listener = self._bind_path(self.socket_path)
        self._listener.setblocking(False)

    def _bind_path(self, path: Path) -> socket.socket:
        gid = self._gid()
        directory = path.parent
        if not directory.exists():
            directory.mkdir(mode=0o750, parents=True)
            os.chmod(directory, 0o750)  # noqa: S103 - group may traverse, others may not
            if gid is not None:
                os.chown(directory, -1, gid)
        else:
            _check_directory(directory)
        if path.exists() or path.is_symlink():
            if not stat.S_ISSOCK(path.lstat().st_mode):
                raise UsageError(f"{path} exists and is not a socket; the agent will not replace it.")
            if _is_live(path):
                raise HsmcertError(
                    f"Another agent is already listening on {path}.",
                    "Stop it first, or give this one another --socket.",
                )
            path.unlink()
        if len(os.fsencode(path)) > 107:
            raise UsageError(f"The socket path {path} is longer than the 107 bytes a Unix socket allows.")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o117)
        try:
            sock.bind(os.fspath(path))
        finally:
            os.umask(old_umask)
        os.chmod(path, 0o660)
        if gid is not None:
            os.chown(path, -1, gid)
        sock.listen(64)
        self._owns_path = True
        return sock

    def _gid(self) -> int | None:
        if self.group is None:
            return None
        import grp

        try:
            return int(self.group) if self.group.isdigit() else grp.getgrnam(self.group).gr_gid
        except KeyError:
            raise UsageError(f"There is no group {self.group!r}.") from None

    # -- running ----------------------------------------------------------------------------------------

    def serve_forever(self) -> None:
        """Accept connections until :meth:`stop`; then clean up."""
        if self._listener is None:
            self.bind()
        assert self._listener is not None
        selector = selectors.DefaultSelector()
        selector.register(self._listener, selectors.EVENT_READ)
        selector.register(self._wake_r, selectors.EVENT_READ)
        try:
            while not self._stopping.is_set():
                for key, _ in selector.select():
                    if key.fileobj is self._listener:
                        self._accept()
        finally:
            selector.close()
            self._shutdown()

    def _accept(self) -> None:
        assert self._listener is not None
        while True:
            try:
                sock, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    log.error("cannot accept a connection: %s", exc)
                    time.sleep(0.1)
                    return
                raise
            sock.setblocking(True)
            sock.settimeout(IDLE_TIMEOUT)
            conn = _Connection(sock)
            thread = threading.Thread(target=self._serve, args=(conn,), name=f"agent-conn-{conn.pid}")
            thread.daemon = True
            with self._lock:
                self._connections.add(conn)
                self._threads.add(thread)
            thread.start()

    def stop(self) -> None:
        """Ask the server to stop (safe from a signal handler or another thread)."""
        self._stopping.set()
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def _shutdown(self) -> None:
        if self._listener is not None:
            self._listener.close()
        if self._owns_path and self.socket_path is not None:
            with contextlib.suppress(FileNotFoundError):
                self.socket_path.unlink()
        with self._lock:
            connections = list(self._connections)
            threads = list(self._threads)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.sock.shutdown(socket.SHUT_RD)
        deadline = time.monotonic() + 5.0
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        os.close(self._wake_r)
        os.close(self._wake_w)

    # -- one connection ---------------------------------------------------------------------------------

    def _serve(self, conn: _Connection) -> None:
        try:
            while not self._stopping.is_set():
                try:
                    data = protocol.read_frame(lambda n: protocol.recv_exactly(conn.sock, n))
                except ProtocolError as exc:
                    self._refuse(conn, exc, time.monotonic())
                    return
                except OSError:
                    return
                if data is None:
                    return
                if not self._handle(conn, data):
                    return
        finally:
            with contextlib.suppress(OSError):
                conn.sock.close()
            with self._lock:
                self._connections.discard(conn)
                self._threads.discard(threading.current_thread())

    def _refuse(self, conn: _Connection, exc: ProtocolError, started: float, op: str = "invalid") -> None:
        self.audit.write(
            uid=conn.uid,
            pid=conn.pid,
            client=conn.client,
            op=op,
            result="bad_request",
            duration_ms=(time.monotonic() - started) * 1000,
            error=f"{exc.reason}: {exc.message}",
        )
        with contextlib.suppress(OSError):
            conn.sock.sendall(_error_frame(Status.BAD_REQUEST, exc.message))
        if exc.closes_connection:
            _linger_close(conn.sock)

    def _handle(self, conn: _Connection, data: bytes) -> bool:
        """Answer one frame; False when the connection must close."""
        started = time.monotonic()
        try:
            frame = protocol.decode_frame(data)
        except ProtocolError as exc:
            self._refuse(conn, exc, started)
            return False
        try:
            op = protocol.check_request(frame)
        except ProtocolError as exc:
            name = Op(frame.code).name.lower() if frame.code in set(Op) else "invalid"
            self._refuse(conn, exc, started, name)
            return True
        record: dict[str, Any] = {"op": op.name.lower()}
        try:
            response = self._dispatch(conn, op, frame, record)
            result = "ok"
            error = None
        except Exception as exc:
            status = status_for(exc)
            if isinstance(exc, HsmcertError):
                message = exc.message
            else:
                log.exception("internal error in %s", op.name)
                message = f"The agent failed unexpectedly ({type(exc).__name__}); see its log."
            response = _error_frame(status, message)
            result, error = status.name.lower(), message
        self.audit.write(
            uid=conn.uid,
            pid=conn.pid,
            client=conn.client,
            result=result,
            duration_ms=(time.monotonic() - started) * 1000,
            error=error,
            **record,
        )
        try:
            conn.sock.sendall(response)
        except OSError:
            return False
        return True

    def _dispatch(self, conn: _Connection, op: Op, frame: Frame, record: dict[str, Any]) -> bytes:
        if op is Op.HELLO:
            conn.client = frame.text(Tag.CLIENT)
            chosen = protocol.choose_version(frame.fields[Tag.VERSIONS])
            if chosen is None:
                from hsmcert.agent.backend import UnsupportedError

                offered = ", ".join(str(v) for v in frame.fields[Tag.VERSIONS])
                raise UnsupportedError(f"The agent speaks protocol version 1, the client offered {offered}.")
            return protocol.encode_frame(
                Status.OK, {Tag.VERSIONS: bytes([chosen]), Tag.AGENT: AGENT_NAME.encode()}
            )
        text = frame.text(Tag.KEYREF) or ""
        record["key"] = text
        version = frame.text(Tag.KEYVERSION)
        record["version"] = version
        ref = self.backend.parse(text, version)
        record["key"] = str(ref.with_version(None))
        record["version"] = ref.version
        if op is Op.PUBKEY:
            key = self.backend.pubkey(conn.uid, ref)
            record["version"] = key.ref.version
            return protocol.encode_frame(
                Status.OK,
                {
                    Tag.SPKI: key.spki_der,
                    Tag.KEYTYPE: key.kty.encode(),
                    Tag.KEYVERSION: (key.ref.version or "").encode(),
                },
            )
        alg = frame.text(Tag.ALG) or ""
        record["alg"] = alg
        if op is Op.SIGN:
            key, signature = self.backend.sign(conn.uid, ref, alg, frame.fields[Tag.DIGEST])
            record["version"] = key.ref.version
            return protocol.encode_frame(Status.OK, {Tag.SIGNATURE: signature})
        key, plaintext = self.backend.decrypt(conn.uid, ref, alg, frame.fields[Tag.CIPHERTEXT])
        record["version"] = key.ref.version
        return protocol.encode_frame(Status.OK, {Tag.PLAINTEXT: plaintext})


def _check_directory(directory: Path) -> None:
    """Refuse a socket directory that another user controls (e.g. a pre-created /tmp/hsmcert-<uid>)."""
    info = directory.stat()
    if not stat.S_ISDIR(info.st_mode):
        raise UsageError(f"{directory} is not a directory.")
    foreign = info.st_uid not in (0, os.geteuid())
    writable = info.st_mode & 0o002 and not info.st_mode & stat.S_ISVTX
    if foreign or writable:
        raise UsageError(
            f"The socket directory {directory} is owned by another user or writable by anyone.",
            "Use a directory of your own for --socket, or remove this one.",
        )


def _linger_close(sock: socket.socket) -> None:
    """Half-close, then drain what the client already sent, so closing does not reset the connection
    (a reset can discard the error response before the client reads it)."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(0.2)
        drained = 0
        while drained < 1 << 20:
            chunk = sock.recv(65536)
            if not chunk:
                break
            drained += len(chunk)


def _is_live(path: Path) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(os.fspath(path))
    except OSError:
        return False
    finally:
        probe.close()
    return True


__all__ = ["AGENT_NAME", "AgentServer", "peer_credentials", "systemd_listen_fd"]
