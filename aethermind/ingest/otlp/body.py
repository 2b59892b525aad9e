"""Reading an OTLP/HTTP request body within a size limit, inflating gzip or deflate on the fly.

The limit holds on the wire and after decompression, and inflation is incremental with a
bounded output per step, so a small gzip bomb fails with 413 having inflated at most the limit.
"""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from typing import Protocol

from aethermind.ingest.otlp.errors import (
    BodyTooLargeError,
    MalformedBodyError,
    UnsupportedContentEncodingError,
)

DEFAULT_MAX_BODY_SIZE = 16 * 1024 * 1024
"""16 MiB: a little under the 20 MiB the OTLP spec recommends, well over the 4 MiB (before
compression) that OTel SDK exporters cap their batches at."""

READ_CHUNK_SIZE = 64 * 1024
_INFLATE_STEP = 256 * 1024
"""Most output one ``decompress`` call may make: zlib builds each call's output whole and
then copies it, so an uncapped call near the limit would briefly hold twice the limit."""

IDENTITY = "identity"
GZIP = "gzip"
DEFLATE = "deflate"

_CODING_ALIASES = {"identity": IDENTITY, "gzip": GZIP, "x-gzip": GZIP, "deflate": DEFLATE}

# zlib's wbits: 15 is a zlib-wrapped stream, -15 a raw deflate stream, and 32 + 15 makes zlib
# detect a gzip or a zlib header by itself (some clients label zlib data as gzip).
_ZLIB_WBITS = 15
_RAW_DEFLATE_WBITS = -15
_GZIP_OR_ZLIB_WBITS = 32 + 15


def parse_content_encoding(header: str | None) -> str:
    """The one coding to undo: ``identity``, ``gzip`` or ``deflate``; raises a 415 otherwise.

    A list such as ``gzip, identity`` is allowed (identity is a no-op); two real codings are
    not, as no OTLP exporter stacks them and each would need its own bomb accounting.
    """
    if not header:
        return IDENTITY
    codings = [part.strip().lower() for part in header.split(",")]
    real = [coding for coding in codings if coding and coding != IDENTITY]
    if not real:
        return IDENTITY
    if len(real) > 1:
        raise UnsupportedContentEncodingError(
            f"unsupported Content-Encoding {header[:100]!r}: only one of gzip or deflate may be "
            "applied"
        )
    coding = _CODING_ALIASES.get(real[0])
    if coding is None:
        raise UnsupportedContentEncodingError(
            f"unsupported Content-Encoding {real[0][:50]!r}: accepted are gzip, deflate, identity"
        )
    return coding


class _BoundedBuffer:
    """Collects output chunks and fails as soon as their total passes the limit."""

    __slots__ = ("_limit", "_parts", "_size", "_what")

    def __init__(self, limit: int, what: str) -> None:
        self._parts: list[bytes] = []
        self._size = 0
        self._limit = limit
        self._what = what

    @property
    def room(self) -> int:
        return self._limit - self._size

    def add(self, data: bytes) -> None:
        if not data:
            return
        self._size += len(data)
        if self._size > self._limit:
            raise BodyTooLargeError(
                f"request body is over the limit of {self._limit} bytes{self._what}",
                limit=self._limit,
            )
        self._parts.append(data)

    def getvalue(self) -> bytes:
        return self._parts[0] if len(self._parts) == 1 else b"".join(self._parts)


class _Inflater:
    """Incremental gzip/deflate decoder writing into a bounded buffer.

    Each ``decompress`` call is capped at one byte more than the room left (and at
    ``_INFLATE_STEP``), so crossing the limit is detected without inflating further; the rest
    of the input waits in ``unconsumed_tail`` and is never expanded.
    """

    __slots__ = ("_coding", "_decoder", "_head", "_out", "_seen_input")

    def __init__(self, coding: str, out: _BoundedBuffer) -> None:
        self._coding = coding
        self._out = out
        self._decoder: zlib._Decompress | None = (
            zlib.decompressobj(wbits=_GZIP_OR_ZLIB_WBITS) if coding == GZIP else None
        )
        self._head = b""
        self._seen_input = False

    def feed(self, data: bytes) -> None:
        if not data:
            return
        self._seen_input = True
        if self._decoder is None:
            # Deflate: "deflate" means zlib-wrapped per RFC 9110, but some clients send raw
            # deflate. A zlib header is two bytes whose big-endian value is a multiple of 31
            # with compression method 8; zlib's raw streams never start like that.
            self._head += data
            if len(self._head) < 2:
                return
            data, self._head = self._head, b""
            wbits = _ZLIB_WBITS if _is_zlib_header(data) else _RAW_DEFLATE_WBITS
            self._decoder = zlib.decompressobj(wbits=wbits)
        self._inflate(data)

    def _inflate(self, data: bytes) -> None:
        out = self._out
        decoder = self._decoder
        assert decoder is not None
        while data:
            if decoder.eof:
                data = self._next_member(data)
                if not data:
                    return
                decoder = self._decoder
                assert decoder is not None
            try:
                chunk = decoder.decompress(data, min(out.room + 1, _INFLATE_STEP))
            except zlib.error as exc:
                raise MalformedBodyError(f"corrupt {self._coding} body: {exc}") from None
            out.add(chunk)
            rest = decoder.unconsumed_tail or (decoder.unused_data if decoder.eof else b"")
            if not chunk and not decoder.eof and len(rest) >= len(data):
                # zlib always makes progress; this guards the loop against a zlib that doesn't.
                raise MalformedBodyError(f"corrupt {self._coding} body: decoder made no progress")
            data = rest

    def _next_member(self, data: bytes) -> bytes:
        """Handle bytes after the end of a stream: another gzip member, or padding."""
        if self._coding != GZIP:
            raise MalformedBodyError("corrupt deflate body: data after the end of the stream")
        # RFC 1952 allows several members in a row; like gzip(1), ignore zero padding.
        data = data.lstrip(b"\x00")
        if data:
            self._decoder = zlib.decompressobj(wbits=_GZIP_OR_ZLIB_WBITS)
        return data

    def finish(self) -> None:
        if not self._seen_input:
            return  # An empty body is an empty request, whatever its declared coding.
        if self._decoder is None:
            raise MalformedBodyError(f"corrupt {self._coding} body: truncated after 1 byte")
        if not self._decoder.eof:
            raise MalformedBodyError(f"corrupt {self._coding} body: the stream is truncated")


