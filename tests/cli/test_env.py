"""Environment variables: one rule for every option, the table in docs/configuration.md, eager flags immune."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest

from hsmcert.cli._env import table, variable_name
from hsmcert.cli.main import command

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "configuration.md"


def hsmcert(*args: str, env: dict[str, str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hsmcert", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HSMCERT_")}
    env.update(extra)
    return env


@pytest.mark.process
def test_a_version_variable_in_the_environment_changes_nothing(tmp_path: Path) -> None:
    done = hsmcert("inspect", "/nonexistent.pem", env=clean_env(HSMCERT_VERSION="1"))
    assert "hsmcert " not in done.stdout
    assert done.returncode == 3, done.stdout + done.stderr  # inspect's own verdict: no such file
    assert hsmcert("--version", env=clean_env()).stdout.startswith("hsmcert ")


@pytest.mark.process
def test_completion_variables_never_edit_the_shell_start_up_files(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    for name in ("HSMCERT_INSTALL_COMPLETION", "HSMCERT_SHOW_COMPLETION"):
        env = clean_env(**{name: "1", "HOME": str(home), "SHELL": "/bin/bash"})
        done = hsmcert("key", "list", env=env)
        assert done.returncode == 2, done.stdout + done.stderr  # key list's own usage error
        assert "complete" not in done.stdout
    assert list(home.iterdir()) == []


def test_no_eager_option_reads_the_environment() -> None:
    def walk(cmd: Any) -> Any:
        yield cmd
        for sub in (getattr(cmd, "commands", None) or {}).values():
            yield from walk(sub)

    eager = [
        p
        for c in walk(command())
        for p in c.params
        if getattr(p, "is_eager", False) or not getattr(p, "expose_value", True)
    ]
    assert {o for p in eager for o in p.opts} >= {"--version", "--install-completion", "--show-completion"}
    assert all(p.envvar is None and not p.allow_from_autoenv for p in eager)


def test_the_rule() -> None:
    assert variable_name("csr", "--format") == "HSMCERT_CSR_FORMAT"
    assert variable_name("issue", "--csr") == "HSMCERT_ISSUE_CSR"
    assert variable_name("key create", "--ca-bundle") == "HSMCERT_KEY_CREATE_CA_BUNDLE"
    assert variable_name("", "--output") == "HSMCERT_OUTPUT"
    for row in table(command()):
        assert row.variables[0] == variable_name(row.command, row.option)


def documented_rows() -> dict[tuple[str, str], tuple[str, ...]]:
    """The table under "Every option's variable" in docs/configuration.md."""
    text = DOC.read_text()
    section = text.split("### Every option's variable", 1)[1].split("\n#", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 3 or not cells[1].startswith("`--"):
            continue
        command_cell, option, variables = cells
        names = tuple(re.findall(r"`(HSMCERT_[A-Z0-9_]+)`", variables))
        rows[(command_cell.strip("`").removeprefix("hsmcert").strip(), option.strip("`"))] = names
    return rows


def test_the_documented_table_is_the_code() -> None:
    code = {(r.command, r.option): r.variables for r in table(command())}
    documented = documented_rows()
    missing = sorted(set(code) - set(documented))
    expected = "\n".join(
        f"| `hsmcert {c}`".replace("hsmcert `", "hsmcert`").rstrip()
        + f" | `{o}` | {', '.join(f'`{v}`' for v in code[(c, o)])} |"
        for c, o in missing
    )
    assert not missing, f"options missing from {DOC.name}:\n{expected}"
    assert sorted(set(documented) - set(code)) == [], "documented options that do not exist"
    wrong = {k: (documented[k], code[k]) for k in code if documented[k] != code[k]}
    assert wrong == {}


def test_every_agent_socket_option_reads_hsmcert_agent_socket() -> None:
    from hsmcert.agent import SOCKET_ENV

    sockets = {r.command: r.variables for r in table(command()) if r.option == "--socket"}
    assert {"agent", "nginx", "provider openssl-cnf"} <= set(sockets)
    assert {c: v for c, v in sockets.items() if SOCKET_ENV not in v} == {}


@pytest.mark.process
def test_nginx_writes_the_socket_hsmcert_agent_socket_names(tmp_path: Path, local_pki: Any) -> None:
    out = tmp_path / "out"
    done = hsmcert(
        "nginx", "--key", "managedhsm:local-hsm:tls-key", "--cert", str(local_pki.server_cert),
        "--server-name", "a.example", "-o", str(out), "--nginx-version", "1.29.0",
        env=clean_env(HSMCERT_AGENT_SOCKET="/run/elsewhere/agent.sock", NO_COLOR="1"),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "/run/elsewhere/agent.sock" in (out / "openssl.cnf").read_text()


def test_no_option_variable_shadows_an_environment_only_one() -> None:
    text = DOC.read_text()
    only_env = text.split("Read from the environment only", 1)[1].split("\n\n", 1)[0]
    env_only = set(re.findall(r"`(HSMCERT_[A-Z0-9_]+)", only_env)) | {"HSMCERT_EMULATOR_CA"}
    assert env_only, "the list of environment-only variables moved"
    names = {v for row in table(command()) for v in row.variables}
    # HSMCERT_AGENT_SOCKET and HSMCERT_EMULATOR are both: options' short names and read by the library.
    assert names & env_only <= {"HSMCERT_AGENT_SOCKET", "HSMCERT_EMULATOR"}


def _sample(param: Any) -> tuple[str, Any]:
    """A value for ``param``'s variable other than its default, and what the option then holds (read from
    the option's click type, the public side of typer's parameters)."""
    if param.is_flag:
        return "1", True
    kind = param.type
    choices = getattr(kind, "choices", None)
    if choices:
        choice = list(choices)[-1]
        return str(getattr(choice, "value", choice)), choice
    if param.multiple:
        return "a b", ["a", "b"]
    name = getattr(kind, "name", "")
    if name.startswith(("int", "integer")):
        return "7", 7
    if name.startswith("float"):
        return "0.25", 0.25
    if name == "path":
        return "/x/y", Path("/x/y")
    return "some-value", "some-value"


def _context(root: Any, path: tuple[str, ...]) -> tuple[Any, Any]:
    cmd, ctx = root, root.make_context("hsmcert", [], resilient_parsing=True)
    for word in path:
        cmd = cmd.commands[word]
        ctx = cmd.make_context(word, [], parent=ctx, resilient_parsing=True)
    return cmd, ctx


def test_every_variable_sets_its_option(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("HSMCERT_"):
            monkeypatch.delenv(name)
    root = command()
    rows = table(root)
    assert len(rows) > 100
    for row in rows:
        path = tuple(row.command.split())
        cmd = root
        for word in path:
            cmd = cmd.commands[word]
        param = next(p for p in cmd.params if row.option in getattr(p, "opts", ()))
        raw, expected = _sample(param)
        for variable in row.variables:
            monkeypatch.setenv(variable, raw)
            _, ctx = _context(root, path)
            held = ctx.params[param.name]  # click's value: typer makes tuples lists and str paths Paths later
            held = (
                list(held) if isinstance(held, tuple) else Path(held) if isinstance(expected, Path) else held
            )
            assert held == expected, (row, variable)
            monkeypatch.delenv(variable)


def test_the_csr_format_and_issue_csr_variables_work(emulator: Any, tmp_path: Path) -> None:
    from hsmcert.session import default_session

    ref = f"managedhsm:local-hsm:env-{uuid4().hex[:8]}"
    default_session().keys.create(ref, "EC", curve="P-256")
    env = {**os.environ, "HSMCERT_CACHE_DIR": str(tmp_path / "cache")}
    made = hsmcert(
        "csr", "--key", ref, "--subj", "/CN=env.example", "-o", "req.der",
        env={**env, "HSMCERT_CSR_FORMAT": "der"}, cwd=tmp_path,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert (tmp_path / "req.der").read_bytes()[:1] == b"\x30"  # DER, not "-----BEGIN"
    root = hsmcert(
        "selfsign", "--key", ref, "--subj", "/CN=env CA", "--profile", "root-ca", "-o", "ca.pem",
        env=env, cwd=tmp_path,
    )  # fmt: skip
    assert root.returncode == 0, root.stderr
    issued = hsmcert(
        "issue", "--ca-key", ref, "--ca-cert", "ca.pem", "-o", "leaf.pem",
        env={**env, "HSMCERT_ISSUE_CSR": "req.der"}, cwd=tmp_path,
    )  # fmt: skip
    assert issued.returncode == 0, issued.stderr
    assert (tmp_path / "leaf.pem").read_text().startswith("-----BEGIN CERTIFICATE-----")


@pytest.mark.process
def test_a_bad_value_from_a_variable_names_the_variable() -> None:
    done = hsmcert("inspect", "/nonexistent.pem", env=clean_env(HSMCERT_INSPECT_LINT="maybe"))
    assert done.returncode == 2
    assert done.stderr.startswith("error: Invalid value for --lint (from HSMCERT_INSPECT_LINT): ")
    flag = hsmcert(
        "key", "create", "--key", "managedhsm:contoso:k", "--kty", "RSA", "--size", "x", env=clean_env()
    )
    assert flag.returncode == 2 and "error: Invalid value for --size: " in flag.stderr
