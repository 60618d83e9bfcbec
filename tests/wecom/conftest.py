"""Fixtures: a fake WeCom server, a WeCom client of it, the siyu app served on a loopback port, tasks run inline;
helpers shared by the WeCom tests.

A module whose tests seed their own WeCom members sets `pytestmark = pytest.mark.own_members`: its `fake` then
starts empty instead of with zhangsan and lisi."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session
from wechatpy.session.memorystorage import MemoryStorage

from siyu.accounts.models import Account
from siyu.customers.models import CustomerIdentity, FollowRelation, FollowStatus, IdentityKind
from siyu.integrations.wecom.client import WeComClient
from siyu.integrations.wecom.fake_server import FakeWeComServer
from siyu.kit.loopback import LoopbackServer
from siyu.wecom.credentials import save_credentials
from siyu.wecom.schemas import CredentialsIn

SECRET = "fake-customer-contact-secret"
TOKEN = "siyu-callback-token"
AES_KEY = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"
WELCOME = "欢迎！回复 1 领取资料"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "own_members: the test seeds its own WeCom members (`fake` starts empty)"
    )


class Control:
    """Thin HTTP client of the fake's /_control API."""

    def __init__(self, server: FakeWeComServer) -> None:
        self.server = server
        self.base_url = server.base_url
        self.http = httpx.Client(base_url=server.base_url, timeout=30.0)
        self.corp_id = ""

    def post(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """POST to /_control/{path}; fail the test on a non-200 answer."""
        res = self.http.post(f"/_control/{path}", json=body or {})
        assert res.status_code == 200, res.text
        return res.json()  # type: ignore[no-any-return]

    def calls(self, api: str) -> list[dict[str, Any]]:
        """The API calls the fake received for one endpoint."""
        res = self.http.get("/_control/calls", params={"api": api})
        return res.json()["calls"]  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def wecom_server() -> Iterator[FakeWeComServer]:
    server = FakeWeComServer().start()
    yield server
    server.stop()


@pytest.fixture
def plain_fake(wecom_server: FakeWeComServer) -> Iterator[Control]:
    """The fake, reset: no members, contacts or groups yet."""
    control = Control(wecom_server)
    control.corp_id = control.post("reset", {"secret": SECRET})["corp_id"]
    yield control
    control.http.close()


@pytest.fixture
def fake(plain_fake: Control, request: pytest.FixtureRequest) -> Control:
    """The fake with two members, zhangsan and lisi (none for tests marked `own_members`)."""
    if request.node.get_closest_marker("own_members") is None:
        plain_fake.post(
            "members",
            {"members": [{"userid": "zhangsan", "name": "张三"}, {"userid": "lisi", "name": "李四"}]},
        )
    return plain_fake


@pytest.fixture
def wecom(fake: Control) -> WeComClient:
    """siyu's WeCom client of the fake (tokens kept in memory, retries without sleeping)."""
    return WeComClient(
        fake.corp_id, SECRET, base_url=fake.base_url, session=MemoryStorage(), sleep=lambda s: None
    )


def customer_of(db: Session, org: int, external_userid: str) -> int:
    """The id of the siyu customer who has this WeCom external userid."""
    return db.scalar(
        select(CustomerIdentity.customer_id).where(  # type: ignore[return-value]
            CustomerIdentity.org_id == org,
            CustomerIdentity.kind == IdentityKind.wecom_external_userid,
            CustomerIdentity.value == external_userid,
        )
    )


def active_follows(db: Session, org_id: int) -> set[tuple[str, str]]:
    """(external userid, member userid) of every active follow of the organization."""
    rows = db.execute(
        select(CustomerIdentity.value, Account.external_id)
        .join(FollowRelation, FollowRelation.customer_id == CustomerIdentity.customer_id)
        .join(Account, Account.id == FollowRelation.account_id)
        .where(
            FollowRelation.org_id == org_id,
            FollowRelation.status == FollowStatus.active,
            CustomerIdentity.kind == IdentityKind.wecom_external_userid,
        )
    ).all()
    return {(a, b) for a, b in rows}


def console_login(client: Any, email: str) -> str:
    """Log the test client into the console (password123); returns the CSRF token its pages carry."""
    form = client.get("/login").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', form)
    assert token
    res = client.post(
        "/login",
        data={"email": email, "password": "password123", "csrf_token": token.group(1), "next": "/"},
        follow_redirects=False,
    )
    assert res.status_code == 303, res.text
    meta = re.search(r'<meta name="csrf-token" content="([^"]+)">', client.get("/").text)
    assert meta
    return meta.group(1)


class CrashAfterCall:
    """A client whose process 'dies' right after WeCom accepted the task (before siyu recorded it)."""

    def __init__(self, real: WeComClient) -> None:
        self.real = real

    def submit_mass_message(self, *args: Any, **kwargs: Any) -> Any:
        """Reach WeCom, then die."""
        self.real.submit_mass_message(*args, **kwargs)
        raise RuntimeError("worker killed")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


class CrashBeforeCall(CrashAfterCall):
    """A client whose process dies just before the task reaches WeCom."""

    def submit_mass_message(self, *args: Any, **kwargs: Any) -> Any:
        """Die without reaching WeCom."""
        raise RuntimeError("worker killed")


@dataclass
class Wired:
    """A tenant with WeCom credentials pointing at the fake, the live app and its callback URL."""

    org_id: int
    slug: str
    app_url: str
    callback_url: str
    fake: Control


@pytest.fixture
def wired(app, db: Session, tenant, fake: Control, inline_worker) -> Iterator[Wired]:  # type: ignore[no-untyped-def]
    """Credentials saved for the tenant, the app live on loopback, the fake calling it back."""
    save_credentials(
        db,
        tenant.org_id,
        CredentialsIn(
            corp_id=fake.corp_id,
            secret=SECRET,
            token=TOKEN,
            encoding_aes_key=AES_KEY,
            base_url=fake.base_url,
            welcome_text=WELCOME,
        ),  # type: ignore[arg-type]
        app.state.settings.resolved_secret_key(),
    )
    db.commit()
    with LoopbackServer(app, name="siyu") as live:
        callback_url = f"{live.base_url}/hooks/wecom/{tenant.slug}"
        fake.post("config", {"callback": {"url": callback_url, "token": TOKEN, "encoding_aes_key": AES_KEY}})
        yield Wired(tenant.org_id, tenant.slug, live.base_url, callback_url, fake)
