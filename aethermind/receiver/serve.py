"""Running the application: listen, then on SIGTERM/SIGINT stop accepting, let in-flight
requests finish, and release what the caller owns (pool, embedded database).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import ssl

from aiohttp import web

from aethermind.receiver.config import ReceiverConfig

logger = logging.getLogger(__name__)


def tls_context(config: ReceiverConfig) -> ssl.SSLContext | None:
    if not config.tls_cert:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(config.tls_cert, config.tls_key)
    return context


async def run_until_signal(app: web.Application, config: ReceiverConfig) -> None:
    """Serve ``app`` until SIGTERM or SIGINT, then shut down gracefully."""
    runner = web.AppRunner(
        app,
        handle_signals=False,
        access_log=None,
        shutdown_timeout=config.shutdown_grace_seconds,
    )
    await runner.setup()
    tune_gc()
    site = web.TCPSite(
        runner,
        config.host,
        config.port,
        ssl_context=tls_context(config),
        backlog=1024,
        reuse_port=config.reuse_port or None,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await site.start()
        scheme = "https" if config.tls_cert else "http"
        logger.info(
            "listening",
            extra={"url": f"{scheme}://{config.host}:{config.port}", "tls": bool(config.tls_cert)},
        )
        await stop.wait()
        logger.info("shutting down: finishing in-flight requests")
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        # Stops listening, runs on_shutdown (draining), waits for handlers, then cleanup_ctx.
        await runner.cleanup()
        logger.info("stopped")


def tune_gc() -> None:
    """Fewer, cheaper garbage collections while serving.

    Each ingest request allocates tens of thousands of short-lived, acyclic objects (dicts,
    tuples, strings) that reference counting frees on its own; with CPython's default
    thresholds the cyclic collector still runs hundreds of times a second and its full
    passes show up as latency spikes. Objects alive at startup are frozen out of its scans.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)


def install_uvloop() -> bool:
    """Use uvloop when installed: it roughly halves the event loop's own overhead."""
    try:
        import uvloop
    except ImportError:
        return False
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return True
