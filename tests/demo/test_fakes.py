"""The demo's fakes: a fake WeCom company that is the demo brand's, already connected, and a fake Douyin."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, func, select

from siyu.accounts.models import Account, AccountKind
from siyu.campaigns import service as campaigns
from siyu.customers.models import CustomerIdentity, FollowRelation, FollowStatus, IdentityKind
from siyu.demo import generate_world
from siyu.demo.fakes import running_fakes
from siyu.demo.loader import load_world
from siyu.groups.models import CustomerGroup, GroupMember
from siyu.kit.db import make_sessionmaker, transaction
from siyu.leads import service as leads
from siyu.wecom import credentials

SECRET_KEY = "demo-fakes-test-key"

pytestmark = pytest.mark.slow


def test_the_fake_company_is_the_demo_brand_and_a_mass_message_reaches_its_customers(engine: Engine) -> None:
    summary = load_world(engine, generate_world(customers=400, days=30, seed=5), org_slug="demo-fakes")
    org_id = summary.org_id
    factory = make_sessionmaker(engine)
    with running_fakes(
        engine, org_id, "demo-fakes", SECRET_KEY, "http://127.0.0.1:9", wecom_port=0, douyin_port=0
    ) as fakes:
        state = fakes.wecom.state
        with factory() as db:
            wecom_accounts = set(
                db.scalars(
                    select(Account.external_id).where(
                        Account.org_id == org_id, Account.kind == AccountKind.wecom_member
                    )
                )
            )
            followed = db.execute(
                select(CustomerIdentity.customer_id, CustomerIdentity.value)
                .join(FollowRelation, FollowRelation.customer_id == CustomerIdentity.customer_id)
                .join(Account, Account.id == FollowRelation.account_id)
                .where(
                    CustomerIdentity.org_id == org_id,
                    CustomerIdentity.kind == IdentityKind.wecom_external_userid,
                    FollowRelation.status == FollowStatus.active,
                    Account.kind == AccountKind.wecom_member,
                )
            ).all()
            assert wecom_accounts and set(state.members) == wecom_accounts
            assert {value for _, value in followed} == set(state.contacts)

            # Connected: the stored credentials get a token from the fake, Douyin points at its fake.
            assert credentials.check_connection(db, org_id, SECRET_KEY).ok
            app = leads.douyin_app(db, org_id)
            assert app is not None and app.api_base_url == fakes.douyin.base_url

            # The fake's groups are in siyu too, with their customers as members.
            groups = db.scalar(
                select(func.count()).select_from(CustomerGroup).where(CustomerGroup.org_id == org_id)
            )
            assert groups == fakes.groups == len(state.groups) > 0
            customers_in_groups = db.scalar(
                select(func.count())
                .select_from(GroupMember)
                .join(CustomerGroup, CustomerGroup.id == GroupMember.group_id)
                .where(CustomerGroup.org_id == org_id, GroupMember.customer_id.is_not(None))
            )
            assert customers_in_groups

        # A mass message to demo customers goes through: every sender is a member of the fake company.
        recipients = sorted({cid for cid, _ in followed})[:40]
        with transaction(factory) as db:
            message_id = campaigns.create_message(
                db, org_id, text="周末会员日，全场八折", customer_ids=recipients
            ).id
        with factory() as db:
            client = credentials.client_for(credentials.load_plain(db, org_id, SECRET_KEY))
        result = campaigns.submit(factory, org_id, message_id, client)
        assert result.failed == 0 and result.submitted > 0
        assert {
            c["errcode"] for c in fakes.wecom.state.calls if c["api"] == "externalcontact/add_msg_template"
        } == {0}
