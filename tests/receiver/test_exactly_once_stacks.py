"""Every provider request counted exactly once, whatever framework wraps it: real agent
frameworks and instrumentations drive the official SDKs against the fake provider, their
real spans go through the real OTLP exporter in any order and any number of times, and the
totals the API answers equal what the fake provider's ledger says it served."""

from __future__ import annotations

import asyncio
import json
import random
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from aethermind.semconv import PriceBook, UsageRecord
from aethermind.storage.tenants import set_tag_keys
from tests.plugins.fake_provider import TOKEN_KINDS, FakeProvider, Served, ledger_totals
from tests.plugins.instrumented import ANTHROPIC_SDK_SCOPE, SERVICE_NAME, run_scenario
from tests.plugins.receiver import RunningReceiver, Tenant
from tests.receiver.helpers import export_with_otel

SERVICE = "agents-app"
Deliver = Callable[[list[ReadableSpan]], list[list[ReadableSpan]]]


_EXPORTER = InMemorySpanExporter()
_PROVIDER = TracerProvider(resource=Resource.create({"service.name": SERVICE}))
_PROVIDER.add_span_processor(SimpleSpanProcessor(_EXPORTER))


def tracer_provider() -> tuple[TracerProvider, InMemorySpanExporter]:
    """One provider for the module, emptied per run: instrumentors are process-wide and
    some keep the tracer of the first provider they were given, even after uninstrument."""
    _EXPORTER.clear()
    return _PROVIDER, _EXPORTER


def run_pydantic_ai(fake: FakeProvider, *, aggregated_names: bool) -> list[ReadableSpan]:
    """One agent run with a tool: the model asks for the tool, then answers (two requests)."""
    from pydantic_ai import Agent, InstrumentationSettings
    from pydantic_ai.capabilities import Instrumentation
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    provider, exporter = tracer_provider()
    settings = InstrumentationSettings(
        tracer_provider=provider, use_aggregated_usage_attribute_names=aggregated_names
    )
    model = OpenAIChatModel(
        "gpt-4o", provider=OpenAIProvider(base_url=fake.openai_base_url, api_key="sk-fake")
    )
    agent = Agent(model, name="forecaster", capabilities=[Instrumentation(settings=settings)])

    @agent.tool_plain
    def weather(city: str) -> str:
        """The weather in a city."""
        return f"sunny in {city}"

    agent.run_sync("What is the weather in Paris?")
    return list(exporter.get_finished_spans())


def run_langchain(fake: FakeProvider, *, openai_instrumentation: str) -> list[ReadableSpan]:
    """A LangChain chain (prompt | ChatOpenAI) under OpenLLMetry's LangChain instrumentation
    with an OpenAI instrumentation too: OpenLLMetry's own (which stands aside inside the
    LangChain span) or OpenInference's (whose span lands beside it, not under it).

    With OpenLLMetry's pair, also a bare model call outside any chain. With OpenInference's,
    a bare call's two spans land in two different traces (the LangChain span of a bare call
    is not made current), which nothing in a trace can tell apart from two requests: the
    README lists it among what is not deduplicated."""
    from langchain_core.prompts import ChatPromptTemplate
    from langchain_openai import ChatOpenAI
    from openinference.instrumentation.openai import OpenAIInstrumentor as OpenInferenceOpenAI
    from opentelemetry.instrumentation.langchain import LangchainInstrumentor
    from opentelemetry.instrumentation.openai import OpenAIInstrumentor as OpenLLMetryOpenAI

    provider, exporter = tracer_provider()
    instrumentors = [
        LangchainInstrumentor(),
        OpenInferenceOpenAI() if openai_instrumentation == "openinference" else OpenLLMetryOpenAI(),
    ]
    for instrumentor in instrumentors:
        instrumentor.instrument(tracer_provider=provider)
    try:
        llm = ChatOpenAI(
            model="gpt-4o", base_url=fake.openai_base_url, api_key="sk-fake", max_retries=0
        )
        chain = ChatPromptTemplate.from_messages([("user", "{question}")]) | llm
        chain.invoke({"question": "Say hello."})
        chain.invoke({"question": "Say hello again."})
        if openai_instrumentation == "openllmetry":
            llm.invoke("Say hello once more.")  # a bare model call, outside any chain
    finally:
        for instrumentor in instrumentors:
            instrumentor.uninstrument()
    return list(exporter.get_finished_spans())


