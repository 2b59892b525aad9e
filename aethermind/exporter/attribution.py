"""``aethermind.attributes(user=..., session=..., tags=...)``: who and what a block of code
spends for, on every span started inside it, in this service and in the services it calls.

The values travel as W3C baggage in the OpenTelemetry context, so they cross threads and
``asyncio`` tasks with it, and any instrumented HTTP client sends them on (the default
propagators include baggage). ``AethermindSpanProcessor`` turns the baggage of a span's
parent context into span attributes when the span starts, on this side and on the other
(where a server instrumentation extracted it): ``user.id``, ``session.id``, and each tag
under its own key, which is where the receiver looks for them.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar

from opentelemetry import baggage
from opentelemetry import context as otel_context
from opentelemetry.context import Context

from aethermind.semconv import attributes as a
from aethermind.semconv.record import MAX_NAME_LENGTH

USER_ENTRY = a.USER_ID
SESSION_ENTRY = a.SESSION_ID
TAG_ENTRY_PREFIX = "aethermind.tag."
"""Baggage entries: the user and session under their span attribute names; a tag ``k`` as
``aethermind.tag.k`` (so other baggage never becomes a tag by accident)."""
MAX_VALUE_LENGTH = MAX_NAME_LENGTH
"""As the receiver keeps them: a longer value would be cut there anyway."""

F = TypeVar("F", bound=Callable[..., Any])


class Attribution:
    """What ``attributes()`` returns: a context manager (``with``), reusable and nestable
    (an inner one wins for the names it sets), and a decorator of plain and ``async``
    functions (each call gets its own scope)."""

    def __init__(self, entries: Mapping[str, str]) -> None:
        self.entries = dict(entries)
        self._tokens: list[object] = []

    def __enter__(self) -> Attribution:
        self._tokens.append(otel_context.attach(with_entries(self.entries)))
        return self

    def __exit__(self, *exc: object) -> None:
        otel_context.detach(self._tokens.pop())  # type: ignore[arg-type]

    def __call__(self, function: F) -> F:
        if inspect.iscoroutinefunction(function):

            @functools.wraps(function)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                with _scope(self.entries):
                    return await function(*args, **kwargs)

            return run_async  # type: ignore[return-value]

        @functools.wraps(function)
        def run(*args: Any, **kwargs: Any) -> Any:
            with _scope(self.entries):
                return function(*args, **kwargs)

        return run  # type: ignore[return-value]


def attributes(
    user: str | None = None,
    session: str | None = None,
    tags: Mapping[str, str] | None = None,
) -> Attribution:
    """Attribute every span started inside to ``user``, ``session`` and ``tags`` (a tag's
    key is the name the organization configured, e.g. ``{"team": "search"}``)."""
    entries: dict[str, str] = {}
    for name, value in ((USER_ENTRY, user), (SESSION_ENTRY, session)):
        if value is not None:
            entries[name] = _checked(name, value)
    for key, value in (tags or {}).items():
        if not isinstance(key, str) or not key:
            raise ValueError(f"tag keys must be non-empty strings, got {key!r}")
        entries[TAG_ENTRY_PREFIX + key] = _checked(f"tag {key!r}", value)
    return Attribution(entries)


def with_entries(entries: Mapping[str, str], context: Context | None = None) -> Context:
    """``context`` (default: the current one) with these baggage entries set."""
    ctx = context if context is not None else otel_context.get_current()
    for name, value in entries.items():
        ctx = baggage.set_baggage(name, value, context=ctx)
    return ctx


def span_attributes(context: Context | None) -> dict[str, str]:
    """The span attributes the baggage of ``context`` stands for (empty when it has none of
    ours): what the span processor sets on a span starting in it."""
    entries = baggage.get_all(context)
    if not entries:
        return {}
    found: dict[str, str] = {}
    for name, value in entries.items():
        if not isinstance(value, str):
            continue
        if name in (USER_ENTRY, SESSION_ENTRY):
            found[name] = value[:MAX_VALUE_LENGTH]
        elif name.startswith(TAG_ENTRY_PREFIX) and len(name) > len(TAG_ENTRY_PREFIX):
            found[name[len(TAG_ENTRY_PREFIX) :]] = value[:MAX_VALUE_LENGTH]
    return found


@contextmanager
def _scope(entries: Mapping[str, str]) -> Iterator[None]:
    token = otel_context.attach(with_entries(entries))
    try:
        yield
    finally:
        otel_context.detach(token)


def _checked(name: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a non-empty string, got {value!r}")
    return value[:MAX_VALUE_LENGTH]
