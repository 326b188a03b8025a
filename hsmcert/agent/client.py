"""A Python client of the agent (the same protocol the C provider speaks).

>>> # with an agent running:
>>> # with AgentClient(default_socket_path()) as agent:
>>> #     agent.sign("managedhsm:myhsm:tls", "ES256", hashlib.sha256(b"data").digest())
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from hsmcert import __version__
from hsmcert.agent import protocol
from hsmcert.agent.protocol import Frame, Op, ProtocolError, Status, Tag
from hsmcert.errors import (
    EXIT_FAILURE,
    EXIT_NOT_FOUND,
    EXIT_PERMISSION,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    HsmcertError,
    UnreachableError,
)

CLIENT_NAME = f"hsmcert-python/{__version__}"
_EXIT = {
    Status.BAD_REQUEST: EXIT_USAGE,
    Status.NOT_FOUND: EXIT_NOT_FOUND,
    Status.DENIED: EXIT_PERMISSION,
    Status.UNAVAILABLE: EXIT_UNREACHABLE,
    Status.UNSUPPORTED: EXIT_USAGE,
}


class AgentError(HsmcertError):
    """The agent answered with an error status (``status``) and a message."""

    def __init__(self, status: Status, message: str) -> None:
        super().__init__(message, exit_code=_EXIT.get(status, EXIT_FAILURE))
        self.status = status


@dataclass(frozen=True)
class PublicKey:
    spki: bytes
    kty: str
    version: str


class AgentClient:
    """One connection to the agent, opened on first use and reopened after the agent closed it."""

    def __init__(self, path: Path | str, *, timeout: float = 60.0, client: str = CLIENT_NAME) -> None:
        self.path = Path(path)
        self.timeout = timeout
        self.client = client
        self._sock: socket.socket | None = None
        self._pid = 0

    def __enter__(self) -> AgentClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _connect(self) -> socket.socket:
        if self._sock is not None and self._pid == os.getpid():
            return self._sock
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(os.fspath(self.path))
        except OSError as exc:
            sock.close()
            raise UnreachableError(
                f"Cannot reach the hsmcert agent at {self.path}: {exc.strerror or exc}.",
                "Start it with: hsmcert agent --socket " + str(self.path),
            ) from exc
        self._sock, self._pid = sock, os.getpid()
        return sock

    # -- raw exchange -----------------------------------------------------------------------------------

    def exchange(self, data: bytes) -> bytes | None:
        """Send raw bytes, read one response frame (None when the agent closed the connection)."""
        sock = self._connect()
        try:
            sock.sendall(data)
            response = protocol.read_frame(lambda n: protocol.recv_exactly(sock, n))
        except (OSError, ProtocolError):
            self.close()
            raise
        if response is None:
            self.close()
        return response

    def request(self, op: Op, fields: dict[Tag, bytes]) -> Frame:
        """Send one request and return the OK response; raise AgentError for an error status."""
        data = protocol.encode_frame(op, fields)
        try:
            response = self.exchange(data)
        except (BrokenPipeError, ConnectionResetError):
            response = None
        if response is None:
            # The agent closed an idle or old connection (or restarted): one fresh attempt.
            self.close()
            response = self.exchange(data)
            if response is None:
                raise UnreachableError(f"The hsmcert agent at {self.path} closed the connection.")
        frame = protocol.decode_frame(response)
        status = protocol.check_response(frame, op)
        if status is not Status.OK:
            if status is Status.BAD_REQUEST:
                self.close()
            raise AgentError(status, frame.text(Tag.MESSAGE) or status.name)
        return frame

    # -- operations -------------------------------------------------------------------------------------

    def hello(self, versions: bytes = bytes(protocol.SUPPORTED_VERSIONS)) -> tuple[int, str]:
        """(chosen protocol version, agent name)."""
        frame = self.request(Op.HELLO, {Tag.VERSIONS: versions, Tag.CLIENT: self.client.encode()})
        return frame.fields[Tag.VERSIONS][0], frame.text(Tag.AGENT) or ""

    def pubkey(self, ref: str) -> PublicKey:
        frame = self.request(Op.PUBKEY, {Tag.KEYREF: ref.encode()})
        return PublicKey(
            frame.fields[Tag.SPKI],
            frame.fields[Tag.KEYTYPE].decode("ascii"),
            frame.fields[Tag.KEYVERSION].decode("ascii"),
        )

    def sign(self, ref: str, alg: str, digest: bytes, *, version: str | None = None) -> bytes:
        fields = {Tag.KEYREF: ref.encode(), Tag.ALG: alg.encode(), Tag.DIGEST: digest}
        if version:
            fields[Tag.KEYVERSION] = version.encode()
        return self.request(Op.SIGN, fields).fields[Tag.SIGNATURE]

    def decrypt(self, ref: str, alg: str, ciphertext: bytes, *, version: str | None = None) -> bytes:
        fields = {Tag.KEYREF: ref.encode(), Tag.ALG: alg.encode(), Tag.CIPHERTEXT: ciphertext}
        if version:
            fields[Tag.KEYVERSION] = version.encode()
        return self.request(Op.DECRYPT, fields).fields[Tag.PLAINTEXT]


__all__ = ["AgentClient", "AgentError", "PublicKey"]
