"""Turn any LLM span's attributes, whatever convention wrote them, into one UsageRecord.

Precedence between spellings lives in ``attributes`` (tables of names); how each
instrumentation counts cached and reasoning tokens lives in ``COUNTING`` below, decided from
what the real instrumentations emit (see tests/semconv). Never raises: telemetry is input we
do not control.
"""

from __future__ import annotations

import ast
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from aethermind.semconv import attributes as a
from aethermind.semconv.agent_spans import ADAPTERS
from aethermind.semconv.bounded import BoundedCache
from aethermind.semconv.providers import prices_provider_id
from aethermind.semconv.record import MAX_NAME_LENGTH, MAX_RESPONSE_ID_LENGTH, UsageRecord
from aethermind.semconv.tiers import normalize_tier

# Larger counts are garbage (a bug or an attack), not usage: they are ignored, not stored.
MAX_TOKENS: Final = 10**12
MAX_COST_USD: Final = Decimal(10**9)
ERROR_TYPE_OTHER: Final = "_OTHER"  # the semconv fallback when a failed span names no type


@dataclass(frozen=True, slots=True)
class Counting:
    """Whether a source reports cached input and reasoning output outside its main counts.

    The GenAI semconv defines input tokens as all input (cached included) and output tokens as
    all output (reasoning included); a source that reports them separately gets them added.
    """

    input_excludes_cache: bool = False
    output_excludes_reasoning: bool = False


INCLUSIVE: Final = Counting()

# (convention, genai-prices provider id) -> how that source counts. The convention is the
# instrumentation family ("openllmetry", "openinference", "anthropic-sdk", "semconv");
# None as provider is that family's default. Filled from the evidence in tests/semconv.
COUNTING: Final[dict[tuple[str, str | None], Counting]] = {
    ("semconv", None): INCLUSIVE,
    # Gemini's candidates count leaves thoughts out; instrumentations pass it through as is.
    ("semconv", "google"): Counting(output_excludes_reasoning=True),
    ("openllmetry", None): INCLUSIVE,
    ("openllmetry", "google"): Counting(output_excludes_reasoning=True),
    ("openinference", None): INCLUSIVE,
    ("anthropic-sdk", None): INCLUSIVE,
}

# Instrumentation scope name prefixes -> convention family.
SCOPE_CONVENTIONS: Final = (
    ("opentelemetry.instrumentation.", "openllmetry"),
    ("openinference.instrumentation.", "openinference"),
    (a.ANTHROPIC_SDK_SCOPE, "anthropic-sdk"),
)

# Operation names of the other conventions, mapped to semconv's `gen_ai.operation.name`.
OPERATION_ALIASES: Final[dict[str, str]] = {
    "completion": "text_completion",
    "embedding": "embeddings",
    "LLM": "chat",
    "EMBEDDING": "embeddings",
    # The Vercel AI SDK's `ai.operationId`: the `.do*` spans are the provider requests; the
    # outer `ai.generateText` & co. keep their names (roll-ups of their requests).
    "ai.generateText.doGenerate": "chat",
    "ai.streamText.doStream": "chat",
    "ai.generateObject.doGenerate": "chat",
    "ai.streamObject.doStream": "chat",
    "ai.embed.doEmbed": "embeddings",
    "ai.embedMany.doEmbed": "embeddings",
    "ai.rerank.doRerank": "rerank",
    "ai.toolCall": "execute_tool",
}
OPENINFERENCE_AGENT_KINDS: Final = frozenset({"AGENT", "TOOL"})


