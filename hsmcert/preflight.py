"""What ``nginx -t`` cannot see: checks ``hsmcert nginx --check`` makes before anything is written.

``nginx -t`` runs as root and only loads the key: it passes while nginx's workers, running as another user,
cannot open the agent's socket (every handshake then fails), and it passes when the certificate holds
another public key than the HSM key. :func:`worker_can_reach` and :func:`certificate_matches` close both
gaps; each failure is a :class:`~hsmcert.errors.VerificationError` (exit 6) that says what fixes it.

>>> worker_user_from("user  nginx staff;  # workers\\nworker_processes 4;\\n")
('nginx', 'staff')
>>> worker_user_from("# user nobody;\\nevents {}\\n")
(None, None)
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

from hsmcert.errors import HsmcertError, VerificationError

DEBIAN_WORKER_USER = "www-data"
"""The workers' user when nginx.conf has no ``user`` directive we can read (Debian's packaged nginx.conf)."""


def worker_user_from(conf_text: str) -> tuple[str | None, str | None]:
    """The ``user USER [GROUP];`` of a main nginx.conf (comments ignored), or (None, None)."""
    text = re.sub(r"#[^\n]*", "", conf_text)
    match = re.search(r'(?:^|[;{}])\s*user\s+"?([^\s;"]+)"?(?:\s+"?([^\s;"]+)"?)?\s*;', text)
    return (match.group(1), match.group(2)) if match else (None, None)


def main_conf_path(nginx: str) -> Path:
    """nginx's main configuration file, as its build says (``nginx -V``: ``--conf-path``)."""
    info = subprocess.run([nginx, "-V"], capture_output=True, text=True, timeout=30, check=False)
    match = re.search(r"--conf-path=(\S+)", info.stderr + info.stdout)
    return Path(match.group(1) if match else "/etc/nginx/nginx.conf")


@dataclass(frozen=True)
class Worker:
    """The account nginx's workers run as: name, uid, gid and every group they are in."""

    user: str
    uid: int
    gid: int
    groups: frozenset[int]
    source: str
    """Where the user came from (the nginx.conf, or Debian's default)."""

    @property
    def group_name(self) -> str:
        try:
            return grp.getgrgid(self.gid).gr_name
        except KeyError:
            return str(self.gid)


def worker(conf: Path) -> Worker:
    """The workers' account from ``conf``'s ``user`` directive, else Debian's default (www-data)."""
    try:
        user, group = worker_user_from(conf.read_text(errors="replace"))
    except OSError:
        user, group = None, None
    source = f"the user directive of {conf}" if user else f"Debian's default ({conf} names no user)"
    user = user or DEBIAN_WORKER_USER
    try:
        account = pwd.getpwnam(user)
        gid = grp.getgrnam(group).gr_gid if group else account.pw_gid
    except KeyError:
        raise VerificationError(
            f"nginx's workers run as {user}{':' + group if group else ''} ({source}), which does not exist here.",
            "Create the account, or point --nginx-conf at the nginx.conf that nginx really uses.",
        ) from None
    groups = frozenset({gid, *os.getgrouplist(user, gid)})
    return Worker(user, account.pw_uid, gid, groups, source)


def _allows(info: os.stat_result, who: Worker, bits: tuple[int, int, int]) -> bool:
    if who.uid == 0:
        return True
    if info.st_uid == who.uid:
        return bool(info.st_mode & bits[0])
    if info.st_gid in who.groups:
        return bool(info.st_mode & bits[1])
    return bool(info.st_mode & bits[2])


def _owner(info: os.stat_result) -> str:
    try:
        user = pwd.getpwuid(info.st_uid).pw_name
    except KeyError:
        user = str(info.st_uid)
    try:
        group = grp.getgrgid(info.st_gid).gr_name
    except KeyError:
        group = str(info.st_gid)
    return f"{user}:{group} {stat.S_IMODE(info.st_mode):04o}"


