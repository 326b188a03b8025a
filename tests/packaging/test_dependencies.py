"""Every third-party package hsmcert imports is declared in pyproject.toml, with a bound below the next major
release (certifi, versioned by date, excepted)."""

from __future__ import annotations

import ast
import re
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _imported_distributions() -> set[str]:
    """Distributions of the modules imported anywhere in hsmcert/ (lazy imports included)."""
    stdlib = set(sys.stdlib_module_names) | {"tomli", "typing_extensions"}  # see the markers below
    by_module = packages_distributions()
    found: set[str] = set()
    for path in (ROOT / "hsmcert").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module]
                if isinstance(node, ast.ImportFrom) and node.module and not node.level
                else []
            )
            for name in names:
                top = name.split(".")[0]
                if top == "hsmcert" or top in stdlib:
                    continue
                if (
                    top == "azure"
                ):  # one namespace, several distributions: azure.keyvault.keys -> azure-keyvault-keys
                    parts = name.split(".")
                    found.add("-".join(parts[:3] if parts[1] == "keyvault" else parts[:2]))
                else:
                    found.update(d.lower().replace("_", "-") for d in by_module[top])
    return found


def test_every_imported_package_is_declared() -> None:
    declared = {_name(r) for r in PROJECT["dependencies"]} | {
        _name(r) for r in PROJECT["optional-dependencies"]["lint"]
    }
    assert _imported_distributions() - declared == set()
    assert {"urllib3", "requests", "certifi"} <= declared


def test_backports_are_declared_for_old_pythons() -> None:
    markers = {_name(r): r for r in PROJECT["dependencies"] if "python_version" in r}
    assert set(markers) == {"tomli", "typing-extensions"}


def test_every_dependency_is_bounded_below_its_next_major() -> None:
    requirements = PROJECT["dependencies"] + [
        r for extra in PROJECT["optional-dependencies"].values() for r in extra
    ]
    unbounded = [r for r in requirements if "<" not in r.split(";")[0] and _name(r) != "certifi"]
    assert unbounded == []
