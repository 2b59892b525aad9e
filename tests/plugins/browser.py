"""A real headless Chromium for tests, driven over the Chrome DevTools Protocol with aiohttp
(no Selenium, no driver binary): one browser per test session, a fresh profile per test.

Fixtures: ``browser`` (session: the running Chromium), ``page`` (a new tab in its own
browser context, so no cookies or localStorage leak between tests, recording every request,
console message and Content-Security-Policy violation). Chromium is ``$AETHERMIND_CHROMIUM``
or the first of chromium / chromium-browser / google-chrome on PATH; without one the tests
fail with the command that installs it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import math
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

ENV_CHROMIUM = "AETHERMIND_CHROMIUM"
_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# The closed network here refuses Chromium's own background traffic (updates, sync, field
# trials); without these flags it stalls on those connections.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--mute-audio",
    "--force-color-profile=srgb",
    "--lang=en-US",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
)
START_TIMEOUT_SECONDS = 30.0
COMMAND_TIMEOUT_SECONDS = 30.0
VIEWPORT = {"width": 1440, "height": 1000}

# Installed before any page script: records CSP violations where the test can read them.
_RECORD_CSP_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__cspViolations.push({directive: e.violatedDirective, blocked: e.blockedURI,
                               sample: e.sample, source: e.sourceFile, line: e.lineNumber});
});
"""


def find_chromium() -> str | None:
    configured = os.environ.get(ENV_CHROMIUM)
    if configured:
        return configured
    for name in _CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


@dataclass(frozen=True)
class Browser:
    """A running Chromium: its DevTools websocket and the log of its stderr."""

    websocket_url: str
    log_path: Path
    process: subprocess.Popen[bytes]


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    binary = find_chromium()
    if binary is None:
        # A missing browser is missing setup, never a reason to skip the dashboard's tests.
        pytest.fail(
            f"no Chromium found: run `bash scripts/test.sh` (it installs Debian's chromium), "
            f"or `apt-get install chromium`, or set {ENV_CHROMIUM} to a Chromium binary"
        )
    profile = Path(tempfile.mkdtemp(prefix="aethermind-chromium-"))
    log_path = profile / "chromium.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
    try:
        websocket_url = _wait_for_devtools(profile, process, log_path)
        yield Browser(websocket_url, log_path, process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        shutil.rmtree(profile, ignore_errors=True)


def _wait_for_devtools(profile: Path, process: subprocess.Popen[bytes], log_path: Path) -> str:
    """Chromium writes the port it chose and the browser's path to DevToolsActivePort."""
    marker = profile / "DevToolsActivePort"
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"Chromium exited with {process.returncode}: {log_path.read_text()[-2000:]}"
            )
        with contextlib.suppress(FileNotFoundError):
            lines = marker.read_text().split()
            if len(lines) >= 2:
                return f"ws://127.0.0.1:{lines[0]}{lines[1]}"
        time.sleep(0.05)
    raise RuntimeError(f"Chromium did not open DevTools in {START_TIMEOUT_SECONDS}s")


class CdpError(RuntimeError):
    pass


Listener = Callable[[str, dict[str, Any], str | None], None]