def worker_can_reach(socket: Path, who: Worker) -> None:
    """Raise unless ``who`` may connect to ``socket``: search every directory above it, write the socket.

    The permissions are computed from ``stat`` and the worker's groups, as the kernel decides them.
    """
    path = Path(os.path.realpath(socket))
    execute = (stat.S_IXUSR, stat.S_IXGRP, stat.S_IXOTH)
    write = (stat.S_IWUSR, stat.S_IWGRP, stat.S_IWOTH)
    try:
        blocked = next(
            (d for d in reversed(path.parents) if not _allows(os.stat(d), who, execute)),
            None,
        )
        info = os.stat(path)
    except OSError as exc:
        raise VerificationError(
            f"Cannot check the agent socket {socket}: {exc.strerror}.", "Start the agent, then check again."
        ) from exc
    fix = (
        f"Start the agent with --group {who.group_name} (systemd: render the units with "
        f"--nginx-group {who.group_name}, which sets SocketGroup)"
    )
    if blocked is not None:
        through = (
            "the agent makes the socket's directory group-owned and lets the group in"
            if blocked == path.parent
            else f"and let {who.user} through {blocked}: chgrp {who.group_name} {blocked} && chmod g+x {blocked}"
        )
        raise VerificationError(
            f"nginx's workers run as {who.user} ({who.source}), which cannot enter {blocked} "
            f"({_owner(os.stat(blocked))}) to reach the agent socket {socket}: every handshake would fail.",
            f"{fix}; {through}.",
        )
    if not _allows(info, who, write):
        raise VerificationError(
            f"nginx's workers run as {who.user} ({who.source}), which cannot connect to the agent socket "
            f"{socket} ({_owner(info)}): every handshake would fail.",
            f"{fix}.",
        )


def _spki(key: object) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.public_bytes(  # type: ignore[attr-defined, no-any-return]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def describe(key: object) -> str:
    """``RSA-2048``, ``EC P-256``, ... for a public key."""
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA-{key.key_size}"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"EC {key.curve.name}"
    return type(key).__name__.removeprefix("_")


def certificate_matches(cert: Path, public_spki: bytes, key_name: str) -> None:
    """Raise unless the first certificate in ``cert`` holds the public key ``public_spki`` (DER)."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import load_der_public_key

    try:
        leaf = x509.load_pem_x509_certificates(cert.read_bytes())[0]
    except (OSError, ValueError, IndexError) as exc:
        raise VerificationError(
            f"{cert} does not start with a PEM certificate.", "Give the certificate (chain), leaf first."
        ) from exc
    expected = load_der_public_key(public_spki)
    if _spki(leaf.public_key()) != _spki(expected):
        raise VerificationError(
            f"The certificate {cert} holds a {describe(leaf.public_key())} public key that is not the one of "
            f"{key_name} ({describe(expected)}): every handshake would fail.",
            "Give the certificate issued for this key (hsmcert csr --key ... makes its request), or the key "
            "the certificate was issued for.",
        )


def hsm_public_key(socket: Path, ref: str) -> tuple[bytes, str]:
    """The HSM key's public key (DER SPKI) and version, asked of the agent nginx will use."""
    from hsmcert.agent.client import AgentClient

    try:
        with AgentClient(socket, timeout=30) as agent:
            found = agent.pubkey(ref)
    except HsmcertError as exc:
        raise VerificationError(
            f"The key {ref} cannot be checked: {exc.message}",
            exc.remedy or "Check the agent (hsmcert doctor --key REF).",
        ) from exc
    except OSError as exc:
        raise VerificationError(f"The agent at {socket} did not answer: {exc}.", "Check the agent.") from exc
    return found.spki, found.version


__all__ = [
    "DEBIAN_WORKER_USER",
    "Worker",
    "certificate_matches",
    "describe",
    "hsm_public_key",
    "main_conf_path",
    "worker",
    "worker_can_reach",
    "worker_user_from",
]
