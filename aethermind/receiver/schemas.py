"""The JSON bodies of the events, admin and query routes, declared once: the server validates
requests with these models, builds its answers through them, and the OpenAPI document is
generated from them (``openapi.py``), so the document and the server cannot disagree. Where a
fact has an owner elsewhere (the dimensions, the token columns, the stored span's columns)
the models are built from it.

Money is a decimal string (never a JSON number); instants are RFC 3339 strings; ids are
UUID strings.
"""

from __future__ import annotations

import re
from dataclasses import fields
from datetime import datetime
from decimal import Decimal as _Decimal
from typing import Annotated, Any, Literal, get_type_hints

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from aethermind.ingest.convert import SPAN_KINDS, STATUS_CODES
from aethermind.ingest.events import MAX_ERRORS_REPORTED, IngestEvent
from aethermind.semconv.pricing_patterns import MAX_PATTERN_STARS, check_model_pattern
from aethermind.storage.dimensions import QUERY_DIMENSIONS
from aethermind.storage.keys import SCOPES, normalize_scopes
from aethermind.storage.queries import GRANULARITIES
from aethermind.storage.rollups import TOKEN_COLUMNS
from aethermind.storage.span_row import TelemetryRow
from aethermind.storage.tags import MAX_TAG_KEYS, TAG_KEY_RE, TAG_PREFIX

MAX_TEXT_LENGTH = 200
"""Key names, model patterns and provider names: at most this many characters."""
MAX_PRICE_DIGITS = 7
"""Whole-dollar digits of a price per million tokens: prices are under 10,000,000."""
MAX_MESSAGES = 5
"""Problems of one request body listed in its 400."""

_NO_NUL = r"^[^\x00]*$"
_MONEY_PATTERN = rf"^[0-9]{{1,{MAX_PRICE_DIGITS}}}(\.[0-9]{{1,12}})?$"
_DATE_TIME_PATTERN = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})$"
)


