"""The organization's own tags: the keys it names (``feature``, ``team``, ``customer``...),
read from each span's attributes (else its resource's) and queried as ``tag.<key>``.

One owner for the rule of what a tag key is: the CLI, the admin API, the query parameters
and the receiver's extraction all check keys here. Pure (the ingest pipeline imports it);
the organization's keys are stored by ``tenants.get_tag_keys`` / ``set_tag_keys``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from aethermind.semconv.record import MAX_NAME_LENGTH

MAX_TAG_KEYS = 8
MAX_TAG_VALUE_LENGTH = MAX_NAME_LENGTH
"""A span's value for a tag is cut to this (and counted, as user and session values are)."""
TAG_KEY_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
"""Letters, digits, ``_ . : -``; at most 64. Keeps a key safe to name in SQL as a literal."""
TAG_PREFIX = "tag."
"""How a tag is named as a dimension: ``tag.team``."""


def parse_tag_keys(keys: Iterable[str]) -> tuple[str, ...]:
    """The keys as stored, in the order given; ValueError naming what is wrong."""
    parsed: list[str] = []
    for key in keys:
        if not isinstance(key, str) or not TAG_KEY_RE.match(key):
            raise ValueError(
                f"tag key {key!r} must be 1 to 64 letters, digits or '_', '.', ':', '-'"
            )
        if key in parsed:
            raise ValueError(f"tag key {key!r} is named twice")
        parsed.append(key)
    if len(parsed) > MAX_TAG_KEYS:
        raise ValueError(f"at most {MAX_TAG_KEYS} tag keys, got {len(parsed)}")
    return tuple(parsed)


def tag_of(dimension: str) -> str | None:
    """The tag key a ``tag.<key>`` dimension names (None for other dimensions); ValueError
    when the key is not a valid one."""
    if not dimension.startswith(TAG_PREFIX):
        return None
    key = dimension[len(TAG_PREFIX) :]
    if not TAG_KEY_RE.match(key):
        raise ValueError(f"{dimension!r} is not a tag: keys are 1 to 64 letters, digits, _.:-")
    return key


def tag_values(
    keys: tuple[str, ...], attributes: Any, resource: Any
) -> tuple[dict[str, str | None] | None, bool]:
    """A span's values for ``keys``: each from its attributes, else its resource's (text,
    or a number or boolean as text), cut to ``MAX_TAG_VALUE_LENGTH``; None for a key it has
    no value for. Every key is there, so the stored span records which keys were in force
    (the dimension rollups count it under '' for those). None when ``keys`` is empty. Also
    whether a value was cut."""
    if not keys:
        return None, False
    found: dict[str, str | None] = {}
    cut = False
    for key in keys:
        value = attributes.get(key)
        if value is None or value == "":
            value = resource.get(key) if resource else None
        if isinstance(value, str):
            text = value
        elif isinstance(value, (int, float)):  # bool is an int
            text = str(value).lower() if isinstance(value, bool) else str(value)
        else:
            text = ""
        if len(text) > MAX_TAG_VALUE_LENGTH:
            text, cut = text[:MAX_TAG_VALUE_LENGTH], True
        found[key] = text or None
    return found, cut
