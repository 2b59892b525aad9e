"""The dashboard in a real headless Chromium against a running receiver: the figures it
shows are the API's, a trace opens into its spans, the key stays in the browser, and the page
itself carries no tenant data and loads nothing from elsewhere.
"""

from __future__ import annotations

import gzip
import re
import time
from decimal import ROUND_HALF_UP, Decimal
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode, set_span_in_context

from aethermind.receiver.dashboard import CONTENT_SECURITY_POLICY
from tests.plugins.browser import Page
from tests.plugins.receiver import RunningReceiver
from tests.receiver.helpers import PROTOBUF, llm_spans, protobuf_body

pytestmark = pytest.mark.slow  # see pyproject.toml: a subprocess, a browser or a fuzzer

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
KEY_STORAGE = "aethermind.readKey"
UNKNOWN_MODEL = "house-model-7"

# --------------------------------------------------------------------------- data


MINUTE_NS = 60 * 1_000_000_000


def _chat(
    tracer: Any,
    model: str,
    input_tokens: int,
    output_tokens: int,
    *,
    start_ns: int,
    duration_ms: int,
    context: Any = None,
    fail: bool = False,
    attributes: dict[str, Any] | None = None,
) -> None:
    span = tracer.start_span(f"chat {model}", context=context, start_time=start_ns)
    span.set_attributes(
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": model,
            "gen_ai.usage.input_tokens": input_tokens,
            "gen_ai.usage.output_tokens": output_tokens,
            **(attributes or {}),
        }
    )
    if fail:
        span.set_attribute("error.type", "RateLimitError")
        span.set_status(Status(StatusCode.ERROR, "rate limited"))
    span.end(end_time=start_ns + duration_ms * 1_000_000)


def _tracer(service: str, exporter: InMemorySpanExporter) -> tuple[TracerProvider, Any]:
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, provider.get_tracer("tests.dashboard")


def recent_spans() -> tuple[list[ReadableSpan], str]:
    """Nine LLM calls over the last hour, with real durations: an agent trace in service
    support-bot (a root span over three calls, one to a model with no known price) costing
    more than any other trace, a failed call, and five checkout calls of one span each."""
    exporter = InMemorySpanExporter()
    now = time.time_ns()
    support, tracer = _tracer("support-bot", exporter)
    start = now - 40 * MINUTE_NS
    root = tracer.start_span("answer ticket", start_time=start)
    trace_id = format(root.get_span_context().trace_id, "032x")
    inside = set_span_in_context(root)
    _chat(tracer, "gpt-4o", 40_000, 2_500, start_ns=start, duration_ms=2_400, context=inside)
    _chat(tracer, "gpt-4o-mini", 9_000, 700, start_ns=start + 2_500_000_000, duration_ms=800,
          context=inside)  # fmt: skip
    _chat(tracer, UNKNOWN_MODEL, 1_000, 100, start_ns=start + 3_400_000_000, duration_ms=350,
          context=inside)  # fmt: skip
    root.end(end_time=start + 3_800_000_000)
    _chat(tracer, "gpt-4o-mini", 500, 0, start_ns=now - 25 * MINUTE_NS, duration_ms=300, fail=True)
    checkout, tracer = _tracer("checkout", exporter)
    for minutes_ago, duration_ms in ((55, 900), (45, 1_400), (30, 650), (15, 1_100), (5, 700)):
        _chat(tracer, "gpt-4o-mini", 1_200, 300, start_ns=now - minutes_ago * MINUTE_NS,
              duration_ms=duration_ms)  # fmt: skip
    spans = list(exporter.get_finished_spans())
    support.shutdown()  # (shutting down also stops the shared in-memory exporter)
    checkout.shutdown()
    return spans, trace_id


async def ingest(receiver: RunningReceiver, spans: list[ReadableSpan]) -> None:
    async with receiver.session.post(
        receiver.traces_url,
        data=protobuf_body(spans),
        headers=receiver.acme.ingest_headers(**{"Content-Type": PROTOBUF}),
    ) as response:
        assert response.status == 200, await response.text()


