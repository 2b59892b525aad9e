"""Runs the real LLM SDKs under the real OpenTelemetry instrumentations against the fake provider.

Each run gets its own SDK `TracerProvider` (in-memory exporter, simple processor) and
`MeterProvider` (in-memory reader), instruments with them, runs one scenario with the official
client, uninstruments, and returns what was recorded. The global tracer and meter providers are
never touched: every instrumentation here takes `tracer_provider=`, and the Anthropic SDK's own
tracing takes it in the client's `open_telemetry` option.

The instrumentors are process-wide singletons that patch the SDK classes, so runs are serialized
by a lock and always uninstrument, even when the scenario raises; wrappers that `uninstrument()`
forgets are removed too (see `remove_leftover_wrappers`).

Instrumentation names (`INSTRUMENTATIONS`):
  - `openllmetry_openai`, `openllmetry_anthropic`: opentelemetry-instrumentation-* (Traceloop).
  - `openinference_openai`, `openinference_anthropic`: openinference-instrumentation-*.
  - `anthropic_sdk`: the `anthropic` package's own tracing (scope `com.anthropic.sdk.python`).

The Anthropic SDK traces by itself whenever a tracer provider is available: with
`open_telemetry=None` (the default) it uses the *global* provider, unless
`ANTHROPIC_OPEN_TELEMETRY=false` was set when the client was built; `open_telemetry=False` turns it
off for one client. So the harness builds the Anthropic client with `open_telemetry=False` under
the other instrumentations, unless `anthropic_sdk_tracing=True` asks for both at once (then the
SDK's spans go to the same provider, to show the double-counting shape).
"""

from __future__ import annotations

import sys
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import anthropic
import openai
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, MetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.plugins.fake_provider import DELTA_USAGE_HEADER, FakeProvider, RecordedRequest

Vendor = Literal["openai", "anthropic"]
ContentMode = Literal["metadata_only", "content"]

OPENAI_API_KEY = "sk-fake-openai-key-0000"
ANTHROPIC_API_KEY = "sk-ant-fake-anthropic-key-0000"
"""Dummy keys: a test can search span attributes for them to catch credential leaks."""

EXTRA_HEADERS = {"X-Upstream-Api-Key": "sk-header-secret-0000", "X-Tenant": "tenant-42"}
"""Per-request headers of `openai_chat_extra_headers`: a secret to look for in span attributes."""

SERVICE_NAME = "aethermind-harness"

ANTHROPIC_SDK_SCOPE = "com.anthropic.sdk.python"

CHAT_MODEL = "gpt-4o"
REASONING_MODEL = "o3-mini"
EMBEDDING_MODEL = "text-embedding-3-small"
ANTHROPIC_MODEL = "claude-sonnet-4-5"
ERROR_MODEL = "error-model"
MAX_TOKENS = 1024

_lock = threading.Lock()


@dataclass
class Clients:
    """Builds the official clients for one run: at the fake provider, dummy keys, no retries."""

    provider: FakeProvider
    anthropic_open_telemetry: Any = False
    """The Anthropic client's `open_telemetry` option: `False` (off), or a dict with a provider."""

    def openai(self) -> openai.OpenAI:
        return openai.OpenAI(
            base_url=self.provider.openai_base_url,
            api_key=OPENAI_API_KEY,
            max_retries=0,
        )

    def anthropic(self) -> anthropic.Anthropic:
        return anthropic.Anthropic(
            base_url=self.provider.anthropic_base_url,
            api_key=ANTHROPIC_API_KEY,
            max_retries=0,
            open_telemetry=self.anthropic_open_telemetry,
        )


@dataclass(frozen=True)
class Scenario:
    """One call pattern against the fake provider; `expect_error` ones must raise an API error."""

    name: str
    vendor: Vendor
    run: Callable[[Clients], object]
    expect_error: bool = False
    path: str = ""
    """The fake provider's route that the scenario hits."""


