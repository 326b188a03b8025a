"""The docstring examples of the HSM-access modules run."""

import doctest
import importlib

import pytest


@pytest.mark.parametrize(
    "name", ["hsmcert.azure.credentials", "hsmcert.jwa", "hsmcert.azure.keys", "hsmcert.signer"]
)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted > 0 and result.failed == 0
