"""Receiver settings: one frozen dataclass; argument, then environment, then default."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from aethermind.envconfig import (
    SettingError,
    env_setting,
    parse_bool,
    parse_float,
    parse_int,
    parse_list,
    parse_text,
)
from aethermind.ingest.otlp import DEFAULT_LIMITS, DEFAULT_MAX_BODY_SIZE, DecodeLimits
from aethermind.ingest.window import DEFAULT_MAX_FUTURE_SECONDS, TimeWindow, span_time_window

ENV_PREFIX = "AETHERMIND_"


class ReceiverConfigError(SettingError):
    """A receiver setting has a bad value; the message names the setting."""


@dataclass(frozen=True, slots=True)
class ReceiverConfig:
    host: str = "127.0.0.1"
    port: int = 4318
    # OTLP/gRPC (traces, logs, metrics) on this port of ``host`` beside HTTP; 0: off. With
    # several workers each binds it with SO_REUSEPORT (the kernel spreads connections).
    grpc_port: int = 4317
    max_body_bytes: int = DEFAULT_MAX_BODY_SIZE
    # Ingest requests decoded and written at once; beyond this the server answers 503 with
    # Retry-After immediately instead of queueing. A request costs ~20 ms of CPU (512 spans),
    # so a few in flight keep PostgreSQL busy while Python works, and more would only queue.
    max_inflight_requests: int = 8
    # Each database step of an ingest write is bounded by this; a request waiting on a write
    # is answered 503 (the client retries) after at most twice this, queueing behind another
    # write included. It bounds how long a request can hold memory when the database is slow.
    write_timeout_seconds: float = 10.0
    # A key's verification and an organization's policy lookup (the first database steps of
    # every authenticated request), each bounded by this; then 503.
    auth_timeout_seconds: float = 10.0
    # One query API read (aggregates, a trace, top traces); then 503.
    read_timeout_seconds: float = 10.0
    # One statement of an admin route (keys, prices); then 503.
    admin_timeout_seconds: float = 10.0
    retry_after_seconds: int = 2
    keep_all_spans: bool = False
    # The accepted span start times (ingest/window.py): back to the organization's retention,
    # or this many days when smaller (0: the retention), and this far ahead of our clock.
    max_span_age_days: int = 0
    max_span_future_seconds: float = DEFAULT_MAX_FUTURE_SECONDS
    cors_origins: tuple[str, ...] = ()
    # Peers (CIDRs) whose X-Forwarded-For names the client; from anyone else it is ignored.
    trusted_proxies: tuple[str, ...] = ()
    redis_url: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    auth_cache_ttl_seconds: float = 300.0
    auth_negative_ttl_seconds: float = 5.0
    # Failed keys a minute from one client address with one key id, then 429 for that pair;
    # and failed checks a minute of one key id from anywhere (each costs a bcrypt), then 429
    # for that key id. A key that has verified before is never refused by either.
    auth_max_failures_per_minute: int = 30
    auth_max_failures_per_key_id_per_minute: int = 10
    # Failed bcrypt checks a minute of keys of one organization, all its key ids together.
    auth_max_failures_per_organization_per_minute: int = 30
    overrides_ttl_seconds: float = 30.0
    # Revocations made on other replicas (receiver/revocations.py): heard at once through
    # LISTEN/NOTIFY, and polled every this many seconds (0: no poll). Behind a
    # transaction-mode pooler LISTEN does not work: turn it off, the poll then sets the delay.
    revocation_listen: bool = True
    revocation_poll_seconds: float = 10.0
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
        if not 0 <= self.grpc_port < 65536:
            raise ReceiverConfigError(f"grpc_port must be 0 (off) or 1-65535, got {self.grpc_port}")
        if self.grpc_port and self.grpc_port == self.port:
            raise ReceiverConfigError(f"grpc_port and port must differ, both are {self.port}")
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
            "auth_max_failures_per_key_id_per_minute",
            "auth_max_failures_per_organization_per_minute",
            "write_timeout_seconds",
            "auth_timeout_seconds",
            "read_timeout_seconds",
            "admin_timeout_seconds",
        ):
            if getattr(self, name) <= 0:
                raise ReceiverConfigError(f"{name} must be positive, got {getattr(self, name)}")
        if self.revocation_poll_seconds < 0:
            raise ReceiverConfigError(
                f"revocation_poll_seconds must be >= 0 (0: off), got {self.revocation_poll_seconds}"
            )
        if not self.revocation_listen and not self.revocation_poll_seconds:
            raise ReceiverConfigError(
                "with revocation_listen off, revocation_poll_seconds must be above 0, or a"
                " revoked key stays usable for the key cache's TTL"
            )
        if self.max_span_age_days < 0:
            raise ReceiverConfigError(
                f"max_span_age_days must be >= 0 (0: the retention), got {self.max_span_age_days}"
            )
        if not 0 <= self.max_span_future_seconds <= 366 * 86_400:
            raise ReceiverConfigError(
                "max_span_future_seconds must be between 0 and a year, got"
                f" {self.max_span_future_seconds}"
            )
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
        for cidr in self.trusted_proxies:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                raise ReceiverConfigError(
                    f"trusted proxy {cidr!r} is not an IP address or CIDR (10.0.0.0/8)"
                ) from None
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ReceiverConfigError("TLS needs both --tls-cert and --tls-key")

    def span_window(self, retention_days: int) -> TimeWindow:
        """The span start times accepted, now, for an organization keeping ``retention_days``."""
        return span_time_window(
            retention_days=retention_days,
            max_age_days=self.max_span_age_days,
            max_future_seconds=self.max_span_future_seconds,
        )

    def __repr__(self) -> str:
        redis = "set" if self.redis_url else None
        return (
            f"ReceiverConfig(host={self.host!r}, port={self.port}, grpc_port={self.grpc_port}, "
            f"redis_url={redis!r}, "
            f"keep_all_spans={self.keep_all_spans}, tls={bool(self.tls_cert)})"
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> ReceiverConfig:
        """Explicit ``overrides`` (CLI flags; None means not given) win over the environment
        (``AETHERMIND_<SETTING>``, plus ``REDIS_URL``), which wins over the defaults."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for name, parse in _FROM_ENV.items():
            variable = "REDIS_URL" if name == "redis_url" else ENV_PREFIX + name.upper()
            try:
                value = env_setting(env, variable, parse)
            except SettingError as exc:
                raise ReceiverConfigError(str(exc)) from None
            if value is not None:
                values[name] = value
        values.update({k: v for k, v in overrides.items() if v is not None})
        for name in ("cors_origins", "trusted_proxies"):
            if isinstance(values.get(name), list):
                values[name] = tuple(values[name])
        return replace(cls(), **values)