def _openai_chat(clients: Clients) -> object:
    return clients.openai().chat.completions.create(
        model=CHAT_MODEL,
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Say hello."},
        ],
        temperature=0.2,
        max_tokens=MAX_TOKENS,
    )


def _openai_chat_priority(clients: Clients) -> object:
    """A chat completion asking for priority processing (the fake answers at that tier)."""
    return clients.openai().chat.completions.create(
        model=CHAT_MODEL,
        messages=[{"role": "user", "content": "Say hello, quickly."}],
        service_tier="priority",
    )


def _openai_chat_stream(clients: Clients) -> object:
    stream = clients.openai().chat.completions.create(
        model=CHAT_MODEL,
        messages=[{"role": "user", "content": "Stream hello."}],
        stream=True,
        stream_options={"include_usage": True},
    )
    return list(stream)


def _openai_chat_extra_headers(clients: Clients) -> object:
    """A call with per-request headers, which OpenLLMetry copies into `gen_ai.headers`."""
    return clients.openai().chat.completions.create(
        model=CHAT_MODEL,
        messages=[{"role": "user", "content": "Say hello."}],
        extra_headers=dict(EXTRA_HEADERS),
    )


def _openai_reasoning(clients: Clients) -> object:
    return clients.openai().chat.completions.create(
        model=REASONING_MODEL,
        messages=[{"role": "user", "content": "Think, then say hello."}],
        reasoning_effort="low",
        max_completion_tokens=4096,
    )


def _openai_embeddings(clients: Clients) -> object:
    return clients.openai().embeddings.create(model=EMBEDDING_MODEL, input="Embed this sentence.")


def _openai_error(clients: Clients) -> object:
    return clients.openai().chat.completions.create(
        model=ERROR_MODEL, messages=[{"role": "user", "content": "This fails."}]
    )


def _anthropic_messages(clients: Clients) -> object:
    return clients.anthropic().messages.create(
        model=ANTHROPIC_MODEL,
        max_tokens=MAX_TOKENS,
        system="Be brief.",
        messages=[{"role": "user", "content": "Say bonjour."}],
    )


def _anthropic_extra_headers(clients: Clients) -> object:
    """A call with per-request headers: OpenInference dumps them into `input.value`."""
    return clients.anthropic().messages.create(
        model=ANTHROPIC_MODEL,
        max_tokens=MAX_TOKENS,
        messages=[{"role": "user", "content": "Say bonjour."}],
        extra_headers=dict(EXTRA_HEADERS),
    )


def _anthropic_stream(clients: Clients) -> object:
    stream = clients.anthropic().messages.create(
        model=ANTHROPIC_MODEL,
        max_tokens=MAX_TOKENS,
        messages=[{"role": "user", "content": "Stream bonjour."}],
        stream=True,
    )
    return list(stream)


def _anthropic_stream_cumulative(clients: Clients) -> object:
    """A stream whose `message_delta` repeats the input-side counts (cumulative usage)."""
    stream = clients.anthropic().messages.create(
        model=ANTHROPIC_MODEL,
        max_tokens=MAX_TOKENS,
        messages=[{"role": "user", "content": "Stream bonjour."}],
        stream=True,
        extra_headers={DELTA_USAGE_HEADER: "cumulative"},
    )
    return list(stream)


def _anthropic_stream_helper(clients: Clients) -> object:
    with clients.anthropic().messages.stream(
        model=ANTHROPIC_MODEL,
        max_tokens=MAX_TOKENS,
        messages=[{"role": "user", "content": "Stream bonjour with the helper."}],
    ) as stream:
        return stream.get_final_message()


