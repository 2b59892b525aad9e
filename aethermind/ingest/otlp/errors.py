"""Typed errors of the OTLP decoding layer, each carrying the HTTP status the handler answers.

Every failure of body reading or decoding, whatever the input, surfaces as one of these, so
the handler needs a single ``except OtlpRequestError`` and never a bare ``except Exception``.
"""

from __future__ import annotations

from typing import ClassVar


class OtlpRequestError(Exception):
    """A request the receiver refuses as a whole; ``status`` is the HTTP status to answer.

    ``message`` is meant for the client (it goes into the ``google.rpc.Status`` body), so it
    names what was wrong and the limit involved, never anything secret.
    """

    status: ClassVar[int] = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status={self.status}, message={self.message!r})"


class MalformedBodyError(OtlpRequestError):
    """The body cannot be decoded: corrupt or truncated compression, bad protobuf or JSON.

    400 is not retryable per the OTLP spec, which is right: the same bytes will fail again.
    """

    status: ClassVar[int] = 400


class BodyTooLargeError(OtlpRequestError):
    """The body is over the size limit, on the wire or after decompression (413)."""

    status: ClassVar[int] = 413

    def __init__(self, message: str, *, limit: int) -> None:
        super().__init__(message)
        self.limit = limit


class UnsupportedMediaTypeError(OtlpRequestError):
    """Content we do not speak (415); the two subclasses say whether type or encoding."""

    status: ClassVar[int] = 415


class UnsupportedContentTypeError(UnsupportedMediaTypeError):
    """A ``Content-Type`` other than ``application/x-protobuf`` or ``application/json``."""


class UnsupportedContentEncodingError(UnsupportedMediaTypeError):
    """A ``Content-Encoding`` other than ``gzip``, ``deflate`` or ``identity``."""
