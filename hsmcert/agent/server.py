"""The agent's Unix-socket server: one selector thread for every socket, a fixed pool of workers.

The socket is created mode 0660 inside a directory created mode 0750 (``group`` makes both
group-owned, e.g. by ``www-data`` for nginx workers); under systemd socket activation
(``LISTEN_FDS``/``LISTEN_PID``) the socket passed as fd 3 is used as it is and left in place on exit.
Each caller's uid and pid come from ``SO_PEERCRED`` and go into the audit log and the allow-list check.

No client can stop the agent or starve the others:

- One thread (:meth:`AgentServer.serve_forever`) owns the listening socket and every connection. It reads
  frames without blocking into a buffer per connection that never exceeds one frame (4 + 65536 bytes), and
  hands each whole frame to one of ``workers`` threads, which call the :class:`Backend`. A connection has at
  most one request in flight, so its answers come in order; it is not read again until its answer is sent.
- At most ``max_connections`` connections are open. One more evicts a connection whose frame has been
  arriving for over 0.5 s, else the one idle longest (the provider reconnects on demand), or, when every
  connection is busy, is refused with an UNAVAILABLE frame. Connections cost no thread.
- A frame must arrive whole within ``frame_timeout`` seconds of its first byte (and an answer must be taken
  by the client as fast): a client that trickles bytes is answered BAD_REQUEST and disconnected. A
  connection that sends nothing for ``idle_timeout`` seconds is closed.
- An error while accepting or serving one connection is logged and ends that connection at most; running
  out of file descriptors pauses accepting briefly.

:meth:`AgentServer.stop` (called from the SIGTERM/SIGINT handlers of ``hsmcert agent``) stops accepting,
waits briefly for operations in flight, closes the connections and removes the socket file. The socket
file is removed only then: an agent that dies of an error leaves it, and the next agent replaces it.
"""

from __future__ import annotations

import collections
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
from hsmcert.agent.protocol import HEADER_SIZE, Frame, Op, ProtocolError, Status, Tag
from hsmcert.errors import AlreadyExistsError, HsmcertError, UsageError

log = logging.getLogger("hsmcert.agent")

AGENT_NAME = f"hsmcert-agent/{__version__}"
SD_LISTEN_FDS_START = 3
DEFAULT_MAX_CONNECTIONS = 256
DEFAULT_WORKERS = 16
DEFAULT_FRAME_TIMEOUT = 5.0
"""Seconds from a frame's first byte until the whole frame must have arrived."""
IDLE_TIMEOUT = 300.0
"""A connection that sends nothing for this long is closed (the provider reconnects on demand)."""
LINGER = 0.5
"""After an error that ends a connection, how long the agent reads and drops what the client still sends,
so that closing does not reset the connection before the client has read the error."""
SWEEP_INTERVAL = 0.1
SLOW_FRAME = 0.5
"""A frame still arriving after this many seconds may be cut off early to make room for a new connection
(a client on the same machine sends a whole frame in microseconds)."""
ACCEPT_PAUSE = 0.2
"""Accepting pauses this long after the process ran out of file descriptors or memory."""


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


def check_limits(max_connections: int, workers: int, frame_timeout: float, idle_timeout: float) -> None:
    """Refuse limits the server cannot work with (a UsageError naming the option)."""
    if not 1 <= max_connections <= 1_000_000:
        raise UsageError("--max-connections must be between 1 and 1000000.")
    if not 1 <= workers <= 1024:
        raise UsageError("--workers must be between 1 and 1024.")
    if not 0 < frame_timeout <= 3600:
        raise UsageError("--frame-timeout must be more than 0 and at most 3600 seconds.")
    if not 0 < idle_timeout <= 86400:
        raise UsageError("--idle-timeout must be more than 0 and at most 86400 seconds.")


class _Connection:
    """State of one client connection (owned by the selector thread, except ``client``)."""

    __slots__ = (
        "buffer",
        "busy",
        "client",
        "drained",
        "draining",
        "events",
        "frame_started",
        "last_active",
        "out",
        "out_started",
        "pid",
        "sock",
        "uid",
        "wanted",
    )

    def __init__(self, sock: socket.socket, now: float) -> None:
        self.sock = sock
        self.uid, self.pid = peer_credentials(sock)
        self.client: str | None = None
        self.buffer = bytearray()
        self.wanted = HEADER_SIZE
        """Bytes of the current frame to read: the length field, then the whole frame."""
        self.frame_started: float | None = None
        self.last_active = now
        self.busy = False
        self.out = b""
        self.out_started = 0.0
        self.draining: float | None = None
        """When set: the connection ends; what the client sends is dropped until this time."""
        self.drained = 0
        self.events = 0
        """The selector events the connection is registered for (0: not registered)."""


