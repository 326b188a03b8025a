"""Writing output files the way users expect: atomically, and never over an existing file unless asked."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from pathlib import Path

from hsmcert.errors import HsmcertError


def check_target(path: str | os.PathLike[str], *, force: bool = False) -> None:
    """Refuse, before any work is done, an output path that :func:`write_output` would refuse."""
    if str(path) == "-":
        return
    target = Path(path)
    if target.is_dir():
        raise HsmcertError(f"{target} is a directory.", "Give the path of a file to write.")
    if target.exists() and not force:
        raise HsmcertError(f"{target} already exists.", "Choose another path, or pass --force to replace it.")
    directory = target.parent if str(target.parent) else Path(".")
    if not directory.is_dir():
        raise HsmcertError(
            f"The directory {directory} does not exist.", "Create it first, or choose another path."
        )


def write_output(
    path: str | os.PathLike[str], data: bytes, *, force: bool = False, mode: int = 0o644
) -> None:
    """Write ``data`` to ``path`` atomically; ``-`` means standard output.

    The bytes go to a temporary file in the same directory that is renamed into place, so a reader never
    sees half a file and a failure leaves nothing behind. An existing file is an error unless ``force``.
    """
    if str(path) == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    check_target(path, force=force)
    target = Path(path)
    tmp: str | None = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        if not force and target.exists():
            raise HsmcertError(
                f"{target} already exists.", "Choose another path, or pass --force to replace it."
            )
        os.replace(tmp, target)
    except OSError as exc:
        raise HsmcertError(
            f"Cannot write {target}: {exc.strerror or exc}.",
            "Check the path, its permissions and free space.",
        ) from exc
    finally:
        if tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
