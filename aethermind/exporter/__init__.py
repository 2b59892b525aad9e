"""The Aethermind SDK: enrich LLM spans inside the application and ship them over OTLP."""

from __future__ import annotations

from typing import Any


def init_aethermind(api_key: str | None = None, endpoint: str | None = None, **options: Any) -> Any:
    """Placeholder until the SDK lands (issue 4 of 7)."""
    raise NotImplementedError("init_aethermind is not implemented yet")
