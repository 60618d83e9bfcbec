"""Imports every table so Alembic and create-time tooling see the whole schema."""

from siyu.accounts.models import Account, CustomerTransfer
from siyu.analytics.models import ChannelCost
from siyu.audit.models import AuditEntry
from siyu.campaigns.models import MassGroupSend, MassMessage, MassSend, WeComOrgSettings
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
    ConsentRecord,
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
from siyu.kit.db import Base
from siyu.leads.models import Comment, DouyinApp, Lead, ReplyTemplate, WebhookReceipt
from siyu.tenancy.models import ApiToken, Organization, User, WebSession
from siyu.wecom.models import InboxItem, WeComCredential, WeComSyncRun, WelcomeSend

__all__ = [
    "Account",
    "AccountAlert",
    "AccountDayLoad",
    "ApiToken",
    "AuditEntry",
    "Base",
    "ChannelAdd",
    "ChannelCode",
    "ChannelCost",
    "Comment",
    "ConsentRecord",
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
    "MassGroupSend",
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
