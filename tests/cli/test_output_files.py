"""Output files: devices and FIFOs written through, links never followed, nothing replaced without --force.

The commands run for real (``provider pem-ref`` needs no HSM; ``emulator credentials`` the emulator).
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

REF = "managedhsm:contoso:tls-key"


def pem_ref(out: Path | str, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HSMCERT_")}
    return subprocess.run(
        [sys.executable, "-m", "hsmcert", "provider", "pem-ref", "--key", REF, "-o", str(out), *extra],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def a_null_device(tmp_path: Path) -> Path:
    """A character device like /dev/null: a private one when root (so no test can harm the real one)."""
    if os.geteuid() != 0:
        return Path("/dev/null")
    node = tmp_path / "null"
    os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    return node


@pytest.mark.parametrize("force", [False, True])
@pytest.mark.process
def test_a_character_device_is_written_through_and_stays_a_device(tmp_path: Path, force: bool) -> None:
    node = a_null_device(tmp_path)
    done = pem_ref(node, *(["--force"] if force else []))
    assert done.returncode == 0, done.stderr
    assert stat.S_ISCHR(os.lstat(node).st_mode)
    assert [p.name for p in node.parent.iterdir() if p.name.endswith(".tmp")] == []


@pytest.mark.process
def test_dev_null_is_accepted() -> None:
    done = pem_ref("/dev/null")
    assert done.returncode == 0, done.stderr
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


@pytest.mark.process
def test_a_fifo_is_written_through(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True)
    reader.start()
    done = pem_ref(fifo)
    reader.join(30)
    assert done.returncode == 0, done.stderr
    assert got and got[0].startswith(b"-----BEGIN")
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


@pytest.mark.process
def test_a_link_to_a_file_is_refused_and_with_force_the_link_is_replaced(tmp_path: Path) -> None:
    target = tmp_path / "precious"
    target.write_text("keep me\n")
    link = tmp_path / "out.pem"
    link.symlink_to(target)
    refused = pem_ref(link)
    assert refused.returncode != 0
    assert "symbolic link" in refused.stderr and "Traceback" not in refused.stderr
    assert link.is_symlink() and target.read_text() == "keep me\n"

    replaced = pem_ref(link, "--force")
    assert replaced.returncode == 0, replaced.stderr
    assert not link.is_symlink() and link.read_bytes().startswith(b"-----BEGIN")
    assert target.read_text() == "keep me\n"


@pytest.mark.process
def test_a_dangling_link_is_not_replaced_without_force(tmp_path: Path) -> None:
    link = tmp_path / "out.pem"
    link.symlink_to(tmp_path / "elsewhere")
    refused = pem_ref(link)
    assert refused.returncode != 0 and "symbolic link" in refused.stderr
    assert link.is_symlink() and not (tmp_path / "elsewhere").exists()

    assert pem_ref(link, "--force").returncode == 0
    assert not link.is_symlink() and not (tmp_path / "elsewhere").exists()


@pytest.mark.process
def test_an_existing_file_needs_force(tmp_path: Path) -> None:
    out = tmp_path / "out.pem"
    out.write_text("old\n")
    refused = pem_ref(out)
    assert refused.returncode != 0 and "already exists" in refused.stderr
    assert out.read_text() == "old\n"
    assert pem_ref(out, "--force").returncode == 0
    assert out.read_bytes().startswith(b"-----BEGIN")


@pytest.mark.process
def test_a_directory_is_refused(tmp_path: Path) -> None:
    done = pem_ref(tmp_path, "--force")
    assert done.returncode != 0 and "is a directory" in done.stderr


def test_the_federated_token_file_never_follows_a_link(emulator: Any, tmp_path: Path) -> None:
    target = tmp_path / "precious"
    target.write_text("keep me\n")
    link = tmp_path / "token"
    link.symlink_to(target)
    env = dict(os.environ)

    def credentials(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "hsmcert", "emulator", "credentials", "--principal", "ci",
             "--federated-token-file", str(link), *extra],
            env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip

    refused = credentials()
    assert refused.returncode != 0 and "symbolic link" in refused.stderr
    assert target.read_text() == "keep me\n"
    done = credentials("--force")
    assert done.returncode == 0, done.stderr
    assert target.read_text() == "keep me\n"
    assert not link.is_symlink() and stat.S_IMODE(link.stat().st_mode) == 0o600
    assert f"AZURE_FEDERATED_TOKEN_FILE={link}" in done.stdout.replace("'", "")


def test_the_public_key_cache_never_writes_through_a_planted_link(
    emulator: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hashlib
    from uuid import uuid4

    from hsmcert.keyref import parse_keyref
    from hsmcert.session import Session

    cache = tmp_path / "cache"
    monkeypatch.setenv("HSMCERT_CACHE_DIR", str(cache))
    ref = parse_keyref(f"managedhsm:local-hsm:cache-{uuid4().hex[:8]}")
    target = tmp_path / "precious"
    target.write_text("keep me\n")
    with Session() as session:
        version = session.keys.create(ref, "EC").info.version
    # the cache file of that version, and the temporary name it was written through, are links
    url = emulator.url()
    which = ref.with_version(version)
    name = hashlib.sha256(
        f"{url}|{which.kind}|{which.service}|{which.key}|{which.version}".encode()
    ).hexdigest()
    directory = cache / "public-keys"
    directory.mkdir(parents=True, exist_ok=True)
    for found in directory.iterdir():
        found.unlink()
    planted = [directory / f"{name[:40]}{suffix}" for suffix in (f".{os.getpid()}.tmp", ".json")]
    for link in planted:
        link.symlink_to(target)
    with Session() as session:
        assert session.open_key(ref.with_version(version)).ref.version == version
    assert target.read_text() == "keep me\n"
    assert not planted[1].is_symlink() and planted[1].read_text().startswith("{")
