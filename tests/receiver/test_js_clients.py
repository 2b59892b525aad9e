"""Real OpenTelemetry JavaScript clients against the running receiver.

``tests/js/export-genai-spans.js`` runs under Node with the official OTel JS SDK and its two
OTLP/HTTP exporters (``exporter-trace-otlp-http`` sends OTLP/JSON, ``exporter-trace-otlp-proto``
protobuf), with and without gzip. The script talks to the receiver through a byte-for-byte TCP
tap, so the tests check both what the exporters really put on the wire (chunked bodies with no
Content-Length, JSON integers as JSON numbers) and the rows the receiver stored in PostgreSQL.

Needs ``node`` and ``npm ci --prefix tests/js`` (CI runs it); without them these tests fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import shutil
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.plugins.receiver import RunningReceiver

pytestmark = pytest.mark.slow  # see pyproject.toml: a subprocess, a browser or a fuzzer

JS_DIR = Path(__file__).resolve().parent.parent / "js"
SCRIPT = JS_DIR / "export-genai-spans.js"
PACKAGES = (
    "@opentelemetry/api",
    "@opentelemetry/exporter-trace-otlp-http",
    "@opentelemetry/exporter-trace-otlp-proto",
    "@opentelemetry/resources",
    "@opentelemetry/sdk-trace-base",
    "@opentelemetry/semantic-conventions",
)
CONTENT_TYPES = {"json": "application/json", "proto": "application/x-protobuf"}
# gpt-4o at $2.50 / $1.25 cached / $10 per MTok: 800 x 2.5 + 400 x 1.25 + 300 x 10 micro-dollars
COST_PER_SPAN = Decimal("0.0055")


@pytest.fixture(scope="module")
def node_script() -> list[str]:
    """``node export-genai-spans.js``, checked before any receiver or database is set up."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not on PATH: these tests run the OTel JS exporters under Node.js")
    missing = [p for p in PACKAGES if not (JS_DIR / "node_modules" / p / "package.json").is_file()]
    if missing:
        pytest.fail(
            f"tests/js/node_modules lacks {', '.join(missing)}: run `bash scripts/test.sh` "
            "(it installs them), or `npm ci --prefix tests/js` from the repository root",
            pytrace=False,
        )
    return [node, str(SCRIPT)]


# ---------------------------------------------------------------------------------------------
# A TCP tap between the exporter and the receiver: forwards bytes unchanged, keeps a copy of
# what the client sent on each connection, then parses those bytes as HTTP/1.1 requests.


@dataclass
class WireRequest:
    method: str
    target: str
    headers: dict[str, str]  # lower-cased names; a repeated header would fail the parse
    body: bytes  # as sent, chunked framing removed, still compressed
    chunk_sizes: list[int] | None  # None when the body was not chunked

    def decoded_body(self) -> bytes:
        if self.headers.get("content-encoding") == "gzip":
            return gzip.decompress(self.body)
        return self.body


def parse_requests(data: bytes) -> list[WireRequest]:
    """Every HTTP/1.1 request in ``data``, one connection's client-to-server bytes."""
    requests = []
    pos = 0
    while pos < len(data):
        head_end = data.index(b"\r\n\r\n", pos)
        request_line, *header_lines = data[pos:head_end].decode("latin-1").split("\r\n")
        method, target, version = request_line.split(" ")
        assert version == "HTTP/1.1", request_line
        headers: dict[str, str] = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            assert name.lower() not in headers, f"repeated header {name}"
            headers[name.lower()] = value.strip()
        pos = head_end + 4
        chunk_sizes: list[int] | None = None
        if headers.get("transfer-encoding", "").lower() == "chunked":
            chunk_sizes = []
            parts = []
            while True:
                line_end = data.index(b"\r\n", pos)
                size = int(data[pos:line_end].split(b";")[0], 16)
                pos = line_end + 2
                if size == 0:
                    trailer_end = data.index(b"\r\n\r\n", pos - 2)  # no trailers: CRLF CRLF
                    pos = trailer_end + 4
                    break
                chunk_sizes.append(size)
                parts.append(data[pos : pos + size])
                assert data[pos + size : pos + size + 2] == b"\r\n", "bad chunk framing"
                pos += size + 2
            body = b"".join(parts)
        else:
            length = int(headers.get("content-length", "0"))
            body = data[pos : pos + length]
            pos += length
        requests.append(WireRequest(method, target, headers, body, chunk_sizes))
    return requests


