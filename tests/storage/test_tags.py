"""What a tag key is, and a span's values for the organization's keys."""

from __future__ import annotations

import pytest

from aethermind.storage.tags import (
    MAX_TAG_KEYS,
    MAX_TAG_VALUE_LENGTH,
    parse_tag_keys,
    tag_of,
    tag_values,
)


def test_keys_are_checked_once_for_everyone() -> None:
    assert parse_tag_keys(["team", "cost-center", "k8s.namespace", "a:b"]) == (
        "team", "cost-center", "k8s.namespace", "a:b",
    )  # fmt: skip
    for bad in (["a b"], [""], ["x" * 65], ["team", "team"], ["tags->>'x'"]):
        with pytest.raises(ValueError):
            parse_tag_keys(bad)
    with pytest.raises(ValueError, match="at most"):
        parse_tag_keys([f"k{i}" for i in range(MAX_TAG_KEYS + 1)])


def test_a_dimension_names_a_tag_only_with_a_valid_key() -> None:
    assert tag_of("tag.team") == "team"
    assert tag_of("user") is None
    with pytest.raises(ValueError):
        tag_of("tag.x'; DROP TABLE organizations; --")


def test_values_from_the_span_else_the_resource_cut_and_counted() -> None:
    keys = ("team", "customer", "tier", "absent")
    attributes = {"team": "search", "tier": 3, "customer": ""}
    resource = {"customer": "acme", "team": "ignored"}
    assert tag_values(keys, attributes, resource) == (
        {"team": "search", "customer": "acme", "tier": "3", "absent": None},
        False,
    )
    long = {"team": "x" * (MAX_TAG_VALUE_LENGTH + 1)}
    values, cut = tag_values(("team",), long, {})
    assert values == {"team": "x" * MAX_TAG_VALUE_LENGTH} and cut
    # Every key in force is recorded, with or without a value; no keys, no tags.
    assert tag_values(("team",), {}, None) == ({"team": None}, False)
    assert tag_values((), {"team": "search"}, None) == (None, False)
