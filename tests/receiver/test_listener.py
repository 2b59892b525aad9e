"""Workers sharing one listening socket: the idle one takes new connections."""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from aethermind.receiver.listener import BalancedSockSite
from aethermind.receiver.serve import bind_shared_listeners
from tests.plugins.services import free_port


async def _runner(name: str) -> web.AppRunner:
    async def who(_: web.Request) -> web.Response:
        return web.Response(text=name)

    app = web.Application()
    app.router.add_get("/", who)
    runner = web.AppRunner(app)
    await runner.setup()
    return runner


@pytest.fixture
async def shared_socket() -> AsyncIterator[tuple[socket.socket, int]]:
    port = free_port()
    [listener] = bind_shared_listeners("127.0.0.1", port)
    yield listener, port
    listener.close()


async def test_a_busy_worker_leaves_new_connections_to_an_idle_one(
    shared_socket: tuple[socket.socket, int],
) -> None:
    listener, port = shared_socket
    # Two "workers" in one process, each with its own descriptor of the same socket, as the
    # supervisor's children have.
    busy_runner, idle_runner = await _runner("busy"), await _runner("idle")
    busy = BalancedSockSite(
        busy_runner, socket.socket(fileno=os.dup(listener.fileno())), busy=lambda: True
    )
    idle = BalancedSockSite(
        idle_runner, socket.socket(fileno=os.dup(listener.fileno())), busy=lambda: False
    )
    await busy.start()
    await idle.start()
    try:
        served = []
        for _ in range(10):
            connector = aiohttp.TCPConnector(force_close=True)
            async with aiohttp.ClientSession(connector=connector) as session:
                async with session.get(f"http://127.0.0.1:{port}/") as response:
                    served.append(await response.text())
        assert served == ["idle"] * 10
    finally:
        await busy_runner.cleanup()
        await idle_runner.cleanup()


async def test_a_busy_worker_still_accepts_when_no_one_else_does(
    shared_socket: tuple[socket.socket, int],
) -> None:
    listener, port = shared_socket
    runner = await _runner("busy")
    site = BalancedSockSite(
        runner, socket.socket(fileno=os.dup(listener.fileno())), busy=lambda: True
    )
    await site.start()
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(3):
                async with session.get(f"http://127.0.0.1:{port}/") as response:
                    assert await response.text() == "busy"
    finally:
        await runner.cleanup()
    # Stopped: its descriptor is closed (the supervisor's copy is the fixture's).
    listener.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
