"""Why an export failed, in the server's own words.

The OTLP exporter logs only a status line ("code: 401, reason: Unauthorized") and drops the
body, where the receiver says what is wrong (unknown key, key revoked, over the rate limit).
A ``requests`` response hook on the exporter's session keeps the last error answer so the
SDK can log it once, clearly, with the endpoint (never the key).
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from typing import Any

MAX_MESSAGE_CHARS = 300


@dataclass(frozen=True, slots=True)
class ErrorAnswer:
    status: int
    message: str

    def describe(self) -> str:
        return f"HTTP {self.status}: {self.message}" if self.message else f"HTTP {self.status}"


def server_message(content_type: str, body: bytes) -> str:
    """The message of an OTLP error body: a ``google.rpc.Status`` in protobuf or JSON, or
    the JSON error document other routes answer, else the start of the text."""
    message = ""
    try:
        if "protobuf" in content_type:
            from google.rpc import status_pb2

            message = status_pb2.Status.FromString(body).message
        elif "json" in content_type:
            document = json.loads(body)
            error = document.get("error") if isinstance(document, dict) else None
            if isinstance(error, dict):
                message = str(error.get("message", ""))
            elif isinstance(document, dict):
                message = str(document.get("message", ""))
        else:
            message = body.decode("utf-8", "replace")
    except Exception:  # a body we cannot read says nothing more than its status
        message = ""
    return " ".join(message.split())[:MAX_MESSAGE_CHARS]


class ErrorAnswerRecorder:
    """A ``requests`` response hook: remembers the latest answer with an error status."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last: ErrorAnswer | None = None

    def __call__(self, response: Any, *args: Any, **kwargs: Any) -> Any:
        if response.status_code >= 400:
            answer = ErrorAnswer(
                response.status_code,
                server_message(response.headers.get("Content-Type", ""), response.content),
            )
            with self._lock:
                self._last = answer
        return response

    def take(self) -> ErrorAnswer | None:
        """The latest error answer since the last call, or None (no HTTP answer at all)."""
        with self._lock:
            answer, self._last = self._last, None
        return answer
