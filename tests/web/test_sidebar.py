"""The sidebar's server side: OAuth2 through the fake WeCom server, the agentConfig signature, what an operator
may see, and the refusals in words."""

from __future__ import annotations

import html
import json
import re

import httpx
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session
from tests.wecom.conftest import AES_KEY, SECRET, TOKEN, Control

from siyu.accounts import service as accounts
from siyu.accounts.models import AccountKind
from siyu.accounts.schemas import AccountIn
from siyu.customers import follows, identities, profiles
from siyu.customers.models import IdentityKind
from siyu.integrations.wecom.fake_jssdk import agent_ticket
from siyu.integrations.wecom.jssdk import agent_config_signature
from siyu.wecom.credentials import save_credentials
from siyu.wecom.schemas import CredentialsIn


def _connect(db: Session, tenant, fake: Control) -> None:  # type: ignore[no-untyped-def]
    save_credentials(
        db,
        tenant.org_id,
        CredentialsIn(
            corp_id=fake.corp_id,
            secret=SECRET,
            token=TOKEN,
            encoding_aes_key=AES_KEY,
            base_url=fake.base_url,  # type: ignore[arg-type]
            agent_id="1000002",
        ),
        "test-secret-key",
    )


def _customer(db: Session, org_id: int, account_id: int, name: str, external: str) -> int:
    customer = profiles.create_customer(db, org_id, {"name": name, "source": "douyin", "intent": "求资料"})
    identities.add_identity(db, org_id, customer.id, IdentityKind.wecom_external_userid, external)
    follows.follow(db, org_id, customer.id, account_id, source="douyin")
    return customer.id


def _sign_in(client: TestClient, slug: str) -> str:
    """Walk WeCom's OAuth2: siyu -> the fake's authorize stand-in -> siyu's callback; returns the page."""
    start = client.get(f"/sidebar/{slug}/", follow_redirects=False)
    assert start.status_code == 302, start.text
    back = httpx.get(start.headers["location"].split("#")[0], follow_redirects=False)
    assert back.status_code == 302
    done = client.get(back.headers["location"].replace("http://testserver", ""), follow_redirects=False)
    assert done.status_code == 303, done.text
    page = client.get(f"/sidebar/{slug}/")
    assert page.status_code == 200
    return page.text


def test_oauth_signs_in_the_member_s_operator_and_the_page_is_signed_for_its_url(
    client: TestClient, db: Session, tenant, fake: Control
) -> None:  # type: ignore[no-untyped-def]
    _connect(db, tenant, fake)
    mine = accounts.create_account(
        db,
        tenant.org_id,
        AccountIn(
            kind=AccountKind.wecom_member, external_id="zhangsan", name="张三", operator_id=tenant.operator_id
        ),
    )
    other = accounts.create_account(
        db, tenant.org_id, AccountIn(kind=AccountKind.wecom_member, external_id="lisi", name="李四")
    )
    own_customer = _customer(db, tenant.org_id, mine.id, "陈小姐", "wmchen")
    _customer(db, tenant.org_id, other.id, "刘先生", "wmliu")
    db.commit()
    httpx.post(f"{fake.base_url}/_control/client", json={"userid": "zhangsan"})
    client.cookies.set("lang", "zh_CN")
    page = _sign_in(client, tenant.slug)

    config = json.loads(html.unescape(re.search(r'data-agent-config="([^"]+)"', page).group(1)))  # type: ignore[union-attr]
    state = fake.server.state  # type: ignore[attr-defined]
    expected = agent_config_signature(
        agent_ticket(state),
        config["nonceStr"],
        config["timestamp"],
        f"http://testserver/sidebar/{tenant.slug}/",
    )
    assert (
        config["signature"] == expected
        and config["agentid"] == "1000002"
        and config["corpid"] == fake.corp_id
    )
    assert f'src="{fake.base_url}/wwopen/js/jwxwork-1.0.0.js"' in page

    card = client.get(f"/sidebar/{tenant.slug}/contact/wmchen")
    assert card.status_code == 200
    assert f'data-customer-id="{own_customer}"' in card.text and "陈小姐" in card.text
    # The script of their intent (求资料 reads as a material request) comes first.
    first_script = re.search(r'<li data-intent="(\w+)" class="suggested">', card.text)
    assert first_script is not None and first_script.group(1) == "material"
    # Another operator's customer is not shown to this one (as if it did not exist).
    assert client.get(f"/sidebar/{tenant.slug}/contact/wmliu").status_code == 404
    assert client.get(f"/sidebar/{tenant.slug}/contact/wmnobody").status_code == 404


def test_refusals_are_in_words(client: TestClient, db: Session, tenant, fake: Control) -> None:  # type: ignore[no-untyped-def]
    client.cookies.set("lang", "zh_CN")
    unconnected = client.get(f"/sidebar/{tenant.slug}/", follow_redirects=False)
    assert unconnected.status_code == 409 and "尚未连接企业微信" in unconnected.text
    _connect(db, tenant, fake)
    db.commit()
    forged = client.get(f"/sidebar/{tenant.slug}/oauth", params={"code": "x", "state": "y"})
    assert forged.status_code == 403 and "重新打开侧边栏" in forged.text
    # A member siyu has no account for.
    fake.server.state.add_member("wangwu", "王五")  # type: ignore[attr-defined]
    httpx.post(f"{fake.base_url}/_control/client", json={"userid": "wangwu"})
    start = client.get(f"/sidebar/{tenant.slug}/", follow_redirects=False)
    back = httpx.get(start.headers["location"].split("#")[0], follow_redirects=False)
    stranger = client.get(back.headers["location"].replace("http://testserver", ""))
    assert stranger.status_code == 403 and "同步企业微信" in stranger.text
    assert client.get("/sidebar/no-such-org/").status_code == 404


def test_group_card_names_staff_by_their_account_not_their_userid(db: Session, tenant) -> None:  # type: ignore[no-untyped-def]
    from siyu.groups.models import CustomerGroup, GroupMember, MemberKind
    from siyu.tenancy.models import Role
    from siyu.tenancy.principal import Principal
    from siyu.web.sidebar_queries import group_card

    owner = accounts.create_account(
        db, tenant.org_id, AccountIn(kind=AccountKind.wecom_member, external_id="wangwei", name="小王")
    )
    buyer = _customer(db, tenant.org_id, owner.id, "李女士", "wm-buyer-1")
    group = CustomerGroup(
        org_id=tenant.org_id, chat_id="wr-group-1", name="宝妈群", owner_account_id=owner.id
    )
    db.add(group)
    db.flush()
    db.add_all(
        [
            GroupMember(
                org_id=tenant.org_id,
                group_id=group.id,
                member_userid="wangwei",
                kind=MemberKind.staff,
                account_id=owner.id,
            ),
            GroupMember(
                org_id=tenant.org_id,
                group_id=group.id,
                member_userid="wm-buyer-1",
                kind=MemberKind.customer,
                customer_id=buyer,
            ),
        ]
    )
    db.flush()
    card = group_card(db, Principal(tenant.org_id, tenant.admin_id, Role.admin), "wr-group-1")
    assert sorted(name for _, name in card.members) == ["小王", "李女士"]
    assert {name for _, _, name in card.changes} == {"小王", "李女士"}
