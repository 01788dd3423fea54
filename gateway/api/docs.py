"""The API's own documentation: /docs (Swagger UI) and /redoc (ReDoc), their scripts, styles and
icon served from the installed fastapi-offline package. No request leaves the page (no CDN, no
web fonts, no online validator): the pages work where partners' and operators' browsers have no
internet, and the gateway does not tell a CDN who reads its documentation."""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import FileResponse, HTMLResponse

from gateway.errors import GatewayError

router = APIRouter(include_in_schema=False)

ASSETS_URL = "/docs/assets"  # under /docs: a proxy or Ingress that routes /docs serves them too
_MEDIA_TYPES = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "redoc.standalone.js": "text/javascript",
    "favicon.png": "image/png",
}
# The assets change only with the package: a day in a browser's cache is safe.
_CACHE = {"Cache-Control": "public, max-age=86400"}
# The pages may load nothing from another origin. ReDoc's sidebar asks a CDN for a logo
# (cdn.redoc.ly), which this refuses in the browser, before any request leaves it. Inline
# scripts and styles: Swagger UI's start-up script, the styles both inject; ReDoc's search
# runs in a blob: worker.
_CSP = {
    "Content-Security-Policy": "; ".join(
        (
            "default-src 'self'",
            "script-src 'self' 'unsafe-inline'",
            "style-src 'self' 'unsafe-inline'",
            "img-src 'self' data:",
            "font-src 'self' data:",
            "worker-src 'self' blob:",
            "connect-src 'self'",
            "base-uri 'none'",
            "frame-ancestors 'none'",
        )
    )
}


@lru_cache(maxsize=1)
def _asset_dir() -> Path:
    return Path(str(resources.files("fastapi_offline") / "static"))


def _base(request: Request) -> str:
    return str(request.scope.get("root_path", ""))


@router.get("/docs")
def swagger_ui(request: Request) -> HTMLResponse:
    base = _base(request)
    app = request.app
    page = get_swagger_ui_html(
        openapi_url=f"{base}{app.openapi_url}",
        title=f"{app.title} - Swagger UI",
        oauth2_redirect_url=f"{base}/docs/oauth2-redirect",
        swagger_js_url=f"{base}{ASSETS_URL}/swagger-ui-bundle.js",
        swagger_css_url=f"{base}{ASSETS_URL}/swagger-ui.css",
        swagger_favicon_url=f"{base}{ASSETS_URL}/favicon.png",
        # Swagger UI otherwise asks validator.swagger.io for a badge
        swagger_ui_parameters={"validatorUrl": None},
    )
    page.headers.update(_CSP)
    return page


@router.get("/docs/oauth2-redirect")
def swagger_ui_redirect() -> HTMLResponse:
    return get_swagger_ui_oauth2_redirect_html()


@router.get("/redoc")
def redoc(request: Request) -> HTMLResponse:
    base = _base(request)
    app = request.app
    page = get_redoc_html(
        openapi_url=f"{base}{app.openapi_url}",
        title=f"{app.title} - ReDoc",
        redoc_js_url=f"{base}{ASSETS_URL}/redoc.standalone.js",
        redoc_favicon_url=f"{base}{ASSETS_URL}/favicon.png",
        with_google_fonts=False,
    )
    page.headers.update(_CSP)
    return page


@router.get(ASSETS_URL + "/{asset}")
def docs_asset(asset: str) -> FileResponse:
    media_type = _MEDIA_TYPES.get(asset)
    if media_type is None:  # only the four names: nothing else of the package is served
        raise GatewayError("not found", 404)
    return FileResponse(_asset_dir() / asset, media_type=media_type, headers=_CACHE)
