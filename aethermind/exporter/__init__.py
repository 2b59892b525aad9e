"""The Aethermind SDK: enrich LLM spans inside the application and ship them over OTLP.

``init_aethermind`` is the one-call setup; ``AethermindSpanProcessor`` is the building block
for hand-built OpenTelemetry setups; ``attributes`` says who and what code spends for.
Importing this package never imports the server stack.
"""

from __future__ import annotations

from aethermind.exporter.attribution import Attribution, attributes
from aethermind.exporter.config import ConfigError, ExporterConfig
from aethermind.exporter.processor import AethermindSpanProcessor
from aethermind.exporter.queue import CountingExporter
from aethermind.exporter.setup import AethermindHandle, init_aethermind

__all__ = [
    "AethermindHandle",
    "AethermindSpanProcessor",
    "Attribution",
    "ConfigError",
    "CountingExporter",
    "ExporterConfig",
    "attributes",
    "init_aethermind",
]
