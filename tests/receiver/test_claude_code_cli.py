"""The real Claude Code CLI (npm ``@anthropic-ai/claude-code``), run non-interactively
(``claude -p``) against the fake Anthropic provider with its telemetry on, exporting its
events, metrics and (enhanced telemetry) spans over OTLP http/protobuf, http/json and gRPC:
per model, calls, tokens and cost equal what the fake served, whichever of its signals
arrive; its own ``cost_usd`` is kept as the provided cost."""

from __future__ import annotations

import asyncio
import os
import subprocess
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from aethermind.semconv import PriceBook, UsageRecord
from tests.plugins.fake_provider import ANTHROPIC_MODEL_SNAPSHOTS, FakeProvider, ledger_totals
from tests.plugins.receiver import ReceiverFactory, RunningReceiver
from tests.receiver.test_otlp_logs import aggregates

pytestmark = pytest.mark.slow

PACKAGE = Path(__file__).parents[1] / "js" / "node_modules" / "@anthropic-ai" / "claude-code"
PROMPTS = ("say hi", "say bye")
SNAPSHOTS = ANTHROPIC_MODEL_SNAPSHOTS


def claude_command() -> list[str]:
    """The CLI: its native binary, put in place by the package's install step, or the
    package's own wrapper when install steps were skipped."""
    binary = PACKAGE / "bin" / "claude.exe"
    if not binary.is_file():
        raise AssertionError(
            f"{PACKAGE} is missing: run `bash scripts/test.sh` (it runs npm ci in tests/js)"
        )
    if binary.stat().st_size > 1_000_000:
        return [str(binary)]
    return ["node", str(PACKAGE / "cli-wrapper.cjs")]


def telemetry_env(
    receiver: RunningReceiver,
    protocol: str,
    home: Path,
    provider: FakeProvider,
    *,
    spans: bool,
    events: bool = True,
) -> dict[str, str]:
    endpoint = f"http://{receiver.grpc_target}" if protocol == "grpc" else receiver.url
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(home),
        "ANTHROPIC_BASE_URL": provider.anthropic_base_url,
        "ANTHROPIC_API_KEY": "sk-ant-fake-claude-code-0000",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_AUTOUPDATER": "1",
        "CLAUDE_CODE_ENABLE_TELEMETRY": "1",
        "OTEL_LOGS_EXPORTER": "otlp" if events else "none",
        "OTEL_METRICS_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_EXPORTER_OTLP_HEADERS": f"Authorization=Bearer {receiver.acme.ingest_key}",
        "OTEL_METRIC_EXPORT_INTERVAL": "500",
        "OTEL_LOGS_EXPORT_INTERVAL": "200",
    }
    if spans:
        env |= {
            "OTEL_TRACES_EXPORTER": "otlp",
            "CLAUDE_CODE_ENHANCED_TELEMETRY_BETA": "1",
            "OTEL_TRACES_EXPORT_INTERVAL": "200",
        }
    return env


def run_claude(env: dict[str, str], prompt: str) -> None:
    done = subprocess.run(
        [*claude_command(), "-p", prompt, "--model", "claude-sonnet-4-5"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"claude failed: {done.stdout[-2000:]} {done.stderr[-2000:]}"


def list_price(model: str, counts: dict[str, int]) -> Decimal:
    record = UsageRecord(
        provider="anthropic",
        request_model=model,
        input_tokens=counts["input_tokens"],
        output_tokens=counts["output_tokens"],
        cache_read_tokens=counts["cache_read_tokens"],
        cache_write_tokens=counts["cache_write_tokens"],
    )
    cost = PriceBook().price(record, 0).total
    assert cost is not None
    return cost


@pytest.mark.parametrize(
    ("protocol", "signals"),
    [
        ("http/protobuf", "events+metrics"),
        ("http/json", "events+metrics"),
        ("grpc", "events+metrics"),
        ("http/protobuf", "events+metrics+spans"),
        ("grpc", "spans+metrics"),
    ],
)
async def test_claude_code_cli_counts_what_the_provider_served(
    receiver_factory: ReceiverFactory,
    fake_provider: FakeProvider,
    tmp_path: Path,
    protocol: str,
    signals: str,
) -> None:
    receiver = await receiver_factory(grpc=protocol == "grpc")
    events = "events" in signals
    env = telemetry_env(
        receiver, protocol, tmp_path, fake_provider, spans="spans" in signals, events=events
    )
    fake_provider.clear()
    for prompt in PROMPTS:
        await asyncio.to_thread(run_claude, env, prompt)
    served = ledger_totals(fake_provider.served)
    assert served, "the CLI made no request to the fake provider"
    calls = sum(s["calls"] for s in served.values())
    rows: dict[str, dict[str, Any]] = {}
    for _ in range(50):  # the CLI exports on exit; the receiver has committed by its 200
        rows = {r["model"]: r for r in await aggregates(receiver, group_by="model")}
        if sum(r["calls"] for r in rows.values()) >= calls:
            break
        await asyncio.sleep(0.1)
    if not events:
        # Its spans name the model as asked for (the alias), not the snapshot that answered.
        rows = {SNAPSHOTS.get(model, model): row for model, row in rows.items()}
    assert set(rows) == set(served)
    for model, ledger in served.items():
        row = rows[model]
        for column in ("calls", "input_tokens", "output_tokens", "cache_read_tokens",
                       "cache_write_tokens"):  # fmt: skip
            assert row[column] == ledger[column], (column, row, ledger)
        priced = [list_price(model, s.counts()) for s in fake_provider.served if s.model == model]
        assert Decimal(row["cost_usd"]) == sum(priced)
    [developer] = await aggregates(receiver, group_by="user", service="claude-code")
    assert developer["user"] and developer["calls"] == calls
    if events:  # Claude Code's own estimate, kept beside ours
        stored = [r for r in await receiver.rows(receiver.acme) if r.get("provided_cost")]
        assert len(stored) == calls
        assert all(Decimal(r["provided_cost"]) > 0 for r in stored)
