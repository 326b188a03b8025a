"""Writing output files the way users expect: atomically, and never over an existing file unless asked.

Every command that writes a file a user named goes through :func:`write_output`:

- a regular file is written to a temporary file in the same directory and renamed into place, so a reader
  never sees half a file and a failure leaves nothing behind; an existing file is replaced only with
  ``force``;
- a character device or a FIFO (``/dev/null``, ``/dev/stdout``, a named pipe) is written through, never
  replaced, with or without ``force``;
- a symbolic link is never followed into its target (unless that is a device or a FIFO): without ``force``
  it is refused, dangling or not; with ``force`` the link itself is replaced and its target left alone;
- directories, sockets and block devices are refused.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import sys
import tempfile
from pathlib import Path

from hsmcert.errors import AlreadyExistsError, HsmcertError, UsageError

_FORCE = "Choose another path, or pass --force to replace it."


def _exists_error(target: Path) -> AlreadyExistsError:
    return AlreadyExistsError(f"{target} already exists.", _FORCE)


def _is_stream(mode: int) -> bool:
    return stat.S_ISCHR(mode) or stat.S_ISFIFO(mode)


def _classify(target: Path) -> str:
    """``missing``, ``file``, ``stream`` (device or FIFO, written through), ``link`` or ``refused``."""
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        return "missing"
    if stat.S_ISLNK(st.st_mode):
        try:
            return "stream" if _is_stream(os.stat(target).st_mode) else "link"
        except OSError:
            return "link"  # dangling, or a loop
    if _is_stream(st.st_mode):
        return "stream"
    if stat.S_ISREG(st.st_mode):
        return "file"
    return "refused"


def check_target(path: str | os.PathLike[str], *, force: bool = False) -> None:
    """Refuse, before any work is done, an output path that :func:`write_output` would refuse."""
    if str(path) == "-":
        return
    if "\x00" in str(path):
        raise UsageError(f"{str(path)[:80]!r} is not a path: it holds a NUL character.")
    target = Path(path)
    kind = _classify(target)
    if kind == "stream":
        return
    if kind == "refused":
        what = "a directory" if target.is_dir() else "not a regular file"
        raise HsmcertError(f"{target} is {what}.", "Give the path of a file to write.")
    if kind == "link" and not force:
        raise AlreadyExistsError(
            f"{target} is a symbolic link (to {os.readlink(target)}); hsmcert does not write through links.",
            "Name the file itself, or pass --force to replace the link (its target is left alone).",
        )
    if kind == "file" and not force:
        raise _exists_error(target)
    directory = target.parent if str(target.parent) else Path(".")
    if not directory.is_dir():
        raise HsmcertError(
            f"The directory {directory} does not exist.", "Create it first, or choose another path."
        )


def _write_stream(target: Path, data: bytes) -> bool:
    """Write through a device or FIFO; False if ``target`` turned out to be something else."""
    fd = os.open(target, os.O_WRONLY | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        if not _is_stream(os.fstat(fd).st_mode):
            return False
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        return True
    finally:
        os.close(fd)


def _place(tmp: str, target: Path, force: bool) -> None:
    """Move the finished temporary file to ``target``: never over anything without ``force``."""
    if force:
        if _classify(target) == "refused":
            raise HsmcertError(f"{target} is not a regular file.", "Give the path of a file to write.")
        os.replace(tmp, target)  # replaces a link itself, never its target
        return
    try:
        os.link(tmp, target)  # fails if anything, even a dangling link, has the name
    except FileExistsError:
        raise _exists_error(target) from None
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
            raise
        if os.path.lexists(target):  # a file system without hard links
            raise _exists_error(target) from None
        os.replace(tmp, target)


def write_output(
    path: str | os.PathLike[str], data: bytes, *, force: bool = False, mode: int = 0o644
) -> None:
    """Write ``data`` to ``path`` as the module docstring says; ``-`` means standard output."""
    if str(path) == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    check_target(path, force=force)
    target = Path(path)
    tmp: str | None = None
    try:
        if _classify(target) == "stream" and _write_stream(target, data):
            return
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        _place(tmp, target, force)
    except OSError as exc:
        raise HsmcertError(
            f"Cannot write {target}: {exc.strerror or exc}.",
            "Check the path, its permissions and free space.",
        ) from exc
    finally:
        if tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
