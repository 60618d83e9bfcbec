"""The demo's fake platforms: a fake WeCom company mirroring the demo brand, and a fake Douyin, both
connected to the demo organization, so every console page (mass messages, sync, group chats, the lead
inbox, the chat sidebar) works against real HTTP without a second terminal.

The fake WeCom's members are the demo's WeCom accounts (their userids are the accounts' external ids),
its contacts the customers those accounts follow (by their WeCom external userid) with the same remarks,
and a few customer groups per member are made from their contacts and recorded in siyu as WeCom would
report them (read back through the real client, applied by the groups service).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC

from sqlalchemy import Engine, select

from siyu.accounts.models import Account, AccountKind, AccountStatus
from siyu.customers.models import (
    Customer,
    CustomerIdentity,
    FollowRelation,
    FollowStatus,
    Gender,
    IdentityKind,
)
from siyu.groups.service import upsert_group
from siyu.integrations.douyin.fake_server import FakeDouyinServer, FakeDouyinState
from siyu.integrations.wecom.client import WeComClient
from siyu.integrations.wecom.fake_server import FakeWeComServer
from siyu.integrations.wecom.fake_state import Contact, FakeWeComState, Follow, GroupChatState
from siyu.kit.db import make_sessionmaker, transaction
from siyu.leads import service as leads
from siyu.wecom.credentials import save_credentials
from siyu.wecom.schemas import CredentialsIn

WECOM_PORT = 8970
DOUYIN_PORT = 8971
#: Customer groups made per WeCom member (from the first members), and customers per group at most.
GROUPS_PER_MEMBER = 2
GROUP_MEMBERS = 30
GROUP_OWNERS = 6
_GENDER = {Gender.male: 1, Gender.female: 2}


@dataclass
class DemoFakes:
    """The running fakes and what the demo tells a newcomer about them."""

    wecom: FakeWeComServer
    douyin: FakeDouyinServer
    members: int
    contacts: int
    groups: int


def wecom_company(engine: Engine, org_id: int) -> FakeWeComState:
    """A fake WeCom company whose members, contacts and follows are the organization's WeCom ones."""
    state = FakeWeComState()
    with make_sessionmaker(engine)() as db:
        accounts = db.execute(
            select(Account.id, Account.external_id, Account.name).where(
                Account.org_id == org_id,
                Account.kind == AccountKind.wecom_member,
                Account.status == AccountStatus.active,
            )
        ).all()
        userid_of = {a.id: a.external_id for a in accounts}
        for a in accounts:
            state.add_member(a.external_id, a.name)
        rows = db.execute(
            select(
                CustomerIdentity.value,
                Customer.name,
                Customer.gender,
                Customer.remark,
                FollowRelation.account_id,
                FollowRelation.since,
                FollowRelation.state,
            )
            .join(Customer, Customer.id == CustomerIdentity.customer_id)
            .join(FollowRelation, FollowRelation.customer_id == Customer.id)
            .where(
                CustomerIdentity.org_id == org_id,
                CustomerIdentity.kind == IdentityKind.wecom_external_userid,
                FollowRelation.status == FollowStatus.active,
                FollowRelation.account_id.in_(userid_of),
            )
        ).all()
    for r in rows:
        if r.value not in state.contacts:
            state.add_contact(
                Contact(external_userid=r.value, name=r.name or "客户", gender=_GENDER.get(r.gender, 0))
            )
        since = r.since if r.since.tzinfo else r.since.replace(tzinfo=UTC)
        state.add_follow(
            r.value,
            Follow(
                userid=userid_of[r.account_id],
                createtime=int(since.timestamp()),
                remark=(r.remark or "")[:20],
                state=r.state or "",
            ),
        )
    _make_groups(state, [a.external_id for a in accounts[:GROUP_OWNERS]])
    return state


def _make_groups(state: FakeWeComState, owners: list[str]) -> None:
    """A few customer groups per owner, of their own customers (the same chat ids on every start)."""
    now = int(state.now())
    for owner in owners:
        contacts = sorted(state.by_user.get(owner, []))
        for g in range(GROUPS_PER_MEMBER):
            picked = contacts[g * GROUP_MEMBERS : (g + 1) * GROUP_MEMBERS]
            if not picked:
                break
            chat_id = "wrdemo" + hashlib.sha1(f"{owner}:{g}".encode()).hexdigest()[:26]
            members = [{"userid": owner, "type": 1, "join_time": now - 30 * 86400, "join_scene": 1}]
            members += [
                {
                    "userid": e,
                    "type": 2,
                    "join_time": now - 86400 * (1 + i % 28),
                    "join_scene": 3,
                    "invitor": {"userid": owner},
                }
                for i, e in enumerate(picked)
            ]
            state.groups[chat_id] = GroupChatState(
                chat_id=chat_id,
                name=f"{state.members[owner].name}的{('新客福利群', '老客回购群')[g % 2]}",
                owner=owner,
                create_time=now - 30 * 86400,
                notice="每周三晚 8 点群内直播答疑",
                members=members,
            )


def connect(
    engine: Engine, org_id: int, secret_key: str, wecom: FakeWeComServer, douyin: FakeDouyinServer
) -> int:
    """Store the organization's WeCom and Douyin credentials pointing at the fakes, and record the fake's
    customer groups in siyu as a sync would; returns the number of groups."""
    state = wecom.state
    client = WeComClient(state.corp_id, state.secret, base_url=wecom.base_url)
    with transaction(make_sessionmaker(engine)) as db:
        save_credentials(
            db,
            org_id,
            CredentialsIn(
                corp_id=state.corp_id,
                secret=state.secret,
                token=state.callback_token,
                encoding_aes_key=state.callback_aes_key,
                base_url=wecom.base_url,
            ),
            secret_key,
        )
        dy = douyin.state
        leads.configure_douyin(
            db,
            org_id,
            secret_key,
            client_key=dy.client_key,
            client_secret=dy.client_secret,
            account_open_id=dy.account_open_id,
            access_token=dy.access_token,
            api_base_url=douyin.base_url,
        )
        for chat_id in sorted(state.groups):
            upsert_group(db, org_id, client.get_group(chat_id))
    return len(state.groups)


@contextmanager
def running_fakes(
    engine: Engine,
    org_id: int,
    org_slug: str,
    secret_key: str,
    siyu_url: str,
    *,
    wecom_port: int = WECOM_PORT,
    douyin_port: int = DOUYIN_PORT,
) -> Iterator[DemoFakes]:
    """Start both fakes (on their usual ports by default), connected to the organization; stop them on exit."""
    state = wecom_company(engine, org_id)
    state.callback = {
        "url": f"{siyu_url}/hooks/wecom/{org_slug}",
        "token": state.callback_token,
        "encoding_aes_key": state.callback_aes_key,
    }
    douyin_state = FakeDouyinState(webhook_url=f"{siyu_url}/hooks/douyin/{org_slug}")
    with (
        FakeWeComServer(state, port=wecom_port) as wecom,
        FakeDouyinServer(douyin_state, port=douyin_port) as dy,
    ):
        groups = connect(engine, org_id, secret_key, wecom, dy)
        # The fake WeCom client starts with a chat open, so the sidebar shows someone at once.
        owner = next((m for m in state.members if state.by_user.get(m)), "")
        if owner:
            state.client_view = {"userid": owner, "external_userid": sorted(state.by_user[owner])[0]}
        yield DemoFakes(wecom, dy, len(state.members), len(state.contacts), groups)
