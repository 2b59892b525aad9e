"""How failures become HTTP answers: typed errors carrying a status. Which database
failures mean "try again" (503) or "your data cannot be stored" (400) is storage's rule
(``aethermind.storage.errors``), re-exported here for the handlers.
"""

from __future__ import annotations

from typing import ClassVar

from aethermind.storage.errors import is_bad_data, is_storage_unavailable

__all__ = [
    "BadRequest",
    "Forbidden",
    "HttpError",
    "InvalidParameter",
    "NotFound",
    "TooManyRequests",
    "Unauthorized",
    "Unavailable",
    "is_bad_data",
    "is_storage_unavailable",
]


class HttpError(Exception):
    """An error the client should see, with its status and a message without secrets."""

    status: ClassVar[int] = 500

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}


class BadRequest(HttpError):
    status = 400


class InvalidParameter(BadRequest):
    """A query parameter with a bad value. It keeps the parameter's name apart from the
    problem, so the CLI can name its own flag (``--group-by``) instead of ``group_by``."""

    def __init__(self, parameter: str, problem: str) -> None:
        super().__init__(f"parameter {parameter!r} {problem}")
        self.parameter = parameter
        self.problem = problem


class Unauthorized(HttpError):
    status = 401


class Forbidden(HttpError):
    status = 403


class NotFound(HttpError):
    status = 404


class TooManyRequests(HttpError):
    status = 429


class Unavailable(HttpError):
    status = 503