class Cdp:
    """One DevTools websocket: commands matched to replies by id, events to listeners."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._listeners: list[Listener] = []
        self._reader = asyncio.create_task(self._read())

    def listen(self, listener: Listener) -> None:
        self._listeners.append(listener)

    async def send(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        *,
        session_id: str | None = None,
        timeout: float = COMMAND_TIMEOUT_SECONDS,
    ) -> dict[str, Any]:
        message_id = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[message_id] = future
        message: dict[str, Any] = {"id": message_id, "method": method, "params": params or {}}
        if session_id is not None:
            message["sessionId"] = session_id
        await self._ws.send_str(json.dumps(message))
        try:
            return await asyncio.wait_for(future, timeout)
        finally:
            self._pending.pop(message_id, None)

    async def _read(self) -> None:
        async for message in self._ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(message.data)
            if "id" in data:
                future = self._pending.get(data["id"])
                if future is None or future.done():
                    continue
                if "error" in data:
                    future.set_exception(CdpError(f"{data['error']}"))
                else:
                    future.set_result(data.get("result", {}))
            else:
                for listener in self._listeners:
                    listener(data.get("method", ""), data.get("params", {}), data.get("sessionId"))
        for future in self._pending.values():
            if not future.done():
                future.set_exception(CdpError("DevTools connection closed"))

    async def close(self) -> None:
        await self._ws.close()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


@dataclass
class Page:
    """One tab: navigation, script evaluation, real mouse clicks and typing, screenshots."""

    cdp: Cdp
    session_id: str
    requests: list[str] = field(default_factory=list)
    console: list[tuple[str, str]] = field(default_factory=list)
    _waiters: list[tuple[str, asyncio.Future[dict[str, Any]]]] = field(default_factory=list)

    def on_event(self, method: str, params: dict[str, Any], session_id: str | None) -> None:
        if session_id != self.session_id:
            return
        if method == "Network.requestWillBeSent":
            self.requests.append(params["request"]["url"])
        elif method == "Runtime.consoleAPICalled":
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in params["args"])
            self.console.append((params["type"], text))
        elif method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text", "")
            self.console.append(("exception", text))
        elif method == "Log.entryAdded":
            entry = params["entry"]
            self.console.append((entry["level"], f"{entry['source']}: {entry['text']}"))
        for waited, future in list(self._waiters):
            if waited == method and not future.done():
                future.set_result(params)

    def errors(self) -> list[tuple[str, str]]:
        return [(kind, text) for kind, text in self.console if kind in {"error", "exception"}]

    async def send(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return await self.cdp.send(method, params, session_id=self.session_id)

    async def goto(self, url: str, *, timeout: float = 30.0) -> None:
        loaded: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiters.append(("Page.loadEventFired", loaded))
        try:
            result = await self.send("Page.navigate", {"url": url})
            if result.get("errorText"):
                raise CdpError(f"navigating to {url}: {result['errorText']}")
            await asyncio.wait_for(loaded, timeout)
        finally:
            self._waiters.remove(("Page.loadEventFired", loaded))

    async def evaluate(self, expression: str) -> Any:
        result = await self.send(
            "Runtime.evaluate",
            {"expression": expression, "awaitPromise": True, "returnByValue": True},
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            raise CdpError(details.get("exception", {}).get("description") or details["text"])
        return result["result"].get("value")

    async def wait_for(self, expression: str, *, timeout: float = 20.0) -> Any:
        """Poll ``expression`` until it is truthy; returns its value."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            value = await self.evaluate(expression)
            if value:
                return value
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(
                    f"still falsy after {timeout}s: {expression}\nconsole: {self.console[-10:]}"
                )
            await asyncio.sleep(0.1)

    async def click(self, selector: str) -> None:
        """A real mouse click in the middle of the element, as a person would."""
        box = await self.evaluate(
            f"""(() => {{
              const node = document.querySelector({json.dumps(selector)});
              if (!node) return null;
              node.scrollIntoView({{block: "center"}});
              const r = node.getBoundingClientRect();
              return {{x: r.left + r.width / 2, y: r.top + r.height / 2}};
            }})()"""
        )
        if box is None:
            raise CdpError(f"nothing matches {selector!r}")
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            await self.send(
                "Input.dispatchMouseEvent",
                {"type": kind, "x": box["x"], "y": box["y"], "button": "left", "clickCount": 1},
            )

    async def type(self, selector: str, text: str) -> None:
        await self.click(selector)
        await self.send("Input.insertText", {"text": text})

    async def press_enter(self) -> None:
        for kind in ("keyDown", "keyUp"):
            await self.send(
                "Input.dispatchKeyEvent",
                {"type": kind, "key": "Enter", "code": "Enter", "windowsVirtualKeyCode": 13,
                 "text": "\r" if kind == "keyDown" else ""},
            )  # fmt: skip

    async def select(self, selector: str, value: str) -> None:
        """Choose an option as the user would (the change event included)."""
        await self.evaluate(
            f"""(() => {{
              const node = document.querySelector({json.dumps(selector)});
              node.focus();
              node.value = {json.dumps(value)};
              node.dispatchEvent(new Event("change", {{bubbles: true}}));
            }})()"""
        )

    async def csp_violations(self) -> list[dict[str, Any]]:
        violations: list[dict[str, Any]] = await self.evaluate("window.__cspViolations || []")
        return violations

    async def screenshot(self, path: Path) -> None:
        """A PNG of the whole page: the viewport grows to the page's height for the shot (so
        fixed panels are drawn as a person sees them), then shrinks back."""
        metrics = await self.send("Page.getLayoutMetrics")
        size = metrics.get("cssContentSize") or metrics["contentSize"]
        height = max(VIEWPORT["height"], math.ceil(size["height"]))
        await self.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": VIEWPORT["width"], "height": height, "deviceScaleFactor": 1, "mobile": False},
        )
        try:
            await asyncio.sleep(0.3)  # let responsive charts settle in the new viewport
            shot = await self.send("Page.captureScreenshot", {"format": "png"})
        finally:
            await self.send(
                "Emulation.setDeviceMetricsOverride",
                {**VIEWPORT, "deviceScaleFactor": 1, "mobile": False},
            )
        await asyncio.to_thread(_write, path, base64.b64decode(shot["data"]))


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(browser.websocket_url, max_msg_size=0, heartbeat=None)
        cdp = Cdp(ws)
        # Its own browser context: a fresh profile (localStorage, cache) for every test.
        context = await cdp.send("Target.createBrowserContext", {"disposeOnDetach": True})
        context_id = context["browserContextId"]
        try:
            target = await cdp.send(
                "Target.createTarget", {"url": "about:blank", "browserContextId": context_id}
            )
            attached = await cdp.send(
                "Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}
            )
            tab = Page(cdp, attached["sessionId"])
            cdp.listen(tab.on_event)
            for domain in ("Page", "Runtime", "Network", "Log"):
                await tab.send(f"{domain}.enable")
            await tab.send(
                "Page.addScriptToEvaluateOnNewDocument", {"source": _RECORD_CSP_VIOLATIONS}
            )
            await tab.send(
                "Emulation.setDeviceMetricsOverride",
                {**VIEWPORT, "deviceScaleFactor": 1, "mobile": False},
            )
            await tab.send("Emulation.setLocaleOverride", {"locale": "en-US"})
            yield tab
        finally:
            with contextlib.suppress(CdpError, TimeoutError, ConnectionError):
                await cdp.send("Target.disposeBrowserContext", {"browserContextId": context_id})
            await cdp.close()
