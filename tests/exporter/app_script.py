"""A small application for the SDK tests, run in its own process (init_aethermind changes
process-wide state: the global tracer provider and the instrumented client classes).

argv[1] is a JSON object: {"mode": ..., "endpoint": ..., "api_key": ..., "provider_url": ...}.
Prints one JSON document with what happened.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import anthropic
import openai


def call_llms(provider_url: str, *, anthropic_calls: bool = True) -> None:
    client = openai.OpenAI(
        base_url=f"{provider_url}/v1", api_key="sk-fake-openai-key-0000", max_retries=0
    )
    client.chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": "a secret prompt"}],
        extra_headers={"X-Upstream-Api-Key": "sk-header-secret-0000"},
    )
    if anthropic_calls:
        claude = anthropic.Anthropic(
            base_url=provider_url, api_key="sk-ant-fake-0000", max_retries=0
        )
        claude.messages.create(
            model="claude-sonnet-4-5", max_tokens=64, messages=[{"role": "user", "content": "hi"}]
        )


def main() -> None:
    import warnings

    warnings.simplefilter("ignore", DeprecationWarning)
    options: dict[str, Any] = json.loads(sys.argv[1])
    mode = options["mode"]
    from aethermind import init_aethermind

    out: dict[str, Any] = {}
    if mode == "plain":
        handle = init_aethermind(options["api_key"], options["endpoint"], service_name="shop")
        call_llms(options["provider_url"])
        out["flushed"] = handle.force_flush()
        out["stats"] = handle.stats
        out["instrumented"] = list(handle.instrumented)
        handle.shutdown()
    elif mode == "existing_provider":
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        mine = InMemorySpanExporter()
        provider = TracerProvider(resource=Resource.create({"service.name": "existing-app"}))
        provider.add_span_processor(SimpleSpanProcessor(mine))
        trace.set_tracer_provider(provider)
        handle = init_aethermind(options["api_key"], options["endpoint"])
        with trace.get_tracer("app").start_as_current_span("checkout"):
            call_llms(options["provider_url"], anthropic_calls=False)
        handle.force_flush()
        out["stats"] = handle.stats
        out["app_spans"] = [
            {"name": s.name, "attributes": dict(s.attributes or {})}
            for s in mine.get_finished_spans()
        ]
        handle.shutdown()
    elif mode == "endpoint_down":
        handle = init_aethermind(
            options["api_key"], options["endpoint"], max_queue_size=4, export_timeout=1
        )
        for _ in range(12):
            call_llms(options["provider_url"], anthropic_calls=False)
        out["calls_ok"] = True
        handle.force_flush()
        out["stats"] = handle.stats
        handle.shutdown()
    elif mode == "wrong_key":
        import logging

        logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
        handle = init_aethermind(options["api_key"], options["endpoint"])
        call_llms(options["provider_url"], anthropic_calls=False)
        out["flushed"] = handle.force_flush()
        call_llms(options["provider_url"], anthropic_calls=False)
        out["flushed_again"] = handle.force_flush()
        out["stats"] = handle.stats
        handle.shutdown()
    elif mode == "fork":
        handle = init_aethermind(options["api_key"], options["endpoint"], service_name="forked")
        pid = os.fork()
        if pid == 0:  # the child, as a gunicorn worker would be
            call_llms(options["provider_url"], anthropic_calls=False)
            handle.force_flush()
            os._exit(0 if handle.stats["exported"] == 1 else 3)
        _, status = os.waitpid(pid, 0)
        out["child_status"] = os.waitstatus_to_exitcode(status)
        handle.shutdown()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
