"""The docstring examples of the nginx area's modules run."""

import doctest
import importlib

import pytest


@pytest.mark.parametrize("name", ["hsmcert.templates", "hsmcert.generated", "hsmcert.nginx"])
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted > 0 and result.failed == 0
