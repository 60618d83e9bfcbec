"""What the browser tests share: Debian's Chromium and the app live on a loopback port; the WeCom page tests
share the fake WeCom server fixtures of tests/wecom."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from tests.wecom.conftest import (  # noqa: F401  (fixtures and the own_members marker, re-exported)
    fake,
    plain_fake,
    pytest_configure,
    wecom,
    wecom_server,
    wired,
)

from siyu.kit.loopback import LoopbackServer

CHROMIUM = "/usr/bin/chromium"
# Without the background-networking flags Chromium keeps dialling out, which this closed network refuses.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# Set SIYU_SCREENSHOTS=/some/dir to keep screenshots of each page while developing (never committed).
SCREENSHOT_DIR = os.environ.get("SIYU_SCREENSHOTS", "")
BROWSER_MARKS = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} is absent: apt-get install chromium"
    ),
]


@pytest.fixture
def live_server(app) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """The app served by uvicorn on a free loopback port in a background thread."""
    with LoopbackServer(app, name="siyu") as server:
        yield server.base_url
