"""Reading OTLP request bodies: size limits, gzip and deflate, bombs, and real HTTP requests.

The pure reader is fed async chunk iterators; the aiohttp adapter is exercised through a real
aiohttp server receiving from the OTel SDK's own OTLP/HTTP exporter, a chunked client, and a
raw socket that cuts its body short.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Iterable
from typing import Any

import pytest
from aiohttp import ClientSession, web
from aiohttp.test_utils import TestServer
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace.export import SpanExportResult

from aethermind.ingest.otlp import (
    DEFAULT_MAX_BODY_SIZE,
    BodyTooLargeError,
    DecodedSpan,
    MalformedBodyError,
    OtlpRequestError,
    UnsupportedContentEncodingError,
    decode_traces,
    encode_decoded_response,
    encode_error,
    parse_content_encoding,
    read_body,
    read_request_body,
)
from tests.ingest.test_otlp_decode import json_body, json_request, json_span, record_sdk_spans

PAYLOAD = b"OTLP payload " * 5000


async def chunks_of(data: bytes, size: int = 65536) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def from_parts(parts: Iterable[bytes]) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


def deflate_zlib(data: bytes) -> bytes:
    return zlib.compress(data)


def deflate_raw(data: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-15)
    return compressor.compress(data) + compressor.flush()


def gzip_bomb(inflated_size: int) -> bytes:
    """``inflated_size`` zeros, gzipped, built without ever holding them all."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = bytes(1 << 20)
    parts = [compressor.compress(block) for _ in range(inflated_size >> 20)]
    parts.append(compressor.flush())
    return b"".join(parts)


async def read(data: bytes, encoding: str | None, *, size: int = 65536, **kwargs: Any) -> bytes:
    return await read_body(chunks_of(data, size), content_encoding=encoding, **kwargs)


# --- the pure reader -----------------------------------------------------------------------


async def test_identity_body_is_returned_as_sent() -> None:
    assert await read(PAYLOAD, None, size=7) == PAYLOAD
    assert await read(PAYLOAD, "identity") == PAYLOAD
    assert await read(b"", None) == b""


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [
        ("gzip", gzip.compress),
        ("GZIP", gzip.compress),
        ("x-gzip", gzip.compress),
        ("gzip, identity", gzip.compress),
        ("deflate", deflate_zlib),
        ("deflate", deflate_raw),
        ("Deflate", deflate_raw),
        ("gzip", deflate_zlib),  # zlib data labelled gzip, as some clients do
    ],
)
@pytest.mark.parametrize("chunk_size", [1, 3, 1000, 1 << 20])
async def test_compressed_bodies_inflate_whatever_the_chunking(
    encoding: str, compress: Any, chunk_size: int
) -> None:
    assert await read(compress(PAYLOAD), encoding, size=chunk_size) == PAYLOAD


async def test_concatenated_gzip_members_and_zero_padding_are_read_like_gzip_does() -> None:
    body = gzip.compress(b"first ") + gzip.compress(b"second") + bytes(10)
    assert await read(body, "gzip", size=5) == b"first second"


async def test_body_exactly_at_the_limit_is_accepted() -> None:
    assert await read(PAYLOAD, None, max_size=len(PAYLOAD)) == PAYLOAD
    assert await read(gzip.compress(PAYLOAD), "gzip", max_size=len(PAYLOAD)) == PAYLOAD


async def test_body_over_the_limit_is_a_413() -> None:
    with pytest.raises(BodyTooLargeError) as caught:
        await read(PAYLOAD, None, max_size=len(PAYLOAD) - 1)
    assert caught.value.status == 413
    assert caught.value.limit == len(PAYLOAD) - 1
    assert f"over the limit of {len(PAYLOAD) - 1} bytes" in caught.value.message


async def test_inflated_body_over_the_limit_is_a_413_saying_so() -> None:
    with pytest.raises(BodyTooLargeError, match="after gzip decompression"):
        await read(gzip.compress(PAYLOAD), "gzip", max_size=len(PAYLOAD) - 1)


async def test_compressed_body_over_the_limit_on_the_wire_is_a_413() -> None:
    incompressible = zlib.compress(bytes(range(256)) * 64, 0)  # stored blocks: bigger
    with pytest.raises(BodyTooLargeError, match="before deflate decompression"):
        await read(incompressible, "deflate", max_size=len(incompressible) - 1)


