"""Coverage-guided fuzzing (atheris/libFuzzer) of what the receiver does with a body before
storage: OTLP protobuf and JSON decoding, `/v1/ingest` events, and conversion to rows.

Not part of the pytest suite (atheris is not a test dependency). Any input must either be
refused with the typed request error (a 4xx) or give rows that PostgreSQL would hold as
sense: tokens within 0..10^12, times within 1970..2262, finite non-negative durations and
costs, 32/16-hex ids. Run it in a venv that has atheris and the project's packages:

    python -m venv /tmp/atheris-venv && /tmp/atheris-venv/bin/pip install atheris
    echo /work/main/.venv/lib/python3.11/site-packages > \\
        /tmp/atheris-venv/lib/python3.11/site-packages/project.pth
    PYTHONPATH=. /tmp/atheris-venv/bin/python tests/security/atheris_decoders.py \\
        -max_total_time=120 /tmp/atheris-corpus
"""

from __future__ import annotations

import json
import math
import re
import sys
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import atheris

with atheris.instrument_imports():
    from aethermind.ingest.convert import calls_to_rows, spans_to_rows
    from aethermind.ingest.events import parse_events
    from aethermind.ingest.otlp import OtlpRequestError, decode_traces
    from aethermind.ingest.policy import TenantPolicy
    from aethermind.semconv import default_price_book
    from aethermind.storage.span_row import COLUMNS

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
BOOK = default_price_book()
POLICY = TenantPolicy()
INDEX = {name: i for i, name in enumerate(COLUMNS)}
TOKENS = [c for c in COLUMNS if c.endswith("_tokens")]
MONEY = (
    "cost",
    "cost_input",
    "cost_output",
    "cost_cache_read",
    "cost_cache_write",
    "provided_cost",
)
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2262, 4, 12, tzinfo=UTC)
HEX32 = re.compile(r"^[0-9a-f]{32}$")
HEX16 = re.compile(r"^[0-9a-f]{16}$")


def check(record: tuple[Any, ...]) -> None:
    def get(name: str) -> Any:
        return record[INDEX[name]]

    for name in TOKENS:
        value = get(name)
        assert value is None or 0 <= value <= 10**12, (name, value)
    for name in MONEY:
        value = get(name)
        if value is not None:
            amount = Decimal(str(value))
            assert amount.is_finite() and amount >= 0, (name, value)
    moment = get("timestamp")
    assert EARLIEST <= moment <= LATEST, moment
    duration = get("duration_ms")
    assert duration is None or (math.isfinite(duration) and duration >= 0), duration
    assert HEX32.match(get("trace_id")) and get("trace_id") != "0" * 32
    assert HEX16.match(get("span_id")) and get("span_id") != "0" * 16
    json.dumps(get("attributes"), default=str)
    json.dumps(get("resource_attributes"), default=str)


def one_input(data: bytes) -> None:
    if not data:
        return
    kind, body = data[0] % 3, data[1:]
    try:
        if kind == 2:
            calls = parse_events(body, max_events=1000).calls
            conversion = calls_to_rows(calls, policy=POLICY, price_book=BOOK)
        else:
            spans = decode_traces(body, PROTOBUF if kind == 0 else JSON).spans
            conversion = spans_to_rows(spans, policy=POLICY, price_book=BOOK, keep_all_spans=True)
    except OtlpRequestError as exc:
        assert 400 <= exc.status < 500
        return
    for record in conversion.rows:
        check(record)


def seed_corpus(directory: Path) -> None:
    """Valid bodies of each kind, so the fuzzer starts from inputs that decode."""
    from tests.faults.load import genai_request
    from tests.security.test_hostile_http import VALID_JSON

    directory.mkdir(parents=True, exist_ok=True)
    event = {"events": [{"model": "gpt-4o", "input_tokens": 5, "timestamp": 1764000000000}]}
    for name, prefix, body in (
        ("protobuf", b"\x00", genai_request(3)[0]),
        ("json", b"\x01", VALID_JSON),
        ("events", b"\x02", json.dumps(event).encode()),
    ):
        (directory / name).write_bytes(prefix + body)


if __name__ == "__main__":
    corpus = next((Path(a) for a in sys.argv[1:] if not a.startswith("-")), None)
    if corpus is not None and not corpus.exists():
        seed_corpus(corpus)
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
