"""Which database failures mean "try again later" and which mean "this data cannot be
stored": decided here, beside the driver whose exceptions they are.
"""

from __future__ import annotations

import asyncio

import asyncpg

# SQLSTATE classes that mean the database is unavailable or overloaded, not that the input
# is wrong: connection exceptions, insufficient resources, operator intervention (shutdown,
# cannot connect now), and transaction rollbacks (serialization, deadlock).
_RETRYABLE_SQLSTATE_CLASSES = frozenset({"08", "53", "57", "40", "55"})


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
