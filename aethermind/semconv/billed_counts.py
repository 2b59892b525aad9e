"""How many of a call's per-call units are billed, where a provider bills fewer than the call
reports using.

Instrumentations report what a call did: pydantic-ai records every unique Google Search query
of a grounded Gemini call (``gen_ai.usage.details.web_search_requests``). Gemini 2.5 and older
are billed once per grounded prompt however many queries it ran, so pricing each query would
overcharge by the query count. The rules are data (``data/billed_counts.toml``, each with its
source and date), looked up by genai-prices' own provider and model ids.
"""

from __future__ import annotations

from functools import cache
from types import MappingProxyType

from pydantic import BaseModel, ConfigDict, Field, field_validator

from aethermind.semconv.attributes import FEE_UNITS
from aethermind.semconv.bounded import BoundedCache
from aethermind.semconv.pricing_patterns import pattern_matches
from aethermind.semconv.rule_files import ModelPatterns, ReadOn, Source, load_rules

Caps = MappingProxyType[str, int]
NO_CAPS: Caps = MappingProxyType({})
_CACHE_LIMIT = 1024


class BilledCountRule(BaseModel):
    """One rule of ``data/billed_counts.toml``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    provider: str
    models: ModelPatterns
    unit: str
    billed_at_most: int = Field(ge=0)
    source: Source
    date: ReadOn

    @field_validator("unit")
    @classmethod
    def _fee_unit(cls, unit: str) -> str:
        if unit not in FEE_UNITS:
            known = ", ".join(sorted(FEE_UNITS))
            raise ValueError(f"unit {unit!r} is not a per-call unit ({known})")
        return unit


@cache
def billed_count_rules() -> tuple[BilledCountRule, ...]:
    """The packaged rules, validated once."""
    return load_rules("billed_counts.toml", BilledCountRule)


_caps: BoundedCache[tuple[str | None, str], Caps] = BoundedCache(_CACHE_LIMIT)


def billed_caps(provider_id: str | None, model_id: str) -> Caps:
    """Per unit, how many one call of genai-prices' ``model_id`` of ``provider_id`` is billed
    for; units without a rule are billed as reported. Cached, bounded."""
    key = (provider_id, model_id)
    try:
        return _caps[key]
    except KeyError:
        pass
    found: dict[str, int] = {}
    for rule in billed_count_rules():
        if rule.provider == provider_id and rule.unit not in found:
            if any(pattern_matches(pattern, model_id) for pattern in rule.models):
                found[rule.unit] = rule.billed_at_most
    caps = MappingProxyType(found) if found else NO_CAPS
    _caps.put(key, caps)
    return caps