def _is_zlib_header(data: bytes) -> bool:
    return data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0


async def read_body(
    chunks: AsyncIterable[bytes],
    *,
    content_encoding: str | None = None,
    max_size: int = DEFAULT_MAX_BODY_SIZE,
) -> bytes:
    """Read ``chunks`` to the end and return the decoded body, at most ``max_size`` bytes.

    ``content_encoding`` is the raw ``Content-Encoding`` header. Raises
    :class:`UnsupportedContentEncodingError` (415) before reading anything for a coding we do
    not speak, :class:`BodyTooLargeError` (413) when the body passes ``max_size`` on the wire
    or once inflated, :class:`MalformedBodyError` (400) for a corrupt or truncated stream.
    """
    if max_size < 1:
        raise ValueError(f"max_size must be at least 1 byte, got {max_size}")
    coding = parse_content_encoding(content_encoding)
    if coding == IDENTITY:
        buffer = _BoundedBuffer(max_size, "")
        async for chunk in chunks:
            buffer.add(chunk)
        return buffer.getvalue()
    inflated = _BoundedBuffer(max_size, f" after {coding} decompression")
    inflater = _Inflater(coding, inflated)
    wire_size = 0
    async for chunk in chunks:
        wire_size += len(chunk)
        if wire_size > max_size:
            raise BodyTooLargeError(
                f"request body is over the limit of {max_size} bytes before {coding} decompression",
                limit=max_size,
            )
        inflater.feed(chunk)
    inflater.finish()
    return inflated.getvalue()


class ChunkedStream(Protocol):
    """What :func:`read_request_body` needs of ``aiohttp.StreamReader``."""

    def iter_chunked(self, n: int) -> AsyncIterator[bytes]: ...


class RequestLike(Protocol):
    """What :func:`read_request_body` needs of ``aiohttp.web.Request`` (no aiohttp import)."""

    @property
    def headers(self) -> Mapping[str, str]: ...

    @property
    def content(self) -> ChunkedStream: ...

    @property
    def content_length(self) -> int | None: ...


async def read_request_body(
    request: RequestLike, *, max_size: int = DEFAULT_MAX_BODY_SIZE
) -> bytes:
    """Read an ``aiohttp.web.Request`` body with :func:`read_body`'s limits and errors.

    Works with chunked transfer encoding and no ``Content-Length`` (the OTel JS exporters).
    A ``Content-Length`` over the limit fails before reading. aiohttp servers inflate gzip and
    deflate bodies themselves unless built with ``auto_decompress=False``; when the stream
    shows aiohttp did (``total_compressed_bytes`` is set), the bytes are taken as they come and
    only the limit is applied, so the handler works either way. A body the client cut short
    or aiohttp could not inflate is a :class:`MalformedBodyError`.
    """
    declared = request.content_length
    if declared is not None and declared > max_size:
        raise BodyTooLargeError(
            f"request body is over the limit of {max_size} bytes (Content-Length {declared})",
            limit=max_size,
        )
    content_encoding: str | None = request.headers.get("Content-Encoding")
    if getattr(request.content, "total_compressed_bytes", None) is not None:
        content_encoding = None
    # aiohttp is imported here, not at module level, so decoding stays usable without it.
    from aiohttp.http_exceptions import HttpProcessingError
    from aiohttp.web_protocol import RequestPayloadError

    try:
        return await read_body(
            request.content.iter_chunked(READ_CHUNK_SIZE),
            content_encoding=content_encoding,
            max_size=max_size,
        )
    except (RequestPayloadError, HttpProcessingError) as exc:
        raise MalformedBodyError(f"request body could not be read: {exc}") from exc
