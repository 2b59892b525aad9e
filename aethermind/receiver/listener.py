"""Accepting from a listening socket shared by several worker processes, busy workers last.

Every worker waits on the same socket. When a connection arrives, a worker that has ingest
requests in flight waits a moment before taking it, so an idle sibling takes it first; if
none does, the busy worker takes it after the pause, so no connection waits long. Without
this, which worker gets a connection is chance, and a few long-lived client connections
can leave one worker with twice the other's work (bench_receiver.py shows the split).

Only the choice of worker is ours: connections are handed to aiohttp's own protocol
(``loop.connect_accepted_socket``), TLS included.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Callable

from aiohttp import web

logger = logging.getLogger(__name__)

BUSY_PAUSE_SECONDS = 0.02
"""How long a busy worker leaves a pending connection to its siblings: about one 512-span
request's CPU time, short beside any client timeout."""

_ACCEPT_ERROR_PAUSE_SECONDS = 0.1


class BalancedSockSite(web.BaseSite):
    """An aiohttp site on an inherited listening socket, accepting when not busy."""

    __slots__ = ("_busy", "_connecting", "_name", "_sock", "_task")

    def __init__(
        self,
        runner: web.BaseRunner,
        sock: socket.socket,
        *,
        busy: Callable[[], bool],
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(runner, ssl_context=ssl_context)
        sock.setblocking(False)
        self._sock = sock
        self._busy = busy
        self._task: asyncio.Task[None] | None = None
        self._connecting: set[asyncio.Task[None]] = set()
        host, port = sock.getsockname()[:2]
        self._name = f"{'https' if ssl_context else 'http'}://{host}:{port}"

    @property
    def name(self) -> str:
        return self._name

    async def start(self) -> None:
        await super().start()
        self._task = asyncio.create_task(self._accept_loop(), name=f"accept {self._name}")

    async def stop(self) -> None:
        tasks = [t for t in (self._task, *self._connecting) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._task = None
        self._sock.close()  # this process's copy; siblings keep theirs until they stop
        await super().stop()

    async def _accept_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await _readable(loop, self._sock)
            if self._busy():
                await asyncio.sleep(BUSY_PAUSE_SECONDS)
            try:
                conn, _ = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                continue  # a sibling took it
            except OSError as exc:  # e.g. out of file descriptors: pause, do not spin
                logger.warning("accept failed", extra={"error": str(exc)})
                await asyncio.sleep(_ACCEPT_ERROR_PAUSE_SECONDS)
                continue
            conn.setblocking(False)
            task = asyncio.create_task(self._connect(loop, conn))
            self._connecting.add(task)
            task.add_done_callback(self._connecting.discard)

    async def _connect(self, loop: asyncio.AbstractEventLoop, conn: socket.socket) -> None:
        server = self._runner.server
        assert server is not None
        try:
            await loop.connect_accepted_socket(server, conn, ssl=self._ssl_context)
        except asyncio.CancelledError:
            conn.close()
            raise
        except (OSError, ssl.SSLError) as exc:  # a failed TLS handshake, a client gone
            conn.close()
            logger.debug("connection setup failed", extra={"error": str(exc)})


async def _readable(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
    """Until ``sock`` has a connection waiting (or a sibling's wake-up: accept may then fail)."""
    ready = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    fd = sock.fileno()
    loop.add_reader(fd, wake)
    try:
        await ready
    finally:
        loop.remove_reader(fd)
