"""The bounded cache in front of every lookup keyed by span content."""

from __future__ import annotations

import pytest

from aethermind.semconv.bounded import BoundedCache


def test_the_cache_never_holds_more_than_its_bound() -> None:
    cache: BoundedCache[str, int] = BoundedCache(100)
    for i in range(10_000):
        cache.put(f"name-{i}", i)
        assert cache.total() <= 100
    with pytest.raises(KeyError):
        cache["name-0"]
    assert cache["name-9999"] == 9999


def test_names_in_steady_use_survive_any_churn_of_unique_names() -> None:
    # One tenant sends endless unique model names; the names everyone uses stay cached.
    cache: BoundedCache[str, str] = BoundedCache(64)
    cache.put("gpt-4o", "priced")
    for i in range(5_000):
        cache.put(f"unique-{i}", "x")
        if i % 20 == 0:
            assert cache["gpt-4o"] == "priced"


def test_none_is_a_value_not_a_miss() -> None:
    cache: BoundedCache[str, None] = BoundedCache(4)
    cache.put("unpriceable", None)
    assert cache["unpriceable"] is None
    with pytest.raises(ValueError, match="at least 2"):
        BoundedCache(1)