async def test_gzip_bomb_is_rejected_without_inflating_past_the_limit() -> None:
    bomb = gzip_bomb(100 << 20)  # 100 MiB of zeros
    assert len(bomb) < 200_000
    tracemalloc.start()
    try:
        with pytest.raises(BodyTooLargeError, match="after gzip decompression"):
            await read(bomb, "gzip")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # At most the 16 MiB limit plus a chunk in flight; never the 100 MiB.
    assert peak < DEFAULT_MAX_BODY_SIZE + (4 << 20), peak


async def test_small_limit_bounds_memory_of_a_bomb_tightly() -> None:
    bomb = gzip_bomb(64 << 20)
    tracemalloc.start()
    try:
        with pytest.raises(BodyTooLargeError):
            await read(bomb, "gzip", size=len(bomb), max_size=1 << 20)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 3 << 20, peak


@pytest.mark.parametrize("encoding", ["br", "zstd", "compress", "gzip, deflate", "deflate, gzip"])
async def test_unknown_or_stacked_encodings_are_a_415_before_reading(encoding: str) -> None:
    consumed: list[bytes] = []

    async def watched() -> AsyncIterator[bytes]:
        consumed.append(b"read")
        yield PAYLOAD

    with pytest.raises(UnsupportedContentEncodingError) as caught:
        await read_body(watched(), content_encoding=encoding)
    assert caught.value.status == 415
    assert consumed == []


def test_content_encoding_header_parsing() -> None:
    assert parse_content_encoding(None) == "identity"
    assert parse_content_encoding("") == "identity"
    assert parse_content_encoding(" identity , ") == "identity"
    assert parse_content_encoding("X-GZIP") == "gzip"
    assert parse_content_encoding("identity, deflate") == "deflate"


@pytest.mark.parametrize(
    ("encoding", "body"),
    [
        ("gzip", b"definitely not gzip"),
        ("gzip", gzip.compress(PAYLOAD)[:-10]),  # truncated
        ("gzip", gzip.compress(PAYLOAD)[:10]),
        ("gzip", gzip.compress(PAYLOAD) + b"trailing garbage"),
        ("deflate", b"\x78"),  # one byte of a zlib header
        ("deflate", deflate_zlib(PAYLOAD)[:-3]),
        ("deflate", deflate_zlib(PAYLOAD) + b"more"),
        ("deflate", b"\xff\xff\xff\xff"),
    ],
)
async def test_corrupt_or_truncated_streams_are_a_400(encoding: str, body: bytes) -> None:
    with pytest.raises(MalformedBodyError) as caught:
        await read(body, encoding, size=4)
    assert caught.value.status == 400


async def test_empty_body_is_empty_whatever_its_declared_encoding() -> None:
    assert await read(b"", "gzip") == b""
    assert await read(b"", "deflate") == b""


async def test_max_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_size"):
        await read(b"", None, max_size=0)


# --- through a real aiohttp server ---------------------------------------------------------


class Receiver:
    """A minimal OTLP/HTTP handler built the way the real one uses this package."""

    def __init__(self, max_size: int = DEFAULT_MAX_BODY_SIZE) -> None:
        self.max_size = max_size
        self.spans: list[DecodedSpan] = []
        self.errors: list[OtlpRequestError] = []

    async def handle(self, request: web.Request) -> web.Response:
        content_type = request.headers.get("Content-Type")
        try:
            body = await read_request_body(request, max_size=self.max_size)
            decoded = decode_traces(body, content_type)
        except OtlpRequestError as exc:
            self.errors.append(exc)
            payload, response_type = encode_error(exc, content_type=content_type)
            return web.Response(
                status=exc.status, body=payload, headers={"Content-Type": response_type}
            )
        self.spans.extend(decoded.spans)
        payload, response_type = encode_decoded_response(decoded)
        return web.Response(body=payload, headers={"Content-Type": response_type})

    @contextlib.asynccontextmanager
    async def server(self, **kwargs: Any) -> AsyncIterator[TestServer]:
        """A running server; ``kwargs`` reach aiohttp's request handler (``auto_decompress``),
        which only ``start_server`` passes on, not the ``TestServer`` constructor."""
        app = web.Application()
        app.router.add_post("/v1/traces", self.handle)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server(**kwargs)
        try:
            yield server
        finally:
            await server.close()


@pytest.mark.parametrize("auto_decompress", [True, False])
@pytest.mark.parametrize(
    "compression", [Compression.NoCompression, Compression.Gzip, Compression.Deflate]
)
async def test_the_sdk_otlp_http_exporter_is_received(
    compression: Compression, auto_decompress: bool
) -> None:
    receiver = Receiver()
    sdk_spans = record_sdk_spans(3)
    async with receiver.server(auto_decompress=auto_decompress) as server:
        exporter = OTLPSpanExporter(
            endpoint=str(server.make_url("/v1/traces")), compression=compression, timeout=10
        )
        try:
            result = await asyncio.to_thread(exporter.export, sdk_spans)
        finally:
            exporter.shutdown()
    assert result is SpanExportResult.SUCCESS, receiver.errors
    assert sorted(s.span_id for s in receiver.spans) == sorted(
        format(s.context.span_id, "016x") for s in sdk_spans if s.context
    )