def _anthropic_error(clients: Clients) -> object:
    return clients.anthropic().messages.create(
        model=ERROR_MODEL,
        max_tokens=MAX_TOKENS,
        messages=[{"role": "user", "content": "This fails."}],
    )


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("openai_chat", "openai", _openai_chat, path="/v1/chat/completions"),
        Scenario(
            "openai_chat_priority", "openai", _openai_chat_priority, path="/v1/chat/completions"
        ),
        Scenario(
            "openai_chat_stream",
            "openai",
            _openai_chat_stream,
            path="/v1/chat/completions",
        ),
        Scenario(
            "openai_chat_extra_headers",
            "openai",
            _openai_chat_extra_headers,
            path="/v1/chat/completions",
        ),
        Scenario("openai_reasoning", "openai", _openai_reasoning, path="/v1/chat/completions"),
        Scenario("openai_embeddings", "openai", _openai_embeddings, path="/v1/embeddings"),
        Scenario(
            "openai_error",
            "openai",
            _openai_error,
            expect_error=True,
            path="/v1/chat/completions",
        ),
        Scenario("anthropic_messages", "anthropic", _anthropic_messages, path="/v1/messages"),
        Scenario("anthropic_stream", "anthropic", _anthropic_stream, path="/v1/messages"),
        Scenario(
            "anthropic_extra_headers",
            "anthropic",
            _anthropic_extra_headers,
            path="/v1/messages",
        ),
        Scenario(
            "anthropic_stream_cumulative",
            "anthropic",
            _anthropic_stream_cumulative,
            path="/v1/messages",
        ),
        Scenario(
            "anthropic_stream_helper",
            "anthropic",
            _anthropic_stream_helper,
            path="/v1/messages",
        ),
        Scenario(
            "anthropic_error",
            "anthropic",
            _anthropic_error,
            expect_error=True,
            path="/v1/messages",
        ),
    )
}


Undo = Callable[[], None]


@dataclass(frozen=True)
class Instrumentation:
    """How to turn one instrumentation on with a given provider; `instrument` returns the undo."""

    name: str
    vendor: Vendor
    scope: str
    """The instrumentation scope name its spans carry."""
    instrument: Callable[[TracerProvider, MeterProvider], Undo]
    package: str = ""
    """The Python package of its wrappers, to find the ones its `uninstrument()` leaves behind."""


def _undo(instrumentor: Any) -> Undo:
    def undo() -> None:
        instrumentor.uninstrument()

    return undo


def _openllmetry_openai(tracer_provider: TracerProvider, meter_provider: MeterProvider) -> Undo:
    from opentelemetry.instrumentation.openai import OpenAIInstrumentor

    instrumentor = OpenAIInstrumentor()
    instrumentor.instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)
    return _undo(instrumentor)


def _openllmetry_anthropic(tracer_provider: TracerProvider, meter_provider: MeterProvider) -> Undo:
    from opentelemetry.instrumentation.anthropic import AnthropicInstrumentor

    instrumentor = AnthropicInstrumentor()
    instrumentor.instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)
    return _undo(instrumentor)


def _openinference_openai(tracer_provider: TracerProvider, meter_provider: MeterProvider) -> Undo:
    from openinference.instrumentation.openai import OpenAIInstrumentor

    instrumentor = OpenAIInstrumentor()
    instrumentor.instrument(tracer_provider=tracer_provider)
    return _undo(instrumentor)


def _openinference_anthropic(
    tracer_provider: TracerProvider, meter_provider: MeterProvider
) -> Undo:
    from openinference.instrumentation.anthropic import AnthropicInstrumentor

    instrumentor = AnthropicInstrumentor()
    instrumentor.instrument(tracer_provider=tracer_provider)
    return _undo(instrumentor)


def _anthropic_sdk(tracer_provider: TracerProvider, meter_provider: MeterProvider) -> Undo:
    """Nothing to patch: the client traces, given the provider in its `open_telemetry` option."""
    return lambda: None


