"""Aethermind: OpenTelemetry-native LLM cost and usage telemetry.

The top-level package exposes only the SDK's entry points (``init_aethermind``,
``attributes``); the receiver and storage live in
their own subpackages behind the ``[receiver]`` extra.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["__version__", "attributes", "init_aethermind"]
__version__ = "0.1.0"

if TYPE_CHECKING:
    from aethermind.exporter import attributes, init_aethermind


def __getattr__(name: str) -> Any:
    # Imported lazily so `import aethermind.semconv` stays free of the OTel SDK import cost.
    if name == "init_aethermind":
        from aethermind.exporter import init_aethermind

        return init_aethermind
    if name == "attributes":
        from aethermind.exporter import attributes

        return attributes
    raise AttributeError(f"module 'aethermind' has no attribute {name!r}")
