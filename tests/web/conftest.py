"""What the browser tests share: Debian's Chromium and the app live on a loopback port."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

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