def run_litellm(fake: FakeProvider) -> list[ReadableSpan]:
    """Two completions through LiteLLM with its OpenTelemetry callback: a `litellm_request`
    span each (its own cost, no cache attributes: the cached count is only in its printed
    usage object) and a `raw_gen_ai_request` child (not GenAI: dropped)."""
    import litellm
    from litellm.integrations.opentelemetry import OpenTelemetry

    provider, exporter = tracer_provider()
    callback = OpenTelemetry(tracer_provider=provider)
    litellm.callbacks = [callback]
    try:
        for question in ("Say hello.", "Say hello again."):
            litellm.completion(
                model="openai/gpt-4o",
                messages=[{"role": "user", "content": question}],
                api_base=fake.openai_base_url,
                api_key="sk-fake",
            )
        # LiteLLM logs success on a background thread: wait for both requests' spans.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            names = [s.name for s in exporter.get_finished_spans()]
            if names.count("litellm_request") == 2:
                break
            time.sleep(0.05)
    finally:
        litellm.callbacks = []
    return list(exporter.get_finished_spans())


def run_openai_agents(fake: FakeProvider, *, family: str, api: str) -> list[ReadableSpan]:
    """An OpenAI Agents SDK run with a tool (two model requests, over the Responses API, the
    SDK's default, or chat completions), traced by one family's
    Agents instrumentation and its OpenAI client instrumentation together: the Agents
    SDK's generation/response span, with the client's span (the one with cache counts)
    under it. The SDK's own exporter to OpenAI's servers is removed first."""
    from agents import (
        Agent,
        OpenAIChatCompletionsModel,
        OpenAIResponsesModel,
        Runner,
        function_tool,
        set_trace_processors,
    )
    from openai import AsyncOpenAI

    if family == "openinference":
        from openinference.instrumentation.openai import OpenAIInstrumentor
        from openinference.instrumentation.openai_agents import OpenAIAgentsInstrumentor
    else:
        from opentelemetry.instrumentation.openai import (  # type: ignore[assignment]
            OpenAIInstrumentor,
        )
        from opentelemetry.instrumentation.openai_agents import (  # type: ignore[assignment]
            OpenAIAgentsInstrumentor,
        )

    @function_tool
    def weather(city: str) -> str:
        """The weather in a city."""
        return f"sunny in {city}"

    provider, exporter = tracer_provider()
    set_trace_processors([])
    instrumentors = [OpenAIAgentsInstrumentor(), OpenAIInstrumentor()]
    for instrumentor in instrumentors:
        instrumentor.instrument(tracer_provider=provider)
    try:
        client = AsyncOpenAI(base_url=fake.openai_base_url, api_key="sk-fake", max_retries=0)
        agent = Agent(
            name="forecaster",
            instructions="Be brief.",
            tools=[weather],
            model=(
                OpenAIResponsesModel(model="gpt-4o", openai_client=client)
                if api == "responses"
                else OpenAIChatCompletionsModel(model="gpt-4o", openai_client=client)
            ),
        )
        Runner.run_sync(agent, "What is the weather in Paris?")
    finally:
        for instrumentor in instrumentors:
            instrumentor.uninstrument()
        set_trace_processors([])
    return list(exporter.get_finished_spans())


