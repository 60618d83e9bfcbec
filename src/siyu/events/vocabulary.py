"""The event vocabulary: every type the event log holds, what it means and which properties it carries.

One list for the whole product. Real activity (WeCom callbacks and syncs, the Douyin webhook, imports,
the console and the API) and the demo brand write these same types, so funnels, retention and the
stage rules read one language. ``docs/events.md`` is this table in prose; a test keeps the two equal.

Types are snake_case ``<thing>_<past tense>``. Events posted through ``POST /api/v1/events`` may use
types outside this list (a brand's own, e.g. ``coupon_claimed``); the stage rules and subscribers only
react to the types below.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class EventType(enum.StrEnum):
    """Every event type siyu itself writes."""

    customer_added = "customer_added"
    customer_merged = "customer_merged"
    profile_changed = "profile_changed"
    follow_started = "follow_started"
    follow_ended = "follow_ended"
    tag_added = "tag_added"
    tag_removed = "tag_removed"
    remark_changed = "remark_changed"
    stage_changed = "stage_changed"
    note_added = "note_added"
    lead_commented = "lead_commented"
    lead_replied = "lead_replied"
    lead_converted = "lead_converted"
    code_scanned = "code_scanned"
    welcome_sent = "welcome_sent"
    message_sent = "message_sent"
    message_failed = "message_failed"
    message_received = "message_received"
    link_clicked = "link_clicked"
    live_viewed = "live_viewed"
    survey_answered = "survey_answered"
    group_joined = "group_joined"
    group_left = "group_left"
    order_paid = "order_paid"
    order_refunded = "order_refunded"
    transfer_requested = "transfer_requested"
    transfer_succeeded = "transfer_succeeded"
    transfer_refused = "transfer_refused"
    transfer_expired = "transfer_expired"
    consent_recorded = "consent_recorded"
    customer_erased = "customer_erased"


@dataclass(frozen=True)
class EventSpec:
    """What one event type means and the properties it carries (name -> meaning)."""

    meaning: str
    properties: dict[str, str] = field(default_factory=dict)


_ORIGIN = "where the change came from: console, api, wecom, douyin, import, rule, sandbox, demo"

VOCABULARY: dict[EventType, EventSpec] = {
    EventType.customer_added: EventSpec(
        "A profile was created: the first time the brand knows this person.",
        {
            "source": "source code (e.g. douyin_comment, taobao_parcel_card)",
            "code": "channel-code state, if any",
            "referrer_customer_id": "the customer who referred them, for referrals",
            "origin": _ORIGIN,
        },
    ),
    EventType.customer_merged: EventSpec(
        "Another profile was merged into this one (same person); its events now belong here.",
        {"merged_id": "id of the profile merged away", "reason": "why they are the same person"},
    ),
    EventType.profile_changed: EventSpec(
        "Profile fields changed (name, mobile, gender, region, source, intent, consent).",
        {"fields": "names of the fields that changed (never their values)", "origin": _ORIGIN},
    ),
    EventType.follow_started: EventSpec(
        "An account (WeCom member, personal WeChat) became a contact of the customer.",
        {
            "account_id": "the account",
            "source": "source code of the add",
            "state": "channel-code state",
            "origin": _ORIGIN,
        },
    ),
    EventType.follow_ended: EventSpec(
        "A contact between an account and the customer ended.",
        {
            "account_id": "the account",
            "by": "customer (the customer deleted the member), staff (the member deleted the customer) "
            "or transfer (handed over to another member)",
            "origin": _ORIGIN,
        },
    ),
    EventType.tag_added: EventSpec(
        "A tag was put on the customer.",
        {
            "tag_id": "siyu tag id",
            "tag": "tag name",
            "external_id": "WeCom tag id, if mirrored",
            "origin": _ORIGIN,
        },
    ),
    EventType.tag_removed: EventSpec(
        "A tag was taken off the customer.",
        {
            "tag_id": "siyu tag id",
            "tag": "tag name",
            "external_id": "WeCom tag id, if mirrored",
            "origin": _ORIGIN,
        },
    ),
    EventType.remark_changed: EventSpec(
        "The customer's remark (Name+Source+Intent+Mobile, at most 20 characters) changed.",
        {
            "remark": "the new remark",
            "previous": "the old remark",
            "manual": "typed by an operator (true) or composed by the rule (false)",
            "origin": _ORIGIN,
        },
    ),
    EventType.stage_changed: EventSpec(
        "The lifecycle stage moved (new, contacted, engaged, converted, repeat, lost).",
        {
            "from": "previous stage",
            "to": "new stage",
            "reason": "the rule or the operator's reason",
            "manual": "set by hand (true) or by the rules (false)",
            "actor_id": "user who set it by hand",
        },
    ),
    EventType.note_added: EventSpec("An operator kept a note on the customer.", {"note_id": "the note"}),
    EventType.lead_commented: EventSpec(
        "The customer commented under the brand's content on a public platform.",
        {
            "lead_id": "lead opened for it, if any",
            "comment_id": "the platform's comment id",
            "platform": "douyin, ...",
            "intent": "classified intent",
            "confidence": "classifier confidence 0..1",
            "origin": _ORIGIN,
        },
    ),
    EventType.lead_replied: EventSpec(
        "siyu replied to the customer's comment with a channel code (an outbound touch).",
        {
            "lead_id": "the lead",
            "comment_id": "the platform's comment id",
            "platform": "douyin, ...",
            "code_state": "state of the code sent",
            "seconds_to_reply": "speed of reply",
            "origin": _ORIGIN,
        },
    ),
    EventType.lead_converted: EventSpec(
        "The commenter added an account through the code they were sent.",
        {"lead_id": "the lead", "state": "the code's state", "origin": _ORIGIN},
    ),
    EventType.code_scanned: EventSpec(
        "The customer added an account through a channel code.",
        {
            "code_id": "the channel code (none for a state that is not one of siyu's codes)",
            "state": "its state",
            "account_id": "the account routed to",
            "origin": _ORIGIN,
        },
    ),
    EventType.welcome_sent: EventSpec(
        "The welcome message was sent on add (an outbound touch).", {"account_id": "the sending account"}
    ),
    EventType.message_sent: EventSpec(
        "A message reached the customer (one event per recipient; an outbound touch).",
        {
            "campaign_id": "mass message or SOP, if any",
            "account_id": "the sending account",
            "kind": "text, ...",
            "group_id": "siyu id of the customer group it was posted in, for a message to groups",
            "chat_id": "WeCom chat id of that group",
        },
    ),
    EventType.message_failed: EventSpec(
        "A message to the customer failed (one event per recipient).",
        {
            "campaign_id": "mass message, if any",
            "account_id": "the account that was to send it, if one was chosen",
            "reason": "why, in words",
            "group_id": "siyu id of the customer group it was to be posted in, for a message to groups",
            "chat_id": "WeCom chat id of that group",
        },
    ),
    EventType.message_received: EventSpec(
        "The customer wrote to the brand (an interaction).", {"account_id": "the account written to"}
    ),
    EventType.link_clicked: EventSpec(
        "The customer opened a link the brand sent (an interaction).", {"url": "link"}
    ),
    EventType.live_viewed: EventSpec(
        "The customer watched a live session (an interaction).",
        {"session_id": "live session", "seconds": "stay"},
    ),
    EventType.survey_answered: EventSpec(
        "The customer answered a survey or checked in (an interaction).", {"survey_id": "survey"}
    ),
    EventType.group_joined: EventSpec(
        "The customer joined a customer group (an interaction).",
        {"group_id": "siyu group id", "chat_id": "WeCom chat id", "scene": "how they joined"},
    ),
    EventType.group_left: EventSpec(
        "The customer left or was removed from a customer group.",
        {"group_id": "siyu group id", "chat_id": "WeCom chat id", "scene": "how they left"},
    ),
    EventType.order_paid: EventSpec(
        "The customer paid an order.",
        {"order_id": "siyu order id", "platform": "taobao, douyin, ...", "amount_fen": "amount in fen"},
    ),
    EventType.order_refunded: EventSpec(
        "Money of an order went back to the customer.",
        {
            "order_id": "siyu order id",
            "refunded_fen": "total refunded so far, in fen",
            "amount_fen": "the order's amount, in fen",
        },
    ),
    EventType.transfer_requested: EventSpec(
        "The customer is being handed over from one member to another (24 hours to refuse).",
        {
            "from_account_id": "leaving member",
            "to_account_id": "receiving member",
            "transfer_id": "the hand-over",
        },
    ),
    EventType.transfer_succeeded: EventSpec(
        "The hand-over completed.",
        {
            "from_account_id": "leaving member",
            "to_account_id": "receiving member",
            "transfer_id": "the hand-over",
        },
    ),
    EventType.transfer_refused: EventSpec(
        "The hand-over failed (the customer refused, or the receiver was full).",
        {"transfer_id": "the hand-over", "reason": "why, in words"},
    ),
    EventType.transfer_expired: EventSpec(
        "WeCom reported no outcome of the hand-over within 72 hours: siyu stopped waiting (the next sync "
        "shows which member the customer is with).",
        {"transfer_id": "the hand-over", "reason": "why, in words"},
    ),
    EventType.consent_recorded: EventSpec(
        "The customer gave or withdrew consent (the latest record of a scope sets the profile's flag).",
        {
            "scope": "marketing or analytics",
            "granted": "given (true) or withdrawn (false)",
            "consent_source": "how it was given: form, chat, phone, in_person, import, unspecified",
            "origin": _ORIGIN,
        },
    ),
    EventType.customer_erased: EventSpec(
        "The customer's personal data was erased on request; the profile stays, de-identified, for the "
        "books, and earlier events keep only their type, time, account and amounts.",
        {
            "actor_id": "the admin who erased it",
            "merged_ids": "profiles merged into it, erased with it",
            "origin": _ORIGIN,
        },
    ),
}

#: A first one of these moves a customer from new to contacted: the brand reached out.
OUTBOUND: frozenset[str] = frozenset({EventType.welcome_sent, EventType.message_sent, EventType.lead_replied})
#: A first one of these moves a customer to engaged: the customer answered or took part.
ENGAGING: frozenset[str] = frozenset(
    {
        EventType.message_received,
        EventType.link_clicked,
        EventType.live_viewed,
        EventType.survey_answered,
        EventType.group_joined,
    }
)
