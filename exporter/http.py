"""The HTTP surface: aiohttp on the engine's event loop.

``/metrics`` joins the port families each target rendered when its round landed (:mod:`exporter.exposition`)
with the rest of the families (:mod:`exporter.collector`, through prometheus_client), in the text format or in
OpenMetrics when the scraper asks for it (``Accept: application/openmetrics-text``), ``?name[]=`` filters
honoured, gzip when asked (the store's kept deflate blocks as they are: :func:`exporter.exposition.gzip_chunks`).
Beside it ``/-/healthy``, ``/-/ready``, ``/-/reload`` (POST or PUT), ``/sd`` (Prometheus HTTP SD) and the status
pages (:mod:`exporter.status_page`).  HEAD works where GET does; other methods get 405.  ``/-/reload`` answers
403 unless ``--web.enable-lifecycle`` is given or the client is on loopback.  TLS, basic auth and response
headers come from the web config (:mod:`exporter.webconfig`), on every path.  The connection cap, time-outs and
size limits are :mod:`exporter.http_limits`'s.  Check by hand: ``curl -s 127.0.0.1:9727/metrics | head``.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST as OPENMETRICS_TYPE

from exporter.collector import ExporterStatus, render_chunks, render_gzip_chunks
from exporter.config import Settings
from exporter.exposition import Histogram
from exporter.http_limits import HANDLER_ARGS, ConnectionLimits, serve_limited
from exporter.status_page import add_status_routes
from exporter.store import ResultStore
from exporter.webconfig import WebState, is_loopback

SCRAPE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
#: The application's :class:`ConnectionLimits` (set by :func:`build_app`, enforced by :func:`serve`).
LIMITS = web.AppKey("limits", ConnectionLimits)


class Exporter(Protocol):
    """What the HTTP layer needs from the daemon."""

    store: ResultStore
    registry: CollectorRegistry
    status: ExporterStatus

    @property
    def settings(self) -> Settings:
        """The running config (the status page's ``/config``)."""

    @property
    def ready(self) -> bool:
        """Every target finished a round and every domain its first discovery."""

    async def reload_async(self) -> tuple[bool, str]:
        """Re-read the config; ``(ok, message)``."""

    def sd_groups(self, *, domain: str | None = None, site: str | None = None) -> list[dict[str, Any]]:
        """Prometheus HTTP SD target groups."""


def build_app(
    exporter: Exporter,
    extra_routes: dict[str, Handler] | None = None,
    *,
    webstate: WebState | None = None,
    enable_lifecycle: bool = False,
    limits: ConnectionLimits | None = None,
) -> web.Application:
    """The aiohttp application serving ``exporter``; ``extra_routes`` adds GET paths (``/probe``).

    ``webstate``: the web config (basic auth, headers, client certificate SANs) applied to every path;
    ``enable_lifecycle``: ``/-/reload`` from any client, not only loopback (``--web.enable-lifecycle``);
    ``limits``: the connection cap :func:`serve` enforces (default: Prometheus' 512), its time limits and request
    size limits (:mod:`exporter.http_limits`).
    """
    exporter.status.scrape_duration = Histogram(SCRAPE_BUCKETS)
    limits = limits or ConnectionLimits()
    middlewares = [limits.middleware()]
    if webstate is not None:
        middlewares.append(webstate.middleware())
    app = web.Application(handler_args=HANDLER_ARGS, middlewares=middlewares)
    app[LIMITS] = limits
    if webstate is not None:
        app.on_response_prepare.append(webstate.on_prepare())

    async def metrics(request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        openmetrics = "application/openmetrics-text" in request.headers.get("Accept", "")
        wanted = request.query.getall("name[]", [])
        names = frozenset(wanted) if wanted else None
        kind = OPENMETRICS_TYPE if openmetrics else CONTENT_TYPE_LATEST
        response = web.StreamResponse(headers={"Content-Type": kind})
        gzipped = "gzip" in request.headers.get("Accept-Encoding", "")
        if gzipped:
            response.headers["Content-Encoding"] = "gzip"
        await response.prepare(request)
        render = render_gzip_chunks if gzipped else render_chunks
        for piece in render(exporter.store, exporter.registry, openmetrics=openmetrics, names=names):
            await response.write(piece)
        await response.write_eof()
        hist = exporter.status.scrape_duration
        if hist is not None:
            hist.observe(time.perf_counter() - started)
        return response

    async def healthy(_request: web.Request) -> web.StreamResponse:
        return web.Response(text="Healthy\n")

    async def ready(_request: web.Request) -> web.StreamResponse:
        if exporter.ready:
            return web.Response(text="Ready\n")
        return web.Response(status=503, text="Not ready: first probe round running\n")

    async def reload(request: web.Request) -> web.StreamResponse:
        if not enable_lifecycle and not is_loopback(request.remote):
            text = "Lifecycle API is not enabled: start with --web.enable-lifecycle, or ask from loopback\n"
            return web.Response(status=403, text=text)
        ok, message = await exporter.reload_async()
        return web.Response(status=200 if ok else 500, text=message + "\n")

    async def sd(request: web.Request) -> web.StreamResponse:
        groups = exporter.sd_groups(domain=request.query.get("domain"), site=request.query.get("site"))
        return web.json_response(groups, dumps=_dumps)

    app.router.add_get("/metrics", metrics)  # add_get also answers HEAD
    app.router.add_get("/-/healthy", healthy)
    app.router.add_get("/-/ready", ready)
    app.router.add_post("/-/reload", reload)
    app.router.add_put("/-/reload", reload)
    app.router.add_get("/sd", sd)
    add_status_routes(app, exporter)  # /, /targets/NAME, /config, /api/v1/... (exporter.status_page)
    for path, handler in (extra_routes or {}).items():
        app.router.add_get(path, handler)
    return app


def _dumps(obj: Any) -> str:
    import json

    return json.dumps(obj, indent=1)


async def serve(
    app: web.Application, host: str, port: int, *, ssl_context: ssl.SSLContext | None = None
) -> tuple[web.AppRunner, int]:
    """Start serving ``app`` (from :func:`build_app`) on ``host:port`` (0: any free port), over TLS with
    ``ssl_context``, under its connection limits (:func:`exporter.http_limits.serve_limited`).

    Returns:
        The runner (``await runner.cleanup()`` stops it) and the port bound.

    Raises:
        OSError: the address is in use or cannot be bound.
    """
    return await serve_limited(app, host, port, app[LIMITS], ssl_context=ssl_context)
