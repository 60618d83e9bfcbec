"""Imports every table so Alembic and create-time tooling see the whole schema."""

from siyu.accounts.models import Account
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
from siyu.events.models import Event
from siyu.identity.models import ApiToken, Organization, User, WebSession
from siyu.kit.db import Base

__all__ = [
    "Account",
    "ApiToken",
    "Base",
    "Customer",
    "CustomerIdentity",
    "CustomerTag",
    "Event",
    "FollowRelation",
    "MergeAudit",
    "Note",
    "Order",
    "OrderItem",
    "Organization",
    "Tag",
    "TagGroup",
    "User",
    "WebSession",
]
