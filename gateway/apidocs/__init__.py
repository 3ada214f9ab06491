"""The OpenAPI UI on `GET /api-docs`: Swagger UI, from the gateway's own copy of its files."""

from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse

from gateway.browser_assets import BrowserAssets

ASSETS = BrowserAssets(
    "Swagger UI",
    Path(__file__).parent / "static",
    "/api-docs/assets",
    ("swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png"),
)


def _page(openapi_url: str) -> str:
    response = get_swagger_ui_html(
        openapi_url=openapi_url,
        title="Banyan API",
        swagger_js_url=ASSETS.url("swagger-ui-bundle.js"),
        swagger_css_url=ASSETS.url("swagger-ui.css"),
        swagger_favicon_url=ASSETS.url("favicon-32x32.png"),
        swagger_ui_parameters={"validatorUrl": None},  # no badge from validator.swagger.io
    )
    return bytes(response.body).decode()


def mount(app: FastAPI, openapi_url: str) -> None:
    page = _page(openapi_url)

    @app.get("/api-docs", include_in_schema=False)
    async def api_docs() -> HTMLResponse:
        return HTMLResponse(ASSETS.html(page))

    ASSETS.mount(app)
