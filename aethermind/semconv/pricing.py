"""Price a usage record with genai-prices, at the span's own time, fast enough for a hot path.

``genai_prices.calc_price`` costs about 100 µs a call. Within one model, one price period and
one price tier the price is linear in the token counts, so we ask genai-prices once for the
price of each kind of token (a rate card, probed through its own arithmetic) and cache that;
each span then costs a few Decimal multiplications. A property test checks the result equals
``calc_price`` exactly. No prices live in this module: all come from genai-prices' bundled
snapshot or from an organization's own overrides.
"""

from __future__ import annotations

import bisect
import copy
import functools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from genai_prices import Usage
from genai_prices.data_snapshot import DataSnapshot, get_snapshot
from genai_prices.types import (
    ConditionalPrice,
    ModelInfo,
    ModelPrice,
    Provider,
    TieredPrices,
    TimeOfDateConstraint,
)

from aethermind.semconv.billed_counts import billed_caps
from aethermind.semconv.bounded import BoundedCache
from aethermind.semconv.pricing_patterns import pieces_match
from aethermind.semconv.pricing_units import split_units, with_units
from aethermind.semconv.providers import prices_provider_id, same_provider, split_model_prefix
from aethermind.semconv.record import UNKNOWN_COST, Cost, UsageRecord
from aethermind.semconv.tiers import TierRule, rule_for

logger = logging.getLogger(__name__)

_ZERO = Decimal(0)
_NS_PER_DAY = 86_400_000_000_000
_NS_PER_MINUTE = 60_000_000_000
_PROBE_OUTPUT = 1_000_000
_PROBE_INPUT = 1_000_000
_CACHE_LIMIT = 8192
"""Entries per lookup cache of a price book. Keys hold model and provider names, which
spans choose (bounded to ``record.MAX_NAME_LENGTH`` characters by the normalizer), so every
cache is bounded; a few thousand models in steady use stay cached through any churn."""
_OVERRIDE_PRICE_FIELDS = (
    "input_per_mtok",
    "output_per_mtok",
    "cache_read_per_mtok",
    "cache_write_per_mtok",
)


@dataclass(frozen=True, slots=True)
class PriceOverride:
    """An organization's own price for models matching ``model_pattern`` (``*`` wildcards,
    case-blind; see ``check_model_pattern``).

    Used for fine-tunes, private deployments and negotiated rates. Prices are USD per million
    tokens; a missing cache price means cached tokens cost the input price. A missing input
    or output price leaves the spans it matches unpriced (an unknown price is never $0).
    With ``provider`` set it applies only to spans of that provider.
    """

    model_pattern: str
    input_per_mtok: Decimal | None
    output_per_mtok: Decimal | None
    cache_read_per_mtok: Decimal | None = None
    cache_write_per_mtok: Decimal | None = None
    valid_from: datetime | None = None
    provider: str | None = None
    service_tier: str | None = None
    """The tier it prices (``tiers.normalize_tier``'s names); None: standard requests, and
    the base that tier rules of ``data/service_tiers.toml`` scale for other tiers."""
    _pieces: tuple[str, ...] = field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_pieces", tuple(self.model_pattern.lower().split("*")))
        for name in _OVERRIDE_PRICE_FIELDS:
            value = getattr(self, name)
            if value is not None and (not value.is_finite() or value < 0):
                raise ValueError(
                    f"price override {self.model_pattern!r}: {name} must be >= 0, got {value}"
                )

    def applies(self, model: str, provider: str | None, start_time_unix_nano: int) -> bool:
        return self.in_effect(start_time_unix_nano) and self.names(model.lower(), provider)

    def in_effect(self, start_time_unix_nano: int) -> bool:
        return self.valid_from is None or start_time_unix_nano >= _unix_nano(self.valid_from)

    def names(self, lowered_model: str, provider: str | None) -> bool:
        """Whether this override is for ``lowered_model`` (in lower case) of ``provider``."""
        if self.provider is not None and not same_provider(self.provider, provider):
            return False
        return pieces_match(self._pieces, lowered_model)

    @property
    def complete(self) -> bool:
        """Both token prices known: only then can it price a call."""
        return self.input_per_mtok is not None and self.output_per_mtok is not None

    def model_price(self) -> ModelPrice:
        return ModelPrice(
            input_mtok=self.input_per_mtok,
            output_mtok=self.output_per_mtok,
            cache_read_mtok=self.cache_read_per_mtok,
            cache_write_mtok=self.cache_write_per_mtok,
        )


