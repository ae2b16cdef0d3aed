"""A mapping with a bound: the least recently put entries go first. Every cache and side table of
the model is one, so that nothing a process controls makes sigtop grow without bound."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class BoundedLRU(OrderedDict[K, V], Generic[K, V]):
    """An OrderedDict of at most `maxlen` entries (and, with `weigh`, at most `budget` in all).

    `put` makes an entry the most recent; reading does not (a lookup is not
    a use). What falls out is handed to `on_evict`, if given.
    """

    def __init__(
        self,
        maxlen: int,
        weigh: Callable[[V], int] | None = None,
        budget: int = 0,
        on_evict: Callable[[K, V], None] | None = None,
    ) -> None:
        super().__init__()
        self.maxlen = maxlen
        self.weigh = weigh
        self.budget = budget
        self.weight = 0  # the entries' weight in all (with weigh)
        self.on_evict = on_evict

    def put(self, key: K, value: V) -> None:
        if self.weigh is not None:
            old = super().get(key)
            if old is not None:
                self.weight -= self.weigh(old)
            self.weight += self.weigh(value)
        self[key] = value
        self.move_to_end(key)
        self._trim()

    def discard(self, key: K) -> V | None:
        value = self.pop(key, None)
        if value is not None and self.weigh is not None:
            self.weight -= self.weigh(value)
        return value

    def clear(self) -> None:
        super().clear()
        self.weight = 0

    def _trim(self) -> None:
        while len(self) > self.maxlen or (self.weigh is not None and self.weight > self.budget and len(self) > 1):
            key, value = self.popitem(last=False)
            if self.weigh is not None:
                self.weight -= self.weigh(value)
            if self.on_evict is not None:
                self.on_evict(key, value)
