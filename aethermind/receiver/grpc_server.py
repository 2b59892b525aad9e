"""OTLP/gRPC: the collector's export services on ``--grpc-port``, beside OTLP/HTTP.

grpcio's asyncio server runs on each serving process's event loop and shares its state with
the aiohttp application (key cache, throttles, rate limiter, writer, metrics, admission);
each export goes through the same acceptor as its HTTP route (``ingest.accept_*``), so a
span, a record or a refusal means the same on both transports.

The services' names, methods and response types come from opentelemetry-proto's generated
modules. Their ``add_*Servicer_to_server`` helpers are not used: they register upb's parser
as the request deserializer, which would allocate every message of a request before our
limits apply (16 MiB of empty spans is ~1.5 GB); requests reach the acceptors as bytes and
are trimmed and decoded exactly as an HTTP body is. grpcio itself inflates gzip and caps a
message (inflated) at ``max_body_bytes``.

Refusals use the codes the OTLP specification gives, with a ``google.rpc.RetryInfo`` where
a retry helps: in the status details (``grpc-status-details-bin``, as the Collector reads)
and as ``google.rpc.retryinfo-bin`` trailing metadata (as OTel SDK exporters read).
"""

from __future__ import annotations

import collections
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, NoReturn

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from aethermind.ingest import otlp
from aethermind.receiver.auth import FORWARDED_FOR_HEADER, authenticate_key, key_from
from aethermind.receiver.config import ReceiverConfig
from aethermind.receiver.errors import HttpError
from aethermind.receiver.ingest import (
    OtlpAcceptor,
    accept_logs,
    accept_metrics,
    accept_traces,
    admitted,
)
from aethermind.receiver.state import METRICS, TRUSTED_PROXIES

logger = logging.getLogger(__name__)

RETRY_INFO_METADATA_KEY = "google.rpc.retryinfo-bin"


@dataclass(frozen=True, slots=True)
class ExportService:
    """One OTLP collector service: its full gRPC name (from the generated descriptor) and
    the acceptor its ``Export`` method hands bodies to."""

    full_name: str
    accept: OtlpAcceptor


def _service_name(module: Any, service: str) -> str:
    name: str = module.DESCRIPTOR.services_by_name[service].full_name
    return name


EXPORT_SERVICES: tuple[ExportService, ...] = (
    ExportService(_service_name(trace_service_pb2, "TraceService"), accept_traces),
    ExportService(_service_name(logs_service_pb2, "LogsService"), accept_logs),
    ExportService(_service_name(metrics_service_pb2, "MetricsService"), accept_metrics),
)
EXPORT_METHOD = "Export"