class LookupBudget:
    """How many model names one organization may have looked up in genai-prices' tables
    (~170 µs each; names already cached cost nothing), as a token bucket: a burst for a
    cold start, then a steady rate. Past it a span is stored unpriced (cost NULL, counted
    in ``refused``; ``aethermind reprice`` prices it later), so an organization sending
    endless new names spends its own accuracy, not everybody's CPU."""

    __slots__ = ("_burst", "_clock", "_per_second", "_tokens", "_updated", "refused")

    def __init__(
        self,
        *,
        burst: int = 1024,
        per_second: float = 100.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._burst = float(burst)
        self._per_second = per_second
        self._clock = clock
        self._tokens = float(burst)
        self._updated = clock()
        self.refused = 0

    def take(self) -> bool:
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._updated) * self._per_second)
        self._updated = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        self.refused += 1
        return False


_NOT_NOW = object()
"""A lookup the organization's ``LookupBudget`` refused: unpriced now, not remembered."""


@dataclass(frozen=True, slots=True)
class RateCard:
    """Per-token USD prices of one model, in one price period and one tier."""

    fixed: Decimal
    input: Decimal
    cache_read: Decimal
    cache_write: Decimal
    cache_write_1h: Decimal
    output: Decimal
    reasoning: Decimal
    cache_saving: Decimal = _ZERO
    """What a cache read saves against an uncached input token (``input - cache_read``)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "cache_saving", self.input - self.cache_read)

    @classmethod
    def probe(cls, price: ModelPrice, input_probe: int | None) -> RateCard:
        """Ask genai-prices for the price of each token kind at ``input_probe`` input tokens.

        ``input_probe`` lies inside the tier being probed (tiers are chosen by input tokens);
        None means the tier only holds zero input tokens, so input rates never apply.
        """

        def total(**usage: int) -> Decimal:
            return price.calc_price(Usage(**usage))["total_price"]

        fixed = total()
        if input_probe is None:
            zero = _ZERO
            base = fixed
            rates_in = (zero, zero, zero, zero)
            base_input = 0
        else:
            n = input_probe
            base = total(input_tokens=n)
            rates_in = (
                (base - fixed) / n,
                (total(input_tokens=n, cache_read_tokens=n) - fixed) / n,
                (total(input_tokens=n, cache_write_tokens=n) - fixed) / n,
                (total(input_tokens=n, cache_write_tokens=n, cache_write_1h_tokens=n) - fixed) / n,
            )
            base_input = n
        m = _PROBE_OUTPUT
        output = (total(input_tokens=base_input, output_tokens=m) - base) / m
        reasoning = (
            total(input_tokens=base_input, output_tokens=m, output_reasoning_tokens=m) - base
        ) / m
        return cls(fixed, *rates_in, output=output, reasoning=reasoning)

    def cost(self, record: UsageRecord, price_model_id: str, provider_id: str | None) -> Cost:
        # Zero terms are skipped: Decimal arithmetic dominates the per-span cost.
        zero = _ZERO
        cache_read = record.cache_read_tokens or 0
        cache_write = record.cache_write_tokens or 0
        uncached = (record.input_tokens or 0) - cache_read - cache_write
        input_cost = uncached * self.input if uncached > 0 else zero
        read_cost = cache_read * self.cache_read if cache_read else zero
        if cache_write:
            write_1h = min(record.cache_write_1h_tokens or 0, cache_write)
            write_cost = (cache_write - write_1h) * self.cache_write
            if write_1h:
                write_cost += write_1h * self.cache_write_1h
        else:
            write_cost = zero
        output = record.output_tokens or 0
        reasoning = min(record.reasoning_tokens or 0, output)
        output_cost = (output - reasoning) * self.output if output else zero
        if reasoning:
            output_cost += reasoning * self.reasoning
        total = input_cost + read_cost + write_cost + output_cost
        if self.fixed:
            total += self.fixed
        return Cost(
            "computed",
            total,
            input_cost,
            read_cost,
            write_cost,
            output_cost,
            price_model_id,
            provider_id,
            None,
            self.fixed,
            None,
            cache_read * self.cache_saving if cache_read else zero,
        )


@dataclass(frozen=True, slots=True)
class _Resolved:
    provider: Provider
    model: ModelInfo
    time_of_day_prices: bool


class _PricedModel:
    """One model's price (for one period) with its tier bounds and lazily probed rate cards."""

    __slots__ = ("_cards", "_price", "_tier_starts")

    def __init__(self, price: ModelPrice) -> None:
        self._price = price
        starts: set[int] = set()
        for value in price.__dict__.values():
            if isinstance(value, TieredPrices):
                starts.update(tier.start for tier in value.tiers)
        self._tier_starts = sorted(starts)
        self._cards: dict[int, RateCard] = {}

    def card_for(self, input_tokens: int) -> RateCard:
        # genai-prices picks the highest tier whose start is strictly below the input tokens.
        tier = bisect.bisect_left(self._tier_starts, input_tokens) if self._tier_starts else 0
        card = self._cards.get(tier)
        if card is None:
            card = RateCard.probe(self._price, self._input_probe(tier))
            self._cards[tier] = card
        return card

    def cost(self, record: UsageRecord, price_model_id: str, provider_id: str | None) -> Cost:
        """``record`` at this price: text tokens by the rate card of its tier, audio, image
        and video tokens and per-call fees at their own rates (``pricing_units``)."""
        inputs = record.input_tokens or 0
        if record.units is None:
            return self.card_for(inputs).cost(record, price_model_id, provider_id)
        split = split_units(self._price, record, billed_caps(provider_id, price_model_id))
        if split is None:
            return _fallback(record)
        text, modality, fees = split
        text_cost = self.card_for(inputs).cost(text, price_model_id, provider_id)
        return with_units(text_cost, modality, fees)

    def _input_probe(self, tier: int) -> int | None:
        starts = self._tier_starts
        if not starts:
            return _PROBE_INPUT
        if tier == 0:
            return starts[0] if starts[0] > 0 else None
        return starts[tier - 1] + 1


