"""Challenge responders: how hsmcert proves control of each name to the ACME server.

Every responder answers one challenge type and undoes what it did in :meth:`Responder.cleanup`, which the
order flow (:mod:`hsmcert.acme.client`) calls on success and on failure alike.

- :class:`Webroot` (HTTP-01): writes ``DIR/.well-known/acme-challenge/TOKEN`` for a web server whose
  document root is ``DIR``.
- :class:`ChallengeDir` (HTTP-01): writes ``DIR/TOKEN``; the nginx sites of ``hsmcert nginx --http-listen``
  serve ``OUT_DIR/acme-challenge/`` this way (:func:`nginx_site`), without a reload.
- :class:`Standalone` (HTTP-01): acme's own small HTTP server on a port, for the length of the order.
- :class:`DnsHooks` (DNS-01): user commands that publish and remove the TXT record (like certbot's manual
  hooks), then a wait for the record to propagate. The commands run through ``/bin/sh -c`` with these
  variables in their environment:

  =============================  ==========================================================
  ``HSMCERT_ACME_DOMAIN``        the name being validated (``example.com`` for ``*.example.com``)
  ``HSMCERT_ACME_RECORD_NAME``   the TXT record's name, ``_acme-challenge.example.com``
  ``HSMCERT_ACME_TXT_VALUE``     the TXT record's value
  ``HSMCERT_ACME_IDENTIFIER``    the identifier as ordered (``*.example.com``)
  =============================  ==========================================================
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hsmcert.errors import HsmcertError, UsageError

if TYPE_CHECKING:
    from acme import messages

    from hsmcert.acme.keys import AccountKey

HOOK_TIMEOUT = 300.0
"""Seconds one DNS hook command may run."""
_MODE_FILE = 0o644
_MODE_DIR = 0o755


class Responder:
    """One way to answer challenges of :attr:`challenge_type` (``http-01`` or ``dns-01``)."""

    challenge_type = ""
    description = ""

    def present(self, identifier: str, challb: messages.ChallengeBody, key: AccountKey) -> None:
        raise NotImplementedError

    def ready(self) -> None:
        """Called once everything is presented, before the server is told to validate."""

    def cleanup(self) -> list[str]:
        """Undo every :meth:`present`; returns the problems met (never raises)."""
        return []


def _token(challb: messages.ChallengeBody) -> str:
    return str(challb.chall.encode("token"))


@dataclass
class ChallengeDir(Responder):
    """HTTP-01 answers as files ``DIR/TOKEN`` (what a web server serves at ``/.well-known/acme-challenge/``)."""

    directory: Path
    challenge_type = "http-01"
    written: list[Path] = field(default_factory=list)
    created: list[Path] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.description = f"files in {self.directory}"

    def _make_dirs(self) -> None:
        missing: list[Path] = []
        here = self.directory
        while not here.exists():
            missing.append(here)
            here = here.parent
        for path in reversed(missing):
            try:
                path.mkdir(mode=_MODE_DIR)
                os.chmod(path, _MODE_DIR)  # readable by the web server's user, whatever the umask
            except OSError as exc:
                raise HsmcertError(
                    f"Cannot create {path}: {exc.strerror}.", "Check the permissions."
                ) from exc
            self.created.append(path)

    def present(self, identifier: str, challb: messages.ChallengeBody, key: AccountKey) -> None:
        _, validation = challb.chall.response_and_validation(key.jwk)
        self._make_dirs()
        target = self.directory / _token(challb)
        tmp = target.with_name(f".{target.name}.tmp")
        try:
            tmp.write_text(str(validation))
            os.chmod(tmp, _MODE_FILE)
            os.replace(tmp, target)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise HsmcertError(f"Cannot write {target}: {exc.strerror}.", "Check the permissions.") from exc
        self.written.append(target)

    def cleanup(self) -> list[str]:
        problems: list[str] = []
        for path in self.written:
            try:
                path.unlink(missing_ok=True)
            except OSError as exc:
                problems.append(f"cannot remove {path}: {exc.strerror}")
        for path in reversed(self.created):
            with contextlib.suppress(OSError):
                path.rmdir()  # only if it is empty: nothing of anyone else is removed
        self.written, self.created = [], []
        return problems


class Webroot(ChallengeDir):
    """HTTP-01 answers under a web server's document root: ``ROOT/.well-known/acme-challenge/TOKEN``."""

    def __init__(self, root: Path) -> None:
        if not Path(root).is_dir():
            raise UsageError(f"--webroot {root}: no such directory.", "Give the web server's document root.")
        super().__init__(Path(root) / ".well-known" / "acme-challenge")
        self.description = f"webroot {root}"


