"""The examples in the library's docstrings run, so the docs cannot rot."""

import doctest
import importlib

import pytest

MODULES = ["hsmcert.keyref"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted > 0 and result.failed == 0