# The precedence table compiled for one pass over a span's attributes: every alias of every
# fact, with its rank (0 wins). Reading a span is then one dict lookup per attribute.
_FIELDS: Final = (
    a.PROVIDER_KEYS,
    a.OPERATION_KEYS,
    a.REQUEST_MODEL_KEYS,
    a.RESPONSE_MODEL_KEYS,
    a.INPUT_TOKEN_KEYS,
    a.OUTPUT_TOKEN_KEYS,
    a.TOTAL_TOKEN_KEYS,
    a.CACHE_READ_KEYS,
    a.CACHE_WRITE_KEYS,
    (a.ANTHROPIC_CACHE_WRITE_5M,),
    a.CACHE_WRITE_1H_KEYS,
    a.REASONING_KEYS,
    a.PROVIDED_COST_KEYS,
    (a.ERROR_TYPE,),
    (a.OPENINFERENCE_SPAN_KIND,),
    (a.LLM_INVOCATION_PARAMETERS,),
    (a.LITELLM_USAGE_OBJECT,),
    a.RESPONSE_ID_KEYS,
    a.USER_KEYS,
    a.SESSION_KEYS,
    a.AGENT_KEYS,
    a.SERVICE_TIER_KEYS,
    (a.AETHERMIND_COST_USD,),
    tuple(name for names in a.UNIT_KEYS.values() for name in names),
)
(
    _PROVIDER,
    _OPERATION,
    _REQUEST_MODEL,
    _RESPONSE_MODEL,
    _INPUT,
    _OUTPUT,
    _TOTAL,
    _CACHE_READ,
    _CACHE_WRITE,
    _WRITE_5M,
    _WRITE_1H,
    _REASONING,
    _COST,
    _ERROR_TYPE,
    _OI_KIND,
    _INVOCATION,
    _USAGE_OBJECT,
    _RESPONSE_ID,
    _USER,
    _SESSION,
    _AGENT,
    _SERVICE_TIER,
    _OTHER_COST,
    _ANY_UNIT,  # any of them: then every unit is read (``_units``)
) = range(len(_FIELDS))
_ATTRIBUTION_KEYS: Final = a.ATTRIBUTION_KEYS
_SLOTS: Final[dict[str, tuple[int, int]]] = {
    name: (field, rank) for field, names in enumerate(_FIELDS) for rank, name in enumerate(names)
}
_UNRANKED: Final = len(max(_FIELDS, key=len))


_NO_VALUES: Final[list[Any]] = [None] * len(_FIELDS)
_PLANS: Final[BoundedCache[tuple[str, ...], tuple[tuple[int, str], ...]]] = BoundedCache(1024)
"""Attribute names of a span, in order -> the name each field is read from. Spans of one
instrumentation share a few shapes, so reading a span is then one lookup per field it has,
not one per attribute. Keyed by what tenants send, so bounded in entries and, through
``_MAX_PLANNED_*``, in the size of each key (a span too large for it is read directly)."""
_MAX_PLANNED_NAMES: Final = 64
_MAX_PLANNED_CHARS: Final = 4096


def _pick(attrs: Mapping[str, Any]) -> list[Any]:
    """The best-ranked raw value of each field; validated by the caller."""
    names = tuple(attrs)
    try:
        plan = _PLANS[names]
    except KeyError:
        plan = _plan(names)
        if len(names) <= _MAX_PLANNED_NAMES and sum(map(len, names)) <= _MAX_PLANNED_CHARS:
            _PLANS.put(names, plan)
    values = _NO_VALUES.copy()
    for field, name in plan:
        values[field] = attrs[name]
    return values


def _plan(names: tuple[str, ...]) -> tuple[tuple[int, str], ...]:
    """For each field some name carries, the best-ranked such name."""
    ranks = [_UNRANKED] * len(_FIELDS)
    chosen: dict[int, str] = {}
    slots = _SLOTS
    for name in names:
        slot = slots.get(name)
        if slot is not None:
            field, rank = slot
            if rank < ranks[field]:
                ranks[field] = rank
                chosen[field] = name
    return tuple(chosen.items())


def normalize(
    attributes: Mapping[str, Any],
    resource: Mapping[str, Any] | None = None,
    *,
    scope: str | None = None,
    status_error: bool = False,
    status_message: str | None = None,
) -> UsageRecord | None:
    """One usage record for a GenAI span, or None (fast) for any other span.

    ``status_error`` is the span's status being ERROR: instrumentations that report a failed
    call that way without ``error.type`` still count as an error.
    """
    try:
        if scope is not None:
            adapter = ADAPTERS.get(scope)
            if adapter is not None:
                attributes = adapter(attributes)
        return _normalize(attributes, resource, scope, status_error, status_message)
    except Exception:  # hostile attribute types must never take the caller down
        return None


