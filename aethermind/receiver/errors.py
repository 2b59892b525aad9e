"""How failures become HTTP answers: typed errors carrying a status, and the rule for which
database failures mean "try again" (503) versus "your data cannot be stored" (400).
"""

from __future__ import annotations

import asyncio
from typing import ClassVar

import asyncpg

# SQLSTATE classes that mean the database is unavailable or overloaded, not that the input
# is wrong: connection exceptions, insufficient resources, operator intervention (shutdown,
# cannot connect now), and transaction rollbacks (serialization, deadlock).
_RETRYABLE_SQLSTATE_CLASSES = frozenset({"08", "53", "57", "40", "55"})


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


def is_storage_unavailable(exc: BaseException) -> bool:
    """True when ``exc`` means the database could not be reached or could not take the work."""
    # InternalClientError: asyncpg's connection state machine broken by a connection that
    # died mid-operation (seen while PostgreSQL shuts down).
    if isinstance(
        exc,
        (OSError, asyncio.TimeoutError, asyncpg.InterfaceError, asyncpg.InternalClientError),
    ):
        return True
    if isinstance(exc, asyncpg.PostgresError):
        state = getattr(exc, "sqlstate", None) or ""
        return state[:2] in _RETRYABLE_SQLSTATE_CLASSES
    return False


def is_bad_data(exc: BaseException) -> bool:
    """True when a value in the request cannot be stored: PostgreSQL's data exceptions
    (SQLSTATE class 22), and values the driver cannot encode at all."""
    if isinstance(exc, (UnicodeError, asyncpg.DataError)):
        return True
    if isinstance(exc, asyncpg.PostgresError):
        return (getattr(exc, "sqlstate", None) or "").startswith("22")
    return False
