"""Which OTLP encoding a ``Content-Type`` header names, and the exact header to answer with.

The OTLP spec requires the response in the request's content type, and the Collector parses
only the exact strings below, so responses never echo the client's parameters.
"""

from __future__ import annotations

import enum

from aethermind.ingest.otlp.errors import UnsupportedContentTypeError

PROTOBUF_CONTENT_TYPE = "application/x-protobuf"
JSON_CONTENT_TYPE = "application/json"


class OtlpFormat(enum.Enum):
    """The two OTLP/HTTP payload encodings; ``value`` is the response ``Content-Type``."""

    PROTOBUF = PROTOBUF_CONTENT_TYPE
    JSON = JSON_CONTENT_TYPE

    @property
    def content_type(self) -> str:
        return self.value


_MEDIA_TYPES: dict[str, OtlpFormat] = {
    PROTOBUF_CONTENT_TYPE: OtlpFormat.PROTOBUF,
    # The IANA-registered name; no OTel exporter sends it, but it means the same bytes.
    "application/protobuf": OtlpFormat.PROTOBUF,
    JSON_CONTENT_TYPE: OtlpFormat.JSON,
}


def find_format(content_type: str | None) -> OtlpFormat | None:
    """The format a ``Content-Type`` names, or None; parameters and case are ignored.

    ``application/json; charset=utf-8`` is JSON: media types are case-insensitive and the
    JS exporters and curl users add parameters.
    """
    if not content_type:
        return None
    media_type = content_type.partition(";")[0].strip().lower()
    return _MEDIA_TYPES.get(media_type)


def parse_content_type(content_type: str | None) -> OtlpFormat:
    """Like :func:`find_format` but raises the 415 error the handler answers with."""
    fmt = find_format(content_type)
    if fmt is None:
        shown = repr(content_type[:100]) if content_type else "none"
        raise UnsupportedContentTypeError(
            f"unsupported Content-Type {shown}: OTLP/HTTP accepts "
            f"{PROTOBUF_CONTENT_TYPE!r} or {JSON_CONTENT_TYPE!r}"
        )
    return fmt
