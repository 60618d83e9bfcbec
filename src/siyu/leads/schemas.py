"""API shapes of the lead inbox."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from siyu.leads.service import InboxRow
from siyu.leads.sla import SlaFigures


class DouyinAppIn(BaseModel):
    """The organization's Douyin open-platform app and the enterprise account replies are sent as."""

    model_config = ConfigDict(extra="forbid")

    client_key: str = Field(min_length=1, max_length=64)
    client_secret: str = Field(min_length=1, max_length=200)
    account_open_id: str = Field(default="", max_length=128)
    access_token: str = Field(default="", max_length=300, description="The account's user access token.")
    api_base_url: str = Field(default="", max_length=200, description="Empty: https://open.douyin.com.")


class DouyinAppOut(BaseModel):
    """The stored app; secrets are never returned."""

    client_key: str
    account_open_id: str
    has_access_token: bool
    api_base_url: str
    webhook_path: str


class CommentOut(BaseModel):
    """A stored comment with its classification."""

    id: int
    platform: str
    external_id: str
    item_id: str
    item_title: str
    commenter_id: str
    commenter_name: str
    content: str
    commented_at: datetime
    received_at: datetime
    intent: str
    confidence: float
    matched_rule: str | None
    corrected_intent: str | None
    customer_id: int | None


class LeadOut(BaseModel):
    """A lead in the inbox."""

    id: int
    status: str
    intent: str
    customer_id: int | None
    created_at: datetime
    reply_due_at: datetime
    seconds_left: float = Field(description="Until the deadline; negative when overdue.")
    replied_at: datetime | None
    reply_text: str
    code_state: str | None
    code_url: str
    converted_at: datetime | None
    suggested_reply: str
    comment: CommentOut

    @classmethod
    def of(cls, row: InboxRow, suggestion: str, now: datetime) -> LeadOut:
        """Build from an inbox row."""
        lead, c = row.lead, row.comment
        return cls(
            id=lead.id,
            status=lead.status.value,
            intent=lead.intent,
            customer_id=lead.customer_id,
            created_at=lead.created_at,
            reply_due_at=lead.reply_due_at,
            seconds_left=round((lead.reply_due_at - now).total_seconds(), 3),
            replied_at=lead.replied_at,
            reply_text=lead.reply_text,
            code_state=lead.code_state,
            code_url=lead.code_url,
            converted_at=lead.converted_at,
            suggested_reply=suggestion,
            comment=CommentOut(
                id=c.id,
                platform=c.platform.value,
                external_id=c.external_id,
                item_id=c.item_id,
                item_title=c.item_title,
                commenter_id=c.commenter_id,
                commenter_name=c.commenter_name,
                content=c.content,
                commented_at=c.commented_at,
                received_at=c.received_at,
                intent=c.intent,
                confidence=c.confidence,
                matched_rule=c.matched_rule,
                corrected_intent=c.corrected_intent,
                customer_id=c.customer_id,
            ),
        )


class ReplyIn(BaseModel):
    """Reply to a lead; omitted text uses the intent's template, omitted code asks the channels domain."""

    model_config = ConfigDict(extra="forbid")

    text: str | None = Field(
        default=None,
        max_length=1000,
        description="{code} becomes the code link (once) and {name} the commenter; the link is added if missing.",
    )
    code_url: str | None = Field(default=None, max_length=500)
    code_state: str | None = Field(default=None, max_length=60)
    code_id: int | None = Field(
        default=None, ge=1, le=2**63 - 1, description="A channel code of the organization to give."
    )


class CorrectionIn(BaseModel):
    """An operator's intent correction."""

    model_config = ConfigDict(extra="forbid")

    intent: str


class TemplateIn(BaseModel):
    """A reply template of one intent; {code} and {name} are filled in."""

    model_config = ConfigDict(extra="forbid")

    intent: str
    body: str = Field(min_length=1, max_length=500)


class SlaOut(BaseModel):
    """SLA figures over a period."""

    start: datetime
    end: datetime
    leads: int
    replied: int
    median_seconds_to_reply: float | None
    due: int
    replied_within_deadline: int
    within_deadline_share: float | None
    added: int
    add_rate: float | None
    ordered: int
    order_rate: float | None

    @classmethod
    def of(cls, figures: SlaFigures, start: datetime, end: datetime) -> SlaOut:
        """Build from computed figures."""
        return cls(
            start=start,
            end=end,
            leads=figures.leads,
            replied=figures.replied,
            median_seconds_to_reply=figures.median_seconds_to_reply,
            due=figures.due,
            replied_within_deadline=figures.replied_within_deadline,
            within_deadline_share=figures.within_deadline_share,
            added=figures.added,
            add_rate=figures.add_rate,
            ordered=figures.ordered,
            order_rate=figures.order_rate,
        )
