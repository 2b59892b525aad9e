"""One organization's traffic never changes another's numbers: attacks from issue 13 of 7
performed through the receiver on a real PostgreSQL, each checked from the victim's side."""

from __future__ import annotations

from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.plugins.receiver import RunningReceiver, Tenant
from tests.receiver.helpers import PROTOBUF, protobuf_body

WRAPPER_SCOPE = "my-genai-wrapper"


def _spans(
    scope: str, attributes: dict[str, Any], resource: dict[str, Any] | None = None
) -> list[ReadableSpan]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create(resource or {"service.name": "svc"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with provider.get_tracer(scope).start_as_current_span("generate") as span:
        span.set_attributes(attributes)
    provider.shutdown()
    return list(exporter.get_finished_spans())


async def _send(receiver: RunningReceiver, tenant: Tenant, spans: list[ReadableSpan]) -> None:
    response = await receiver.session.post(
        receiver.traces_url, data=protobuf_body(spans),
        headers=tenant.ingest_headers(**{"Content-Type": PROTOBUF}),
    )  # fmt: skip
    assert response.status == 200, await response.text()


GEMINI = {
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": "gcp.gemini",
    "gen_ai.request.model": "gemini-2.5-flash",
    "gen_ai.usage.input_tokens": 2000,
    "gen_ai.usage.output_tokens": 1000,
    "gen_ai.usage.reasoning.output_tokens": 500,
}


async def test_one_organizations_scope_cannot_change_how_anothers_tokens_are_counted(
    receiver: RunningReceiver,
) -> None:
    # Gemini's output count leaves thoughts out, so a GenAI-convention span of 1000 output
    # and 500 reasoning tokens is 1500 output tokens. Organization A first sends, under the
    # same made-up scope name, a span spelled the OpenInference way (which counts thoughts
    # in): what that taught the normalizer must not leak into B's numbers.
    await _send(
        receiver, receiver.acme,
        _spans(WRAPPER_SCOPE, {**GEMINI, "openinference.span.kind": "LLM"}),
    )  # fmt: skip
    await _send(receiver, receiver.globex, _spans(WRAPPER_SCOPE, GEMINI))
    (row,) = await receiver.rows(receiver.globex)
    assert row["output_tokens"] == 1500
    assert row["total_tokens"] == 3500


async def test_content_in_resource_attributes_is_kept_only_for_organizations_that_opted_in(
    receiver: RunningReceiver,
) -> None:
    resource = {"service.name": "svc", "gen_ai.prompt": "a secret prompt in the resource"}
    chat = {**GEMINI, "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o"}
    await _send(receiver, receiver.acme, _spans("tests", chat, resource))
    (row,) = await receiver.rows(receiver.acme)
    assert "gen_ai.prompt" not in row["resource_attributes"]
    assert row["resource_attributes"]["service.name"] == "svc"


async def test_an_admin_key_cannot_pile_up_overrides_or_costly_patterns(
    receiver: RunningReceiver,
) -> None:
    from aethermind.storage.prices import MAX_PRICE_OVERRIDES
    from aethermind.storage.tenants import create_key

    _, admin_key = await create_key(receiver.pool, receiver.acme.id, ["admin"], name="admin")
    headers = {"Authorization": f"Bearer {admin_key}"}

    async def add(pattern: str) -> Any:
        return await receiver.session.post(
            f"{receiver.url}/v1/prices", headers=headers,
            json={"model_pattern": pattern, "input_per_mtok": "1", "output_per_mtok": "2"},
        )  # fmt: skip

    # The pattern of the measured attack: hundreds of ? (fnmatch backtracking per span).
    refused = await add("?" * 150 + "*")
    assert refused.status == 400
    assert "only *" in (await refused.json())["error"]["message"]
    assert (await add("*a*b*c*")).status == 400
    for i in range(MAX_PRICE_OVERRIDES):
        assert (await add(f"house-model-{i}*")).status == 201
    over = await add("one-too-many")
    assert over.status == 400
    assert f"at most {MAX_PRICE_OVERRIDES}" in (await over.json())["error"]["message"]
    # Another organization is not affected by acme's count.
    _, globex_admin = await create_key(receiver.pool, receiver.globex.id, ["admin"])
    response = await receiver.session.post(
        f"{receiver.url}/v1/prices", headers={"Authorization": f"Bearer {globex_admin}"},
        json={"model_pattern": "mine", "input_per_mtok": "1", "output_per_mtok": "2"},
    )  # fmt: skip
    assert response.status == 201
