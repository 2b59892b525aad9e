"""The packaged rule files of ``semconv/data`` (service tiers, billed counts): how a rule
names its models and its source, and how a file is read. Prices and billing rules live in
these files with where and when they were read, never as numbers in code."""

from __future__ import annotations

import tomllib
from importlib import resources
from typing import Annotated, TypeVar

from pydantic import AfterValidator, BaseModel, Field, TypeAdapter

from aethermind.semconv.pricing_patterns import check_model_pattern

R = TypeVar("R", bound=BaseModel)


def _check_patterns(patterns: tuple[str, ...]) -> tuple[str, ...]:
    for pattern in patterns:
        check_model_pattern(pattern)
    return patterns


ModelPatterns = Annotated[tuple[str, ...], Field(min_length=1), AfterValidator(_check_patterns)]
"""Model names or patterns (exact, ``prefix*``, ``*suffix``; case-blind), as overrides take."""
Source = Annotated[str, Field(min_length=1)]
"""Where the rule's figure was read."""
ReadOn = Annotated[str, Field(pattern=r"^\d{4}-\d{2}-\d{2}$")]
"""When it was read (YYYY-MM-DD)."""


def load_rules(file_name: str, rule_type: type[R]) -> tuple[R, ...]:
    """The ``[[rule]]`` entries of ``data/<file_name>``, each validated as ``rule_type``;
    anything else in the file is an error."""
    text = resources.files("aethermind.semconv").joinpath(f"data/{file_name}").read_text()
    document = tomllib.loads(text)
    other = sorted(set(document) - {"rule"})
    if other:
        raise ValueError(f"{file_name}: only [[rule]] entries, not {other}")
    rules = TypeAdapter(list[rule_type])  # type: ignore[valid-type]
    return tuple(rules.validate_python(document.get("rule", [])))