def _normalize(
    attrs: Mapping[str, Any],
    resource: Mapping[str, Any] | None,
    scope: str | None,
    status_error: bool,
    status_message: str | None,
) -> UsageRecord | None:
    for marker in a.GENAI_MARKER_KEYS:
        if marker in attrs:
            break
    else:
        return None

    found = _pick(attrs)
    # Each field: the common case (absent, or a plain value of the right type) inline, the
    # fallback to the next alias in a call. This function runs for every GenAI span.
    v = found[_OI_KIND]
    oi_kind = v if type(v) is str and v else None
    v = found[_OPERATION]
    operation = (
        v if v is None or (type(v) is str and v) else _valid_text(v, attrs, a.OPERATION_KEYS)
    )
    if operation is None and oi_kind is not None:
        operation = oi_kind
    if operation is not None:
        operation = OPERATION_ALIASES.get(operation, operation)

    if oi_kind is not None and oi_kind not in a.OPENINFERENCE_MODEL_KINDS:
        if oi_kind not in OPENINFERENCE_AGENT_KINDS:
            return None  # CHAIN, RETRIEVER, ...: not a model call, not an agent step
        is_llm_call = False
        operation = "invoke_agent" if oi_kind == "AGENT" else "execute_tool"
    else:
        is_llm_call = operation is None or operation in a.MODEL_CALL_OPERATIONS

    v = found[_REQUEST_MODEL]
    request_model = (
        v if v is None or (type(v) is str and v) else _valid_text(v, attrs, a.REQUEST_MODEL_KEYS)
    )
    v = found[_RESPONSE_MODEL]
    response_model = (
        v if v is None or (type(v) is str and v) else _valid_text(v, attrs, a.RESPONSE_MODEL_KEYS)
    )
    if request_model is None and found[_INVOCATION] is not None:
        request_model = _model_from_invocation_parameters(found[_INVOCATION])
    if request_model is not None and len(request_model) > MAX_NAME_LENGTH:
        request_model = request_model[:MAX_NAME_LENGTH]
    if response_model is not None and len(response_model) > MAX_NAME_LENGTH:
        response_model = response_model[:MAX_NAME_LENGTH]

    v = found[_INPUT]
    input_tokens = v if v is None or _plain_count(v) else _valid_count(v, attrs, a.INPUT_TOKEN_KEYS)
    v = found[_OUTPUT]
    output_tokens = (
        v if v is None or _plain_count(v) else _valid_count(v, attrs, a.OUTPUT_TOKEN_KEYS)
    )
    if is_llm_call and (
        request_model is None
        and response_model is None
        and input_tokens is None
        and output_tokens is None
        and operation is None
    ):
        if _reported_cost(attrs, found, False) is None:
            return None  # a bare provider name is not enough to call it a model call
        is_llm_call = False  # a span reporting a cost and nothing else: its own cost

    v = found[_PROVIDER]
    provider = v if v is None or (type(v) is str and v) else _valid_text(v, attrs, a.PROVIDER_KEYS)
    if provider is not None:
        provider = _lower(provider[:MAX_NAME_LENGTH])

    v = found[_CACHE_READ]
    cache_read = v if v is None or _plain_count(v) else _valid_count(v, attrs, a.CACHE_READ_KEYS)
    v = found[_CACHE_WRITE]
    cache_write = v if v is None or _plain_count(v) else _valid_count(v, attrs, a.CACHE_WRITE_KEYS)
    write_5m = write_1h = None
    if found[_WRITE_5M] is not None or found[_WRITE_1H] is not None:
        write_5m = _count(found[_WRITE_5M])
        write_1h = _count(found[_WRITE_1H])
        if cache_write is None and (write_5m is not None or write_1h is not None):
            cache_write = (write_5m or 0) + (write_1h or 0)
    v = found[_REASONING]
    reasoning = v if v is None or _plain_count(v) else _valid_count(v, attrs, a.REASONING_KEYS)
    if found[_USAGE_OBJECT] is not None and cache_read is None and cache_write is None:
        cache_read, cache_write, detailed_reasoning = _usage_object_details(found[_USAGE_OBJECT])
        reasoning = reasoning if reasoning is not None else detailed_reasoning

    v = found[_TOTAL]
    total = v if v is None or _plain_count(v) else _valid_count(v, attrs, a.TOTAL_TOKEN_KEYS)
    # Only a span with cached or reasoning tokens needs to know who counted them, and how.
    if (cache_read or cache_write or reasoning) and (
        input_tokens is not None or output_tokens is not None
    ):
        counting = _counting(scope, attrs, provider)
    else:
        counting = INCLUSIVE
    input_tokens, output_tokens, total = complete_counts(
        input_tokens, output_tokens, cache_read, cache_write, reasoning, total, counting
    )

    v = found[_ERROR_TYPE]
    error_type = v if type(v) is str and v else None
    if error_type is None and status_error:
        error_type = ERROR_TYPE_OTHER

    service = environment = None
    user, session, agent = found[_USER], found[_SESSION], found[_AGENT]
    if resource:
        service = _text(resource.get(a.SERVICE_NAME))
        environment = _first_text(resource, a.ENVIRONMENT_KEYS)
    cut = False
    if (
        user is not None
        or session is not None
        or agent is not None
        or (resource and not _ATTRIBUTION_KEYS.isdisjoint(resource))
    ):
        user, session, agent, cut = _attribution(attrs, resource, user, session, agent)

    v = found[_RESPONSE_ID]
    response_id = v if type(v) is str and 0 < len(v) <= MAX_RESPONSE_ID_LENGTH else None
    v = found[_SERVICE_TIER]
    if v is None and found[_INVOCATION] is not None:
        v = _invocation_parameter(found[_INVOCATION], "service_tier")
    service_tier = None if v is None else normalize_tier(v)

    # Positional on purpose: keyword construction of 18 fields is measurably slower here.
    return UsageRecord(
        provider,
        operation,
        request_model,
        response_model,
        input_tokens,
        output_tokens,
        cache_read,
        cache_write,
        write_5m,
        write_1h,
        reasoning,
        total,
        _reported_cost(attrs, found, is_llm_call),
        error_type,
        service,
        environment,
        is_llm_call,
        response_id,
        user,
        session,
        agent,
        cut,
        service_tier,
        None if found[_ANY_UNIT] is None else _units(attrs),
    )


