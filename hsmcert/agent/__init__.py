"""The hsmcert agent: a local daemon that signs and decrypts with HSM keys for the OpenSSL provider.

The agent owns credentials, pooled HTTPS connections to the HSM, cached public keys, retries and an
audit log; clients (the C provider, :mod:`hsmcert.agent.client`) speak the small framed protocol of
``docs/agent-protocol.md`` over a Unix socket. This module imports nothing heavy.
"""

from __future__ import annotations

import os
from pathlib import Path

SOCKET_ENV = "HSMCERT_AGENT_SOCKET"
SOCKET_NAME = "agent.sock"


def default_socket_path() -> Path:
    """Where the agent listens unless told otherwise.

    ``$HSMCERT_AGENT_SOCKET`` if set; for root ``/run/hsmcert/agent.sock`` (the systemd unit's
    ``RuntimeDirectory``); otherwise ``$XDG_RUNTIME_DIR/hsmcert/agent.sock``, falling back to
    ``/tmp/hsmcert-<uid>/agent.sock``.

    >>> import os
    >>> os.environ["HSMCERT_AGENT_SOCKET"] = "/srv/a.sock"
    >>> str(default_socket_path())
    '/srv/a.sock'
    >>> del os.environ["HSMCERT_AGENT_SOCKET"]
    """
    explicit = os.environ.get(SOCKET_ENV)
    if explicit:
        return Path(explicit)
    if os.geteuid() == 0:
        return Path("/run/hsmcert") / SOCKET_NAME
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and Path(runtime).is_dir():
        return Path(runtime) / "hsmcert" / SOCKET_NAME
    return Path(f"/tmp/hsmcert-{os.geteuid()}") / SOCKET_NAME  # noqa: S108 - a private 0700/0750 dir


__all__ = ["SOCKET_ENV", "default_socket_path"]