async def seed(receiver: RunningReceiver) -> str:
    spans, agent_trace = recent_spans()
    await ingest(receiver, spans)
    return agent_trace


async def api(receiver: RunningReceiver, path: str, **params: str) -> Any:
    async with receiver.session.get(
        f"{receiver.url}{path}", params=params, headers=receiver.acme.read_headers()
    ) as response:
        assert response.status == 200, await response.text()
        return await response.json()


# --------------------------------------------------------------------------- page helpers


def usd(decimal: str) -> str:
    """The dashboard's money format, stated independently: cents from $100 up, else four
    significant digits, at least two decimals (the exact amount is in data-value)."""
    amount = Decimal(decimal)
    if amount == 0:
        return "$0.00"
    if amount >= 100:
        return f"${amount:,.2f}"
    rounded = amount.quantize(Decimal(1).scaleb(amount.adjusted() - 3), rounding=ROUND_HALF_UP)
    whole, _, fraction = format(rounded, "f").partition(".")
    return f"${int(whole):,}.{fraction.rstrip('0').ljust(2, '0')}"


async def open_dashboard(page: Page, receiver: RunningReceiver, key: str) -> None:
    await page.goto(f"{receiver.url}/dashboard")
    assert await page.wait_for("document.body.dataset.state === 'nokey'")
    await page.type("#key-input", key)
    await page.press_enter()


async def wait_until_drawn(page: Page, refreshes: int = 1) -> None:
    await page.wait_for(
        f"document.body.dataset.state === 'ready' && "
        f"Number(document.body.dataset.refreshes) >= {refreshes} && "
        "['chart-cost', 'chart-tokens', 'chart-latency'].every((id) => "
        "  document.querySelector(`#${id} .main-svg`))"
    )


async def figures(page: Page) -> dict[str, Any]:
    result: dict[str, Any] = await page.evaluate(
        """(() => {
          const fig = (id) => {
            const n = document.getElementById(id);
            return {text: n.textContent, value: n.dataset.value, ...n.dataset};
          };
          const s = document.getElementById("summary").dataset;
          return {from: s.from, to: s.to, granularity: s.granularity,
                  cost: fig("total-cost"), calls: fig("total-calls"),
                  tokens: fig("total-tokens"), rate: fig("error-rate"),
                  updated: document.getElementById("updated").dataset.value};
        })()"""
    )
    return result