def complete_counts(  # noqa: PLR0917 - positional: it runs for every GenAI span
    input_tokens: int | None,
    output_tokens: int | None,
    cache_read: int | None,
    cache_write: int | None,
    reasoning: int | None,
    total: int | None,
    counting: Counting,
) -> tuple[int | None, int | None, int | None]:
    """(input, output, total) as the GenAI conventions count them: cached tokens inside the
    input and reasoning inside the output (added when the source ``counting`` says it left
    them out, or when they exceed the count they belong to), and the total their sum."""
    cached = (cache_read or 0) + (cache_write or 0)
    if input_tokens is not None and cached:
        if counting.input_excludes_cache or cached > input_tokens:
            input_tokens += cached
    if output_tokens is not None and reasoning:
        if counting.output_excludes_reasoning or reasoning > output_tokens:
            output_tokens += reasoning
    if total is None or (input_tokens is not None and output_tokens is not None):
        if input_tokens is not None or output_tokens is not None:
            total = (input_tokens or 0) + (output_tokens or 0)
    return input_tokens, output_tokens, total


def reported_usage(
    *,
    provider: str | None,
    operation: str | None,
    request_model: str | None,
    response_model: str | None,
    input_tokens: int | None,
    output_tokens: int | None,
    cache_read_tokens: int | None,
    cache_write_tokens: int | None,
    reasoning_tokens: int | None,
    total_tokens: int | None,
    provided_cost: Decimal | None,
    error_type: str | None,
    failed: bool,
    service: str | None,
    environment: str | None,
) -> UsageRecord:
    """The usage record of a call a client reported field by field (``/v1/ingest``'s
    events), by the rules ``normalize`` applies to span attributes: the GenAI conventions'
    counting, provider names in lower case, operation aliases, a failed call's error type."""
    if operation is not None:
        operation = OPERATION_ALIASES.get(operation, operation)
    input_tokens, output_tokens, total_tokens = complete_counts(
        input_tokens,
        output_tokens,
        cache_read_tokens,
        cache_write_tokens,
        reasoning_tokens,
        total_tokens,
        INCLUSIVE,
    )
    return UsageRecord(
        provider=None if provider is None else _lower(provider[:MAX_NAME_LENGTH]),
        operation=operation,
        request_model=None if request_model is None else request_model[:MAX_NAME_LENGTH],
        response_model=None if response_model is None else response_model[:MAX_NAME_LENGTH],
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cache_read_tokens=cache_read_tokens,
        cache_write_tokens=cache_write_tokens,
        reasoning_tokens=reasoning_tokens,
        total_tokens=total_tokens,
        provided_cost=provided_cost,
        error_type=error_type if error_type is not None or not failed else ERROR_TYPE_OTHER,
        service=service,
        environment=environment,
        is_llm_call=operation is None or operation in a.MODEL_CALL_OPERATIONS,
    )