def run_openai_in_a_request_handler(fake: FakeProvider) -> list[ReadableSpan]:
    """A web request handler's span (not a GenAI span) names the end user, the conversation
    and a tag, as apps do; OpenLLMetry's OpenAI instrumentation traces two model calls
    under it (one streamed), which name none of them."""
    from openai import OpenAI
    from opentelemetry.instrumentation.openai import OpenAIInstrumentor

    provider, exporter = tracer_provider()
    instrumentor = OpenAIInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    try:
        client = OpenAI(base_url=fake.openai_base_url, api_key="sk-fake", max_retries=0)
        handler = {"http.route": "/chat", "user.id": "alice", "session.id": "conv-9",
                   "team": "search"}  # fmt: skip
        with provider.get_tracer("app").start_as_current_span("POST /chat", attributes=handler):
            client.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": "Say hello."}]
            )
            stream = client.chat.completions.create(
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": "Say hello again."}],
                stream=True,
                stream_options={"include_usage": True},
            )
            for _ in stream:
                pass
    finally:
        instrumentor.uninstrument()
    return list(exporter.get_finished_spans())


def run_openinference_with_attributes(fake: FakeProvider) -> list[ReadableSpan]:
    """OpenInference's OpenAI instrumentation inside its ``using_attributes``: two calls for
    one user and session, with a tag in its metadata the way its users pass one."""
    from openai import OpenAI
    from openinference.instrumentation import using_attributes
    from openinference.instrumentation.openai import OpenAIInstrumentor

    provider, exporter = tracer_provider()
    instrumentor = OpenAIInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    try:
        client = OpenAI(base_url=fake.openai_base_url, api_key="sk-fake", max_retries=0)
        with using_attributes(user_id="dana", session_id="chat-42"):
            for question in ("Say hello.", "Say goodbye."):
                client.chat.completions.create(
                    model="gpt-4o-mini", messages=[{"role": "user", "content": question}]
                )
    finally:
        instrumentor.uninstrument()
    return list(exporter.get_finished_spans())


