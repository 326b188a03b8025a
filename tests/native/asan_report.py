"""Reading AddressSanitizer / LeakSanitizer / UBSan output of a Python process that loaded the
provider's ASAN build: CPython's own allocations are not ours, so a leak counts only when one of its
frames is in the provider."""

from __future__ import annotations

import re

_BLOCK = re.compile(r"^(Direct|Indirect) leak of .*?(?=^\S|\Z)", re.M | re.S)
_OURS = re.compile(r"native/src/|hsmcert\.so")


def provider_leaks(stderr: str) -> list[str]:
    """Leak reports with a stack frame in the provider."""
    return [block for block in (m.group(0) for m in _BLOCK.finditer(stderr)) if _OURS.search(block)]


def memory_errors(stderr: str) -> list[str]:
    """AddressSanitizer errors other than leaks, and UBSan runtime errors."""
    lines = stderr.splitlines()
    found = [line for line in lines if "ERROR: AddressSanitizer" in line]
    found += [line for line in lines if "runtime error:" in line]
    return found
