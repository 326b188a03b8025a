"""The one error type hsmcert raises for expected failures.

Every failure a user can cause or fix (a bad reference, a missing role, an unreachable HSM, an existing
output file) is an :class:`HsmcertError`. It carries a one-line ``message`` saying what went wrong and a
``remedy`` saying what to do about it. The CLI prints both and exits with ``exit_code``; library callers
catch :class:`HsmcertError` (or one of the few subclasses below when they care about the kind).

Anything else that escapes is a bug in hsmcert.
"""

from __future__ import annotations

# Exit codes documented in docs/cli.md.
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_PERMISSION = 4
EXIT_UNREACHABLE = 5
"""Try again later: unreachable, or throttling (429) or failing (5xx) after the retries."""
EXIT_VERIFY_FAILED = 6
EXIT_EXISTS = 7
"""Something that was to be created exists already (a key, an output file): a re-run pipeline can tell it
from a usage error; ``key create --exist-ok`` and ``--force`` are the ways to accept it."""
EXIT_NO_IDENTITY = 8
"""A machine has no managed identity (or not the one named) to grant access to (``hsmcert grant``)."""
EXIT_INTERRUPTED = 130

# The name of each exit code: the ``code`` of a JSON error document (docs/cli.md).
EXIT_NAMES = {
    EXIT_FAILURE: "failure",
    EXIT_USAGE: "usage_error",
    EXIT_NOT_FOUND: "not_found",
    EXIT_PERMISSION: "permission_denied",
    EXIT_UNREACHABLE: "try_again_later",
    EXIT_VERIFY_FAILED: "verification_failed",
    EXIT_EXISTS: "already_exists",
    EXIT_NO_IDENTITY: "no_identity",
    EXIT_INTERRUPTED: "interrupted",
}


class HsmcertError(Exception):
    """An expected failure, with the sentence to show and what the user can do about it."""

    exit_code: int = EXIT_FAILURE
    transient: bool = False
    """Whether the same request may succeed later, unchanged (throttling, a 5xx, a dropped connection)."""

    def __init__(self, message: str, remedy: str | None = None, *, exit_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.remedy = remedy
        if exit_code is not None:
            self.exit_code = exit_code

    def diagnostics(self) -> str:
        """The message followed by the remedy, as shown to a user."""
        if self.remedy:
            return f"{self.message}\n{self.remedy}"
        return self.message


class UsageError(HsmcertError):
    """The input itself is wrong: a malformed reference, subject, SAN or option value."""

    exit_code = EXIT_USAGE


class NotFoundError(HsmcertError):
    """A key, version, file or service that was named does not exist."""

    exit_code = EXIT_NOT_FOUND


class PermissionDeniedError(HsmcertError):
    """The HSM refused the caller (401/403): the remedy names the role, the scope and the grant command."""

    exit_code = EXIT_PERMISSION


class UnreachableError(HsmcertError):
    """The HSM, the emulator or the agent could not be reached in time."""

    exit_code = EXIT_UNREACHABLE
    transient = True


class TlsTrustError(UnreachableError):
    """The endpoint's TLS certificate is not trusted (unknown CA, wrong host name): retrying will not help."""

    transient = False


class ServiceError(HsmcertError):
    """The service answered with an error that none of the kinds above covers (a 409, a 429 or 5xx that
    outlasted the retries), with the facts of its answer.

    ``status``: the HTTP status; ``code``: the service's error code and inner code ("Conflict",
    "Throttled/TooManyRequests"; empty when the body had none); ``retry_after``: seconds the service asked
    to wait (``Retry-After``), or None; ``transient``: True for 408, 429 and 5xx. A transient error exits
    with :data:`EXIT_UNREACHABLE` (try again later), any other with :data:`EXIT_FAILURE`.
    """

    TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})

    def __init__(
        self,
        message: str,
        remedy: str | None = None,
        *,
        status: int | None = None,
        code: str = "",
        retry_after: float | None = None,
        transient: bool | None = None,
        exit_code: int | None = None,
    ) -> None:
        super().__init__(message, remedy, exit_code=exit_code)
        self.status = status
        self.code = code
        self.retry_after = retry_after
        self.transient = status in self.TRANSIENT_STATUS if transient is None else transient
        if exit_code is None:
            self.exit_code = EXIT_UNREACHABLE if self.transient else EXIT_FAILURE


class AlreadyExistsError(HsmcertError):
    """What was to be created exists already: a key of that name, a file at an output path."""

    exit_code = EXIT_EXISTS


class VerificationError(HsmcertError):
    """A signature, certificate or chain did not verify."""

    exit_code = EXIT_VERIFY_FAILED
