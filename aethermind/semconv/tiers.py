"""Service tiers: which tier served a request, and what that tier costs.

Providers bill batch, flex and priority requests at other rates than standard ones, and
genai-prices lists standard prices only. The rules live as data in
``data/service_tiers.toml``, each with its source and date, never as numbers in code. An
organization's price override naming a tier takes precedence (``pricing.py``).

Tier names are stored as providers answer them, lower case, with the synonyms of
"standard" folded into None (OpenAI answers ``default``; a request asks ``auto``):
standard requests are the common case and keep the pricing fast path.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from aethermind.semconv.bounded import BoundedCache
from aethermind.semconv.pricing_patterns import pattern_matches
from aethermind.semconv.rule_files import ModelPatterns, ReadOn, Source, load_rules

STANDARD_NAMES = frozenset({"standard", "default", "auto", "on_demand", "standard_only"})
"""What providers and clients call the standard tier (stored as no tier)."""
MAX_TIER_LENGTH = 32
_CACHE_LIMIT = 4096


def normalize_tier(value: Any) -> str | None:
    """The stored tier of an attribute value: None for standard or unreadable values."""
    if type(value) is not str or not value:
        return None
    tier = value.strip().lower()[:MAX_TIER_LENGTH]
    return None if not tier or tier in STANDARD_NAMES else tier


class TierRates(BaseModel):
    """Explicit per-million-token rates of a tier (replacing the list price)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    input: Decimal = Field(ge=0)
    output: Decimal = Field(ge=0)
    cache_read: Decimal | None = Field(default=None, ge=0)


class TierRule(BaseModel):
    """One rule of ``data/service_tiers.toml``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    provider: str
    models: ModelPatterns
    tier: str
    multiplier: Decimal | None = Field(default=None, ge=0)
    rates: TierRates | None = None
    source: Source
    date: ReadOn

    @field_validator("tier")
    @classmethod
    def _tier(cls, tier: str) -> str:
        if normalize_tier(tier) != tier:
            raise ValueError(f"tier {tier!r} must be lower case and not a standard synonym")
        return tier

    @model_validator(mode="after")
    def _one_price(self) -> TierRule:
        if (self.multiplier is None) == (self.rates is None):
            raise ValueError("a rule gives either a multiplier or rates")
        return self

    def covers(self, provider: str | None, model: str) -> bool:
        return provider == self.provider and any(pattern_matches(p, model) for p in self.models)


@cache
def tier_rules() -> tuple[TierRule, ...]:
    """The packaged rules, validated once."""
    return load_rules("service_tiers.toml", TierRule)


@dataclass(frozen=True, slots=True)
class _Key:
    provider: str | None
    model: str
    tier: str


_found: BoundedCache[_Key, TierRule | None] = BoundedCache(_CACHE_LIMIT)


def rule_for(provider: str | None, model: str, tier: str) -> TierRule | None:
    """The first rule covering ``model`` of ``provider`` at ``tier`` (the genai-prices
    provider id), or None. Cached, bounded: tenants choose model names."""
    key = _Key(provider, model, tier)
    try:
        return _found[key]
    except KeyError:
        pass
    rule = next(
        (r for r in tier_rules() if r.tier == tier and r.covers(provider, model)),
        None,
    )
    _found.put(key, rule)
    return rule
