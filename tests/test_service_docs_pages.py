"""/docs and /redoc: served by the service itself, so they work where the browser has no internet access."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
from service_fixtures import make_client, uvicorn_server

from service import Settings, create_app

ASSET = re.compile(r"""(?:src|href|url)\s*[:=]\s*["']([^"']+)["']""")


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_a_docs_page_loads_everything_from_the_service(page: str) -> None:
    """FastAPI's own pages took Swagger UI and ReDoc from cdn.jsdelivr.net: blank without internet access."""
    with make_client(create_app(Settings())) as client:
        html = client.get(page)
        assert html.status_code == 200
        assets = ASSET.findall(html.text)
        assert "/openapi.json" in assets and len(assets) >= 3, assets
        elsewhere = [a for a in assets if not a.startswith("/") or a.startswith("//")]
        assert not elsewhere, f"{page} loads {elsewhere} from another host"
        for asset in assets:
            response = client.get(asset)
            assert response.status_code == 200 and len(response.content) > 1000, asset


def _browser() -> str | None:
    return next((found for name in ("chromium", "chromium-browser", "google-chrome")
                 if (found := shutil.which(name))), None)


@pytest.mark.skipif(_browser() is None, reason="no Chromium on this machine (Debian: apt-get install chromium)")
def test_swagger_ui_shows_every_route_in_a_browser_without_internet_access() -> None:
    """A headless Chromium whose every request outside 127.0.0.1 goes to a closed proxy port renders /docs:
    the page's script must come from the service and read our OpenAPI 3.1 document."""
    browser = _browser()
    assert browser is not None
    app = create_app(Settings())
    with uvicorn_server(app) as port:
        dom = subprocess.run(
            [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--proxy-server=http://127.0.0.1:9", "--virtual-time-budget=15000", "--dump-dom",
             f"http://127.0.0.1:{port}/docs"],
            capture_output=True, text=True, timeout=120, check=False).stdout
    paths = set(re.findall(r'data-path="([^"]+)"', dom))
    assert {"/v1/score", "/v1/rank", "/v1/gaps", "/v1/model", "/health/ready"} <= paths, dom[-2000:]
