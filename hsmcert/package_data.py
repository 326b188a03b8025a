"""The files hsmcert ships beside its code: ``templates/`` and the provider's sources in ``native/``.

In a source checkout they are the top-level directories next to ``hsmcert/``; an installed wheel carries a
copy as ``hsmcert/_data/<name>`` (see setup.py). A checkout is recognised by its ``pyproject.toml``, so an
unrelated ``templates/`` or ``native/`` directory in site-packages is never taken for ours.
"""

from __future__ import annotations

from pathlib import Path

from hsmcert.errors import HsmcertError

PACKAGE_DIR = Path(__file__).resolve().parent
CHECKOUT = PACKAGE_DIR.parent if (PACKAGE_DIR.parent / "pyproject.toml").is_file() else None
"""The source checkout hsmcert runs from, or None when it runs from an installed wheel."""


def shipped_dir(name: str) -> Path:
    """The directory ``name`` (``templates`` or ``native``) of the checkout, else of the installed wheel."""
    candidates = [PACKAGE_DIR / "_data" / name]
    if CHECKOUT is not None:
        candidates.insert(0, CHECKOUT / name)
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    raise HsmcertError(
        f"hsmcert's {name}/ directory is missing from this installation.",
        "Reinstall hsmcert (pip install --force-reinstall hsmcert), or run it from a source checkout.",
    )