def convention_of(scope: str | None, attrs: Mapping[str, Any]) -> str:
    """Which instrumentation family wrote a span: by its scope name, else by its spelling."""
    if scope:
        for prefix, convention in SCOPE_CONVENTIONS:
            if scope.startswith(prefix):
                return convention
    if a.LLM_TOKEN_COUNT_PROMPT in attrs or a.OPENINFERENCE_SPAN_KIND in attrs:
        return "openinference"
    if a.LLM_REQUEST_TYPE in attrs:
        return "openllmetry"
    return "semconv"


def _counting(scope: str | None, attrs: Mapping[str, Any], provider: str | None) -> Counting:
    """How the span's source counts cached and reasoning tokens.

    Cached per (scope, provider) only for scopes the conventions know by name: there the
    scope alone decides the convention. For any other scope the span's own spelling
    decides, so caching by scope would let one tenant's span decide how another tenant's
    tokens are counted; those are worked out each time (a few dictionary lookups)."""
    key = (scope, provider)
    counting = _COUNTING_BY_KNOWN_SCOPE.get(key)
    if counting is not None:
        return counting
    convention = convention_of(scope, attrs)
    provider_id = prices_provider_id(provider)
    counting = (
        COUNTING.get((convention, provider_id)) or COUNTING.get((convention, None)) or INCLUSIVE
    )
    if (
        scope is not None
        and scope.startswith(_KNOWN_SCOPE_PREFIXES)
        and len(_COUNTING_BY_KNOWN_SCOPE) < _MAX_CACHED_SCOPES
    ):
        _COUNTING_BY_KNOWN_SCOPE[(scope, provider)] = counting
    return counting


_KNOWN_SCOPE_PREFIXES: Final = tuple(prefix for prefix, _ in SCOPE_CONVENTIONS)
_MAX_CACHED_SCOPES: Final = 4096
"""Bounded: scope and provider names are whatever spans say. Past the bound, no caching."""
_COUNTING_BY_KNOWN_SCOPE: dict[tuple[str | None, str | None], Counting] = {}


MAX_USAGE_OBJECT_LENGTH: Final = 4096
"""A provider usage object printed by LiteLLM is a few hundred characters; longer is not one."""


def _usage_object_details(value: Any) -> tuple[int | None, int | None, int | None]:
    """(cache reads, cache writes, reasoning) from a usage object that LiteLLM printed as a
    Python dict (OpenAI's ``prompt_tokens_details.cached_tokens``, Anthropic's
    ``cache_read_input_tokens`` / ``cache_creation_input_tokens``)."""
    if type(value) is not str or len(value) > MAX_USAGE_OBJECT_LENGTH:
        return None, None, None
    try:
        usage = ast.literal_eval(value)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None, None, None
    if not isinstance(usage, dict):
        return None, None, None
    prompt = usage.get("prompt_tokens_details")
    completion = usage.get("completion_tokens_details")
    read = _count(usage.get("cache_read_input_tokens"))
    if read is None and isinstance(prompt, dict):
        read = _count(prompt.get("cached_tokens"))
    write = _count(usage.get("cache_creation_input_tokens"))
    reasoning = _count(completion.get("reasoning_tokens")) if isinstance(completion, dict) else None
    return read, write, reasoning


def _model_from_invocation_parameters(value: Any) -> str | None:
    return _text(_invocation_parameter(value, "model"))


def _invocation_parameter(value: Any, name: str) -> Any:
    """One request parameter from OpenInference's ``llm.invocation_parameters`` (JSON)."""
    if not isinstance(value, str) or len(value) > 65_536:
        return None
    try:
        params = json.loads(value)
    except ValueError:
        return None
    return params.get(name) if isinstance(params, dict) else None


def _text(value: Any) -> str | None:
    if type(value) is str and value:
        return value
    return None


def _attribution(
    attrs: Mapping[str, Any],
    resource: Mapping[str, Any] | None,
    user: Any,
    session: Any,
    agent: Any,
) -> tuple[str | None, str | None, str | None, bool]:
    """The span's user, session and agent: its best-ranked values (integers as text), else
    the next alias that is usable, else the resource's; each cut to ``MAX_NAME_LENGTH``; and
    whether any was cut."""
    values = []
    cut = False
    for value, keys in ((user, a.USER_KEYS), (session, a.SESSION_KEYS), (agent, a.AGENT_KEYS)):
        if type(value) is str and value:
            text: str | None = value
        elif type(value) is int:
            text = str(value)
        else:
            text = None if value is None else _first_text(attrs, keys)
            if text is None and resource:
                text = _first_text(resource, keys)
        if text is not None and len(text) > MAX_NAME_LENGTH:
            text, cut = text[:MAX_NAME_LENGTH], True
        values.append(text)
    return values[0], values[1], values[2], cut