@dataclass
class WireTap:
    upstream_host: str
    upstream_port: int
    connections: list[bytearray] = field(default_factory=list)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    server: asyncio.Server | None = None
    url: str = ""

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"

    async def close(self) -> None:
        assert self.server is not None
        self.server.close()
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.server.wait_closed()

    def requests(self) -> list[WireRequest]:
        return [r for sent in self.connections for r in parse_requests(bytes(sent))]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        sent = bytearray()
        self.connections.append(sent)
        up_reader, up_writer = await asyncio.open_connection(self.upstream_host, self.upstream_port)
        try:
            await asyncio.gather(
                self._pump(reader, up_writer, sent), self._pump(up_reader, writer, None)
            )
        finally:
            for w in (writer, up_writer):
                w.close()
                with contextlib.suppress(Exception):
                    await w.wait_closed()
            self.tasks.discard(task)

    @staticmethod
    async def _pump(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, copy: bytearray | None
    ) -> None:
        try:
            while data := await reader.read(65536):
                if copy is not None:
                    copy += data
                writer.write(data)
                await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()
        except (ConnectionError, OSError):
            pass


@contextlib.asynccontextmanager
async def wire_tap(receiver: RunningReceiver) -> AsyncIterator[WireTap]:
    parts = urlsplit(receiver.url)
    assert parts.hostname is not None and parts.port is not None
    tap = WireTap(parts.hostname, parts.port)
    await tap.start()
    try:
        yield tap
    finally:
        await tap.close()


# ---------------------------------------------------------------------------------------------


@dataclass
class ScriptRun:
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def report(self) -> dict[str, Any]:
        lines = self.stdout.strip().splitlines()
        assert lines, f"no output; stderr:\n{self.stderr}"
        parsed: dict[str, Any] = json.loads(lines[-1])
        return parsed


async def run_js_exporter(
    node_script: list[str],
    endpoint: str,
    key: str,
    *,
    exporter: str,
    compression: str,
    service: str,
    count: int,
    batch_size: int = 512,
) -> ScriptRun:
    argv = [
        *node_script,
        "--endpoint", endpoint,
        "--key", key,
        "--exporter", exporter,
        "--compression", compression,
        "--service", service,
        "--count", str(count),
        "--batch-size", str(batch_size),
    ]  # fmt: skip
    started = time.monotonic()
    # The receiver serves from this test's event loop: the blocking wait goes to a thread.
    result = await asyncio.to_thread(
        subprocess.run, argv, cwd=JS_DIR, capture_output=True, text=True, timeout=60, check=False
    )
    return ScriptRun(result.returncode, result.stdout, result.stderr, time.monotonic() - started)


def check_wire(tap: WireTap, exporter: str, compression: str, spans: int) -> list[WireRequest]:
    """What the exporter sent: chunked OTLP/HTTP POSTs holding ``spans`` spans in all."""
    requests = tap.requests()
    assert requests
    seen = 0
    for request in requests:
        assert (request.method, request.target) == ("POST", "/v1/traces")
        headers = request.headers
        assert headers["content-type"] == CONTENT_TYPES[exporter]
        assert headers["authorization"].startswith("Bearer ")
        assert headers["user-agent"].startswith("OTel-OTLP-Exporter-JavaScript/")
        # The exporters pipe the body into the request: chunked, never a Content-Length.
        assert headers.get("transfer-encoding") == "chunked"
        assert "content-length" not in headers
        assert request.chunk_sizes
        if compression == "gzip":
            assert headers["content-encoding"] == "gzip"
            assert request.body[:2] == b"\x1f\x8b"
        else:
            assert "content-encoding" not in headers
        body = request.decoded_body()
        if exporter == "json":
            seen += check_otlp_json(json.loads(body))
        else:
            parsed = ExportTraceServiceRequest.FromString(body)
            seen += sum(len(ss.spans) for rs in parsed.resource_spans for ss in rs.scope_spans)
    assert seen == spans
    return requests


def check_otlp_json(payload: dict[str, Any]) -> int:
    """The JS JSON serializer's choices the receiver must take: 64-bit timestamps as decimal
    strings, attribute ``intValue`` as JSON numbers, ids as hex, enums as numbers."""
    count = 0
    for resource_spans in payload["resourceSpans"]:
        for scope_spans in resource_spans["scopeSpans"]:
            for span in scope_spans["spans"]:
                count += 1
                assert isinstance(span["startTimeUnixNano"], str)
                assert isinstance(span["endTimeUnixNano"], str)
                assert isinstance(span["kind"], int)
                assert len(span["traceId"]) == 32 and len(span["spanId"]) == 16
                ints = {
                    a["key"]: a["value"]["intValue"]
                    for a in span["attributes"]
                    if "intValue" in a["value"]
                }
                if span["name"].startswith("chat"):
                    assert ints["gen_ai.usage.input_tokens"] == 1200
                    assert all(type(v) is int for v in ints.values()), ints
    return count


