"""The status page: what every target's ports are doing and why, on the server, in HTML and JSON.

Routes (:func:`add_status_routes`, registered by :func:`exporter.http.build_app`):

- ``GET /``: every target and discovered DC with its ports (state, reason, tries, duration, when the state last
  changed, the last error), each target linking to its page; ``?hide=listening`` shows only the ports that are
  not listening, ``?state=STATE`` one state.
- ``GET /targets/NAME``: one target: its ports, the recent rounds of each (:mod:`exporter.history`) and the
  protocol details (rootDSE, endpoint counts, DC flags...); 404 for a name the exporter does not know.
- ``GET /config``: the running config with secrets masked (``***``).
- ``GET /api/v1/status`` (same filters), ``GET /api/v1/targets/NAME``, ``GET /api/v1/config``: the same as JSON.

Everything is rendered on the server (no script; the pages send a ``Content-Security-Policy`` that allows none)
and everything that came from the network or the config is escaped (:mod:`exporter.status_html`).  Secrets:
every key that looks secret (SNMP communities, passwords, tokens, hashes, basic-auth users) and every bcrypt
hash is masked, in the config and in protocol details (an SNMP reply echoes its community).  The pages walk
every port; ``/metrics`` does not, and none of this runs at scrape time.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

from aiohttp import web

from exporter import status_html as page
from exporter.status_view import Filter, StatusSource, build_view, masked_config

#: Pages are written in pieces of about this many characters, each rendered in a worker thread.
CHUNK = 64 * 1024
HTML = "text/html; charset=utf-8"
JSON = "application/json; charset=utf-8"
HTML_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def _html(body: str, status: int = 200) -> web.Response:
    return web.Response(text=body, status=status, content_type="text/html", charset="utf-8", headers=HTML_HEADERS)


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=lambda o: json.dumps(o, indent=1, ensure_ascii=False))


def _batch(chunks: Iterator[str]) -> bytes:
    parts: list[str] = []
    size = 0
    for chunk in chunks:
        parts.append(chunk)
        size += len(chunk)
        if size >= CHUNK:
            break
    return "".join(parts).encode()


async def _stream(request: web.Request, chunks: Iterator[str], content_type: str) -> web.StreamResponse:
    """Write ``chunks`` as they are rendered, off the loop: a page of every port is never held whole."""
    headers = {**HTML_HEADERS, "Content-Type": content_type} if content_type == HTML else {"Content-Type": JSON}
    response = web.StreamResponse(headers=headers)
    await response.prepare(request)
    if request.method != "HEAD":
        while batch := await asyncio.to_thread(_batch, chunks):
            await response.write(batch)
    await response.write_eof()
    return response


def add_status_routes(app: web.Application, source: StatusSource) -> None:
    """Register ``/``, ``/targets/{name}``, ``/config`` and their ``/api/v1`` twins on ``app``."""

    def parse_filter(request: web.Request) -> Filter:
        try:
            return Filter.from_query(request.query)
        except ValueError as exc:
            raise web.HTTPBadRequest(text=str(exc) + "\n") from None

    # Collecting and rendering walk every port: in worker threads, so that probes and scrapes go on meanwhile.
    async def index(request: web.Request) -> web.StreamResponse:
        view = await asyncio.to_thread(build_view, source, flt=parse_filter(request), ready=source.status.ready())
        assert view is not None  # only a named target can be unknown
        return await _stream(request, page.index_chunks(view), HTML)

    async def target(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        view = await asyncio.to_thread(build_view, source, target=name, ready=source.status.ready())
        if view is None:
            return _html(page.not_found(name), status=404)
        return await _stream(request, page.target_chunks(view, view.targets[0]), HTML)

    async def config(_request: web.Request) -> web.StreamResponse:
        return _html(page.config(masked_config(source.settings, getattr(source, "web", None))))

    async def api_status(request: web.Request) -> web.StreamResponse:
        view = await asyncio.to_thread(build_view, source, flt=parse_filter(request), ready=source.status.ready())
        assert view is not None
        return await _stream(request, view.json_chunks(), JSON)

    async def api_target(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        view = await asyncio.to_thread(build_view, source, target=name, ready=source.status.ready())
        if view is None:
            return _json({"error": f"unknown target {name!r}"}, status=404)
        return await _stream(request, view.targets[0].json_chunks(details=True), JSON)

    async def api_config(_request: web.Request) -> web.StreamResponse:
        return _json(masked_config(source.settings, getattr(source, "web", None)))

    app.router.add_get("/", index)
    app.router.add_get("/targets/{name:.+}", target)
    app.router.add_get("/config", config)
    app.router.add_get("/api/v1/status", api_status)
    app.router.add_get("/api/v1/targets/{name:.+}", api_target)
    app.router.add_get("/api/v1/config", api_config)