class _WorkQueue:
    """The frames waiting for a worker. The worker that went idle last takes the next frame (a stack of
    idle workers, not a queue): under a light load the same few threads serve every request, with their
    caches warm, instead of each request waking the thread that has slept longest."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: collections.deque[tuple[_Connection, bytes] | None] = collections.deque()
        self._idle: list[_Waiter] = []

    def put(self, item: tuple[_Connection, bytes] | None) -> None:
        with self._lock:
            if not self._idle:
                self._pending.append(item)
                return
            waiter = self._idle.pop()
        waiter.item = item
        waiter.ready.release()

    def get(self, waiter: _Waiter) -> tuple[_Connection, bytes] | None:
        with self._lock:
            if self._pending:
                return self._pending.popleft()
            self._idle.append(waiter)
        waiter.ready.acquire()  # released by put() with the item set
        return waiter.item


class _Waiter:
    """One worker's place in :class:`_WorkQueue`: it sleeps on ``ready`` until given an item."""

    __slots__ = ("item", "ready")

    def __init__(self) -> None:
        self.item: tuple[_Connection, bytes] | None = None
        self.ready = threading.Lock()
        self.ready.acquire()


class _Result:
    """A worker's answer to one frame, handed back to the selector thread."""

    __slots__ = ("close", "conn", "data")

    def __init__(self, conn: _Connection, data: bytes, close: bool) -> None:
        self.conn, self.data, self.close = conn, data, close


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
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        workers: int = DEFAULT_WORKERS,
        frame_timeout: float = DEFAULT_FRAME_TIMEOUT,
        idle_timeout: float = IDLE_TIMEOUT,
    ) -> None:
        if socket_path is None and listen_fd is None:
            raise UsageError("The agent needs a socket path or a socket from systemd.")
        check_limits(max_connections, workers, frame_timeout, idle_timeout)
        self.backend = backend
        self.socket_path = Path(socket_path) if socket_path is not None else None
        self.listen_fd = listen_fd
        self.audit = audit or AuditLog()
        self.group = group
        self.max_connections = max_connections
        self.workers = workers
        self.frame_timeout = frame_timeout
        self.idle_timeout = idle_timeout
        self._listener: socket.socket | None = None
        self._owns_path = False
        self._stopping = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._wake_lock = threading.RLock()  # RLock: stop() may run in a signal handler of this thread
        self._state = threading.RLock()
        """Held by the selector thread while it handles events, and by a worker sending its answer: the
        connection sets and the selector's registrations change under it only."""
        self._selector: selectors.BaseSelector | None = None
        self._connections: set[_Connection] = set()
        self._idle: collections.OrderedDict[_Connection, None] = collections.OrderedDict()
        """Connections waiting for a frame, the longest idle first."""
        self._reading: set[_Connection] = set()
        """Connections in the middle of a frame (checked against the frame deadline)."""
        self._writing: set[_Connection] = set()
        self._draining: set[_Connection] = set()
        self._requests = _WorkQueue()
        self._results: collections.deque[_Result] = collections.deque()
        self._threads: list[threading.Thread] = []
        self._accept_paused_until = 0.0
        self._refused = 0
        self._refused_logged = 0.0

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
                raise AlreadyExistsError(
                    f"{path} exists and is not a socket; the agent will not replace it.",
                    "Remove it yourself, or give the agent another --socket.",
                )
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
        sock.listen(128)
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

    def _start_workers(self) -> None:
        for n in range(self.workers):
            thread = threading.Thread(target=self._work, name=f"hsmcert-agent-worker-{n}", daemon=True)
            try:
                thread.start()
            except RuntimeError as exc:  # the process may not start more threads (ulimit -u, memory)
                if not self._threads:
                    raise HsmcertError(f"The agent cannot start a worker thread: {exc}.") from exc
                log.warning("started %d of %d workers: %s", len(self._threads), self.workers, exc)
                break
            self._threads.append(thread)

    # -- running ----------------------------------------------------------------------------------------

    def serve_forever(self) -> None:
        """Serve until :meth:`stop`, then clean up and remove the socket file.

        An error that escapes the loop itself (not one connection's) ends the agent without removing the
        socket file: only a requested stop does.
        """
        if self._listener is None:
            self.bind()
        assert self._listener is not None
        self._start_workers()
        selector = selectors.DefaultSelector()
        self._selector = selector
        selector.register(self._listener, selectors.EVENT_READ)
        selector.register(self._wake_r, selectors.EVENT_READ)
        clean = False
        try:
            next_sweep = time.monotonic() + SWEEP_INTERVAL
            while not self._stopping.is_set():
                now = time.monotonic()
                timeout = max(0.0, next_sweep - now)
                if self._accept_paused_until and now >= self._accept_paused_until:
                    self._accept_paused_until = 0.0
                    selector.register(self._listener, selectors.EVENT_READ)
                ready = selector.select(timeout)
                with self._state:  # workers answer on their own connections meanwhile (_answer_directly)
                    for key, mask in ready:
                        if key.fileobj is self._listener:
                            self._accept()
                        elif key.fileobj == self._wake_r:
                            with contextlib.suppress(OSError):
                                os.read(self._wake_r, 4096)
                        else:
                            self._guarded(key.data, self._on_event, mask)
                    self._deliver_results()
                    if time.monotonic() >= next_sweep:
                        self._sweep(time.monotonic())
                        next_sweep = time.monotonic() + SWEEP_INTERVAL
            clean = True
        finally:
            self._shutdown(remove_socket=clean)

    def stop(self) -> None:
        """Ask the server to stop (safe from a signal handler or another thread)."""
        self._stopping.set()
        self._wake()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    def _wake(self) -> None:
        with self._wake_lock:
            if self._wake_w >= 0:
                with contextlib.suppress(OSError):
                    os.write(self._wake_w, b"x")

    def _guarded(self, conn: _Connection, action: Any, *args: Any) -> None:
        """Run ``action(conn, *args)``; an error there ends this connection, never the agent."""
        try:
            action(conn, *args)
        except Exception:
            log.exception("error on a connection of uid %s pid %s; closing it", conn.uid, conn.pid)
            self._close(conn)

    def _accept(self) -> None:
        assert self._listener is not None and self._selector is not None
        for _ in range(64):  # then let the connections that are already open have their turn
            try:
                sock, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    self._note_refusal(f"cannot accept a connection: {exc.strerror}")
                    self._selector.unregister(self._listener)
                    self._accept_paused_until = time.monotonic() + ACCEPT_PAUSE
                else:
                    log.warning("accepting a connection failed: %s", exc)
                return
            try:
                self._admit(sock)
            except Exception:
                log.exception("cannot set up a new connection; closing it")
                with contextlib.suppress(OSError):
                    sock.close()

    def _admit(self, sock: socket.socket) -> None:
        assert self._selector is not None
        sock.setblocking(False)
        if len(self._connections) >= self.max_connections and not self._make_room():
            self._note_refusal(f"refused a connection: {len(self._connections)} connections are open")
            busy = f"The agent serves {self.max_connections} connections already; try again later."
            with contextlib.suppress(OSError):
                sock.send(_error_frame(Status.UNAVAILABLE, busy))
            sock.close()
            return
        conn = _Connection(sock, time.monotonic())
        self._connections.add(conn)
        self._idle[conn] = None
        self._watch(conn, selectors.EVENT_READ)

    def _make_room(self) -> bool:
        """Close one connection for a new one: the one whose frame has been arriving for longest if that is
        over :data:`SLOW_FRAME` seconds, else the one idle longest; False when every connection is busy."""
        now = time.monotonic()
        slowest = min(self._reading, key=lambda c: c.frame_started or now, default=None)
        if slowest is not None and now - (slowest.frame_started or now) > SLOW_FRAME:
            self._close(slowest)
            return True
        if self._idle:
            self._close(next(iter(self._idle)))
            return True
        return False

    def _note_refusal(self, message: str) -> None:
        """Log refused connections at most once a second (a flood must not flood the log)."""
        self._refused += 1
        now = time.monotonic()
        if now - self._refused_logged >= 1.0:
            log.warning("%s (%d refused since the last message)", message, self._refused)
            self._refused, self._refused_logged = 0, now

    # -- reading and writing (selector thread) ------------------------------------------------------------

    def _on_event(self, conn: _Connection, mask: int) -> None:
        if conn not in self._connections:
            return
        if mask & selectors.EVENT_WRITE:
            self._flush(conn)
        elif conn.draining is not None:
            self._drain(conn)
        elif mask & selectors.EVENT_READ:
            self._read(conn)

    def _read(self, conn: _Connection) -> None:
        while True:  # the header, then the body, which has usually arrived with it: one event, one frame
            try:
                data = conn.sock.recv(conn.wanted - len(conn.buffer))
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self._close(conn)
                return
            now = time.monotonic()
            if not data:
                if conn.buffer:
                    size = len(conn.buffer)
                    if conn.wanted == HEADER_SIZE:
                        error = ProtocolError("short", f"The frame ended after {size} of the 4 length bytes.")
                    else:
                        body = conn.wanted - HEADER_SIZE
                        error = ProtocolError(
                            "short",
                            f"The connection closed {size - HEADER_SIZE} bytes into a {body}-byte frame.",
                        )
                    self._refuse_now(conn, error, conn.frame_started or now)
                else:
                    self._close(conn)
                return
            if not conn.buffer:
                conn.frame_started = now
                self._idle.pop(conn, None)
                self._reading.add(conn)
            conn.buffer += data
            conn.last_active = now
            if len(conn.buffer) < conn.wanted:
                return
            if conn.wanted == HEADER_SIZE:
                try:
                    conn.wanted = HEADER_SIZE + protocol.frame_length(bytes(conn.buffer))
                except ProtocolError as exc:
                    self._refuse_now(conn, exc, conn.frame_started or now)
                    return
                continue
            frame = bytes(conn.buffer)
            conn.buffer = bytearray()
            conn.wanted = HEADER_SIZE
            conn.frame_started = None
            self._reading.discard(conn)
            conn.busy = True
            self._watch(conn, 0)  # one request in flight: the next frame is read after the answer is sent
            self._requests.put((conn, frame))
            return

    def _refuse_now(self, conn: _Connection, exc: ProtocolError, started: float) -> None:
        """Answer a frame that cannot be read with BAD_REQUEST from the selector thread, and end the
        connection."""
        self._send(conn, self._refuse(conn, exc, started), close=True)

    def _watch(self, conn: _Connection, events: int) -> None:
        """Wait for ``events`` on the connection (0: for none)."""
        assert self._selector is not None
        if events == conn.events:
            return
        if not conn.events:
            self._selector.register(conn.sock, events, conn)
        elif events:
            self._selector.modify(conn.sock, events, conn)
        else:
            self._selector.unregister(conn.sock)
        conn.events = events

    def _send(self, conn: _Connection, data: bytes, *, close: bool) -> None:
        """Start sending ``data``; then either read the next frame or (``close``) end the connection."""
        conn.busy = False
        self._reading.discard(conn)
        self._idle.pop(conn, None)
        conn.buffer = bytearray()
        conn.wanted = HEADER_SIZE
        conn.frame_started = None
        if close:
            conn.draining = time.monotonic() + LINGER
        conn.out = data
        conn.out_started = time.monotonic()
        self._flush(conn)

    def _flush(self, conn: _Connection) -> None:
        if conn.out:
            try:
                sent = conn.sock.send(conn.out)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                self._close(conn)
                return
            conn.out = conn.out[sent:]
        if conn.out:
            self._watch(conn, selectors.EVENT_WRITE)
            self._writing.add(conn)
            return
        self._writing.discard(conn)
        if conn.draining is not None:
            with contextlib.suppress(OSError):
                conn.sock.shutdown(socket.SHUT_WR)
            self._draining.add(conn)
        else:
            conn.last_active = time.monotonic()
            self._idle[conn] = None
        self._watch(conn, selectors.EVENT_READ)

    def _drain(self, conn: _Connection) -> None:
        """Drop what a client whose connection ends still sends, until it closes (bounded in time and size)."""
        try:
            data = conn.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        conn.drained += len(data)
        if not data or conn.drained > 1 << 20:
            self._close(conn)

    def _close(self, conn: _Connection) -> None:
        if conn not in self._connections:
            return
        self._connections.discard(conn)
        self._idle.pop(conn, None)
        self._reading.discard(conn)
        self._writing.discard(conn)
        self._draining.discard(conn)
        if self._selector is not None and conn.events:
            conn.events = 0
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(conn.sock)
        with contextlib.suppress(OSError):
            conn.sock.close()

    def _deliver_results(self) -> None:
        while self._results:
            result = self._results.popleft()
            if result.conn in self._connections:
                self._guarded(result.conn, self._answer, result)

    def _answer(self, conn: _Connection, result: _Result) -> None:
        self._send(conn, result.data, close=result.close)

    def _sweep(self, now: float) -> None:
        """Enforce the frame deadline, the idle timeout and the linger time."""
        for conn in [c for c in self._reading if now - (c.frame_started or now) > self.frame_timeout]:
            error = ProtocolError(
                "short",
                f"The frame did not arrive within {self.frame_timeout:g} s of its first byte "
                f"({len(conn.buffer)} of {conn.wanted} bytes came).",
            )
            self._guarded(conn, self._refuse_now, error, conn.frame_started or now)
        for conn in [c for c in self._writing if now - c.out_started > self.frame_timeout]:
            self._close(conn)  # the client does not read its answer
        for conn in [c for c in self._draining if c.draining is not None and now > c.draining]:
            self._close(conn)
        while self._idle:
            oldest = next(iter(self._idle))
            if now - oldest.last_active <= self.idle_timeout:
                break
            self._close(oldest)

    # -- workers ------------------------------------------------------------------------------------------

    def _work(self) -> None:
        waiter = _Waiter()
        while True:
            item = self._requests.get(waiter)
            if item is None:
                return
            conn, data = item
            if self._stopping.is_set():
                continue
            try:
                response, close = self._handle(conn, data)
            except Exception:  # _handle answers every error itself; this is a last resort
                log.exception("internal error answering uid %s pid %s", conn.uid, conn.pid)
                response = _error_frame(Status.INTERNAL, "The agent failed unexpectedly; see its log.")
                close = True
            try:
                answered = not close and self._answer_directly(conn, response)
            except Exception:  # the connection's trouble, never the worker's end
                log.exception("error answering uid %s pid %s; closing the connection", conn.uid, conn.pid)
                with self._state:
                    self._close(conn)
                continue
            if not answered:
                self._results.append(_Result(conn, response, close))
                self._wake()

    def _answer_directly(self, conn: _Connection, data: bytes) -> bool:
        """Send the answer from the worker and watch the connection for its next frame again, sparing the
        selector thread a wake-up per request; False when the answer does not go out at once (the client
        does not read), or the server stops: the selector thread sends it then."""
        with self._state:
            if self._stopping.is_set() or conn not in self._connections:
                return False
            try:
                sent = conn.sock.send(data)
            except (BlockingIOError, InterruptedError):
                return False
            except OSError:
                self._close(conn)
                return True
            if sent < len(data):
                self._results.append(_Result(conn, data[sent:], False))
                self._wake()
                return True
            self._send(conn, b"", close=False)  # nothing left to send: back to reading, as after a flush
            return True

    def _shutdown(self, *, remove_socket: bool) -> None:
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.close()
        if remove_socket and self._owns_path and self.socket_path is not None:
            with contextlib.suppress(FileNotFoundError):
                self.socket_path.unlink()
        for _ in self._threads:
            self._requests.put(None)
        deadline = time.monotonic() + 5.0
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        # Answers of the operations that finished meanwhile still go out.
        while self._results:
            result = self._results.popleft()
            with contextlib.suppress(OSError):
                result.conn.sock.setblocking(True)
                result.conn.sock.settimeout(1.0)
                result.conn.sock.sendall(result.data)
        with self._state:
            for conn in list(self._connections):
                self._close(conn)
        if self._selector is not None:
            self._selector.close()
        with self._wake_lock:
            wake_w, self._wake_w = self._wake_w, -1
            os.close(wake_w)
            os.close(self._wake_r)

    # -- one request (worker threads) ---------------------------------------------------------------------

    def _refuse(self, conn: _Connection, exc: ProtocolError, started: float, op: str = "invalid") -> bytes:
        self.audit.write(
            uid=conn.uid,
            pid=conn.pid,
            client=conn.client,
            op=op,
            result="bad_request",
            duration_ms=(time.monotonic() - started) * 1000,
            error=f"{exc.reason}: {exc.message}",
        )
        return _error_frame(Status.BAD_REQUEST, exc.message)

    def _handle(self, conn: _Connection, data: bytes) -> tuple[bytes, bool]:
        """The answer to one whole frame, and whether the connection must then close."""
        started = time.monotonic()
        try:
            frame = protocol.decode_frame(data)
        except ProtocolError as exc:
            return self._refuse(conn, exc, started), True
        try:
            op = protocol.check_request(frame)
        except ProtocolError as exc:
            name = Op(frame.code).name.lower() if frame.code in set(Op) else "invalid"
            return self._refuse(conn, exc, started, name), False
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
        return response, False

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


__all__ = [
    "AGENT_NAME",
    "DEFAULT_FRAME_TIMEOUT",
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_WORKERS",
    "IDLE_TIMEOUT",
    "AgentServer",
    "check_limits",
    "peer_credentials",
    "systemd_listen_fd",
]