async def table(page: Page, selector: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = await page.evaluate(
        f"""[...document.querySelectorAll({selector!r} + " tbody tr")].map((tr) => ({{
              ...tr.dataset,
              cells: [...tr.children].map((c) => ({{text: c.textContent.trim(),
                                                  value: c.dataset.value}})),
            }}))"""
    )
    return rows


def assert_totals_match(shown: dict[str, Any], api_rows: list[dict[str, Any]]) -> None:
    (row,) = api_rows
    assert shown["cost"]["value"] == row["cost_usd"]
    assert shown["cost"]["text"] == usd(row["cost_usd"])
    assert shown["calls"]["value"] == str(row["calls"])
    assert shown["calls"]["text"] == f"{row['calls']:,}"
    assert shown["tokens"]["value"] == str(row["total_tokens"])
    assert shown["tokens"]["text"] == f"{row['total_tokens']:,}"
    assert shown["rate"]["errors"] == str(row["errors"])
    assert shown["rate"]["calls"] == str(row["calls"])
    assert float(shown["rate"]["value"]) == row["errors"] / row["calls"]
    percent = f"{100 * row['errors'] / row['calls']:.2f}".rstrip("0").rstrip(".")
    assert shown["rate"]["text"] == f"{percent}%"


# --------------------------------------------------------------------------- tests


async def test_dashboard_shows_the_api_totals_and_opens_a_trace_into_its_spans(
    receiver: RunningReceiver, page: Page
) -> None:
    agent_trace = await seed(receiver)
    await open_dashboard(page, receiver, receiver.acme.read_key)
    await wait_until_drawn(page)

    # The key is kept by the browser, for the next visit.
    assert await page.evaluate(f"localStorage.getItem({KEY_STORAGE!r})") == receiver.acme.read_key

    shown = await figures(page)
    assert shown["granularity"] == "hour"  # the default range is the last 24 hours
    summary = await api(receiver, "/v1/aggregates", **{"from": shown["from"], "to": shown["to"]})
    assert_totals_match(shown, summary["rows"])
    # Nine LLM calls (the agent's own spans are not calls), one of them failed.
    assert summary["rows"][0]["calls"] == 9 and summary["rows"][0]["errors"] == 1
    assert summary["rows"][0]["unpriced_calls"] == 1  # the house model: no price, not $0
    # Where the cost went: the API's non-zero lines, and what caching saved.
    lines = await page.evaluate(
        """Object.fromEntries([...document.querySelectorAll('#cost-breakdown dd')]
             .map((dd) => [dd.dataset.line, dd.dataset.value]))"""
    )
    parts = summary["rows"][0]["cost_breakdown_usd"]
    assert lines == {k: v for k, v in parts.items() if Decimal(v) != 0}
    assert {"input", "output"} <= set(lines)
    saved = summary["rows"][0]["saved_by_caching_usd"]
    assert await page.evaluate("document.getElementById('saved-by-caching').dataset.value") == saved

    # The breakdown by model is the API's grouped rows, most expensive first.
    by_model = await api(
        receiver, "/v1/aggregates", group_by="model", **{"from": shown["from"], "to": shown["to"]}
    )
    breakdown = await table(page, "#breakdown")
    expected = {r["model"]: r for r in by_model["rows"]}
    assert (
        {r["group"] for r in breakdown}
        == set(expected)
        == {
            "gpt-4o",
            "gpt-4o-mini",
            UNKNOWN_MODEL,
        }
    )
    for shown_row in breakdown:
        want = expected[shown_row["group"]]
        values = [c["value"] for c in shown_row["cells"][1:8]]
        assert values == [
            str(want["calls"]), str(want["errors"]), str(want["input_tokens"]),
            str(want["output_tokens"]), str(want["total_tokens"]), want["cost_usd"] or "",
            str(want["unpriced_calls"]),
        ]  # fmt: skip
    assert breakdown[0]["group"] == "gpt-4o"
    unknown = next(r for r in breakdown if r["group"] == UNKNOWN_MODEL)
    assert unknown["cells"][6]["text"] == "—"

    # The cost chart stacks one series per priced model (the house model has no bars, so it
    # is not in the legend either); the latency chart has p50 and p95.
    assert sorted(
        await page.evaluate("document.getElementById('chart-cost').data.map((t) => t.name)")
    ) == ["gpt-4o", "gpt-4o-mini"]
    # Plotly's toolbar sits above the plotting area, never over the bars.
    for chart in ("chart-cost", "chart-tokens", "chart-latency"):
        overlap = await page.evaluate(
            f"""(() => {{
              const chart = document.getElementById({chart!r});
              const bar = chart.querySelector('.modebar');
              const plot = chart.querySelector('.cartesianlayer .bg, .draglayer .nsewdrag');
              if (!bar || !plot) return 'missing';
              return bar.getBoundingClientRect().bottom - plot.getBoundingClientRect().top;
            }})()"""
        )
        assert overlap != "missing" and overlap <= 0, (chart, overlap)
    assert await page.evaluate(
        "document.getElementById('chart-latency').data.map((t) => t.name)"
    ) == ["p50", "p95"]

    # The most expensive traces, as the API ranks them; the agent trace first.
    top = await api(
        receiver, "/v1/top-traces", limit="10", **{"from": shown["from"], "to": shown["to"]}
    )
    traces = await table(page, "#top-traces")
    assert [t["traceId"] for t in traces] == [t["trace_id"] for t in top["traces"]]
    assert traces[0]["traceId"] == agent_trace
    assert traces[0]["cells"][5]["value"] == top["traces"][0]["cost_usd"]
    assert traces[0]["cells"][5]["text"] == usd(top["traces"][0]["cost_usd"])

    await page.screenshot(ARTIFACTS / "dashboard.png")

    # Clicking it opens its spans, fetched from /v1/traces/{id}.
    await page.click(f'button.trace-link[data-trace-id="{agent_trace}"]')
    await page.wait_for(
        f"document.getElementById('trace-panel').dataset.state === 'ready' && "
        f"document.getElementById('trace-panel').dataset.traceId === {agent_trace!r}"
    )
    stored = await api(receiver, f"/v1/traces/{agent_trace}")
    spans = await table(page, "#trace-spans")
    assert [s["spanId"] for s in spans] == [s["span_id"] for s in stored["spans"]]
    assert [s["cells"][0]["text"] for s in spans] == [s["name"] for s in stored["spans"]]
    assert [s["cells"][6]["value"] for s in spans] == [s["cost_usd"] or "" for s in stored["spans"]]
    # Only the LLM calls of the trace are stored (the agent's own spans are not telemetry).
    assert [s["cells"][0]["text"] for s in spans] == [
        "chat gpt-4o", "chat gpt-4o-mini", f"chat {UNKNOWN_MODEL}",
    ]  # fmt: skip
    assert spans[2]["cells"][6]["text"] == "—"  # the house model: unpriced, not $0
    # Each is a provider request of its own: all counted.
    assert [s["cells"][7]["value"] for s in spans] == ["true"] * 3
    assert await page.evaluate("document.activeElement.id") == "trace-title"

    await page.screenshot(ARTIFACTS / "dashboard-trace.png")

    await page.click("#close-trace")
    assert await page.evaluate("document.getElementById('trace-panel').hidden")

    # It refreshes by itself: new spans show up without a click, with a new "updated" stamp.
    await ingest(receiver, llm_spans(3, service="checkout", model="gpt-4o"))
    await page.wait_for("document.getElementById('total-calls').dataset.value === '12'", timeout=25)
    await wait_until_drawn(page, refreshes=2)
    again = await figures(page)
    assert again["updated"] != shown["updated"]
    summary = await api(receiver, "/v1/aggregates", **{"from": again["from"], "to": again["to"]})
    assert_totals_match(again, summary["rows"])

    # Everything came from this receiver, under a strict CSP that nothing violated.
    assert page.requests, "the page made no request"
    assert all(url.startswith(receiver.url + "/") for url in page.requests), page.requests
    assert await page.csp_violations() == []
    assert page.errors() == []


async def test_range_and_group_by_choices_query_the_matching_rows(
    receiver: RunningReceiver, page: Page
) -> None:
    await seed(receiver)
    await open_dashboard(page, receiver, receiver.acme.read_key)
    await wait_until_drawn(page)

    await page.select("#group-by", "service")
    await page.wait_for("document.getElementById('summary').dataset.groupBy === 'service'")
    await page.wait_for("!!document.querySelector('#breakdown tbody tr[data-group]')")
    shown = await figures(page)
    by_service = await api(
        receiver, "/v1/aggregates", group_by="service", **{"from": shown["from"], "to": shown["to"]}
    )
    breakdown = await table(page, "#breakdown")
    assert {r["group"]: r["cells"][6]["value"] for r in breakdown} == {
        r["service"]: r["cost_usd"] for r in by_service["rows"]
    }
    assert set(await page.evaluate(
        "document.getElementById('chart-cost').data.map((t) => t.name)"
    )) == {"support-bot", "checkout"}  # fmt: skip

    # The last hour is drawn per minute, the last 7 days per day.
    for choice, granularity in (("1h", "minute"), ("7d", "day")):
        await page.select("#range", choice)
        await page.wait_for(
            f"document.getElementById('summary').dataset.granularity === {granularity!r}"
        )
        shown = await figures(page)
        summary = await api(
            receiver, "/v1/aggregates", **{"from": shown["from"], "to": shown["to"]}
        )
        assert_totals_match(shown, summary["rows"])

    # A custom range (local time, to the minute) around the data: per minute up to 6 hours.
    await page.select("#range", "custom")
    await page.evaluate(
        """(() => {
          const local = (ms) => {
            const d = new Date(ms), p = (n) => String(n).padStart(2, "0");
            return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}` +
              `T${p(d.getHours())}:${p(d.getMinutes())}`;
          };
          document.getElementById("custom-from").value = local(Date.now() - 3 * 3600e3);
          document.getElementById("custom-to").value = local(Date.now() + 3600e3);
        })()"""
    )
    await page.click("#apply-custom")
    await page.wait_for("document.getElementById('summary').dataset.granularity === 'minute'")
    shown = await figures(page)
    summary = await api(receiver, "/v1/aggregates", **{"from": shown["from"], "to": shown["to"]})
    assert_totals_match(shown, summary["rows"])
    assert page.errors() == []


async def test_a_breakdown_by_user_opens_one_users_spend_and_costliest_traces(
    receiver: RunningReceiver, page: Page
) -> None:
    exporter = InMemorySpanExporter()
    now = time.time_ns()
    provider, tracer = _tracer("assistant", exporter)
    calls = [("alice", 30_000), ("alice", 20_000), ("bob", 5_000), ("carol", 1_000), (None, 2_000)]
    for i, (user, tokens) in enumerate(calls):
        _chat(tracer, "gpt-4o", tokens, 100, start_ns=now - (50 - 5 * i) * MINUTE_NS,
              duration_ms=500, attributes={"user.id": user} if user else {})  # fmt: skip
    spans = list(exporter.get_finished_spans())
    provider.shutdown()
    await ingest(receiver, spans)
    await open_dashboard(page, receiver, receiver.acme.read_key)
    await wait_until_drawn(page)

    await page.select("#group-by", "user")
    await page.wait_for("document.getElementById('summary').dataset.groupBy === 'user'")
    await page.wait_for("!!document.querySelector('#breakdown button.drill')")
    shown = await figures(page)
    window = {"from": shown["from"], "to": shown["to"]}
    top = await api(
        receiver, "/v1/aggregates", group_by="user", order_by="cost_usd", limit="20", **window
    )
    breakdown = await table(page, "#breakdown")
    assert [r["group"] for r in breakdown] == [r["user"] or "(not set)" for r in top["rows"]]
    assert [r["cells"][6]["value"] for r in breakdown] == [r["cost_usd"] for r in top["rows"]]

    # Click-through: alice's spend by model, and her costliest traces.
    await page.click("#breakdown button.drill[data-value='alice']")
    await page.wait_for(
        "document.getElementById('filter').dataset.value === 'alice' && "
        "document.getElementById('summary').dataset.groupBy === 'model'"
    )
    await wait_until_drawn(page, refreshes=3)
    shown = await figures(page)
    window = {"from": shown["from"], "to": shown["to"]}
    alice = await api(receiver, "/v1/aggregates", user="alice", **window)
    assert_totals_match(shown, alice["rows"])
    assert alice["rows"][0]["calls"] == 2
    traces = await api(receiver, "/v1/top-traces", user="alice", **window)
    shown_traces = await table(page, "#top-traces")
    assert [r["traceId"] for r in shown_traces] == [t["trace_id"] for t in traces["traces"]]
    assert len(shown_traces) == 2
    await page.click("#clear-filter")
    await wait_until_drawn(page, refreshes=4)
    assert await page.evaluate("document.getElementById('filter').hidden")
    assert page.errors() == []


async def assert_empty_state(page: Page) -> None:
    assert await page.evaluate("document.getElementById('alert').textContent") == ""
    await wait_until_drawn(page)
    assert await page.evaluate("document.getElementById('total-calls').dataset.value") == "0"
    assert await page.evaluate("document.getElementById('total-cost').textContent") == "$0.00"
    assert await page.evaluate("document.querySelector('#breakdown td.empty').textContent") == (
        "No calls in this range"
    )
    assert await page.evaluate(
        "document.getElementById('chart-cost').layout.annotations[0].text"
    ) == ("No calls in this range")
    assert page.errors() == []


async def test_an_organization_with_no_calls_in_the_last_hour_sees_zeros(
    receiver: RunningReceiver, page: Page
) -> None:
    await page.goto(f"{receiver.url}/dashboard#range=1h")
    await page.type("#key-input", receiver.acme.read_key)
    await page.press_enter()
    await page.wait_for("['ready', 'error'].includes(document.body.dataset.state)")
    await assert_empty_state(page)


async def test_an_organization_with_no_calls_in_the_last_day_sees_zeros(
    receiver: RunningReceiver, page: Page
) -> None:
    # A new organization opening the dashboard on its default range, the last 24 hours.
    await open_dashboard(page, receiver, receiver.acme.read_key)
    await page.wait_for("['ready', 'error'].includes(document.body.dataset.state)")
    await assert_empty_state(page)


async def test_a_rejected_key_is_said_plainly_and_the_key_can_be_forgotten(
    receiver: RunningReceiver, page: Page
) -> None:
    await seed(receiver)
    # An ingest-only key is a real key without the read scope: 403.
    await open_dashboard(page, receiver, receiver.acme.ingest_key)
    await page.wait_for("document.getElementById('alert').dataset.status === '403'")
    alert = await page.evaluate("document.getElementById('alert').textContent")
    assert "403" in alert and "read" in alert
    assert await page.evaluate("!document.getElementById('alert').hidden")
    assert await page.evaluate("!document.getElementById('key-form').hidden")

    # An unknown key: 401, and the form is there to enter another.
    await page.type("#key-input", "aether_not_a_key")
    await page.press_enter()
    await page.wait_for("document.getElementById('alert').dataset.status === '401'")
    assert "401" in await page.evaluate("document.getElementById('alert').textContent")

    # The right key clears the error; forgetting it removes it from the browser.
    await page.type("#key-input", receiver.acme.read_key)
    await page.press_enter()
    await page.wait_for("document.body.dataset.state === 'ready'")
    assert await page.evaluate("document.getElementById('alert').hidden")
    await page.click("#forget-key")
    assert await page.evaluate(f"localStorage.getItem({KEY_STORAGE!r})") is None
    assert await page.evaluate("document.body.dataset.state") == "nokey"
    assert await page.evaluate("document.getElementById('total-calls').textContent") == "–"

    # A visit with a stored key goes straight to the data, in the view its link names.
    await page.evaluate(f"localStorage.setItem({KEY_STORAGE!r}, {receiver.acme.read_key!r})")
    await page.goto("about:blank")  # (a fragment-only change would not load the page)
    await page.goto(f"{receiver.url}/dashboard#range=7d&group=provider")
    await wait_until_drawn(page)
    summary = await page.evaluate("({...document.getElementById('summary').dataset})")
    assert (summary["granularity"], summary["groupBy"]) == ("day", "provider")
    assert await page.evaluate("document.getElementById('range').value") == "7d"
    assert await page.evaluate(
        "[...document.querySelectorAll('#breakdown tbody tr')].map((tr) => tr.dataset.group)"
    ) == ["openai"]


async def test_the_page_is_static_html_with_no_tenant_data_and_no_external_urls(
    receiver: RunningReceiver,
) -> None:
    agent_trace = await seed(receiver)
    packaged = resources.files("aethermind.receiver") / "static"
    bodies = {}
    for path in ("/dashboard", "/dashboard/static/dashboard.js", "/dashboard/static/dashboard.css"):
        async with receiver.session.get(
            receiver.url + path, headers=receiver.acme.read_headers()
        ) as r:
            assert r.status == 200
            bodies[path] = await r.read()
            if path == "/dashboard":
                headers = r.headers
    # Byte for byte the packaged file, whoever asks: nothing is rendered per tenant.
    assert bodies["/dashboard"] == (packaged / "index.html").read_bytes()
    everything = b"".join(bodies.values()).decode()
    for secret in (receiver.acme.read_key, receiver.acme.ingest_key, agent_trace, "acme",
                   "Acme", "support-bot", UNKNOWN_MODEL, str(receiver.acme.id)):  # fmt: skip
        assert secret not in everything

    # No absolute URL anywhere in our own files: every src/href is relative to the receiver.
    assert not re.search(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}", everything, re.IGNORECASE)
    refs = re.findall(r'(?:src|href)="([^"]+)"', bodies["/dashboard"].decode())
    assert refs and all(ref.startswith(("dashboard/static/", "data:")) for ref in refs), refs
    assert "<script>" not in bodies["/dashboard"].decode()  # no inline script

    csp = headers["Content-Security-Policy"]
    assert csp == CONTENT_SECURITY_POLICY
    assert "script-src 'self'" in csp and "unsafe-eval" not in csp and "default-src 'none'" in csp
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Cache-Control"] == "no-cache"


async def test_plotly_is_served_from_the_installed_package_with_caching(
    receiver: RunningReceiver,
) -> None:
    url = f"{receiver.url}/dashboard/static/plotly.min.js"
    shipped = (resources.files("plotly") / "package_data" / "plotly.min.js").read_bytes()
    async with receiver.session.get(
        url, headers={"Accept-Encoding": "gzip"}, auto_decompress=False
    ) as r:
        assert r.status == 200
        assert r.headers["Content-Encoding"] == "gzip"
        assert r.headers["Content-Type"].startswith("text/javascript")
        assert "max-age=" in r.headers["Cache-Control"]
        etag = r.headers["ETag"]
        assert gzip.decompress(await r.read()) == shipped
    async with receiver.session.get(url, headers={"If-None-Match": etag}) as r:
        assert r.status == 304
    async with receiver.session.get(url, headers={"Accept-Encoding": "identity"}) as r:
        assert "Content-Encoding" not in r.headers
        assert await r.read() == shipped
    for unknown in ("secrets.txt", "index.html", "..%2Fapp.py"):
        async with receiver.session.get(f"{receiver.url}/dashboard/static/{unknown}") as r:
            assert r.status == 404, unknown
    async with receiver.session.get(f"{receiver.url}/dashboard/", allow_redirects=False) as r:
        assert r.status == 308
        assert r.headers["Location"] == "../dashboard"


async def test_at_1400_px_a_trace_with_long_names_shows_every_column_without_scrolling(
    receiver: RunningReceiver, page: Page
) -> None:
    exporter = InMemorySpanExporter()
    provider, tracer = _tracer("support-bot", exporter)
    now = time.time_ns()
    model = "ft:gpt-4o-mini-2024-07-18:acme-corporation:support-triage-v3:AbCdEf12"
    root = tracer.start_span("answer ticket", start_time=now - 10 * MINUTE_NS)
    trace_id = format(root.get_span_context().trace_id, "032x")
    inside = set_span_in_context(root)
    for step in range(3):
        _chat(tracer, model, 1_000, 100, start_ns=now - (9 - step) * MINUTE_NS,
              duration_ms=1_500, context=inside, fail=step == 2)  # fmt: skip
    root.end(end_time=now - 5 * MINUTE_NS)
    spans = list(exporter.get_finished_spans())
    provider.shutdown()
    await ingest(receiver, spans)

    await page.send(
        "Emulation.setDeviceMetricsOverride",
        {"width": 1400, "height": 900, "deviceScaleFactor": 1, "mobile": False},
    )
    await open_dashboard(page, receiver, receiver.acme.read_key)
    await wait_until_drawn(page)
    await page.click(f'button.trace-link[data-trace-id="{trace_id}"]')
    await page.wait_for("document.getElementById('trace-panel').dataset.state === 'ready'")
    fits = await page.evaluate(
        """(() => {
          const panel = document.getElementById('trace-panel');
          const wrap = panel.querySelector('.table-wrap');
          const bars = [...panel.querySelectorAll('#trace-spans td.timeline')];
          return {scrolls: wrap.scrollWidth > wrap.clientWidth,
                  panelScrolls: panel.scrollWidth > panel.clientWidth,
                  timelineRight: Math.max(...bars.map((b) => b.getBoundingClientRect().right)),
                  panelRight: panel.getBoundingClientRect().right,
                  rows: bars.length};
        })()"""
    )
    await page.screenshot(ARTIFACTS / "dashboard-trace-1400.png")
    assert fits["rows"] == 3
    assert not fits["scrolls"] and not fits["panelScrolls"], fits
    assert fits["timelineRight"] <= fits["panelRight"], fits
