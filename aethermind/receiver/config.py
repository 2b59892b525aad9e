"""Receiver settings: one frozen dataclass; argument, then environment, then default."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from aethermind.ingest.otlp import DEFAULT_LIMITS, DEFAULT_MAX_BODY_SIZE, DecodeLimits

ENV_PREFIX = "AETHERMIND_"


class ReceiverConfigError(ValueError):
    """A receiver setting has a bad value; the message names the setting."""


@dataclass(frozen=True, slots=True)
class ReceiverConfig:
    host: str = "127.0.0.1"
    port: int = 4318
    max_body_bytes: int = DEFAULT_MAX_BODY_SIZE
    # Ingest requests decoded and written at once; beyond this the server answers 503 with
    # Retry-After immediately instead of queueing. A request costs ~20 ms of CPU (512 spans),
    # so a few in flight keep PostgreSQL busy while Python works, and more would only queue.
    max_inflight_requests: int = 8
    # Each database step of a request (key check, policy, each write) is bounded by this; a
    # request waiting on a write is answered 503 (the client retries) after at most twice
    # this, queueing behind another write included. It bounds how long a request can hold
    # memory when the database is slow.
    write_timeout_seconds: float = 10.0
    retry_after_seconds: int = 2
    keep_all_spans: bool = False
    cors_origins: tuple[str, ...] = ()
    redis_url: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    auth_cache_ttl_seconds: float = 300.0
    auth_negative_ttl_seconds: float = 5.0
    # Revocations are polled from the database this often, so a revoked key stops working on
    # every replica within a couple of seconds even without any shared cache.
    revocation_poll_seconds: float = 2.0
    auth_max_failures_per_minute: int = 30
    overrides_ttl_seconds: float = 30.0
    shutdown_grace_seconds: float = 30.0
    # Serving processes sharing one listening socket, supervised by `aethermind serve`.
    # Python runs one core per process; with PostgreSQL on the same box, 2 is a good start.
    workers: int = 1
    # Set in a worker: the listening sockets its supervisor bound and handed down.
    listen_fds: tuple[int, ...] = ()
    # With several workers, a response closes its keep-alive connection with probability
    # 1/N, so clients reconnect now and then and the idle worker, first to accept, takes
    # them: a handful of long-lived connections cannot pin most of the load on one process.
    # 0 never closes. Stateless on purpose: no per-connection bookkeeping.
    recycle_connection_every: int = 0
    decode_limits: DecodeLimits = field(default=DEFAULT_LIMITS)
    # Budget alerts (receiver/alerts.py): how often each replica compares month-to-date cost
    # with the budgets (0 turns the loop off), the per-request webhook timeout, the attempts
    # per delivery round, and the first pause before a failed round is tried again (doubling
    # per round up to an hour; only for the current month).
    alert_check_seconds: float = 30.0
    alert_webhook_timeout_seconds: float = 10.0
    alert_webhook_max_attempts: int = 5
    alert_retry_failed_seconds: float = 300.0

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise ReceiverConfigError(f"port must be 1-65535, got {self.port}")
        if self.recycle_connection_every < 0:
            raise ReceiverConfigError(
                "recycle_connection_every must be >= 0 (0: never), got"
                f" {self.recycle_connection_every}"
            )
        for name in (
            "max_body_bytes",
            "max_inflight_requests",
            "workers",
            "auth_max_failures_per_minute",
        ):
            if getattr(self, name) <= 0:
                raise ReceiverConfigError(f"{name} must be positive, got {getattr(self, name)}")
        if self.alert_check_seconds < 0:
            raise ReceiverConfigError(
                f"alert_check_seconds must be >= 0 (0: off), got {self.alert_check_seconds}"
            )
        for name in (
            "alert_webhook_timeout_seconds",
            "alert_webhook_max_attempts",
            "alert_retry_failed_seconds",
        ):
            if getattr(self, name) <= 0:
                raise ReceiverConfigError(f"{name} must be positive, got {getattr(self, name)}")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ReceiverConfigError("TLS needs both --tls-cert and --tls-key")

    def __repr__(self) -> str:
        redis = "set" if self.redis_url else None
        return (
            f"ReceiverConfig(host={self.host!r}, port={self.port}, redis_url={redis!r}, "
            f"keep_all_spans={self.keep_all_spans}, tls={bool(self.tls_cert)})"
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> ReceiverConfig:
        """Explicit ``overrides`` (CLI flags; None means not given) win over the environment."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for name, kind in (
            ("host", str),
            ("port", int),
            ("max_body_bytes", int),
            ("max_inflight_requests", int),
            ("write_timeout_seconds", float),
            ("auth_max_failures_per_minute", int),
            ("keep_all_spans", bool),
            ("workers", int),
            ("tls_cert", str),
            ("tls_key", str),
            ("alert_check_seconds", float),
            ("alert_webhook_timeout_seconds", float),
            ("alert_webhook_max_attempts", int),
            ("alert_retry_failed_seconds", float),
        ):
            raw = env.get(ENV_PREFIX + name.upper())
            if raw is not None and raw.strip():
                values[name] = _parse(name, raw.strip(), kind)
        if env.get("REDIS_URL", "").strip():
            values["redis_url"] = env["REDIS_URL"].strip()
        origins = env.get(ENV_PREFIX + "CORS_ORIGINS", "")
        if origins.strip():
            values["cors_origins"] = tuple(o.strip() for o in origins.split(",") if o.strip())
        values.update({k: v for k, v in overrides.items() if v is not None})
        if isinstance(values.get("cors_origins"), list):
            values["cors_origins"] = tuple(values["cors_origins"])
        return replace(cls(), **values)


def _parse(name: str, raw: str, kind: type) -> Any:
    try:
        if kind is bool:
            lowered = raw.lower()
            if lowered not in {"1", "0", "true", "false", "yes", "no", "on", "off"}:
                raise ValueError(raw)
            return lowered in {"1", "true", "yes", "on"}
        return kind(raw)
    except ValueError:
        raise ReceiverConfigError(
            f"{ENV_PREFIX}{name.upper()}={raw!r} is not a valid {kind.__name__}"
        ) from None