def _utf8(value: str) -> str:
    """PostgreSQL text cannot hold unpaired surrogates (which JSON escapes can make)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("is not valid UTF-8") from None
    return value


Text = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_TEXT_LENGTH, pattern=_NO_NUL),
    AfterValidator(_utf8),
]
Money = Annotated[
    str,
    StringConstraints(pattern=_MONEY_PATTERN),
    Field(
        description=f"USD per million tokens, a decimal string under 1{'0' * MAX_PRICE_DIGITS}.",
        examples=["2.50"],
    ),
]
Instant = Annotated[
    str, Field(json_schema_extra={"format": "date-time"}, examples=["2026-11-01T00:00:00Z"])
]
Uuid = Annotated[str, Field(json_schema_extra={"format": "uuid"})]
Scope = Literal["ingest", "read", "admin"]
assert set(Scope.__args__) == set(SCOPES), "Scope lists the scopes storage knows"  # type: ignore[attr-defined]
Decimal = Annotated[
    str,
    StringConstraints(pattern=r"^[0-9]+(\.[0-9]+)?$"),
    Field(description="US dollars as a decimal string.", examples=["0.0125"]),
]


class _Body(BaseModel):
    """A request body: a JSON object with only the documented fields, types as sent."""

    model_config = ConfigDict(extra="forbid", strict=True)


class _Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NewKeyRequest(_Body):
    scopes: list[Scope] = Field(min_length=1, json_schema_extra={"uniqueItems": True})
    name: (
        Annotated[
            str,
            StringConstraints(max_length=MAX_TEXT_LENGTH, pattern=_NO_NUL),
            AfterValidator(_utf8),
        ]
        | None
    ) = None

    @field_validator("scopes")
    @classmethod
    def _known_once(cls, scopes: list[str]) -> list[str]:
        if len(set(scopes)) != len(scopes):
            raise ValueError("repeats a scope")
        return list(normalize_scopes(scopes))


ServiceTier = Annotated[
    str, StringConstraints(pattern=r"^[A-Za-z][A-Za-z0-9_-]{0,31}$", to_lower=True)
]


class NewPriceRequest(_Body):
    model_pattern: Annotated[Text, AfterValidator(check_model_pattern)] = Field(
        description=f"A model name, or a pattern with up to {MAX_PATTERN_STARS} `*` wildcards"
        " (`ft:gpt-4o*`, `*-mini`, `*llama*`); no `?` or `[...]`."
    )
    provider: Text | None = Field(
        default=None, description="Only spans of this provider (default: any provider)."
    )
    service_tier: ServiceTier | None = Field(
        default=None,
        description="Only requests served at this tier (`batch`, `flex`, `priority`, ...); "
        "default: standard requests, whose price the packaged tier rules then scale.",
    )
    input_per_mtok: Money
    output_per_mtok: Money
    cache_read_per_mtok: Money | None = None
    cache_write_per_mtok: Money | None = None
    valid_from: (
        Annotated[
            str,
            StringConstraints(pattern=_DATE_TIME_PATTERN),
            Field(
                description="From when the price applies (default: now).",
                json_schema_extra={"format": "date-time"},
                examples=["2026-11-01T00:00:00Z"],
            ),
        ]
        | None
    ) = None


class ApiKey(_Answer):
    id: Uuid
    organization_id: Uuid
    public_id: str = Field(description="The lookup part of the key.")
    scopes: list[Scope]
    name: str | None
    created_at: Instant
    last_used_at: Instant | None
    revoked_at: Instant | None


class KeyList(_Answer):
    keys: list[ApiKey]


class CreatedKey(_Answer):
    id: Uuid
    key: str = Field(
        pattern="^aether_", description="The full key: shown in this answer only, store it now."
    )
    scopes: list[Scope]
    organization_id: Uuid
    name: str | None


class Price(_Answer):
    id: Uuid
    organization_id: Uuid
    provider: str | None
    model_pattern: str = Field(description="A model name, or a pattern with `*` wildcards.")
    service_tier: str | None = Field(
        default=None, description="The tier it prices; null: standard requests."
    )
    input_per_mtok: Decimal | None
    output_per_mtok: Decimal | None
    cache_read_per_mtok: Decimal | None
    cache_write_per_mtok: Decimal | None
    valid_from: Instant
    created_at: Instant


class PriceList(_Answer):
    prices: list[Price]


TagKey = Annotated[str, StringConstraints(pattern=TAG_KEY_RE.pattern)]


class TagKeys(_Answer):
    keys: list[TagKey] = Field(
        description=f"The organization's tag keys (at most {MAX_TAG_KEYS}), queried as "
        "`tag.<key>`: each span's value is read from its attributes, else its resource's."
    )


class TagKeysRequest(_Body):
    keys: list[TagKey] = Field(
        max_length=MAX_TAG_KEYS,
        description=f"The tag keys, replacing the current ones (at most {MAX_TAG_KEYS}; "
        "letters, digits, `_`, `.`, `:`, `-`; at most 64 characters each).",
    )


class CostBasisDocument(_Answer):
    cost_basis: Literal["computed", "provided"] = Field(
        description="Which cost the organization's totals and budgets count: `computed` "
        "(ours, from the tokens at list or the organization's own prices) or `provided` "
        "(the cost a span reported, where it reported one; ours elsewhere)."
    )


class CostBasisRequest(_Body):
    cost_basis: Literal["computed", "provided"] = Field(
        description="`computed` or `provided`; applies to every answer from now on, past "
        "spans included (both costs stay stored)."
    )


Count = Annotated[int, Field(ge=0)]
Milliseconds = Annotated[float, Field(ge=0)]
TraceId = Annotated[str, StringConstraints(pattern="^[0-9a-f]{32}$")]


class LatencyPercentiles(_Answer):
    """Span duration percentiles in ms; null when no span had one."""

    p50: Milliseconds | None
    p95: Milliseconds | None
    p99: Milliseconds | None


def _enum(values: tuple[str, ...]) -> Any:
    return Literal.__getitem__(values)


class CostBreakdown(_Answer):
    input: Decimal = Field(description="Uncached input tokens.")
    cache_read: Decimal = Field(description="Cached input tokens read.")
    cache_write: Decimal = Field(description="Input tokens written to the cache.")
    output: Decimal = Field(description="Output tokens, reasoning included.")
    modality: Decimal = Field(
        description="Audio, image and video tokens at their own rates (the lines above "
        "exclude them)."
    )
    fees: Decimal = Field(
        description="Per-call fees: web searches and other server-tool calls, per-request prices."
    )
    other: Decimal = Field(
        description="Costs that are not tokens, reported by spans that are not model calls "
        "(`aethermind.cost.usd`, `gen_ai.usage.cost`)."
    )


_AGGREGATE_FIELDS: dict[str, Any] = {
    **{
        key: (
            str | None,
            Field(default=None, description=f"Present when grouped by {key}; null: unknown."),
        )
        for key in QUERY_DIMENSIONS
    },
    "bucket": (
        Instant | None,
        Field(default=None, description="Start of the time bucket (UTC), with `granularity`."),
    ),
    "calls": (Count, ...),
    "errors": (Count, ...),
    **{column: (Count, ...) for column in TOKEN_COLUMNS},
    "cost_usd": (
        Decimal | None,
        Field(description="Sum over the priced spans; null when none could be priced."),
    ),
    "unpriced_calls": (Count, Field(description="Spans with no known price.")),
    "cost_breakdown_usd": (
        CostBreakdown | None,
        Field(
            default=None,
            description="`cost_usd` split the way a bill is; null when nothing was priced. "
            "A cost a call reported without a split is in `cost_usd` only.",
        ),
    ),
    "computed_cost_usd": (
        Decimal | None,
        Field(
            default=None,
            description="Present when the organization counts provided costs "
            "(`cost_basis` `provided`): our own cost of the same spans, so both show.",
        ),
    ),
    "saved_by_caching_usd": (
        Decimal | None,
        Field(
            default=None,
            description="What cache reads saved: their tokens at the uncached input rate, "
            "less what they cost (not part of `cost_usd`); null when nothing was priced.",
        ),
    ),
    "provided_cost_usd": (
        Decimal | None,
        Field(
            default=None,
            description="Sum of the costs the calls reported themselves (LiteLLM, OpenRouter, "
            "coding agents), beside `cost_usd` so drift shows; null when none reported one.",
        ),
    ),
    "what_if_cost_usd": (
        Decimal | None,
        Field(
            default=None,
            description="With `what_if_model`: the row's tokens at that model's list prices "
            "today (base-tier rates; null if it cannot be priced).",
        ),
    ),
    "latency_ms": (LatencyPercentiles, ...),
}
TAG_DIMENSION_PATTERN = "^" + re.escape(TAG_PREFIX) + TAG_KEY_RE.pattern.removeprefix("^")
"""A ``tag.<key>`` dimension, as the OpenAPI document and the answers' checks spell it."""
GroupKey = (
    _enum(QUERY_DIMENSIONS) | Annotated[str, StringConstraints(pattern=TAG_DIMENSION_PATTERN)]
)


