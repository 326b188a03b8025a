"""What the library is waiting for, told to whoever shows it (the CLI's spinner); nobody by default.

>>> seen = []
>>> with listening(seen.append):
...     note("retrying in 2 s")
>>> note("nobody hears this"); seen
['retrying in 2 s']
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator

_listeners: list[Callable[[str], None]] = []
_lock = threading.Lock()


def note(text: str) -> None:
    """Tell the listeners (if any) about a wait that is under way, e.g. ``"the HSM answered 429; ..."``."""
    with _lock:
        listeners = list(_listeners)
    for listener in listeners:
        listener(text)


@contextlib.contextmanager
def listening(listener: Callable[[str], None]) -> Iterator[None]:
    """Call ``listener`` with every :func:`note` made inside the block."""
    with _lock:
        _listeners.append(listener)
    try:
        yield
    finally:
        with _lock:
            _listeners.remove(listener)
