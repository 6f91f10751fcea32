"""What people open in a browser: the dashboard at /, GraphiQL's page and the API docs, every
asset served from files in this package: nothing from a CDN.

graph/static/ is the dashboard's (always served), graph/ide/ GraphiQL's page and starter,
graph/vendor/ the npm files GraphiQL and /docs load (scripts/vendor-assets); the last two
only outside production, like GraphiQL and /docs themselves."""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    HTMLResponse,
    MalformedRangeHeader,
    RangeNotSatisfiable,
    Response,
)
from starlette.staticfiles import PathLike, StaticFiles
from starlette.types import Scope

STATIC = Path(__file__).with_name("static")
# The one operation the dashboard sends (static/api.js).
DASHBOARD_OPERATION = "Dashboard"
IDE = Path(__file__).with_name("ide")
VENDOR = Path(__file__).with_name("vendor")

# The dashboard shows text written by crawlers: even if some of it ever reached the DOM as
# markup, no script of anyone else's would run (no inline scripts, no other origin).
DASHBOARD_CSP = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)
# GraphiQL's page: its own scripts only; its styles set inline styles and data: fonts.
GRAPHIQL_CSP = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "font-src 'self' data:",
        "connect-src 'self'",
        "worker-src 'self' blob:",
        "base-uri 'none'",
        "frame-ancestors 'none'",
    ]
)


class Files(StaticFiles):
    """StaticFiles whose refusal of a Range header is in the API's error shape: the range is
    checked here, as FileResponse would, and refused with an HTTPException (the app's handler
    answers it) rather than FileResponse's plain text."""

    def file_response(
        self, full_path: PathLike, stat_result: os.stat_result, scope: Scope, status_code: int = 200
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        headers = Headers(scope=scope)
        wanted, condition = headers.get("range"), headers.get("if-range")
        if (
            isinstance(response, FileResponse)
            and response.status_code == 200
            and wanted is not None
            and (condition is None or response._should_use_range(condition))
        ):
            try:
                response._parse_range_header(wanted, stat_result.st_size)
            except MalformedRangeHeader as exc:
                raise HTTPException(400, exc.content) from None
            except RangeNotSatisfiable as exc:
                raise HTTPException(
                    416,
                    f"the Range header starts past the end of the file ({exc.max_size} bytes)",
                    headers={"content-range": f"bytes */{exc.max_size}"},
                ) from None
        return response


_GRAPHIQL = (IDE / "graphiql.html").read_text(encoding="utf-8")


def graphiql_page() -> HTMLResponse:
    """GraphiQL 3 (React 18, UMD) from /vendor, started by /ide/graphiql.js."""
    return HTMLResponse(
        _GRAPHIQL,
        headers={"content-security-policy": GRAPHIQL_CSP, "cache-control": "no-cache"},
    )


def add_pages(app: FastAPI, *, production: bool) -> None:
    """The dashboard (always: it is for users) and, unless in production, the vendored
    assets GraphiQL and /docs load, and /docs itself."""
    app.mount("/static", Files(directory=STATIC), name="static")
    dashboard = (STATIC / "index.html").read_text(encoding="utf-8")

    @app.get("/", include_in_schema=False)
    async def index() -> Response:
        return HTMLResponse(
            dashboard,
            headers={
                "content-security-policy": DASHBOARD_CSP,
                "cache-control": "no-cache",
                "referrer-policy": "no-referrer",
            },
        )

    if production:
        return
    app.mount("/ide", Files(directory=IDE), name="ide")
    app.mount("/vendor", Files(directory=VENDOR), name="vendor")

    @app.get("/docs", include_in_schema=False)
    async def docs(request: Request) -> Response:
        return get_swagger_ui_html(
            openapi_url=str(app.openapi_url),
            title=f"{app.title}: API docs",
            oauth2_redirect_url="/docs/oauth2-redirect",
            swagger_js_url="/vendor/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url="/vendor/swagger-ui/swagger-ui.css",
            swagger_favicon_url="/vendor/swagger-ui/favicon-32x32.png",
        )

    @app.get("/docs/oauth2-redirect", include_in_schema=False)
    async def oauth2_redirect() -> Response:
        return get_swagger_ui_oauth2_redirect_html()