class _GroupedRow(_Answer):
    """A row of a breakdown: besides its declared fields, only ``tag.<key>`` values."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "additionalProperties": False,
            "patternProperties": {
                TAG_DIMENSION_PATTERN: {
                    "type": ["string", "null"],
                    "description": "Present when grouped by this tag; null: spans had none.",
                }
            },
        },
    )

    @model_validator(mode="after")
    def _only_tags_besides(self) -> _GroupedRow:
        for key, value in (self.model_extra or {}).items():
            if not re.match(TAG_DIMENSION_PATTERN, key) or not (
                value is None or isinstance(value, str)
            ):
                raise ValueError(f"unexpected field {key!r} in an aggregate row")
        return self


AggregateRow: type[_Answer] = create_model(
    "AggregateRow",
    __base__=_GroupedRow,
    __doc__="Usage of one group (and time bucket); group keys appear only when grouped by.",
    **_AGGREGATE_FIELDS,
)


class AggregatesResponse(_Answer):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    from_: Instant = Field(alias="from")
    to: Instant
    group_by: list[GroupKey] = Field(json_schema_extra={"uniqueItems": True})  # type: ignore[valid-type]
    granularity: _enum(GRANULARITIES) | None  # type: ignore[valid-type]
    rows: list[AggregateRow]  # type: ignore[valid-type]


def _stored_span_model() -> type[_Answer]:
    """The trace API's span: the stored columns (``span_row``), money as decimal strings,
    ``cost`` shown as ``cost_usd``, and the generated ``model`` column."""
    as_shown: dict[type, Any] = {
        str: str,
        int: Count,
        float: Milliseconds,
        datetime: Instant,
        _Decimal: Decimal,
    }
    hints = get_type_hints(TelemetryRow)
    special: dict[str, Any] = {
        "trace_id": TraceId,
        "span_id": Annotated[str, StringConstraints(pattern="^[0-9a-f]{16}$")],
        "kind": _enum(SPAN_KINDS) | None,
        "status": _enum(STATUS_CODES),
        "cost_source": Literal["computed", "provided", "unknown"] | None,
        "provided_cost": Annotated[
            str, StringConstraints(pattern=r"^-?[0-9]+(\.[0-9]+)?$"),
            Field(description="The cost the span itself carried, as sent."),
        ] | None,
        "attributes": dict[str, Any],
        "resource_attributes": dict[str, Any],
        "usage_role": Annotated[
            Literal["request", "rollup"] | None,
            Field(description="request: a provider request; rollup: not a request but reports "
                  "usage (an agent run, a workflow, an outer SDK span); null: no usage."),
        ],
        "tags": Annotated[
            dict[str, str | None] | None,
            Field(description="The span's value for each of the organization's tag keys when "
                  "it was stored (null for a key without a value; null: no keys named)."),
        ],
        "inheritable": Annotated[
            dict[str, str] | None,
            Field(description="What the span passes on to the spans under it: the user, "
                  "session, agent and tag.<key> values its own attributes name, else those "
                  "it inherited in its own request (null: none)."),
        ],
        "response_id": Annotated[
            str | None,
            Field(description="The provider's response id, kept on root request spans: two "
                  "instrumentations' spans of one request in different traces share it."),
        ],
        "units": Annotated[
            dict[str, int] | None,
            Field(description="Usage billed at rates of its own, by genai-prices usage key "
                  "(input_audio_tokens, output_audio_tokens, web_searches, ...; null: none)."),
        ],
    }  # fmt: skip
    columns: dict[str, Any] = {}
    for column in fields(TelemetryRow):
        shown = "cost_usd" if column.name == "cost" else column.name
        hint = hints[column.name]
        base = next((t for t in as_shown if hint in (t, t | None)), None)
        annotation = special.get(column.name)
        if annotation is None:
            annotation = as_shown[base] if hint is base else as_shown[base] | None  # type: ignore[index]
        columns[shown] = (annotation, ...)
    columns["model"] = (
        str | None,
        Field(description="The response model, else the request model."),
    )
    columns["counted"] = (
        bool | Literal["rollup", "duplicate"],
        Field(
            description="true when the span counts toward totals; else why not: rollup (its "
            "usage sums spans under it), duplicate (another span, in this trace or another, "
            "describes the same provider request), false (no usage)."
        ),
    )
    model: type[_Answer] = create_model("StoredSpan", __base__=_Answer, **columns)
    return model


StoredSpan = _stored_span_model()


class TraceResponse(_Answer):
    trace_id: TraceId
    spans: list[StoredSpan] = Field(min_length=1)  # type: ignore[valid-type]


class TopTrace(_Answer):
    trace_id: TraceId
    root_name: str | None = Field(description="Name of the span without a parent, if stored.")
    spans: Annotated[int, Field(ge=1)]
    cost_usd: Decimal
    unpriced_calls: Count
    total_tokens: Count
    started_at: Instant
    duration_ms: Milliseconds | None


class TopTracesResponse(_Answer):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    from_: Instant = Field(alias="from")
    to: Instant
    traces: list[TopTrace]


class IngestRequest(_Body):
    """``POST /v1/ingest``: calls of clients without OpenTelemetry. Each event is checked
    on its own (``ingest/events.py``): a bad one is reported, the others stored."""

    model_config = ConfigDict(extra="allow")

    events: list[IngestEvent]


class IngestResponse(_Answer):
    accepted: Count = Field(description="Valid events.")
    stored: Count = Field(description="Rows written now.")
    duplicates: Count = Field(description="Valid events already stored.")
    rejected: Count = Field(description="Invalid events, not stored.")
    errors: list[str] = Field(
        max_length=MAX_ERRORS_REPORTED,
        description="Every invalid field of every rejected event, with its path"
        f" (`events[1].input_tokens: ...`), the first {MAX_ERRORS_REPORTED}.",
    )


MODELS: tuple[type[BaseModel], ...] = (
    IngestRequest,
    IngestResponse,
    NewKeyRequest,
    NewPriceRequest,
    ApiKey,
    KeyList,
    CreatedKey,
    Price,
    PriceList,
    TagKeys,
    TagKeysRequest,
    CostBasisDocument,
    CostBasisRequest,
    LatencyPercentiles,
    AggregateRow,
    AggregatesResponse,
    StoredSpan,
    TraceResponse,
    TopTrace,
    TopTracesResponse,
)
"""Every model the OpenAPI document takes its component schemas from."""


def component_schemas() -> dict[str, Any]:
    """``components/schemas`` entries for ``MODELS``: requests as validated, answers as
    serialized."""
    pairs: list[tuple[type[BaseModel], JsonSchemaMode]] = [
        (model, "validation" if issubclass(model, _Body) else "serialization") for model in MODELS
    ]
    _, document = models_json_schema(
        pairs, by_alias=True, ref_template="#/components/schemas/{model}"
    )
    definitions: dict[str, Any] = document.get("$defs", {})
    return definitions


_HINTS = {
    "scopes": f"must be a list of {', '.join(sorted(SCOPES))}",
    "name": f"must be a string of at most {MAX_TEXT_LENGTH} characters",
    "model_pattern": f"must be a non-empty string of at most {MAX_TEXT_LENGTH}"
    f" (a model name, or a pattern with up to {MAX_PATTERN_STARS} * wildcards)",
    "provider": f"must be a non-empty string of at most {MAX_TEXT_LENGTH}",
    "valid_from": "must be an RFC 3339 date-time, e.g. 2026-11-01T00:00:00Z",
    "keys": f"must be a list of at most {MAX_TAG_KEYS} tag keys (letters, digits, _.:-)",
    **{
        name: f'must be a decimal string under 1{"0" * MAX_PRICE_DIGITS} such as "2.50"'
        for name in ("input_per_mtok", "output_per_mtok", "cache_read_per_mtok",
                     "cache_write_per_mtok")
    },
}  # fmt: skip


def problems(exc: ValidationError, shape: str) -> str:
    """A 400's message for a body the model refused: each problem with its field (bounded).
    ``shape`` shows what the body should look like."""
    messages: list[str] = []
    for error in exc.errors(include_url=False):
        location = [str(part) for part in error["loc"]]
        field = location[0] if location else ""
        kind = error["type"]
        if not location:
            messages.append(f"the body must be an object: {shape}")
        elif kind == "extra_forbidden":
            messages.append(f"unknown field {field!r}")
        elif kind == "missing":
            messages.append(f"{field!r} is required ({_HINTS.get(field, 'see /openapi.json')})")
        elif kind == "value_error":
            messages.append(f"{field!r}: {error['ctx']['error']}")
        elif kind == "too_short" and field == "scopes":
            messages.append("'scopes' needs at least one scope")
        elif kind == "literal_error" and field == "scopes":
            messages.append(f"'scopes' has unknown scopes; {_HINTS['scopes']}")
        else:
            messages.append(f"{field!r} {_HINTS.get(field, error['msg'])}")
        if len(messages) == MAX_MESSAGES:
            break
    return "; ".join(dict.fromkeys(messages))
