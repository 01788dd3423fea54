"""/docs (Swagger UI) and /redoc render from the gateway alone: their assets come from the
installed package, and a browser that may reach nothing but the gateway shows the operations
(issue 18)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from playwright.sync_api import Browser, Route, sync_playwright

from gateway.api.app import create_app
from gateway.settings import Settings
from tests.gateway.harness import GatewayProcess
from tests.gateway.test_dashboard_browser import CHROMIUM, CHROMIUM_ARGS


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    class _Stub:
        settings = Settings()

    with TestClient(create_app(_Stub())) as c:  # type: ignore[arg-type]
        yield c


class TestDocsPages:
    @pytest.mark.parametrize("page", ["/docs", "/redoc"])
    def test_pages_name_no_other_host(self, client: TestClient, page: str) -> None:
        r = client.get(page)
        assert r.status_code == 200
        html = r.text
        assert "/docs/assets/" in html
        for outside in ("cdn.jsdelivr.net", "fonts.googleapis.com", "tiangolo.com", "unpkg"):
            assert outside not in html
        assert "http://" not in html and "https://" not in html
        assert "default-src 'self'" in r.headers["content-security-policy"]

    @pytest.mark.parametrize(
        ("asset", "media_type"),
        [
            ("swagger-ui-bundle.js", "text/javascript"),
            ("swagger-ui.css", "text/css"),
            ("redoc.standalone.js", "text/javascript"),
            ("favicon.png", "image/png"),
        ],
    )
    def test_assets_are_served(self, client: TestClient, asset: str, media_type: str) -> None:
        r = client.get(f"/docs/assets/{asset}")
        assert r.status_code == 200
        assert r.headers["content-type"].startswith(media_type)
        assert "max-age" in r.headers["cache-control"]
        assert len(r.content) > 1000

    @pytest.mark.parametrize("name", ["core.py", "..%2F__init__.py", "LICENSE", "x.js"])
    def test_nothing_else_of_the_package_is_served(self, client: TestClient, name: str) -> None:
        assert client.get(f"/docs/assets/{name}").status_code == 404


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    gw = GatewayProcess(data_dir=Path(tmp_path_factory.mktemp("docs")) / "var")
    gw.start(EDI834_SFTP_ENABLED="false", EDI834_WORKER_ENABLED="false")
    yield gw
    gw.kill()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One Chromium for both pages (a launch each was ~1 s of CPU); each page its own context."""
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


class TestDocsInChromium:
    """Every request the page makes to any other host is refused and recorded (ReDoc's logo
    from its CDN is stopped by the page's Content-Security-Policy before that)."""

    def _render(
        self, gw: GatewayProcess, browser: Browser, page_path: str, ready: str
    ) -> tuple[int, list[str]]:
        outside: list[str] = []

        def only_the_gateway(route: Route) -> None:
            if route.request.url.startswith(gw.url + "/"):
                route.continue_()
            else:
                outside.append(route.request.url)
                route.abort()

        page = browser.new_page()  # in a context of its own (no cache, no cookies shared)
        try:
            page.route("**/*", only_the_gateway)
            page.goto(gw.url + page_path)
            page.wait_for_selector(ready, timeout=30_000)
            count = page.locator(ready).count()
        finally:
            page.context.close()
        return count, outside

    def test_swagger_ui_lists_the_operations(
        self, served: GatewayProcess, browser: Browser
    ) -> None:
        count, outside = self._render(served, browser, "/docs", ".opblock")
        assert count >= 5
        assert outside == []

    def test_redoc_lists_the_operations(self, served: GatewayProcess, browser: Browser) -> None:
        count, outside = self._render(served, browser, "/redoc", "[data-section-id^='operation/']")
        assert count >= 5
        assert outside == []
