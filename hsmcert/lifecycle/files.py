"""Writing a renewed certificate's files: each atomically, the previous ones kept, all undone together.

:func:`install` writes the new leaf, full chain and chain (each through
:func:`hsmcert.output_files.write_output`: a temporary file renamed into place, so nginx or any reader
sees the old file or the new one, never half of one). Before it replaces a file it copies the old one to
``<file>.previous`` (rollback by hand: ``mv www.pem.previous www.pem``). :func:`restore` puts back every
file as it was before :func:`install`, ``.previous`` files included, when a later step fails.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from hsmcert.generated import Saved
from hsmcert.output_files import write_output

PREVIOUS_SUFFIX = ".previous"


def previous_of(path: str | Path) -> Path:
    """Where the file that ``path`` replaced is kept."""
    path = Path(path)
    return path.with_name(path.name + PREVIOUS_SUFFIX)


def _saved(path: Path) -> tuple[bytes, int] | None:
    try:
        return path.read_bytes(), path.stat().st_mode & 0o7777
    except FileNotFoundError:
        return None


def install(files: Mapping[str, bytes]) -> tuple[Saved, dict[str, str]]:
    """Write ``files`` (path -> content); returns what :func:`restore` needs and the ``.previous`` files made
    (path -> its previous copy). On an error the files written so far are put back before it is raised."""
    saved: Saved = {}
    previous: dict[str, str] = {}
    try:
        for name, data in files.items():
            path, backup = Path(name), previous_of(name)
            old = _saved(path)
            saved.setdefault(path, old)
            saved.setdefault(backup, _saved(backup))
            if old is not None:
                if old[0] == data:
                    continue  # already this content (a re-run after a partial failure)
                write_output(backup, old[0], force=True, mode=old[1])
                previous[str(path)] = str(backup)
            write_output(path, data, force=True, mode=old[1] if old else 0o644)
    except BaseException:
        restore(saved)
        raise
    return saved, previous


def restore(saved: Saved) -> None:
    """Put back every file of :func:`install` as it was (new files are removed)."""
    from hsmcert.generated import restore as put_back

    put_back(saved)


__all__ = ["PREVIOUS_SUFFIX", "install", "previous_of", "restore"]