# How spans reach the receiver: all at once; one request per span, children last (parents
# first); one per span in random order; and everything twice over (re-sent batches).
DELIVERIES: dict[str, Deliver] = {
    "together": lambda spans: [spans],
    "parents_first": lambda spans: [[s] for s in reversed(spans)],
    "shuffled": lambda spans: [[s] for s in random.Random(7).sample(spans, len(spans))],
    "resent": lambda spans: [spans[: len(spans) // 2], spans, spans[len(spans) // 2 :]],
}


async def deliver(
    receiver: RunningReceiver, tenant: Tenant, batches: list[list[ReadableSpan]]
) -> None:
    for batch in batches:
        result = await export_with_otel(batch, receiver.traces_url, tenant.ingest_key)
        assert result is SpanExportResult.SUCCESS


async def api_rows(
    receiver: RunningReceiver, tenant: Tenant, service: str = SERVICE
) -> dict[str, dict[str, Any]]:
    response = await receiver.session.get(
        f"{receiver.url}/v1/aggregates",
        params={"group_by": "service,model"},
        headers=tenant.read_headers(),
    )
    assert response.status == 200, await response.text()
    rows = (await response.json())["rows"]
    assert {r["service"] for r in rows} == {service}
    return {r["model"]: r for r in rows}


def expected_cost(served: Sequence[Served], *, cache_write_ttls: bool) -> dict[str, Decimal]:
    """The ledger's responses priced as the receiver prices them (pricing has its own tests;
    here the point is that each response is priced once). ``cache_write_ttls``: the counted
    spans report Anthropic's cache writes by lifetime (5 minutes, 1 hour: priced apart)."""
    book = PriceBook()
    totals: dict[str, Decimal] = {}
    for entry in served:
        counts = entry.counts()
        ttls = entry.usage.get("cache_creation") or {} if cache_write_ttls else {}
        record = UsageRecord(
            provider=entry.vendor,
            response_model=entry.model,
            cache_write_5m_tokens=ttls.get("ephemeral_5m_input_tokens"),
            cache_write_1h_tokens=ttls.get("ephemeral_1h_input_tokens"),
            **{k: counts[k] for k in TOKEN_KINDS},
        )
        cost = book.price(record, time.time_ns()).total
        assert cost is not None
        totals[entry.model] = totals.get(entry.model, Decimal(0)) + cost
    return totals


async def assert_totals_match_ledger(
    receiver: RunningReceiver,
    tenant: Tenant,
    served: Sequence[Served],
    service: str = SERVICE,
    *,
    cache_write_ttls: bool = False,
) -> None:
    rows = await api_rows(receiver, tenant, service)
    ledger = ledger_totals(list(served))
    assert set(rows) == set(ledger)
    costs = expected_cost(served, cache_write_ttls=cache_write_ttls)
    for model, want in ledger.items():
        got = rows[model]
        assert {k: got[k] for k in ("calls", "errors", *TOKEN_KINDS)} == want, model
        assert Decimal(str(got["cost_usd"])) == costs[model], model


@pytest.mark.parametrize("delivery", list(DELIVERIES))
@pytest.mark.parametrize("aggregated_names", [True, False], ids=["aggregated_usage", "usage"])
async def test_pydantic_ai_agent_run_counts_each_model_request_once(
    receiver: RunningReceiver, fake_provider: FakeProvider, delivery: str, aggregated_names: bool
) -> None:
    before = len(fake_provider.served)
    spans = await asyncio.to_thread(
        run_pydantic_ai, fake_provider, aggregated_names=aggregated_names
    )
    served = fake_provider.served[before:]
    assert len(served) == 2  # the tool call, then the answer
    agent = next(s for s in spans if s.attributes.get("gen_ai.operation.name") == "invoke_agent")
    usage_key = (
        "gen_ai.aggregated_usage.input_tokens"
        if aggregated_names
        else ("gen_ai.usage.input_tokens")
    )
    assert agent.attributes.get(usage_key) == sum(e.counts()["input_tokens"] for e in served)

    await deliver(receiver, receiver.acme, DELIVERIES[delivery](spans))
    await assert_totals_match_ledger(receiver, receiver.acme, served)
    # The model requests name no agent: they are the agent's that ran them, whichever of
    # their spans arrived first.
    response = await receiver.session.get(
        f"{receiver.url}/v1/aggregates",
        params={"group_by": "agent"},
        headers=receiver.acme.read_headers(),
    )
    by_agent = {r["agent"]: r for r in (await response.json())["rows"]}
    assert set(by_agent) == {"forecaster"}
    assert by_agent["forecaster"]["calls"] == len(served)
    assert Decimal(str(by_agent["forecaster"]["cost_usd"])) == sum(
        expected_cost(served, cache_write_ttls=False).values()
    )

    trace_id = f"{agent.context.trace_id:032x}"
    response = await receiver.session.get(
        f"{receiver.url}/v1/traces/{trace_id}", headers=receiver.acme.read_headers()
    )
    shown = {s["span_id"]: s for s in (await response.json())["spans"]}
    agent_row = shown[f"{agent.context.span_id:016x}"]
    assert agent_row["counted"] == "rollup"
    assert agent_row["input_tokens"] == sum(e.counts()["input_tokens"] for e in served)
    assert sorted(s["counted"] for s in shown.values() if s["usage_role"] == "request") == [
        True,
        True,
    ]


def run_anthropic_traced_twice(fake: FakeProvider, instrumentation: str) -> list[ReadableSpan]:
    """A message and a streamed message with the Anthropic SDK's own tracing on under an
    instrumentation package. OpenLLMetry's does not make its span current, so the SDK's span
    starts a trace of its own (twins, matched by response id); OpenInference's does, so the
    SDK's span is its child."""
    spans: list[ReadableSpan] = []
    for scenario in ("anthropic_messages", "anthropic_stream"):
        run = run_scenario(instrumentation, scenario, fake, anthropic_sdk_tracing=True)
        assert run.error is None
        spans += run.spans
    return spans


@pytest.mark.parametrize("delivery", list(DELIVERIES))
@pytest.mark.parametrize("instrumentation", ["openllmetry_anthropic", "openinference_anthropic"])
async def test_the_anthropic_sdks_own_tracing_under_an_instrumentation_counts_once(
    receiver: RunningReceiver, fake_provider: FakeProvider, delivery: str, instrumentation: str
) -> None:
    before = len(fake_provider.served)
    spans = await asyncio.to_thread(run_anthropic_traced_twice, fake_provider, instrumentation)
    served = fake_provider.served[before:]
    assert len(served) == 2
    sdk_spans = [s for s in spans if s.instrumentation_scope.name == ANTHROPIC_SDK_SCOPE]
    assert len(sdk_spans) == 2 and len(spans) == 4
    separate = {s.context.trace_id for s in spans}
    assert len(separate) == (4 if instrumentation == "openllmetry_anthropic" else 2)

    await deliver(receiver, receiver.acme, DELIVERIES[delivery](spans))
    # The SDK's span counts (as rich as the other, nearer the wire): it reports cache writes
    # by lifetime, which are priced apart.
    await assert_totals_match_ledger(
        receiver, receiver.acme, served, SERVICE_NAME, cache_write_ttls=True
    )

    counted = []
    for trace_id in separate:
        response = await receiver.session.get(
            f"{receiver.url}/v1/traces/{trace_id:032x}", headers=receiver.acme.read_headers()
        )
        counted += [s["counted"] for s in (await response.json())["spans"]]
    assert sorted(map(str, counted)) == ["True", "True", "duplicate", "duplicate"]


@pytest.mark.slow  # many framework runs: the fast loop keeps pydantic-ai's
@pytest.mark.parametrize("delivery", ["parents_first", "shuffled", "resent"])
@pytest.mark.parametrize("openai_instrumentation", ["openllmetry", "openinference"])
async def test_langchain_with_an_openai_instrumentation_counts_each_request_once(
    receiver: RunningReceiver,
    fake_provider: FakeProvider,
    delivery: str,
    openai_instrumentation: str,
) -> None:
    before = len(fake_provider.served)
    spans = await asyncio.to_thread(
        run_langchain, fake_provider, openai_instrumentation=openai_instrumentation
    )
    served = fake_provider.served[before:]
    assert len(served) == (3 if openai_instrumentation == "openllmetry" else 2)
    await deliver(receiver, receiver.acme, DELIVERIES[delivery](spans))
    await assert_totals_match_ledger(receiver, receiver.acme, served)


@pytest.mark.slow  # many framework runs: the fast loop keeps pydantic-ai's
@pytest.mark.parametrize("delivery", ["together", "resent"])
async def test_litellm_callback_counts_once_with_the_cached_tokens_it_only_prints(
    receiver: RunningReceiver, fake_provider: FakeProvider, delivery: str
) -> None:
    before = len(fake_provider.served)
    spans = await asyncio.to_thread(run_litellm, fake_provider)
    served = fake_provider.served[before:]
    assert len(served) == 2
    assert not any("gen_ai.usage.cache_read.input_tokens" in (s.attributes or {}) for s in spans)
    await deliver(receiver, receiver.acme, DELIVERIES[delivery](spans))
    await assert_totals_match_ledger(receiver, receiver.acme, served)
    # LiteLLM's own figure is kept beside ours.
    rows = await receiver.rows(receiver.acme)
    assert [r["provided_cost"] for r in rows if r["counted"]] == [Decimal("0.0055")] * 2


@pytest.mark.slow  # many framework runs: the fast loop keeps pydantic-ai's
@pytest.mark.parametrize("delivery", ["shuffled", "resent"])
@pytest.mark.parametrize("api", ["responses", "chat"])
@pytest.mark.parametrize("family", ["openinference", "openllmetry"])
async def test_openai_agents_sdk_counts_each_model_request_once(
    receiver: RunningReceiver, fake_provider: FakeProvider, delivery: str, family: str, api: str
) -> None:
    before = len(fake_provider.served)
    spans = await asyncio.to_thread(run_openai_agents, fake_provider, family=family, api=api)
    served = fake_provider.served[before:]
    assert len(served) == 2
    await deliver(receiver, receiver.acme, DELIVERIES[delivery](spans))
    await assert_totals_match_ledger(receiver, receiver.acme, served)


JS_DIR = Path(__file__).resolve().parent.parent / "js"


@pytest.mark.slow  # a Node process (see pyproject.toml)
@pytest.mark.parametrize("vendor", ["openai", "openai-chat", "anthropic"])
@pytest.mark.parametrize("telemetry", ["current", "legacy"])
async def test_vercel_ai_sdk_multi_step_run_counts_each_model_request_once(
    receiver: RunningReceiver, fake_provider: FakeProvider, telemetry: str, vendor: str
) -> None:
    """Both of the AI SDK's OpenTelemetry integrations: the current one's invoke_agent span
    sums its chat spans under the same gen_ai.usage.* names; the legacy one's ai.generateText
    sums its .doGenerate spans as ai.usage.* (cached tokens included, and only there). The
    Node exporter ships each span as it ends, so the roll-up arrives after its requests."""
    node = shutil.which("node")
    assert node is not None, "node is not on PATH"
    before = len(fake_provider.served)
    command = [
        node, str(JS_DIR / "vercel-ai-agent.mjs"),
        "--endpoint", receiver.url, "--key", receiver.acme.ingest_key,
        "--provider-url", fake_provider.base_url, "--vendor", vendor,
        "--telemetry", telemetry, "--service", SERVICE,
    ]  # fmt: skip
    done = await asyncio.to_thread(
        subprocess.run, command, cwd=JS_DIR, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["exported"] >= 4  # two requests, a tool, the roll-up
    served = fake_provider.served[before:]
    assert len(served) == 2
    await assert_totals_match_ledger(receiver, receiver.acme, served)
    rows = await receiver.rows(receiver.acme)
    rollups = [r for r in rows if r["usage_role"] == "rollup"]
    assert len(rollups) == 1 and not rollups[0]["counted"]


@pytest.mark.parametrize("delivery", list(DELIVERIES))
async def test_model_calls_are_the_user_session_and_tag_of_the_request_that_made_them(
    receiver: RunningReceiver, fake_provider: FakeProvider, delivery: str
) -> None:
    """The handler's span ends last, so an exporter often sends it in a later request than
    the calls under it: whichever arrives first, the calls end up the handler's user's."""
    await set_tag_keys(receiver.pool, receiver.acme.id, ["team"])
    before = len(fake_provider.served)
    spans = await asyncio.to_thread(run_openai_in_a_request_handler, fake_provider)
    served = fake_provider.served[before:]
    assert len(served) == 2
    await deliver(receiver, receiver.acme, DELIVERIES[delivery](spans))
    cost = sum(expected_cost(served, cache_write_ttls=False).values())
    for dimension, value in (("user", "alice"), ("session", "conv-9"), ("tag.team", "search")):
        response = await receiver.session.get(
            f"{receiver.url}/v1/aggregates",
            params={"group_by": dimension},
            headers=receiver.acme.read_headers(),
        )
        rows = {r[dimension]: r for r in (await response.json())["rows"]}
        assert set(rows) == {value}, (dimension, rows)
        assert rows[value]["calls"] == len(served)
        assert Decimal(str(rows[value]["cost_usd"])) == cost


async def test_openinference_using_attributes_names_the_user_and_session(
    receiver: RunningReceiver, fake_provider: FakeProvider
) -> None:
    before = len(fake_provider.served)
    spans = await asyncio.to_thread(run_openinference_with_attributes, fake_provider)
    served = fake_provider.served[before:]
    assert len(served) == 2
    await deliver(receiver, receiver.acme, [spans])
    cost = sum(expected_cost(served, cache_write_ttls=False).values())
    for dimension, value in (("user", "dana"), ("session", "chat-42")):
        response = await receiver.session.get(
            f"{receiver.url}/v1/aggregates",
            params={"group_by": dimension},
            headers=receiver.acme.read_headers(),
        )
        rows = {r[dimension]: r for r in (await response.json())["rows"]}
        assert set(rows) == {value}, (dimension, rows)
        assert rows[value]["calls"] == 2
        assert Decimal(str(rows[value]["cost_usd"])) == cost