_FROM_ENV: dict[str, Callable[[str], Any]] = {
    "host": parse_text,
    "port": parse_int,
    "grpc_port": parse_int,
    "max_body_bytes": parse_int,
    "max_inflight_requests": parse_int,
    "write_timeout_seconds": parse_float,
    "auth_timeout_seconds": parse_float,
    "read_timeout_seconds": parse_float,
    "admin_timeout_seconds": parse_float,
    "auth_max_failures_per_minute": parse_int,
    "auth_max_failures_per_key_id_per_minute": parse_int,
    "auth_max_failures_per_organization_per_minute": parse_int,
    "trusted_proxies": parse_list,
    "keep_all_spans": parse_bool,
    "max_span_age_days": parse_int,
    "revocation_listen": parse_bool,
    "revocation_poll_seconds": parse_float,
    "max_span_future_seconds": parse_float,
    "workers": parse_int,
    "tls_cert": parse_text,
    "tls_key": parse_text,
    "redis_url": parse_text,
    "cors_origins": parse_list,
    "alert_check_seconds": parse_float,
    "alert_webhook_timeout_seconds": parse_float,
    "alert_webhook_max_attempts": parse_int,
    "alert_retry_failed_seconds": parse_float,
}
"""The settings read from the environment, each with its parser."""