def nginx_site(out_dir: Path) -> ChallengeDir:
    """The responder for a site written by ``hsmcert nginx --http-listen ... -o OUT_DIR``."""
    from hsmcert.nginx import acme_challenge_dir

    if not Path(out_dir).is_dir():
        raise UsageError(
            f"--nginx {out_dir}: no such directory.", "Give the --out-dir of hsmcert nginx --http-listen."
        )
    responder = ChallengeDir(acme_challenge_dir(Path(out_dir)))
    responder.description = f"the nginx site in {out_dir}"
    return responder


class Standalone(Responder):
    """A short-lived HTTP server (acme's HTTP-01 server) on ``address:port`` while the order runs."""

    challenge_type = "http-01"

    def __init__(self, port: int = 80, address: str = "") -> None:
        from acme import standalone

        self.description = f"a standalone HTTP server on port {port}"
        self._resources: set[Any] = set()
        try:
            self._server = standalone.HTTP01Server((address, port), self._resources)
        except OSError as exc:
            raise HsmcertError(
                f"Cannot listen on port {port} for HTTP-01: {exc.strerror}.",
                "Stop what listens there (or run as a user allowed to bind it), or use --webroot or --nginx.",
            ) from exc
        self._thread = threading.Thread(target=self._server.serve_forever, name="acme-http01", daemon=True)
        self._thread.start()

    def present(self, identifier: str, challb: messages.ChallengeBody, key: AccountKey) -> None:
        from acme import standalone

        response, validation = challb.chall.response_and_validation(key.jwk)
        self._resources.add(
            standalone.HTTP01RequestHandler.HTTP01Resource(challb.chall, response, validation)
        )

    def cleanup(self) -> list[str]:
        self._resources.clear()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)
        return []


@dataclass
class DnsHooks(Responder):
    """DNS-01 through a present and a cleanup command (see the module docstring for their environment)."""

    present_command: str
    cleanup_command: str | None = None
    propagation_seconds: float = 60.0
    challenge_type = "dns-01"
    presented: list[dict[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.description = "DNS hooks"
        if not self.present_command.strip():
            raise UsageError(
                "--dns-hook-present is empty.", "Give the command that publishes the TXT record."
            )
        if self.propagation_seconds < 0:
            raise UsageError("--dns-propagation-seconds must be 0 or more.")

    def _run(self, command: str, env: dict[str, str], what: str) -> None:
        from hsmcert.agent.run import child_environment

        shell = shutil.which("sh") or "/bin/sh"
        try:
            result = subprocess.run(
                [shell, "-c", command],
                # the hook gets the record, not hsmcert's credentials (as deploy hooks)
                env=child_environment(os.environ, env),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=HOOK_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise HsmcertError(
                f"The DNS {what} hook for {env['HSMCERT_ACME_RECORD_NAME']} ran longer than {HOOK_TIMEOUT:.0f} s.",
                "Make the hook finish (it should publish the record and return).",
            ) from None
        if result.returncode != 0:
            said = (result.stderr or result.stdout).strip().splitlines()
            raise HsmcertError(
                f"The DNS {what} hook for {env['HSMCERT_ACME_RECORD_NAME']} failed with exit code "
                f"{result.returncode}" + (f": {said[-1]}" if said else "."),
                f"The command was: {command}",
            )

    def present(self, identifier: str, challb: messages.ChallengeBody, key: AccountKey) -> None:
        _, validation = challb.chall.response_and_validation(key.jwk)
        domain = identifier.removeprefix("*.")
        env = {
            "HSMCERT_ACME_DOMAIN": domain,
            "HSMCERT_ACME_IDENTIFIER": identifier,
            "HSMCERT_ACME_RECORD_NAME": str(challb.chall.validation_domain_name(domain)),
            "HSMCERT_ACME_TXT_VALUE": str(validation),
        }
        self.presented.append(env)  # cleaned up even if the hook fails half-way
        self._run(self.present_command, env, "present")

    def ready(self) -> None:
        if self.presented and self.propagation_seconds:
            time.sleep(self.propagation_seconds)

    def cleanup(self) -> list[str]:
        problems: list[str] = []
        if self.cleanup_command:
            for env in self.presented:
                try:
                    self._run(self.cleanup_command, env, "cleanup")
                except HsmcertError as exc:
                    problems.append(exc.message)
        self.presented = []
        return problems


__all__ = ["ChallengeDir", "DnsHooks", "Responder", "Standalone", "Webroot", "nginx_site"]
