"""The gateway's browser pages work without internet: their files come from the gateway itself."""

import dataclasses
import re
from urllib.parse import urlsplit

import httpx
import pytest
from starlette import routing

from examples.orders import service as orders_service
from tests.gateway_rig import running_gateway
from tests.test_first_hour import CHROMIUM, CHROMIUM_FLAGS

LOCAL = {"127.0.0.1", "localhost"}
# `//host` with or without a scheme, as in src="https://cdn...", href="//cdn..." or url(//...)
REFERENCE = re.compile(r"(?:[a-z][a-z0-9+.-]*:)?//([^/\s\"'<>()\\`]+)", re.IGNORECASE)
ORDER = '{"items": [{"sku": "x", "quantity": 1, "unitPrice": "1.00"}]}'
pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
async def gateway(settings, orders):
    async with running_gateway(settings, [orders_service]) as served:
        yield served


def outside_hosts(page: str) -> set[str]:
    hosts = {urlsplit(f"//{found}").hostname or found for found in REFERENCE.findall(page)}
    return hosts - LOCAL


async def html_pages(app, http: httpx.AsyncClient) -> dict[str, str]:
    """Every page the gateway answers with HTML on a plain GET, by path."""
    routes = [route for route in app.routes if isinstance(route, routing.Route)]
    paths = [r.path for r in routes if "GET" in (r.methods or ()) and "{" not in r.path]
    pages = {}
    for path in [*paths, "/no-such-page"]:
        response = await http.get(path, headers={"Accept": "text/html"})
        if response.headers.get("content-type", "").startswith("text/html"):
            pages[path] = response.text
    return pages


async def test_no_html_page_of_the_gateway_names_an_outside_host(gateway) -> None:
    app, http = gateway
    pages = await html_pages(app, http)
    assert {"/api-docs", "/graphql"} <= set(pages)
    assert {path: outside_hosts(page) for path, page in pages.items() if outside_hosts(page)} == {}


async def test_a_page_without_its_files_says_how_to_get_them(gateway, monkeypatch, tmp_path):
    from gateway import apidocs
    from gateway.graphql import graphiql

    _, http = gateway
    for module in (apidocs, graphiql):  # as before `make install`: no files
        empty = dataclasses.replace(module.ASSETS, directory=tmp_path)
        monkeypatch.setattr(module, "ASSETS", empty)
    for path, file in (("/api-docs", "swagger-ui-bundle.js"), ("/graphql", "graphiql.min.js")):
        page = (await http.get(path, headers={"Accept": "text/html"})).text
        assert "make install" in page and file in page, page
        assert outside_hosts(page) == set(), page


async def test_api_docs_place_an_order_offline_with_try_it_out(gateway, token) -> None:
    from playwright.async_api import Route, async_playwright, expect

    _, http = gateway
    requested: list[str] = []

    async def local_only(route: Route) -> None:
        requested.append(route.request.url)
        if urlsplit(route.request.url).hostname in LOCAL:
            await route.continue_()
        else:
            await route.abort()

    bearer = token("api-docs-user", "orders:place", "orders:read")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            page = await browser.new_page()
            await page.route("**/*", local_only)
            await page.goto(f"{http.base_url}/api-docs")
            operation = page.locator("#operations-orders-placeOrder")
            await expect(operation).to_contain_text("/api/orders/place-order", timeout=20_000)
            await expect(page.locator("#operations-orders-getOrder")).to_be_visible()
            await page.locator(".auth-wrapper .authorize").click()
            await page.locator(".auth-container input").fill(bearer)
            await page.locator(".auth-btn-wrapper .authorize").click()
            await page.locator(".auth-btn-wrapper .btn-done").click()
            await operation.locator(".opblock-summary-control").click()
            await operation.locator(".try-out__btn").click()
            await operation.locator("textarea.body-param__text").fill(ORDER)
            await operation.locator(".btn.execute").click()
            answer = operation.locator(".live-responses-table .response")
            await expect(answer.locator(".response-col_status")).to_have_text("200")
            await expect(answer).to_contain_text('"orderId"')
        finally:
            await browser.close()
    assert f"{http.base_url}/api-docs/assets/swagger-ui-bundle.js" in requested
    assert [url for url in requested if urlsplit(url).hostname not in LOCAL] == []
