"""Bounds on what one OTLP request may make the decoder build, like the OTel SDK's span limits.

The body size limit bounds the bytes; these bound the Python objects made from them and keep
a hostile request from producing unbounded strings, collections or recursion.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

MAX_TIME_UNIX_NANO = 2**63 - 1
"""Latest timestamp a span may carry (year 2262): it must fit a signed 64-bit integer such as
a PostgreSQL ``bigint``; the OTLP ``fixed64`` would allow up to year 2554."""

_MAX_VALUE_DEPTH_CEILING = 64
"""Nesting is walked recursively; far below Python's recursion limit whatever the caller."""


@dataclass(frozen=True, slots=True)
class DecodeLimits:
    """What the decoder keeps of each request; everything cut is counted, never silent.

    - ``max_spans_per_request``: spans past it are rejected (``partial_success``), not
      decoded, so the request still succeeds for the first ones and the client does not retry
      (a 413 would lose the whole batch, as clients must not retry it either). For protobuf
      they are cut before upb parses the request, which bounds its memory.
    - ``max_attributes_per_span``: also applies to a resource's attributes; the extra ones
      are dropped and counted in ``dropped_attributes`` (the SDK default is 128 too).
    - ``max_attribute_value_length``: strings (in characters) and bytes values longer than
      this are truncated and counted in ``truncated_values``; span names, status messages
      and scope names and versions too.
    - ``max_attribute_key_length``: an attribute with a longer (or empty) key is dropped.
    - ``max_array_length``: elements of an array value, and entries of a key-value list,
      past it are cut (counted in ``truncated_values``).
    - ``max_value_depth``: arrays and key-value lists nested deeper than this become
      ``None`` (counted in ``truncated_values``); at most 64.
    """

    max_spans_per_request: int = 10_000
    max_attributes_per_span: int = 128
    max_attribute_value_length: int = 8 * 1024
    max_attribute_key_length: int = 256
    max_array_length: int = 1024
    max_value_depth: int = 8

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if type(value) is not int or value < 1:
                raise ValueError(
                    f"DecodeLimits.{field.name} must be a positive integer, got {value!r}"
                )
        if self.max_value_depth > _MAX_VALUE_DEPTH_CEILING:
            raise ValueError(
                f"DecodeLimits.max_value_depth must be at most {_MAX_VALUE_DEPTH_CEILING}, "
                f"got {self.max_value_depth}"
            )


DEFAULT_LIMITS = DecodeLimits()
