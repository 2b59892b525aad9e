"""The normalizer reads input we do not control: it must never raise, whatever it is given."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aethermind.semconv import attributes as a
from aethermind.semconv import default_price_book, normalize

pytestmark = pytest.mark.slow  # see pyproject.toml: a subprocess, a browser or a fuzzer

KNOWN_KEYS = sorted(
    {
        name
        for names in (
            a.PROVIDER_KEYS,
            a.OPERATION_KEYS,
            a.REQUEST_MODEL_KEYS,
            a.RESPONSE_MODEL_KEYS,
            a.INPUT_TOKEN_KEYS,
            a.OUTPUT_TOKEN_KEYS,
            a.TOTAL_TOKEN_KEYS,
            a.CACHE_READ_KEYS,
            a.CACHE_WRITE_KEYS,
            a.REASONING_KEYS,
            a.PROVIDED_COST_KEYS,
            a.GENAI_MARKER_KEYS,
        )
        for name in names
    }
    | {
        a.OPENINFERENCE_SPAN_KIND,
        a.LLM_INVOCATION_PARAMETERS,
        a.ERROR_TYPE,
        a.ANTHROPIC_CACHE_WRITE_5M,
        a.ANTHROPIC_CACHE_WRITE_1H,
    }
)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.binary(max_size=20),
    st.sampled_from(
        ["gpt-4o", "claude-sonnet-4-5", "LLM", "AGENT", "CHAIN", "chat", "{", '{"model": 5}']
    ),
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=10,
)
attribute_maps = st.dictionaries(
    st.one_of(st.sampled_from(KNOWN_KEYS), st.text(max_size=20)), values, max_size=20
)


@settings(max_examples=1500, deadline=None)
@given(
    attrs=attribute_maps,
    resource=st.one_of(st.none(), attribute_maps),
    scope=st.one_of(st.none(), st.text(max_size=30)),
    failed=st.booleans(),
)
def test_normalize_and_price_never_raise(
    attrs: dict[str, Any], resource: dict[str, Any] | None, scope: str | None, failed: bool
) -> None:
    record = normalize(attrs, resource, scope=scope, status_error=failed)
    if record is None:
        return
    for count in (
        record.input_tokens,
        record.output_tokens,
        record.cache_read_tokens,
        record.cache_write_tokens,
        record.reasoning_tokens,
        record.total_tokens,
    ):
        assert count is None or (isinstance(count, int) and count >= 0)
    cost = default_price_book().price(record, 1_764_000_000_000_000_000)
    assert cost.source in ("computed", "provided", "unknown")
    assert cost.total is None or cost.total >= 0
