"""SDK settings: argument, then environment variable, then default; validated at init."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Final

from aethermind.envconfig import SettingError, env_setting, parse_bool

logger = logging.getLogger(__name__)

ENV_API_KEY: Final = "AETHERMIND_API_KEY"
ENV_ENDPOINT: Final = "AETHERMIND_ENDPOINT"
ENV_CAPTURE_CONTENT: Final = "AETHERMIND_CAPTURE_CONTENT"
DEFAULT_ENDPOINT: Final = "http://localhost:4318"
TRACES_PATH: Final = "/v1/traces"
KEY_PREFIX: Final = "aether_"
DEFAULT_MAX_QUEUE_SIZE: Final = 8192
DEFAULT_MAX_EXPORT_BATCH_SIZE: Final = 512
DEFAULT_EXPORT_TIMEOUT_SECONDS: Final = 10.0


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the setting and how to set it."""


@dataclass(frozen=True, slots=True)
class ExporterConfig:
    api_key: str
    traces_endpoint: str
    capture_content: bool = False
    export_all: bool = False
    max_queue_size: int = DEFAULT_MAX_QUEUE_SIZE
    max_export_batch_size: int = DEFAULT_MAX_EXPORT_BATCH_SIZE
    schedule_delay_millis: int = 1000
    export_timeout_seconds: float = DEFAULT_EXPORT_TIMEOUT_SECONDS

    def __repr__(self) -> str:
        # The key is a secret: never in reprs, logs or error messages.
        return f"ExporterConfig(traces_endpoint={self.traces_endpoint!r}, api_key='***')"

    @classmethod
    def resolve(
        cls,
        api_key: str | None,
        endpoint: str | None,
        *,
        capture_content: bool | None = None,
        export_all: bool = False,
        max_queue_size: int | None = None,
        export_timeout: float | None = None,
    ) -> ExporterConfig:
        key = api_key or os.environ.get(ENV_API_KEY, "").strip()
        if not key:
            raise ConfigError(
                f"Aethermind API key missing: pass api_key= or set {ENV_API_KEY}. Without it"
                " no span would be accepted, so the SDK refuses to start silently."
            )
        if not key.startswith(KEY_PREFIX):
            raise ConfigError(
                f"Aethermind API key malformed: keys start with {KEY_PREFIX!r}"
                f" (check {ENV_API_KEY} or the api_key argument)"
            )
        base = endpoint or os.environ.get(ENV_ENDPOINT, "").strip() or DEFAULT_ENDPOINT
        if not base.startswith(("http://", "https://")):
            raise ConfigError(
                f"Aethermind endpoint {base!r} must be an http:// or https:// URL"
                f" (endpoint= or {ENV_ENDPOINT})"
            )
        if capture_content is None:
            capture_content = _env_flag(ENV_CAPTURE_CONTENT)
        if max_queue_size is not None and max_queue_size < 1:
            raise ConfigError(f"max_queue_size must be at least 1, got {max_queue_size}")
        if export_timeout is not None and export_timeout <= 0:
            raise ConfigError(f"export_timeout must be positive, got {export_timeout}")
        return cls(
            api_key=key,
            traces_endpoint=traces_url(base),
            capture_content=capture_content,
            export_all=export_all,
            max_queue_size=max_queue_size or DEFAULT_MAX_QUEUE_SIZE,
            max_export_batch_size=min(
                DEFAULT_MAX_EXPORT_BATCH_SIZE, max_queue_size or DEFAULT_MAX_QUEUE_SIZE
            ),
            export_timeout_seconds=export_timeout or DEFAULT_EXPORT_TIMEOUT_SECONDS,
        )


def traces_url(endpoint: str) -> str:
    """The OTLP traces URL for a base endpoint, as the OTel exporters' own env vars do it."""
    trimmed = endpoint.rstrip("/")
    return trimmed if trimmed.endswith(TRACES_PATH) else trimmed + TRACES_PATH


def _env_flag(name: str) -> bool:
    """A true/false setting; a bad value is logged and read as false: the SDK never raises
    into the host application over a setting."""
    try:
        return bool(env_setting(os.environ, name, parse_bool))
    except SettingError as exc:
        logger.warning("aethermind: ignoring a bad setting, using false: %s", exc)
        return False
