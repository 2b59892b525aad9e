"""``GET /dashboard``: the static web page showing a team its LLM spend, and its assets.

No tenant data passes through here: the page calls the query API from the browser with the
read key the user typed, so every response of this module is the same for everyone.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import logging
from dataclasses import dataclass, field
from importlib import resources
from importlib.metadata import PackageNotFoundError, version
from typing import Final

from aiohttp import web

logger = logging.getLogger(__name__)

DASHBOARD_PATH: Final = "/dashboard"
STATIC_PREFIX: Final = "/dashboard/static/"
PLOTLY_ASSET: Final = "plotly.min.js"

# Same origin only, and no inline or eval'd script: Plotly draws without either (the tests
# record every CSP violation). Styles are the one relaxation: Plotly injects its own style
# rules (a <style> element) and sets inline `style` attributes on the SVG it draws; under
# `style-src 'self'` both are refused, its modebar and hover layers lose their layout and
# overlap the page. Styles cannot run code, cannot reach other origins (img-src and
# font-src are self), and data never reaches them as markup.
CONTENT_SECURITY_POLICY: Final = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)
_SECURITY_HEADERS: Final = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
# Our own files may change with any release: the browser revalidates them (a cheap 304).
_OWN_CACHE_CONTROL: Final = "no-cache"
# Plotly changes only when the plotly package does; its ETag carries the version.
_PLOTLY_CACHE_CONTROL: Final = "public, max-age=86400"
# Our own files in receiver/static, by name, with their content types. The page is served
# only at /dashboard (with its CSP); the others also under /dashboard/static/.
_PAGE: Final = "index.html"
_OWN_ASSETS: Final = {
    _PAGE: "text/html; charset=utf-8",
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
}
_COMPRESS_ABOVE_BYTES: Final = 1024


@dataclass(frozen=True)
class Asset:
    body: bytes
    gzipped: bytes | None
    content_type: str
    etag: str
    cache_control: str


def make_asset(body: bytes, content_type: str, *, cache_control: str, tag: str = "") -> Asset:
    """An asset with a strong ETag from its content and a gzip variant when that pays."""
    digest = hashlib.sha256(body).hexdigest()[:20]
    gzipped = gzip.compress(body, mtime=0) if len(body) > _COMPRESS_ABOVE_BYTES else None
    if gzipped is not None and len(gzipped) >= len(body):
        gzipped = None
    return Asset(body, gzipped, content_type, f'"{tag}{digest}"', cache_control)


def _read_own(name: str) -> bytes:
    return (resources.files(__package__) / "static" / name).read_bytes()


def _read_plotly() -> bytes:
    """plotly.js as shipped inside the installed ``plotly`` Python package (no CDN, no copy)."""
    return (resources.files("plotly") / "package_data" / PLOTLY_ASSET).read_bytes()


def _load(name: str) -> Asset:
    if name == PLOTLY_ASSET:
        try:
            plotly_version = version("plotly")
        except PackageNotFoundError:
            plotly_version = "unknown"
        return make_asset(
            _read_plotly(),
            "text/javascript; charset=utf-8",
            cache_control=_PLOTLY_CACHE_CONTROL,
            tag=f"plotly-{plotly_version}-",
        )
    return make_asset(_read_own(name), _OWN_ASSETS[name], cache_control=_OWN_CACHE_CONTROL)


@dataclass
class AssetStore:
    """The dashboard's files, read (and gzipped) once on first request, off the event loop."""

    _assets: dict[str, Asset] = field(default_factory=dict)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def is_static(self, name: str) -> bool:
        return name == PLOTLY_ASSET or (name in _OWN_ASSETS and name != _PAGE)

    async def get(self, name: str) -> Asset:
        asset = self._assets.get(name)
        if asset is None:
            async with self._lock:
                asset = self._assets.get(name)
                if asset is None:
                    asset = await asyncio.to_thread(_load, name)
                    self._assets[name] = asset
        return asset


ASSETS: Final = web.AppKey("dashboard_assets", AssetStore)


def _accepts_gzip(request: web.Request) -> bool:
    for part in request.headers.get("Accept-Encoding", "").split(","):
        coding, _, params = part.strip().partition(";")
        if coding.strip().lower() == "gzip" and params.replace(" ", "") not in {"q=0", "q=0.0"}:
            return True
    return False


def _etag_matches(request: web.Request, etag: str) -> bool:
    wanted = request.headers.get("If-None-Match")
    if wanted is None:
        return False
    tags = {t.strip().removeprefix("W/") for t in wanted.split(",")}
    return "*" in tags or etag in tags


def respond(request: web.Request, asset: Asset, **extra_headers: str) -> web.Response:
    headers = {
        **_SECURITY_HEADERS,
        **extra_headers,
        "ETag": asset.etag,
        "Cache-Control": asset.cache_control,
        "Vary": "Accept-Encoding",
    }
    if _etag_matches(request, asset.etag):
        return web.Response(status=304, headers=headers)
    body = asset.body
    if asset.gzipped is not None and _accepts_gzip(request):
        body = asset.gzipped
        headers["Content-Encoding"] = "gzip"
    headers["Content-Type"] = asset.content_type
    return web.Response(body=body, headers=headers)


async def page(request: web.Request) -> web.Response:
    asset = await request.app[ASSETS].get(_PAGE)
    return respond(request, asset, **{"Content-Security-Policy": CONTENT_SECURITY_POLICY})


async def static(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    store = request.app[ASSETS]
    if not store.is_static(name):
        return _not_found(f"no dashboard asset {name!r}")
    try:
        asset = await store.get(name)
    except (ModuleNotFoundError, FileNotFoundError):
        logger.warning("dashboard asset missing", extra={"asset": name})
        return _not_found(f"{name} is not installed: pip install 'aethermind[receiver]'")
    return respond(request, asset)


async def trailing_slash(request: web.Request) -> web.Response:
    # The page uses relative URLs (so it works behind a path prefix), which resolve right
    # only from one address; a relative redirect keeps any prefix.
    return web.Response(status=308, headers={"Location": "../dashboard", **_SECURITY_HEADERS})


async def root(request: web.Request) -> web.Response:
    # A person who opens the server's address wants the dashboard; relative, like above.
    return web.Response(status=302, headers={"Location": "dashboard", **_SECURITY_HEADERS})


def _not_found(message: str) -> web.Response:
    return web.json_response({"error": {"status": 404, "message": message}}, status=404)


def add_routes(app: web.Application) -> None:
    app[ASSETS] = AssetStore()
    app.router.add_get("/", root)
    app.router.add_get(DASHBOARD_PATH, page)
    app.router.add_get(DASHBOARD_PATH + "/", trailing_slash)
    app.router.add_get(STATIC_PREFIX + "{name}", static)