INSTRUMENTATIONS: dict[str, Instrumentation] = {
    i.name: i
    for i in (
        Instrumentation(
            "openllmetry_openai",
            "openai",
            "opentelemetry.instrumentation.openai.v1",
            _openllmetry_openai,
            "opentelemetry.instrumentation.openai",
        ),
        Instrumentation(
            "openllmetry_anthropic",
            "anthropic",
            "opentelemetry.instrumentation.anthropic",
            _openllmetry_anthropic,
            "opentelemetry.instrumentation.anthropic",
        ),
        Instrumentation(
            "openinference_openai",
            "openai",
            "openinference.instrumentation.openai",
            _openinference_openai,
            "openinference.instrumentation.openai",
        ),
        Instrumentation(
            "openinference_anthropic",
            "anthropic",
            "openinference.instrumentation.anthropic",
            _openinference_anthropic,
            "openinference.instrumentation.anthropic",
        ),
        Instrumentation("anthropic_sdk", "anthropic", ANTHROPIC_SDK_SCOPE, _anthropic_sdk),
    )
}


def pairs() -> list[tuple[str, str]]:
    """Every (instrumentation, scenario) pair whose vendors match."""
    return [
        (instrumentation.name, scenario.name)
        for instrumentation in INSTRUMENTATIONS.values()
        for scenario in SCENARIOS.values()
        if instrumentation.vendor == scenario.vendor
    ]


@dataclass
class HarnessRun:
    """What one run recorded."""

    instrumentation: str
    scenario: str
    spans: list[ReadableSpan]
    requests: list[RecordedRequest]
    """The requests the fake provider received during the run."""
    resource: Resource
    result: object = None
    error: BaseException | None = None
    metrics: list[dict[str, Any]] = field(default_factory=list)
    """Flattened metric points: name, unit, attributes, and sum/count/value."""
    leaked_wrappers: list[str] = field(default_factory=list)
    """SDK methods that `uninstrument()` left wrapped and the harness had to restore itself."""

    @property
    def scoped_spans(self) -> list[tuple[str, ReadableSpan]]:
        """Each span with its instrumentation scope name."""
        return [
            (
                span.instrumentation_scope.name if span.instrumentation_scope else "",
                span,
            )
            for span in self.spans
        ]

    def spans_from(self, scope: str) -> list[ReadableSpan]:
        return [span for name, span in self.scoped_spans if name == scope]

    @property
    def llm_spans(self) -> list[ReadableSpan]:
        """The spans that describe an LLM call, in any convention: GenAI, OpenInference, legacy."""
        markers = ("gen_ai.", "llm.", "openinference.span.kind", "embedding.")
        return [
            span
            for span in self.spans
            if span.attributes and any(key.startswith(markers) for key in span.attributes)
        ]


def _flatten_metrics(reader: InMemoryMetricReader) -> list[dict[str, Any]]:
    data = reader.get_metrics_data()
    points: list[dict[str, Any]] = []
    if data is None:
        return points
    for resource_metrics in data.resource_metrics:
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                for point in metric.data.data_points:
                    entry: dict[str, Any] = {
                        "scope": scope_metrics.scope.name,
                        "name": metric.name,
                        "unit": metric.unit,
                        "attributes": dict(point.attributes or {}),
                    }
                    for attr in ("value", "sum", "count", "min", "max"):
                        if hasattr(point, attr):
                            entry[attr] = getattr(point, attr)
                    points.append(entry)
    return points


def _sdk_classes() -> Iterator[type]:
    """Every class defined in an imported module of the two SDKs: what instrumentors patch."""
    for name, module in list(sys.modules.items()):
        if module is None or not name.startswith(("openai", "anthropic")):
            continue
        for obj in list(vars(module).values()):
            if isinstance(obj, type) and obj.__module__ == name:
                yield obj


def _wrapper_module(proxy: object) -> str:
    wrapper = getattr(proxy, "_self_wrapper", None)
    return getattr(wrapper, "__module__", None) or type(wrapper).__module__


