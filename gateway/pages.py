"""The browser pages the sidecar serves through the gateway: the live charts
page at `/`, the interactive API docs at `/docs` (Swagger UI, vendored from
npm's swagger-ui-dist by scripts/vendor_swagger_ui.sh) and their assets under
`/assets/`. Plain files from gateway/web/, read once at start: nothing is
fetched from elsewhere, and only the files found there are served.
"""

from __future__ import annotations

import hashlib
import mimetypes
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from gateway.sse import json_error

WEB = Path(__file__).resolve().parent / "web"

# The charts page: its own scripts, styles and API only.
PAGE_CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
# Swagger UI sets inline styles and draws icons from data: URLs.
DOCS_CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
_TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html", ".svg": "image/svg+xml"}


@dataclass(frozen=True)
class _File:
    body: bytes
    content_type: str
    etag: str
    cache_control: str
    csp: str | None = None


def _load(path: Path, cache_control: str, csp: str | None = None) -> _File:
    body = path.read_bytes()
    content_type = _TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    if content_type.startswith("text/") or content_type.endswith("javascript"):
        content_type += "; charset=utf-8"
    etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
    return _File(body, content_type, etag, cache_control, csp)


def files(web_dir: Path = WEB) -> dict[str, _File]:
    """URL path -> file, for every page and asset there is."""
    # Pages and our own assets are revalidated (ETag) on every load, so a
    # new release shows at once; the vendored viewer changes only with its
    # version and is kept a day.
    out = {
        "/": _load(web_dir / "index.html", "no-cache", PAGE_CSP),
        "/docs": _load(web_dir / "docs.html", "no-cache", DOCS_CSP),
    }
    for path in sorted((web_dir / "assets").rglob("*")):
        if path.is_file():
            rel = path.relative_to(web_dir).as_posix()
            vendored = "/swagger-ui/" in f"/{rel}"
            out[f"/{rel}"] = _load(path, "public, max-age=86400" if vendored else "no-cache")
    return out


def add_routes(app: web.Application, web_dir: Path = WEB) -> None:
    served = files(web_dir)

    async def serve(request: web.Request) -> web.Response:
        found = served.get(request.path)
        if found is None:
            return json_error(404, 5, f"no such page or asset: {request.path}")
        headers = {
            "ETag": found.etag,
            "Cache-Control": found.cache_control,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
        }
        if found.csp:
            headers["Content-Security-Policy"] = found.csp
        if found.etag in request.headers.get("If-None-Match", ""):
            return web.Response(status=304, headers=headers)
        return web.Response(body=found.body, headers=headers | {"Content-Type": found.content_type})

    app.router.add_get("/", serve)
    app.router.add_get("/docs", serve)
    app.router.add_get("/assets/{path:.+}", serve)