class PriceBook:
    """Prices usage records against one genai-prices data snapshot, with every lookup cached.

    One instance per process is typical (see ``default_price_book``); tests or a user who
    refreshed prices can build their own from another snapshot.
    """

    def __init__(self, snapshot: DataSnapshot | None = None) -> None:
        self._snapshot = _without_lookup_caches(snapshot or get_snapshot())
        self._resolved: BoundedCache[tuple[str | None, str], _Resolved | None] = BoundedCache(
            _CACHE_LIMIT
        )
        self._periods: BoundedCache[tuple[int, int], _PricedModel] = BoundedCache(_CACHE_LIMIT)
        self._overrides: BoundedCache[PriceOverride, _PricedModel] = BoundedCache(_CACHE_LIMIT)
        self._tier_prices: BoundedCache[TierRule, _PricedModel] = BoundedCache(_CACHE_LIMIT)
        # (id of an organization's override tuple, model, provider) -> (that tuple, the
        # overrides naming the model): one scan of the overrides per model, not per span.
        self._naming: BoundedCache[
            tuple[int, str, str | None],
            tuple[Sequence[PriceOverride], tuple[PriceOverride, ...]],
        ] = BoundedCache(_CACHE_LIMIT)
        # (provider as written, model, UTC day) -> the priced model and its ids: one lookup
        # per span in the common case. Models with time-of-day prices never enter it.
        self._daily: BoundedCache[
            tuple[str | None, str | None, int], tuple[_PricedModel, str, str] | None
        ] = BoundedCache(_CACHE_LIMIT)

    def price(
        self,
        record: UsageRecord,
        start_time_unix_nano: int,
        *,
        overrides: Sequence[PriceOverride] = (),
        lookups: LookupBudget | None = None,
    ) -> Cost:
        """The cost of ``record`` at the span's start time; never raises on odd input.
        ``lookups`` is the organization's budget for names not cached yet."""
        try:
            if not overrides and record.is_llm_call and record.service_tier is None:
                # The common case in one lookup: this model already priced for this UTC day.
                try:
                    daily = self._daily[
                        (
                            record.provider,
                            record.response_model or record.request_model,
                            start_time_unix_nano // _NS_PER_DAY,
                        )
                    ]
                except KeyError:
                    daily = None
                if daily is not None:
                    priced, model_id, provider_id = daily
                    return priced.cost(record, model_id, provider_id)
            return self._price(record, start_time_unix_nano, overrides, lookups)
        except Exception:  # a pricing bug must not lose the span: it is stored unpriced
            logger.exception(
                "pricing failed", extra={"provider": record.provider, "model": record.model}
            )
            return _fallback(record)

    def _price(
        self,
        record: UsageRecord,
        start_ns: int,
        overrides: Sequence[PriceOverride],
        lookups: LookupBudget | None,
    ) -> Cost:
        model = record.model
        if not model or not record.is_llm_call:
            return _fallback(record)
        inputs = record.input_tokens or 0
        if overrides:
            naming = self._overrides_naming(overrides, model, record.provider, lookups)
            if naming is None:
                return _fallback(record)
            tier = record.service_tier
            override = None
            if naming and tier is not None:
                override = _pick_override([o for o in naming if o.service_tier == tier], start_ns)
                if override is not None:  # the organization's own price for this tier
                    return self._override_cost(override, record, inputs)
            if naming:
                override = _pick_override([o for o in naming if o.service_tier is None], start_ns)
            if override is not None:
                cost = self._override_cost(override, record, inputs)
                if tier is None or cost.total is None:
                    return cost
                rule = rule_for(prices_provider_id(record.provider), model, tier)
                if rule is None or rule.multiplier is None:
                    return cost  # rates rules replace list prices, not the org's own price
                return _scaled(cost, rule.multiplier)
        day_key = (record.provider, model, start_ns // _NS_PER_DAY)
        try:
            daily = self._daily[day_key]
        except KeyError:
            pass
        else:
            if daily is None:
                return _fallback(record)
            priced, model_id, provider_name = daily
            return self._at_tier(priced.cost(record, model_id, provider_name), record, inputs)
        provider_id = prices_provider_id(record.provider)
        resolved = self._resolve(provider_id, model, lookups)
        if resolved is None and record.request_model and record.request_model != model:
            resolved = self._resolve(provider_id, record.request_model, lookups)
        if resolved is _NOT_NOW:
            return _fallback(record)
        if resolved is None:
            self._daily.put(day_key, None)
            return _fallback(record)
        period = start_ns // (_NS_PER_MINUTE if resolved.time_of_day_prices else _NS_PER_DAY)
        key = (id(resolved.model), period)
        try:
            priced_model = self._periods[key]
        except KeyError:
            at = datetime.fromtimestamp(start_ns / 1e9, tz=UTC)
            priced_model = _PricedModel(resolved.model.get_prices(at))
            self._periods.put(key, priced_model)
        if not resolved.time_of_day_prices:
            self._daily.put(day_key, (priced_model, resolved.model.id, resolved.provider.id))
        cost = priced_model.cost(record, resolved.model.id, resolved.provider.id)
        return self._at_tier(cost, record, inputs)

    def what_if(
        self, model: str, tokens: UsageRecord, at_unix_nano: int
    ) -> tuple[Decimal, str] | None:
        """What ``tokens`` (summed usage of many calls) would cost on ``model`` at its list
        prices at ``at_unix_nano``: each token kind at its base-tier rate (a sum of calls
        says nothing of which single prompt crossed a long-context threshold), with the
        genai-prices model id; None when genai-prices does not know the model."""
        prefix_provider, _ = split_model_prefix(model)
        resolved = self._resolve(prefix_provider, model, None)
        if resolved is None or resolved is _NOT_NOW:
            return None
        at = datetime.fromtimestamp(at_unix_nano / 1e9, tz=UTC)
        card = _PricedModel(resolved.model.get_prices(at)).card_for(0)
        record = copy.copy(tokens)
        record.cache_write_1h_tokens = None
        cost = card.cost(record, resolved.model.id, resolved.provider.id)
        if cost.total is None:
            return None
        # The fixed per-request fee, if any, belongs to each call, not to the sum: left out.
        return cost.total - card.fixed, resolved.model.id

    def _override_cost(self, override: PriceOverride, record: UsageRecord, inputs: int) -> Cost:
        if not override.complete:
            return _fallback(record)
        try:
            priced = self._overrides[override]
        except KeyError:
            priced = _PricedModel(override.model_price())
            self._overrides.put(override, priced)
        return priced.cost(record, f"override:{override.model_pattern}", None)

    def _at_tier(self, cost: Cost, record: UsageRecord, inputs: int) -> Cost:
        """``cost`` (a list price) at the record's service tier: scaled by the tier rule's
        multiplier, or at its own rates; unchanged for standard requests and tiers no rule
        covers (priced as standard)."""
        tier = record.service_tier
        if tier is None or cost.total is None or cost.price_model_id is None:
            return cost
        rule = rule_for(cost.provider_id, cost.price_model_id, tier)
        if rule is None:
            rule = rule_for(cost.provider_id, record.model or "", tier)
        if rule is None:
            return cost
        if rule.multiplier is not None:
            return _scaled(cost, rule.multiplier)
        try:
            priced = self._tier_prices[rule]
        except KeyError:
            priced = _PricedModel(_rates_price(rule))
            self._tier_prices.put(rule, priced)
        return priced.cost(record, f"{cost.price_model_id}@{tier}", cost.provider_id)

    def _overrides_naming(
        self,
        overrides: Sequence[PriceOverride],
        model: str,
        provider: str | None,
        lookups: LookupBudget | None,
    ) -> tuple[PriceOverride, ...] | None:
        """The overrides naming ``model``; None when the budget refused the scan."""
        key = (id(overrides), model, provider)
        try:
            owner, naming = self._naming[key]
            if owner is overrides:  # not another tuple that reused a freed one's id
                return naming
        except KeyError:
            pass
        if lookups is not None and not lookups.take():
            return None
        lowered = model.lower()
        naming = tuple(o for o in overrides if o.names(lowered, provider))
        self._naming.put(key, (overrides, naming))
        return naming

    def _resolve(self, provider_id: str | None, model: str, lookups: LookupBudget | None) -> Any:
        """The model's ``_Resolved``, None when genai-prices has no such model, or
        ``_NOT_NOW`` when a lookup was needed and the budget refused it."""
        key = (provider_id, model)
        try:
            return self._resolved[key]
        except KeyError:
            pass
        if lookups is not None and not lookups.take():
            return _NOT_NOW
        resolved = self._lookup(provider_id, model)
        self._resolved.put(key, resolved)
        return resolved

    def _lookup(self, provider_id: str | None, model: str) -> _Resolved | None:
        prefix_provider, bare_model = split_model_prefix(model)
        candidates: list[tuple[str | None, str]] = []
        if prefix_provider is not None:
            candidates.append((prefix_provider, bare_model))
        candidates.append((provider_id, model))
        if provider_id is not None:
            # A proxy or gateway may report its own name as the provider; the model name
            # alone still identifies a well-known model.
            candidates.append((None, bare_model))
        for candidate_provider, candidate_model in candidates:
            try:
                provider, info = self._snapshot.find_provider_model(
                    candidate_model, None, candidate_provider, None
                )
            except LookupError:
                continue
            return _Resolved(provider, info, _has_time_of_day_prices(info))
        return None


class _Unremembered(dict[Any, Any]):
    """A dict that keeps nothing: stands in for genai-prices' own lookup caches."""

    def __setitem__(self, key: Any, value: Any) -> None:
        pass


class _UnrememberedSet(set[Any]):
    def add(self, element: Any) -> None:
        pass


_SNAPSHOT_CACHES = {
    "_lookup_cache": _Unremembered,
    "_provider_cache": _Unremembered,
    "_provider_misses": _UnrememberedSet,
}
"""genai-prices' ``DataSnapshot`` remembers every model name it was asked about, found or
not, without bound (names are whatever spans say). Our own bounded caches sit in front of
it, so a private copy of the snapshot whose caches keep nothing loses no speed."""


def _without_lookup_caches(snapshot: DataSnapshot) -> DataSnapshot:
    private = copy.copy(snapshot)
    for name, empty in _SNAPSHOT_CACHES.items():
        if not hasattr(private, name):
            # A genai-prices release that renamed its caches: say so rather than let an
            # unbounded cache back in silently (tests/semconv checks the bound too).
            logger.warning("genai-prices snapshot has no %s to bound", name)
            continue
        setattr(private, name, empty())
    return private


@functools.cache
def default_price_book() -> PriceBook:
    """The process-wide price book over genai-prices' bundled snapshot (never downloads)."""
    return PriceBook()


def price_record(
    record: UsageRecord,
    start_time_unix_nano: int,
    *,
    overrides: Sequence[PriceOverride] = (),
) -> Cost:
    """Price ``record`` with the default price book."""
    return default_price_book().price(record, start_time_unix_nano, overrides=overrides)


def _fallback(record: UsageRecord) -> Cost:
    """The cost the span reported, if any: a model call's stands in for a price we lack; any
    other span's is its own cost, not tokens (the ``other`` line)."""
    if record.provided_cost is not None:
        if not record.is_llm_call:
            return Cost(source="provided", total=record.provided_cost, other=record.provided_cost)
        return Cost(source="provided", total=record.provided_cost)
    return UNKNOWN_COST


def _scaled(cost: Cost, multiplier: Decimal) -> Cost:
    """``cost`` with every line times ``multiplier`` (a tier that discounts all tokens)."""

    def times(value: Decimal | None) -> Decimal | None:
        return None if value is None else value * multiplier

    return Cost(
        cost.source,
        times(cost.total),
        times(cost.input),
        times(cost.cache_read),
        times(cost.cache_write),
        times(cost.output),
        cost.price_model_id,
        cost.provider_id,
        times(cost.modality),
        times(cost.fees),
        times(cost.other),
        times(cost.saved_by_cache),
    )


def _rates_price(rule: TierRule) -> ModelPrice:
    rates = rule.rates
    assert rates is not None
    return ModelPrice(
        input_mtok=rates.input, output_mtok=rates.output, cache_read_mtok=rates.cache_read
    )


def _pick_override(naming: Sequence[PriceOverride], start_ns: int) -> PriceOverride | None:
    """Of the overrides naming a span's model, the latest in effect at its start."""
    best: PriceOverride | None = None
    for override in naming:
        if not override.in_effect(start_ns):
            continue
        if best is None or _valid_from_ns(override) > _valid_from_ns(best):
            best = override
    return best


def _valid_from_ns(override: PriceOverride) -> int:
    return _unix_nano(override.valid_from) if override.valid_from is not None else -1


def _unix_nano(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1_000_000) * 1000


def _has_time_of_day_prices(model: ModelInfo) -> bool:
    prices = model.prices
    if not isinstance(prices, list):
        return False
    return any(
        isinstance(p, ConditionalPrice) and isinstance(p.constraint, TimeOfDateConstraint)
        for p in prices
    )
