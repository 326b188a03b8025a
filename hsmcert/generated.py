"""Files hsmcert generates and keeps up to date, without ever rewriting one a person has edited.

A managed file starts with two comment lines: who made it, and the SHA-256 of the rest of the file as
hsmcert wrote it. On the next run hsmcert rewrites the file only if that hash still matches (nobody
touched it); an edited file, or a file hsmcert did not write, is refused with a message that names it,
unless the caller forces the write. All files of one run are checked before any is written, so a refusal
leaves every file as it was.

>>> text = mark("server { }\\n", "hsmcert nginx")
>>> text.splitlines()[0]
'# Managed by hsmcert (hsmcert nginx). hsmcert will not overwrite this file once you edit it.'
>>> state_of(text)
'managed'
>>> state_of(text.replace("{ }", "{ listen 80; }"))
'edited'
>>> state_of("server { }\\n")
'foreign'
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from hsmcert.errors import AlreadyExistsError, HsmcertError
from hsmcert.output_files import write_output

HEADER = "# Managed by hsmcert ({source}). hsmcert will not overwrite this file once you edit it.\n"
_HASH_LINE = re.compile(r"^# hsmcert-sha256: ([0-9a-f]{64})\n", re.MULTILINE)
_HEADER_LINE = re.compile(r"^# Managed by hsmcert \(.*\)\..*\n")

State = Literal["absent", "managed", "edited", "foreign"]
Action = Literal["create", "update", "unchanged", "replace-edited", "replace-foreign"]


def _digest(body: str) -> str:
    return hashlib.sha256(body.encode()).hexdigest()


def mark(body: str, source: str) -> str:
    """``body`` with the managed-by header and the hash of ``body`` in front of it."""
    return HEADER.format(source=source) + f"# hsmcert-sha256: {_digest(body)}\n" + body


def _split(text: str) -> tuple[str, str] | None:
    """(recorded hash, body) of a managed text, or None when the text has no hsmcert header."""
    header = _HEADER_LINE.match(text)
    if header is None:
        return None
    recorded = _HASH_LINE.match(text, header.end())
    if recorded is None:
        return None
    return recorded.group(1), text[recorded.end() :]


def state_of(text: str | None) -> State:
    """Whether a file's text is absent, as hsmcert wrote it, edited since, or not hsmcert's at all."""
    if text is None:
        return "absent"
    split = _split(text)
    if split is None:
        return "foreign"
    recorded, body = split
    return "managed" if recorded == _digest(body) else "edited"


@dataclass(frozen=True)
class ManagedFile:
    """One file to generate: where, its content (without header), what it is, its permissions."""

    path: Path
    body: str
    description: str
    source: str = "hsmcert"
    mode: int = 0o644

    @property
    def text(self) -> str:
        return mark(self.body, self.source)


@dataclass(frozen=True)
class Planned:
    file: ManagedFile
    action: Action


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return None
    except IsADirectoryError as exc:
        raise HsmcertError(f"{path} is a directory.", "Choose another output directory.") from exc
    except OSError as exc:
        raise HsmcertError(
            f"Cannot read {path}: {exc.strerror}.", "Check the path and its permissions."
        ) from exc


def plan(files: Iterable[ManagedFile], *, force: bool = False) -> list[Planned]:
    """What writing ``files`` would do to each, refusing (before anything is written) to replace a file
    that was edited or that hsmcert did not write, unless ``force``."""
    planned: list[Planned] = []
    refused: list[str] = []
    for file in files:
        current = _read(file.path)
        state = state_of(current)
        if state == "absent":
            action: Action = "create"
        elif current == file.text:
            action = "unchanged"
        elif state == "managed":
            action = "update"
        elif state == "edited":
            action = "replace-edited"
            if not force:
                refused.append(f"{file.path} (edited since hsmcert wrote it)")
        else:
            action = "replace-foreign"
            if not force:
                refused.append(f"{file.path} (not written by hsmcert)")
        planned.append(Planned(file, action))
    if refused:
        which = "; ".join(refused)
        raise AlreadyExistsError(
            f"Refusing to overwrite {which}.",
            "Nothing was written. Keep your version and write the new one elsewhere with -o DIR to compare, "
            "or pass --force to replace it.",
        )
    return planned


def apply(planned: Sequence[Planned]) -> None:
    """Write every planned file that changes (atomically, one by one), creating parent directories."""
    for item in planned:
        if item.action == "unchanged":
            continue
        item.file.path.parent.mkdir(parents=True, exist_ok=True)
        write_output(item.file.path, item.file.text.encode(), force=True, mode=item.file.mode)


Saved = dict[Path, tuple[bytes, int] | None]


def snapshot(planned: Sequence[Planned]) -> Saved:
    """What :func:`apply` would change, as it is now: each file's bytes and mode, or None if absent."""
    saved: Saved = {}
    for item in planned:
        if item.action == "unchanged":
            continue
        try:
            saved[item.file.path] = (item.file.path.read_bytes(), item.file.path.stat().st_mode & 0o7777)
        except FileNotFoundError:
            saved[item.file.path] = None
    return saved


def restore(saved: Saved) -> None:
    """Put the files of a :func:`snapshot` back as they were (those that did not exist are removed)."""
    for path, previous in saved.items():
        if previous is None:
            path.unlink(missing_ok=True)
        else:
            write_output(path, previous[0], force=True, mode=previous[1])


def write_all(files: Iterable[ManagedFile], *, force: bool = False) -> list[Planned]:
    """:func:`plan` then :func:`apply`; returns what was done to each file."""
    planned = plan(files, force=force)
    apply(planned)
    return planned
