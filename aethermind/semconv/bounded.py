"""A bounded cache for values keyed by what spans say (model and provider names, scopes).

Span content is chosen by tenants, so a cache keyed by it must stay bounded, and one tenant
sending endless unique names must not evict what everybody else uses on every span. Two
generations do both at the cost of a dict: entries go to the young one; when it is full it
becomes the old one (the previous old one is dropped) and a hit in the old one moves the
entry back. Names in steady use are hit within a generation and survive every turnover;
names seen once are gone after two.

A ``dict`` subclass so that a hit, the hot path, is one C-level ``dict.__getitem__``: read
with ``cache[key]`` (``KeyError`` when absent), write with ``put``.
"""

from __future__ import annotations

from typing import TypeVar

K = TypeVar("K")
V = TypeVar("V")


class BoundedCache(dict[K, V]):
    """At most ``max_entries`` entries in all, across both generations."""

    __slots__ = ("_generation_size", "_old")

    def __init__(self, max_entries: int) -> None:
        super().__init__()
        if max_entries < 2:
            raise ValueError(f"max_entries must be at least 2, got {max_entries}")
        self._generation_size = max_entries // 2
        self._old: dict[K, V] = {}

    def __missing__(self, key: K) -> V:
        value = self._old[key]  # KeyError when in neither generation
        self.put(key, value)
        return value

    def put(self, key: K, value: V) -> None:
        if len(self) >= self._generation_size and not dict.__contains__(self, key):
            self._old = dict(self)
            self.clear()
        self[key] = value

    def total(self) -> int:
        """Entries in both generations (``len`` counts the young one only)."""
        return len(self) + len(self._old)

    def discard_values(self, values: set[V]) -> None:
        """Drop every entry, in both generations, whose value is in ``values``."""
        for generation in (self, self._old):
            for key in [k for k, v in dict.items(generation) if v in values]:
                dict.__delitem__(generation, key)

    def forget_all(self) -> None:
        self.clear()
        self._old = {}