def remove_leftover_wrappers(package: str) -> list[str]:
    """Restores every SDK method still wrapped by `package`; returns their names.

    Needed because opentelemetry-instrumentation-openai's `uninstrument()` unwraps
    nothing: it calls `unwrap("openai.resources.chat.completions", "Completions.create")`,
    which `opentelemetry.instrumentation.utils.unwrap` reads as the attribute
    `Completions.create` of the module, finds none and silently returns. Its wrappers
    then keep emitting spans into every earlier (shut down) tracer provider.
    """
    removed: list[str] = []
    for cls in _sdk_classes():
        for attr, value in list(vars(cls).items()):
            while hasattr(value, "_self_wrapper") and _wrapper_module(value).startswith(package):
                value = value.__wrapped__
                setattr(cls, attr, value)
                removed.append(f"{cls.__module__}.{cls.__qualname__}.{attr}")
    return removed


def leftover_wrappers() -> list[str]:
    """Every SDK method still wrapped by a wrapt wrapper, with the wrapper's module."""
    return [
        f"{cls.__module__}.{cls.__qualname__}.{attr} <- {_wrapper_module(value)}"
        for cls in _sdk_classes()
        for attr, value in list(vars(cls).items())
        if hasattr(value, "_self_wrapper")
    ]


@contextmanager
def _instrumented(
    instrumentation: Instrumentation,
    tracer_provider: TracerProvider,
    meter_provider: MeterProvider,
    leaked: list[str],
) -> Iterator[None]:
    undo = instrumentation.instrument(tracer_provider, meter_provider)
    try:
        yield
    finally:
        undo()
        if instrumentation.package:
            leaked.extend(remove_leftover_wrappers(instrumentation.package))


def run_scenario(
    instrumentation: str,
    scenario: str,
    provider: FakeProvider,
    *,
    anthropic_sdk_tracing: bool = False,
    anthropic_sdk_content_mode: ContentMode = "metadata_only",
    metric_readers: Sequence[MetricReader] = (),
) -> HarnessRun:
    """Runs `scenario` under `instrumentation`; returns the finished spans and what the server saw.

    `anthropic_sdk_tracing` also turns on the Anthropic SDK's own spans, into the same provider,
    under an instrumentation package (for `anthropic_sdk` they are always on).
    `anthropic_sdk_content_mode` is the SDK's `traces.content_mode`: its default,
    `metadata_only`, records no prompt or completion. `metric_readers` read the run's
    metrics beside the in-memory reader (an exporting reader sends them when the run ends).
    """
    inst = INSTRUMENTATIONS[instrumentation]
    scen = SCENARIOS[scenario]
    if inst.vendor != scen.vendor:
        raise ValueError(f"{instrumentation} does not instrument {scen.vendor} scenarios")

    resource = Resource.create({"service.name": SERVICE_NAME})
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader, *metric_readers], resource=resource)

    sdk_option: Any = False
    if inst.name == "anthropic_sdk" or anthropic_sdk_tracing:
        sdk_option = {
            "tracer_provider": tracer_provider,
            "traces": {"enabled": True, "content_mode": anthropic_sdk_content_mode},
        }
    clients = Clients(provider, anthropic_open_telemetry=sdk_option)

    result: object = None
    error: BaseException | None = None
    leaked: list[str] = []
    with _lock:
        seen = len(provider.requests)
        with (
            _instrumented(inst, tracer_provider, meter_provider, leaked),
            warnings.catch_warnings(),
        ):
            # The SDK warns that `claude-sonnet-4-5` is deprecated; that is expected here.
            warnings.simplefilter("ignore", DeprecationWarning)
            try:
                result = scen.run(clients)
            except (openai.APIStatusError, anthropic.APIStatusError) as err:
                if not scen.expect_error:
                    raise
                error = err
        requests = provider.requests[seen:]
    if scen.expect_error and error is None:
        raise AssertionError(f"scenario {scenario} should have failed")
    tracer_provider.force_flush()
    spans = list(exporter.get_finished_spans())
    metrics = _flatten_metrics(reader)
    tracer_provider.shutdown()
    meter_provider.shutdown()
    return HarnessRun(
        instrumentation=instrumentation,
        scenario=scenario,
        spans=spans,
        requests=requests,
        resource=resource,
        result=result,
        error=error,
        metrics=metrics,
        leaked_wrappers=leaked,
    )
