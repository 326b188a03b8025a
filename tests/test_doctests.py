"""The examples in the library's docstrings run, so the docs cannot rot."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import hsmcert


def _modules_with_examples() -> list[str]:
    finder = doctest.DocTestFinder()
    found = []
    for info in pkgutil.walk_packages(hsmcert.__path__, "hsmcert."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        if any(test.examples for test in finder.find(module)):
            found.append(info.name)
    return found


MODULES = _modules_with_examples()


def test_the_modules_that_document_by_example_are_found() -> None:
    assert {"hsmcert.keyref", "hsmcert.timestamps", "hsmcert.azure.credentials"} <= set(MODULES)


STARTS_PROCESSES = {"hsmcert.session"}
"""Modules whose examples start an emulator (make test-fast leaves them out)."""


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.process) if n in STARTS_PROCESSES else n for n in MODULES]
)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted > 0 and result.failed == 0
