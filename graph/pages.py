"""What people open in a browser: the dashboard at /, GraphiQL's page and the API docs, every
asset served from files in this package: nothing from a CDN.

graph/static/ is the dashboard's (always served), graph/ide/ GraphiQL's page and starter,
graph/vendor/ the npm files GraphiQL and /docs load (scripts/vendor-assets); the last two
only outside production, like GraphiQL and /docs themselves."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.staticfiles import StaticFiles

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
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
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
    app.mount("/ide", StaticFiles(directory=IDE), name="ide")
    app.mount("/vendor", StaticFiles(directory=VENDOR), name="vendor")

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
