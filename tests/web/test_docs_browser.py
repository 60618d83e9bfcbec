"""/docs renders offline: Swagger UI comes from the vendored files, and no request leaves the machine."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from siyu.app import STATIC_DIR

from .conftest import CHROMIUM, CHROMIUM_ARGS

VENDOR_DIR = STATIC_DIR / "vendor"


def test_docs_page_names_only_vendored_assets(client: TestClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200
    assets = re.findall(r"""(?:src|href)=["']([^"']+)["']""", page.text)
    assert "/static/vendor/swagger-ui-bundle.js" in assets
    assert all(a.startswith("/static/vendor/") for a in assets), assets
    for asset in assets:
        assert client.get(asset).status_code == 200, asset
    # ReDoc has no vendored copy: its CDN page would be blank offline, so it is not served at all.
    assert client.get("/redoc").status_code == 404


def test_every_vendored_file_keeps_its_license_and_recorded_hash() -> None:
    table = (VENDOR_DIR / "VENDOR.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `([^`]+)` \|[^\n]*\| ([0-9a-f]{64}) \|$", table, flags=re.M)
    listed = {name for name, _ in rows}
    shipped = {p.name for p in VENDOR_DIR.iterdir() if p.suffix in {".js", ".css", ".png"}}
    assert listed == shipped
    for name, digest in rows:
        assert hashlib.sha256((VENDOR_DIR / name).read_bytes()).hexdigest() == digest, name
        licenses = re.search(rf"^\| `{re.escape(name)}` \|[^\n]*\|", table, flags=re.M)
        assert licenses is not None
        for license_file in re.findall(r"`([^`]*(?:LICENSE|NOTICE)[^`]*)`", licenses.group(0)):
            assert (VENDOR_DIR / license_file).is_file(), license_file


@pytest.mark.browser
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is absent: apt-get install chromium")
def test_docs_renders_with_no_network(live_server: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    refused: list[str] = []
    errors: list[str] = []

    def only_loopback(route, request) -> None:  # type: ignore[no-untyped-def]
        # Every other host is refused, as on a machine without internet, whatever this one can reach.
        if request.url.startswith(live_server):
            route.continue_()
        else:
            refused.append(request.url)
            route.abort()

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page()
            page.route("**/*", only_loopback)
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.set_default_timeout(20_000)
            page.goto(f"{live_server}/docs")
            expect(page.locator(".swagger-ui .info .title")).to_contain_text("siyu", timeout=30_000)
            expect(page.locator(".opblock").first).to_be_visible()
            assert page.locator(".opblock").count() > 20
        finally:
            browser.close()
    assert refused == []
    assert errors == []