@pytest.mark.parametrize("auto_decompress", [True, False])
async def test_chunked_gzip_json_without_content_length_like_the_js_exporter(
    auto_decompress: bool,
) -> None:
    receiver = Receiver()
    body = gzip.compress(json_body(json_request(json_span(name="from js"))))
    async with receiver.server(auto_decompress=auto_decompress) as server, ClientSession() as http:
        response = await http.post(
            server.make_url("/v1/traces"),
            data=chunks_of(body, 10),  # an async iterator: sent chunked
            headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
        )
        assert response.status == 200, await response.text()
        assert response.headers["Content-Type"] == "application/json"
        assert await response.read() == b"{}"
        assert response.request_info.headers.get("Transfer-Encoding") == "chunked"
    assert [s.name for s in receiver.spans] == ["from js"]


@pytest.mark.parametrize("auto_decompress", [True, False])
async def test_gzip_bomb_over_http_is_a_413(auto_decompress: bool) -> None:
    receiver = Receiver(max_size=1 << 20)
    async with receiver.server(auto_decompress=auto_decompress) as server, ClientSession() as http:
        response = await http.post(
            server.make_url("/v1/traces"),
            data=gzip_bomb(32 << 20),
            headers={"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"},
        )
        assert response.status == 413
        assert response.headers["Content-Type"] == "application/x-protobuf"
    assert isinstance(receiver.errors[0], BodyTooLargeError)


async def test_declared_content_length_over_the_limit_is_a_413_before_reading() -> None:
    receiver = Receiver(max_size=100)
    async with receiver.server() as server, ClientSession() as http:
        response = await http.post(
            server.make_url("/v1/traces"),
            data=b"x" * 101,
            headers={"Content-Type": "application/json"},
        )
        assert response.status == 413
        assert await response.json() == {
            "code": 8,
            "message": "request body is over the limit of 100 bytes (Content-Length 101)",
        }


async def test_unknown_encoding_over_http_is_a_415() -> None:
    receiver = Receiver()
    async with receiver.server(auto_decompress=False) as server, ClientSession() as http:
        response = await http.post(
            server.make_url("/v1/traces"),
            data=b"whatever",
            headers={"Content-Type": "application/json", "Content-Encoding": "snappy"},
        )
        assert response.status == 415
        assert "snappy" in (await response.json())["message"]


@pytest.mark.parametrize("auto_decompress", [True, False])
async def test_corrupt_gzip_over_http_is_a_400(auto_decompress: bool) -> None:
    receiver = Receiver()
    async with receiver.server(auto_decompress=auto_decompress) as server, ClientSession() as http:
        response = await http.post(
            server.make_url("/v1/traces"),
            data=b"\x1f\x8b\x08\x00 this is not a gzip stream at all",
            headers={"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"},
        )
        # aiohttp itself may refuse the body before the handler runs; either way a 400.
        assert response.status == 400


async def test_body_aiohttp_fails_to_inflate_reaches_the_handler_as_a_malformed_body() -> None:
    receiver = Receiver()
    async with receiver.server(auto_decompress=True) as server, ClientSession() as http:
        response = await http.post(
            server.make_url("/v1/traces"),
            data=b"\x1f\x8b\x08\x00 this is not a gzip stream at all",
            headers={"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"},
        )
        assert response.status == 400
    assert len(receiver.errors) == 1
    assert isinstance(receiver.errors[0], MalformedBodyError)
    assert "could not be read" in receiver.errors[0].message


async def test_client_that_disconnects_mid_body_cancels_the_handler_quietly() -> None:
    # aiohttp cancels the handler (test servers enable handler_cancellation): the reader
    # lets CancelledError through, nothing is decoded and no error is recorded.
    receiver = Receiver()
    async with receiver.server() as server:
        _, writer = await asyncio.open_connection(server.host, server.port)
        writer.write(
            b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'Transfer-Encoding: chunked\r\n\r\n10\r\n{"resourceSpans"'
        )
        await writer.drain()
        writer.close()
        await writer.wait_closed()
        await asyncio.sleep(0.1)
    assert receiver.spans == [] and receiver.errors == []