async def check_rows(receiver: RunningReceiver, report: dict[str, Any], service: str) -> None:
    """One priced row per GenAI span, matched by span id; the plain span is not stored."""
    rows = await receiver.rows(receiver.acme)
    by_span = {row["span_id"]: row for row in rows}
    expected = {s["span_id"]: s for s in report["spans"]}
    assert len(rows) == len(expected) == len(by_span)
    assert set(by_span) == set(expected)
    assert report["plain_span_id"] not in by_span
    for span_id, span in expected.items():
        row = by_span[span_id]
        assert row["trace_id"] == span["trace_id"]
        assert (row["service"], row["kind"], row["operation"]) == (service, "CLIENT", "chat")
        assert (row["provider"], row["request_model"], row["response_model"], row["model"]) == (
            "openai",
            "gpt-4o",
            "gpt-4o-2024-08-06",
            "gpt-4o-2024-08-06",
        )
        assert (row["input_tokens"], row["output_tokens"], row["cache_read_tokens"]) == (
            1200,
            300,
            400,
        )
        assert (row["cost"], row["cost_source"]) == (COST_PER_SPAN, "computed")
        assert row["duration_ms"] == pytest.approx(span["duration_ms"])
        assert row["resource_attributes"]["service.name"] == service
    assert await receiver.count_rows(receiver.acme) == len(expected)


@pytest.mark.parametrize("compression", ["none", "gzip"])
@pytest.mark.parametrize("exporter", ["json", "proto"])
async def test_otel_js_exporter_spans_are_stored_and_priced(
    node_script: list[str], receiver: RunningReceiver, exporter: str, compression: str
) -> None:
    count = 5
    service = f"checkout-js-{exporter}-{compression}"
    async with wire_tap(receiver) as tap:
        run = await run_js_exporter(
            node_script,
            tap.url,
            receiver.acme.ingest_key,
            exporter=exporter,
            compression=compression,
            service=service,
            count=count,
        )
        assert run.returncode == 0, f"stdout:\n{run.stdout}\nstderr:\n{run.stderr}"
        report = run.report
        assert report["ok"] and report["exported"] == count + 1
        assert all(e["ok"] for e in report["exports"]), report["exports"]
        check_wire(tap, exporter, compression, spans=count + 1)

    await check_rows(receiver, report, service)
    total = sum(r["cost"] for r in await receiver.rows(receiver.acme))
    assert total == COST_PER_SPAN * count
    metrics = await (await receiver.session.get(f"{receiver.url}/metrics")).text()
    assert 'aethermind_spans_dropped_total{reason="not_genai"} 1.0' in metrics


async def test_several_chunked_batches_over_kept_alive_connections(
    node_script: list[str], receiver: RunningReceiver
) -> None:
    # 250 spans in batches of 100: three gzip requests on the exporter's keep-alive agent,
    # so the receiver reads a chunked body after another on the same connection.
    count = 249
    async with wire_tap(receiver) as tap:
        run = await run_js_exporter(
            node_script,
            tap.url,
            receiver.acme.ingest_key,
            exporter="proto",
            compression="gzip",
            service="batch-js",
            count=count,
            batch_size=100,
        )
        assert run.returncode == 0, f"stdout:\n{run.stdout}\nstderr:\n{run.stderr}"
        report = run.report
        assert sorted(e["spans"] for e in report["exports"]) == [50, 100, 100]
        requests = check_wire(tap, "proto", "gzip", spans=count + 1)
        assert len(requests) == 3
    await check_rows(receiver, report, "batch-js")


async def test_a_rejected_key_fails_the_js_export(
    node_script: list[str], receiver: RunningReceiver
) -> None:
    # The script's exit status and report are what the other tests rely on: a refused export
    # must show as a failure, not pass silently.
    run = await run_js_exporter(
        node_script,
        receiver.url,
        "am_not_a_real_key",
        exporter="json",
        compression="gzip",
        service="checkout-js",
        count=2,
    )
    assert run.returncode == 1, f"stdout:\n{run.stdout}\nstderr:\n{run.stderr}"
    report = run.report
    assert not report["ok"]
    assert report["exported"] == 0 and report["errors"]
    assert report["exports"] and not any(e["ok"] for e in report["exports"])
    assert "Unauthorized" in report["exports"][0]["error"]
    assert await receiver.count_rows(receiver.acme) == 0
