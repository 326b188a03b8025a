"""The test session never writes into the user's real cache, config or data directories.

tests/conftest.py points XDG_CACHE_HOME, XDG_CONFIG_HOME and XDG_DATA_HOME at temporary directories
before anything else runs (tests/fixtures/user_dirs.py); every process a test starts inherits them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest

from tests.fixtures import user_dirs


def _inside(path: Path | str, directory: Path) -> bool:
    return Path(path).resolve().is_relative_to(directory.resolve())


def test_hsmcerts_user_directories_are_the_sessions_own() -> None:
    import platformdirs

    from hsmcert.config import config_path
    from hsmcert.provider import cache_dir as provider_cache

    session = user_dirs.root()
    for name, real in user_dirs.REAL.items():
        assert _inside(os.environ[name], session)
        assert not _inside(os.environ[name], real)
    paths = [
        platformdirs.user_cache_dir("hsmcert"),
        platformdirs.user_config_dir("hsmcert"),
        platformdirs.user_data_dir("hsmcert"),  # the emulator's default data directory is below it
        config_path({}),
        provider_cache(),
    ]
    for path in paths:
        assert _inside(path, session), path
        assert not any(_inside(path, real) for real in user_dirs.REAL.values()), path


def _files_naming(directory: Path, text: str) -> list[Path]:
    if not directory.is_dir():
        return []
    return [p for p in directory.rglob("*") if p.is_file() and text.encode() in p.read_bytes()]


@pytest.mark.process
def test_a_cli_run_caches_public_keys_in_the_session_not_in_the_real_cache(emulator: Any) -> None:
    """A key looked up by the CLI (as tests/grant did) lands in the session's cache, not in ~/.cache."""
    key = f"isolation-{uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if k != "HSMCERT_CACHE_DIR"}  # the default cache directory
    for args in (["key", "create", "--kty", "EC"], ["key", "show"]):
        result = subprocess.run(
            [sys.executable, "-m", "hsmcert", *args, "--key", f"managedhsm:local-hsm:{key}"],
            env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
    session_cache = Path(os.environ["XDG_CACHE_HOME"])
    assert _files_naming(session_cache / "hsmcert", key), "the CLI cached nothing: this test proves nothing"
    assert _files_naming(user_dirs.REAL["XDG_CACHE_HOME"] / "hsmcert", key) == []
