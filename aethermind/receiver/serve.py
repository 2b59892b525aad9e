"""Running the application: listen, then on SIGTERM/SIGINT stop accepting, let in-flight
requests finish, and release what the caller owns (pool, embedded database).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import socket
import ssl
from typing import Any

from aiohttp import web

from aethermind.receiver.config import ReceiverConfig
from aethermind.receiver.grpc_server import grpc_serving
from aethermind.receiver.listener import BalancedSockSite
from aethermind.receiver.state import ADMISSION

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
    sites = listening_sites(runner, config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        # gRPC shares the application's resources: it stops (its exports finished) before
        # the runner's cleanup closes them.
        async with grpc_serving(runner.app, config):
            for site in sites:
                await site.start()
            scheme = "https" if config.tls_cert else "http"
            logger.info(
                "listening",
                extra={
                    "url": f"{scheme}://{config.host}:{config.port}",
                    "tls": bool(config.tls_cert),
                },
            )
            await stop.wait()
            logger.info("shutting down: finishing in-flight requests")
            runner.app[ADMISSION].draining = True
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        # Stops listening, runs on_shutdown (draining), waits for handlers, then cleanup_ctx.
        await runner.cleanup()
        logger.info("stopped")


def listening_sites(runner: web.AppRunner, config: ReceiverConfig) -> list[web.BaseSite]:
    """The sockets a worker was handed, else a fresh listener on host and port."""
    context = tls_context(config)
    if config.listen_fds:
        app = runner.app

        def busy() -> bool:
            return app[ADMISSION].inflight > 0

        return [
            BalancedSockSite(runner, socket.socket(fileno=fd), busy=busy, ssl_context=context)
            for fd in config.listen_fds
        ]
    return [web.TCPSite(runner, config.host, config.port, ssl_context=context, backlog=1024)]


def bind_shared_listeners(host: str, port: int) -> list[socket.socket]:
    """Listening sockets for every address of ``host``, to be inherited by workers.

    One socket shared by all workers, rather than one each with SO_REUSEPORT: the kernel
    hashes each new connection to a SO_REUSEPORT socket whatever its process is doing, so a
    few long-lived client connections can load one worker with twice the other's work
    (measured: a 66/34 split at half load). On a shared socket the worker that is idle
    accepts first (``listener.BalancedSockSite``).
    """
    listeners: list[socket.socket] = []
    seen: set[tuple[int, Any]] = set()
    for family, kind, proto, _, address in socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    ):
        if (family, address) in seen:
            continue
        seen.add((family, address))
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(1024)
        except OSError as exc:
            sock.close()
            for opened in listeners:
                opened.close()
            raise OSError(exc.errno, f"cannot listen on {host}:{port}: {exc.strerror}") from exc
        sock.set_inheritable(True)
        listeners.append(sock)
    return listeners


async def supervise_workers(
    config: ReceiverConfig, command: list[str], *, env: dict[str, str]
) -> bool:
    """Run ``config.workers`` copies of ``command`` (a ``serve --worker`` command line) on
    listening sockets bound here and handed down as ``--listen-fd``; forward SIGTERM and
    SIGINT to them and wait for them to drain. Returns False when a worker died on its own
    (the others are then stopped too)."""
    listeners = bind_shared_listeners(config.host, config.port)
    fds = [sock.fileno() for sock in listeners]
    argv = [*command, *(flag for fd in fds for flag in ("--listen-fd", str(fd)))]
    try:
        processes = [
            await asyncio.create_subprocess_exec(*argv, env=env, pass_fds=fds)
            for _ in range(config.workers)
        ]
    finally:
        # Only the workers listen: once they have stopped, new connections are refused
        # rather than left waiting in a backlog nobody accepts from.
        for sock in listeners:
            sock.close()
    logger.info("started workers", extra={"workers": [p.pid for p in processes]})
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    exits = [asyncio.ensure_future(p.wait()) for p in processes]
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait([stopping, *exits], return_when=asyncio.FIRST_COMPLETED)
    died = not stop.is_set()
    for process in processes:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
    await asyncio.gather(*exits)
    stopping.cancel()
    return not died


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