def own_attribution(attrs: Mapping[str, Any]) -> tuple[str | None, str | None, str | None]:
    """The user, session and agent a span's own attributes name (no resource fallback), by
    the same rule as ``normalize``: what a span passes on to the spans under it."""
    if _ATTRIBUTION_KEYS.isdisjoint(attrs):
        return None, None, None
    firsts = [
        next((attrs[k] for k in keys if attrs.get(k) is not None), None)
        for keys in (a.USER_KEYS, a.SESSION_KEYS, a.AGENT_KEYS)
    ]
    user, session, agent, _ = _attribution(attrs, None, *firsts)
    return user, session, agent


def _first_text(attrs: Mapping[str, Any], keys: tuple[str, ...]) -> str | None:
    for key in keys:
        value = attrs.get(key)
        if type(value) is str and value:
            return value
    return None


def _plain_count(value: Any) -> bool:
    return type(value) is int and 0 <= value <= MAX_TOKENS


_LOWERED: dict[str, str] = {}


def _lower(text: str) -> str:
    """``text.lower()``, remembered: provider names are few and repeat on every span."""
    lowered = _LOWERED.get(text)
    if lowered is None:
        lowered = text.lower()
        if len(_LOWERED) < 1024:
            _LOWERED[text] = lowered
    return lowered


def _valid_text(value: Any, attrs: Mapping[str, Any], keys: tuple[str, ...]) -> str | None:
    """``value`` if it is usable text, else the next alias that is (the rare slow path)."""
    if type(value) is str and value:
        return value
    return None if value is None or len(keys) == 1 else _first_text(attrs, keys)


def _valid_count(value: Any, attrs: Mapping[str, Any], keys: tuple[str, ...]) -> int | None:
    if type(value) is int and 0 <= value <= MAX_TOKENS:
        return value
    if value is None:
        return None
    count = _count(value)
    if count is None and len(keys) > 1:
        return _first_count(attrs, keys)
    return count


def _count(value: Any) -> int | None:
    kind = type(value)
    if kind is int:
        return value if 0 <= value <= MAX_TOKENS else None
    if kind is float:
        if math.isfinite(value) and value.is_integer() and 0 <= value <= MAX_TOKENS:
            return int(value)
        return None
    if kind is str and 0 < len(value) <= 16:
        try:
            number = int(value)
        except ValueError:
            return None
        return number if 0 <= number <= MAX_TOKENS else None
    return None


def _first_count(attrs: Mapping[str, Any], keys: tuple[str, ...]) -> int | None:
    for key in keys:
        value = attrs.get(key)
        if value is not None:
            count = _count(value)
            if count is not None:
                return count
    return None


def _reported_cost(attrs: Mapping[str, Any], found: list[Any], is_llm_call: bool) -> Decimal | None:
    """The cost the span reported: a model call's beside ours (``PROVIDED_COST_KEYS``), any
    other span's as its own (``OTHER_COST_KEYS``)."""
    if is_llm_call:
        return None if found[_COST] is None else _first_cost(attrs, a.PROVIDED_COST_KEYS)
    if found[_COST] is None and found[_OTHER_COST] is None:
        return None
    return _first_cost(attrs, a.OTHER_COST_KEYS)


def _first_cost(attrs: Mapping[str, Any], keys: tuple[str, ...]) -> Decimal | None:
    for key in keys:
        cost = provided_cost(attrs.get(key))
        if cost is not None:
            return cost
    return None


def _units(attrs: Mapping[str, Any]) -> dict[str, int] | None:
    """The span's usage billed at rates of its own (``attributes.UNIT_KEYS``), valid counts
    only; None when none is."""
    units: dict[str, int] = {}
    for unit, names in a.UNIT_KEYS.items():
        for name in names:
            count = _count(attrs.get(name))
            if count is not None:
                if count:
                    units[unit] = count
                break
    return units or None


def provided_cost(value: Any) -> Decimal | None:
    """A cost a client reported (a number or its decimal text), if it is one we keep: finite,
    not negative, at most ``MAX_COST_USD``. The one rule for spans and log events alike."""
    if value is None or type(value) is bool or not isinstance(value, (int, float, str)):
        return None
    try:
        cost = Decimal(str(value))
    except InvalidOperation:
        return None
    return cost if cost.is_finite() and 0 <= cost <= MAX_COST_USD else None
