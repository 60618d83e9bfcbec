"""Imports every table so Alembic and create-time tooling see the whole schema."""

from siyu.accounts.models import Account
from siyu.analytics.models import ChannelCost
from siyu.channels.models import (
    AccountAlert,
    AccountDayLoad,
    ChannelAdd,
    ChannelCode,
    CustomerTouch,
    PoolMember,
    RoutingPool,
)
from siyu.commerce.models import Order, OrderItem
from siyu.customers.models import (
    Customer,
    CustomerIdentity,
    CustomerTag,
    FollowRelation,
    MergeAudit,
    Note,
    Tag,
    TagGroup,
)
from siyu.events.models import Event, OutboxItem
from siyu.groups.models import CustomerGroup, GroupMember
from siyu.identity.models import ApiToken, Organization, User, WebSession
from siyu.kit.db import Base
from siyu.leads.models import Comment, DouyinApp, Lead, ReplyTemplate, WebhookReceipt
from siyu.wecom.models import InboxItem, WeComCredential, WelcomeSend
from siyu.wecom.models_ops import (
    CustomerTransfer,
    MassMessage,
    MassSend,
    WeComOrgSettings,
    WeComSyncRun,
)

__all__ = [
    "Account",
    "AccountAlert",
    "AccountDayLoad",
    "ApiToken",
    "Base",
    "ChannelAdd",
    "ChannelCode",
    "ChannelCost",
    "Comment",
    "Customer",
    "CustomerGroup",
    "CustomerIdentity",
    "CustomerTag",
    "CustomerTouch",
    "CustomerTransfer",
    "DouyinApp",
    "Event",
    "FollowRelation",
    "GroupMember",
    "InboxItem",
    "Lead",
    "MassMessage",
    "MassSend",
    "MergeAudit",
    "Note",
    "Order",
    "OrderItem",
    "Organization",
    "OutboxItem",
    "PoolMember",
    "ReplyTemplate",
    "RoutingPool",
    "Tag",
    "TagGroup",
    "User",
    "WeComCredential",
    "WeComOrgSettings",
    "WeComSyncRun",
    "WebSession",
    "WebhookReceipt",
    "WelcomeSend",
]
