"""A small demo brand set up as `siyu demo` sets it up, plus Douyin leads in every state: the data the
console walks (zh_CN text, phone layout) run on. Not a fixture module: tests build it in their own fixtures."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, select

from siyu.accounts.models import Account, AccountKind, AccountStatus
from siyu.channels import adds
from siyu.channels import service as channels
from siyu.channels.models import CodeCarrier
from siyu.channels.schemas import CodeIn, MemberIn, PoolIn
from siyu.demo.loader import LoadSummary, load_world
from siyu.demo.world import generate_world
from siyu.integrations.sandbox.channel_codes import SandboxChannelCodes
from siyu.kit.db import make_sessionmaker, transaction
from siyu.leads import intake
from siyu.leads import service as leads
from siyu.leads.models import Platform
from siyu.tenancy.models import Role
from siyu.tenancy.principal import Principal


@dataclass(frozen=True)
class DemoConsole:
    """The loaded brand, the customer who came through a replied Douyin comment, and a still-open lead."""

    summary: LoadSummary
    converted_customer_id: int
    open_lead_id: int


def build_demo_console(engine: Engine, customers: int = 300) -> DemoConsole:
    """Load the sandbox brand ending this hour, its Douyin pool and code, and three comments: one replied
    and converted through the code, two waiting for a reply."""
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    summary = load_world(engine, generate_world(customers=customers, seed=7, end=end), org_slug="demo")
    org_id = summary.org_id
    sessions = make_sessionmaker(engine)
    with transaction(sessions) as db:
        members = db.scalars(
            select(Account.id).where(
                Account.org_id == org_id,
                Account.kind == AccountKind.wecom_member,
                Account.status == AccountStatus.active,
            )
        ).all()
        pool = channels.create_pool(
            db, org_id, PoolIn(name="抖音评论引流", members=[MemberIn(account_id=a) for a in members])
        )
        code = channels.create_code(
            db,
            org_id,
            CodeIn(
                name="抖音评论区资料领取",
                state="dy_comment",
                channel="douyin",
                campaign="评论区求资料",
                pool_id=pool.id,
                carrier=CodeCarrier.sandbox,
                welcome_message="你好！资料已经准备好了，稍后发给你 😊",
            ),
            SandboxChannelCodes(),
        )
        now = datetime.now(UTC)
        comments = [
            intake.IncomingComment(
                Platform.douyin,
                f"@demo-comment-{n}",
                text,
                now - timedelta(minutes=3 - n),
                item_id="@demoVideo0001",
                item_title="祛痘精华七天实测",
                commenter_id=f"_000demo{n}",
                commenter_name=name,
            )
            for n, (text, name) in enumerate(
                (("求资料", "小鹿"), ("怎么买？链接在哪", "阿杰"), ("多少钱", "晴天"))
            )
        ]
        lead_ids = intake.ingest_comments(db, org_id, comments, now=now - timedelta(minutes=2)).lead_ids
        admin = Principal(org_id, _admin_id(db, summary), Role.admin, name="admin")
        leads.reply_to_lead(db, admin, lead_ids[0], replier=_Replier(), code_id=code.id, origin="console")
        scan = adds.simulate_scan(db, org_id, code, name="小鹿")
    return DemoConsole(summary=summary, converted_customer_id=scan.customer_id, open_lead_id=lead_ids[1])


class _Replier:
    """An in-memory CommentReplier: Douyin itself is not part of these walks."""

    def reply_to_comment(self, item_id: str, comment_id: str, text: str) -> str:
        return f"reply-{comment_id}"

    def send_direct_message(self, to_user_id: str, text: str) -> str:
        return f"dm-{to_user_id}"


def _admin_id(db, summary: LoadSummary) -> int:  # type: ignore[no-untyped-def]
    from siyu.tenancy.models import User

    user_id = db.scalar(select(User.id).where(User.email == summary.admin.email))
    assert user_id is not None
    return int(user_id)
