"""init_aethermind in a real application process: official SDKs, real instrumentations, the
fake provider, and the running receiver on a real database."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from aethermind.exporter import ConfigError, init_aethermind
from tests.plugins.fake_provider import FakeProvider
from tests.plugins.receiver import RunningReceiver

pytestmark = pytest.mark.slow  # see pyproject.toml: a subprocess, a browser or a fuzzer

APP = Path(__file__).with_name("app_script.py")


async def run_app(**options: Any) -> dict[str, Any]:
    """Run the test application in its own process; it prints one JSON document."""

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(APP), json.dumps(options)],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip

    result = await asyncio.to_thread(run)
    assert result.returncode == 0, result.stderr[-3000:]
    document: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    document["_stderr"] = result.stderr
    return document


async def test_one_call_is_one_priced_row_for_each_sdk(
    receiver: RunningReceiver, fake_provider: FakeProvider
) -> None:
    out = await run_app(
        mode="plain", api_key=receiver.acme.ingest_key, endpoint=receiver.url,
        provider_url=fake_provider.base_url,
    )  # fmt: skip
    assert out["instrumented"] == ["openai", "anthropic"]
    assert out["stats"]["exported"] == 2
    assert out["flushed"] is True
    rows = await receiver.rows(receiver.acme)
    by_provider = {r["provider"]: r for r in rows}
    # Two calls, two rows: the Anthropic SDK's own span is not shipped beside the
    # instrumentation's, so nothing is billed twice.
    assert len(rows) == 2
    openai_row, claude_row = by_provider["openai"], by_provider["anthropic"]
    assert (openai_row["input_tokens"], openai_row["output_tokens"]) == (1200, 300)
    assert openai_row["cost"] == Decimal("0.0055")
    assert (claude_row["input_tokens"], claude_row["cache_read_tokens"]) == (3400, 2000)
    assert claude_row["cost"] == Decimal("0.008925")
    assert {r["service"] for r in rows} == {"shop"}
    stored = json.dumps([r["attributes"] for r in rows])
    assert "a secret prompt" not in stored  # no content unless opted in
    assert "sk-header-secret" not in stored  # never credentials
    assert "aethermind.cost.usd" in stored  # our enrichment travelled with the span


async def test_the_apps_own_exporter_still_gets_the_original_spans(
    receiver: RunningReceiver, fake_provider: FakeProvider
) -> None:
    out = await run_app(
        mode="existing_provider", api_key=receiver.acme.ingest_key, endpoint=receiver.url,
        provider_url=fake_provider.base_url,
    )  # fmt: skip
    app_spans = {s["name"]: s["attributes"] for s in out["app_spans"]}
    assert set(app_spans) == {"checkout", "openai.chat"}
    original = app_spans["openai.chat"]
    assert "a secret prompt" in json.dumps(original)  # the app's exporter keeps its content
    assert not any(k.startswith("aethermind.") for k in original)  # and sees no enrichment
    rows = await receiver.rows(receiver.acme)
    assert [r["name"] for r in rows] == ["openai.chat"]  # non-LLM spans are not shipped
    assert rows[0]["service"] == "existing-app"
    assert rows[0]["parent_span_id"] is not None


async def test_endpoint_down_never_raises_and_counts_what_it_drops(
    fake_provider: FakeProvider,
) -> None:
    # An endpoint that takes connections and never answers: every export waits its full
    # timeout, so spans pile up behind it and the queue bound is reached for sure.
    with socket.socket() as black_hole:
        black_hole.bind(("127.0.0.1", 0))
        black_hole.listen(64)
        port = black_hole.getsockname()[1]
        out = await run_app(
            mode="endpoint_down", api_key="aether_x_y", endpoint=f"http://127.0.0.1:{port}",
            provider_url=fake_provider.base_url,
        )  # fmt: skip
    assert out["calls_ok"]
    stats = out["stats"]
    assert stats["exported"] == 0
    assert stats["enriched"] == 12
    # Every span is accounted for: failed exports plus queue drops, with the queue bounded.
    assert stats["export_failed"] + stats["dropped"] == 12
    assert stats["dropped"] > 0


async def test_a_forked_worker_still_exports(
    receiver: RunningReceiver, fake_provider: FakeProvider
) -> None:
    out = await run_app(
        mode="fork", api_key=receiver.acme.ingest_key, endpoint=receiver.url,
        provider_url=fake_provider.base_url,
    )  # fmt: skip
    assert out["child_status"] == 0
    rows = await receiver.rows(receiver.acme)
    assert [r["service"] for r in rows] == ["forked"]


def test_a_missing_key_is_a_clear_error_at_init(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AETHERMIND_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="AETHERMIND_API_KEY"):
        init_aethermind(endpoint="http://127.0.0.1:4318")
    with pytest.raises(ConfigError, match="start with"):
        init_aethermind("sk-not-ours", "http://127.0.0.1:4318")


async def test_a_wrong_key_is_logged_once_with_the_servers_reason_and_flush_reports_it(
    receiver: RunningReceiver, fake_provider: FakeProvider
) -> None:
    wrong_key = "aether_nope_" + "x" * 40
    out = await run_app(
        mode="wrong_key", api_key=wrong_key, endpoint=receiver.url,
        provider_url=fake_provider.base_url,
    )  # fmt: skip
    assert out["flushed"] is False and out["flushed_again"] is False
    assert out["stats"]["export_failed"] == 2
    ours = [line for line in out["_stderr"].splitlines() if "aethermind: export to" in line]
    assert len(ours) == 1, out["_stderr"]  # once, not once a batch
    assert f"{receiver.url}/v1/traces" in ours[0]
    assert "HTTP 401: unknown API key" in ours[0]
    assert wrong_key not in out["_stderr"] and "x" * 40 not in out["_stderr"]
