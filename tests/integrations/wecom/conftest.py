"""Fixtures: one fake WeCom server per module over real HTTP, reset before each test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from wechatpy.session.memorystorage import MemoryStorage

from siyu.integrations.wecom.client import WeComClient
from siyu.integrations.wecom.fake_server import FakeWeComServer

SECRET = "fake-customer-contact-secret"


class Control:
    """Thin HTTP client of the fake's /_control API (tests arrange the world only through it)."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.http = httpx.Client(base_url=base_url, timeout=30.0)
        self.corp_id = ""

    def post(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """POST to /_control/{path}; fail the test on a non-200 answer."""
        res = self.http.post(f"/_control/{path}", json=body or {})
        assert res.status_code == 200, res.text
        return res.json()  # type: ignore[no-any-return]

    def get(self, path: str, **params: str) -> dict[str, Any]:
        """GET /_control/{path}."""
        res = self.http.get(f"/_control/{path}", params=params)
        assert res.status_code == 200, res.text
        return res.json()  # type: ignore[no-any-return]

    def calls(self, api: str) -> list[dict[str, Any]]:
        """The fake's log of calls to one API."""
        return self.get("calls", api=api)["calls"]


@pytest.fixture(scope="module")
def wecom_server() -> Iterator[FakeWeComServer]:
    server = FakeWeComServer().start()
    yield server
    server.stop()


@pytest.fixture
def fake(wecom_server: FakeWeComServer) -> Iterator[Control]:
    control = Control(wecom_server.base_url)
    control.corp_id = control.post("reset")["corp_id"]
    yield control
    control.http.close()


class Sleeps(list[float]):
    """Records back-off waits instead of sleeping, so tests stay fast yet see every delay."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def make_wecom(fake: Control) -> Callable[..., WeComClient]:
    """Build adapters bound to the fake, each with its own token cache unless one is passed."""

    def factory(**kwargs: Any) -> WeComClient:
        kwargs.setdefault("session", MemoryStorage())
        kwargs.setdefault("sleep", Sleeps())
        return WeComClient(
            kwargs.pop("corp_id", fake.corp_id),
            kwargs.pop("secret", SECRET),
            base_url=fake.base_url,
            **kwargs,
        )

    return factory


@pytest.fixture
def wecom(make_wecom: Callable[..., WeComClient]) -> WeComClient:
    return make_wecom()