def _export_handler(
    app: Any, service: ExportService
) -> Callable[[bytes, grpc.aio.ServicerContext[bytes, bytes]], Awaitable[bytes]]:
    method = f"/{service.full_name}/{EXPORT_METHOD}"
    metrics = app[METRICS]

    async def export(body: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        started = time.perf_counter()
        code = grpc.StatusCode.OK
        refusal: grpc.Status | None = None
        address = "unknown"
        try:
            metadata = _metadata(context.invocation_metadata())
            address = app[TRUSTED_PROXIES].client_address(
                peer_host(context.peer()), metadata.get(FORWARDED_FOR_HEADER.lower(), [])
            )
            async with admitted(app):
                key = key_from(_first(metadata, "authorization"), _first(metadata, "x-api-key"))
                verified = await authenticate_key(app, key, address, "ingest")
                payload, _ = await service.accept(app, verified, body, otlp.OtlpFormat.PROTOBUF)
            return payload
        except (otlp.OtlpRequestError, HttpError) as exc:
            refusal = refusal_status(exc.status, exc.message, getattr(exc, "headers", {}))
        except Exception:
            logger.exception("unhandled error in a gRPC export", extra={"method": method})
            refusal = refusal_status(500, "internal error", {})
        finally:
            if refusal is not None:
                code = refusal.code
            metrics.grpc_requests.labels(method, code.name).inc()
            metrics.grpc_request_seconds.labels(method).observe(time.perf_counter() - started)
            logger.info(
                "grpc request",
                extra={
                    "method": method,
                    "code": code.name,
                    "ms": round((time.perf_counter() - started) * 1000, 2),
                    "client": address,
                },
            )
        await _abort(context, refusal)

    return export


async def _abort(context: grpc.aio.ServicerContext[bytes, bytes], status: grpc.Status) -> NoReturn:
    await context.abort_with_status(status)
    raise AssertionError("abort_with_status returned")  # pragma: no cover


def refusal_status(http_status: int, message: str, headers: dict[str, str]) -> grpc.Status:
    """The gRPC status for an HTTP refusal (``otlp.grpc_code``'s mapping), with RetryInfo
    when the refusal says when to retry (``Retry-After``)."""
    code = otlp.grpc_code(http_status)
    if code == code_pb2.UNKNOWN:
        code = code_pb2.INTERNAL
    status = status_pb2.Status(code=code, message=message[:1000])
    retry_after = headers.get("Retry-After", "")
    extra: tuple[tuple[str, bytes], ...] = ()
    if retry_after.isdigit():
        retry = error_details_pb2.RetryInfo(
            retry_delay=duration_pb2.Duration(seconds=int(retry_after))
        )
        detail = any_pb2.Any()
        detail.Pack(retry)
        status.details.append(detail)
        extra = ((RETRY_INFO_METADATA_KEY, retry.SerializeToString()),)
    converted = rpc_status.to_status(status)
    return _Status(converted.code, converted.details, (*converted.trailing_metadata, *extra))


class _Status(
    collections.namedtuple("_Status", ("code", "details", "trailing_metadata")), grpc.Status
):
    """A ``grpc.Status`` (an abstract class) with its three values, as grpcio-status does."""


def _metadata(entries: Iterable[tuple[str, str | bytes]] | None) -> dict[str, list[str]]:
    """Text metadata by (lower-case) key, every value in order; binary entries left out."""
    out: dict[str, list[str]] = {}
    for key, value in entries or ():
        if isinstance(value, str):
            out.setdefault(key.lower(), []).append(value)
    return out


def _first(metadata: dict[str, list[str]], key: str) -> str | None:
    values = metadata.get(key)
    return values[0] if values else None


def peer_host(peer: str | None) -> str | None:
    """The address in a gRPC peer string (``ipv4:10.0.0.1:5000``, ``ipv6:[::1]:5000``)."""
    if not peer:
        return None
    kind, _, rest = peer.partition(":")
    if kind == "ipv4":
        return rest.rpartition(":")[0] or None
    if kind == "ipv6":
        host = rest.rpartition(":")[0]
        return host.strip("[]").split("%", 1)[0] or None
    return None


GRPC_MAX_CONNECTION_AGE_MS = 60_000


def server_options(config: ReceiverConfig) -> list[tuple[str, Any]]:
    return [
        ("grpc.max_receive_message_length", config.max_body_bytes),
        ("grpc.max_send_message_length", 1024 * 1024),
        # Several workers share the port through the kernel; one alone must own it, so a
        # second receiver on the same port fails at start instead of taking half the load.
        ("grpc.so_reuseport", 1 if config.listen_fds else 0),
        # With several workers the kernel gives each new connection to one of them, and a
        # gRPC client keeps its connection: after this age the server asks the client to
        # reconnect (GOAWAY, in-flight calls finish), so long-lived clients spread over the
        # workers in time, as HTTP keep-alive connections do through connection recycling.
        ("grpc.max_connection_age_ms", GRPC_MAX_CONNECTION_AGE_MS),
        ("grpc.max_connection_age_grace_ms", GRPC_MAX_CONNECTION_AGE_MS),
    ]


def _tls_credentials(key_path: str, chain_path: str) -> grpc.ServerCredentials:
    """The ``--tls-cert``/``--tls-key`` pair HTTPS uses, read once at start."""
    with open(key_path, "rb") as key, open(chain_path, "rb") as chain:
        return grpc.ssl_server_credentials([(key.read(), chain.read())])


@contextlib.asynccontextmanager
async def grpc_serving(
    app: Any, config: ReceiverConfig, *, bind_port: int | None = None
) -> AsyncIterator[int | None]:
    """Serve OTLP/gRPC for ``app`` (its resources set up) while inside; yields the bound
    port, or None when ``config.grpc_port`` is 0 (off). ``bind_port`` replaces the
    configured port (0: any free one, for tests). In-flight exports finish on the way out
    (up to ``shutdown_grace_seconds``) before the caller closes what they use."""
    port = config.grpc_port if bind_port is None else bind_port
    if bind_port is None and not port:
        yield None
        return
    server = grpc.aio.server(options=server_options(config))
    server.add_generic_rpc_handlers(
        tuple(
            grpc.method_handlers_generic_handler(
                service.full_name,
                {EXPORT_METHOD: grpc.unary_unary_rpc_method_handler(_export_handler(app, service))},
            )
            for service in EXPORT_SERVICES
        )
    )
    host = f"[{config.host}]" if ":" in config.host else config.host
    address = f"{host}:{port}"
    try:
        if config.tls_cert and config.tls_key:
            credentials = _tls_credentials(config.tls_key, config.tls_cert)
            bound = server.add_secure_port(address, credentials)
        else:
            bound = server.add_insecure_port(address)
    except RuntimeError as exc:
        raise OSError(f"cannot listen for OTLP/gRPC on {address}: {exc}") from exc
    if not bound:
        raise OSError(f"cannot listen for OTLP/gRPC on {address}: the port is taken")
    await server.start()
    logger.info("listening for OTLP/gRPC", extra={"address": f"{host}:{bound}"})
    try:
        yield bound
    finally:
        await server.stop(config.shutdown_grace_seconds)
