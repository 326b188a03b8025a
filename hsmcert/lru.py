"""A mapping that keeps only its ``maxsize`` most recently used entries (for caches that clients fill).

>>> cache = LruDict(2)
>>> cache["a"], cache["b"] = 1, 2
>>> cache.get("a")
1
>>> cache["c"] = 3
>>> sorted(cache)
['a', 'c']

Not thread-safe by itself: callers that share one hold their lock around each call.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import TypeVar, overload

K = TypeVar("K")
V = TypeVar("V")
D = TypeVar("D")


class LruDict(OrderedDict[K, V]):
    """An ordered dict that evicts its least recently used entry beyond ``maxsize`` entries."""

    def __init__(self, maxsize: int, on_evict: Callable[[K, V], None] | None = None) -> None:
        super().__init__()
        self.maxsize = maxsize
        self.on_evict = on_evict
        """Called with each entry evicted to make room."""

    def __setitem__(self, key: K, value: V) -> None:
        super().__setitem__(key, value)
        self.move_to_end(key)
        while len(self) > self.maxsize:
            old_key, old_value = self.popitem(last=False)
            if self.on_evict is not None:
                self.on_evict(old_key, old_value)

    @overload
    def get(self, key: K, default: None = None) -> V | None: ...
    @overload
    def get(self, key: K, default: V | D) -> V | D: ...
    def get(self, key: K, default: object = None) -> object:
        """The value of ``key`` (now the most recently used), or ``default``."""
        if key not in self:
            return default
        self.move_to_end(key)
        return self[key]


__all__ = ["LruDict"]
