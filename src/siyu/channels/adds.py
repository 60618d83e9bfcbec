"""One use case: a contact was added through a channel code.

The WeCom add_external_contact callback with a State, the sandbox scan and the Douyin lead path (a
commenter scans the code their reply carried) all end here, after the carrier driver has handed the
contact and its follow relation to ``customers``. In order:

1. the add is booked on the code (``service.record_add``: the ChannelAdd, the pool reservation settled,
   first/last touch, cap alerts) and a customer without a source takes the code's channel as source
   (e.g. taobao_parcel_card, shown in words in the remark: 淘宝包裹卡);
2. ``code_scanned`` is recorded: in-transaction subscribers react to it (``leads`` converts the lead
   that was sent this state, merging the commenter in and filling the intent and its tag);
3. on a new scan, the code's auto-tags go on (``customers.change_tags``) and its remark template, if it
   has one, becomes the remark, in words.

A State that names no siyu code (a contact way made elsewhere, or a lead's own state) still records
``code_scanned`` (without a code id), so the lead it answers converts the same way.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from siyu.channels.models import ChannelCode, CodeCarrier
from siyu.channels.service import SANDBOX_ORIGIN, code_for_state, record_add, route_for_code, welcome_for
from siyu.customers import access, customer_tagging, follows, profiles
from siyu.customers.models import Customer, IdentityKind, Tag
from siyu.customers.remarks import WECOM_REMARK_MAX, source_label
from siyu.customers.resolution import live_customers
from siyu.events.bus import DomainEvent, emit_many
from siyu.events.vocabulary import EventType
from siyu.kit.clock import ensure_utc, utcnow
from siyu.kit.errors import Invalid

#: The origin of what siyu applies by the code's own settings (auto-tags, remark template): not the
#: carrier's news, so write-back sends it to WeCom even when the add itself came from WeCom.
RULE_ORIGIN = "rule"


@dataclass(frozen=True, slots=True)
class CodeAdd:
    """What an add through a code did: the live customer (after any merge it caused), the code, the
    welcome text to send, and whether this add was new (False for a callback delivered again)."""

    customer_id: int
    code_id: int | None
    welcome_text: str
    new: bool


@dataclass(frozen=True, slots=True)
class CodeScan:
    """A customer added ``account_id`` through the code with ``state`` at ``at``; ``code`` is the code the
    caller looked up for the state, if it did."""

    state: str
    customer_id: int
    account_id: int | None
    at: datetime
    code: ChannelCode | None = None


def contact_added_through_code(
    db: Session,
    org_id: int,
    state: str,
    customer_id: int,
    account_id: int | None,
    at: datetime,
    *,
    origin: str,
    code: ChannelCode | None = None,
    welcome_default: str = "",
) -> CodeAdd:
    """A customer added ``account_id`` through the code with ``state`` at ``at`` (see the module doc).
    The caller has recorded the follow itself; ``code`` saves the lookup when the caller has it."""
    scan = CodeScan(state, customer_id, account_id, at, code)
    return contacts_added_through_codes(db, org_id, [scan], origin=origin, welcome_default=welcome_default)[0]


def contacts_added_through_codes(
    db: Session, org_id: int, scans: Sequence[CodeScan], *, origin: str, welcome_default: str = ""
) -> list[CodeAdd]:
    """``contact_added_through_code`` for many adds (of different customers) at once: each state's code
    looked up once, and every ``code_scanned`` recorded in one write, so its subscribers run set-wise."""
    codes: dict[str, ChannelCode | None] = {s.state: s.code for s in scans if s.code is not None}
    for scan in scans:
        if scan.state not in codes:
            codes[scan.state] = code_for_state(db, org_id, scan.state)
    events: list[DomainEvent] = []
    for scan in scans:
        at, code = ensure_utc(scan.at), codes[scan.state]
        if code is not None:
            record_add(db, org_id, code, scan.customer_id, scan.account_id, at)
            customer = access.live_customer(db, org_id, scan.customer_id)
            fill = {} if customer.source else {"source": code.channel}
            if not customer.source_detail and (customer.source or code.channel) == code.channel:
                fill["source_detail"] = code.name[:200]  # the code's own name says which card, which video
            if fill:
                profiles.update_customer(db, org_id, customer.id, fill, origin=origin)
        properties: dict[str, Any] = {"code_id": code.id if code is not None else None, "state": scan.state}
        if origin:
            properties["origin"] = origin
        if scan.account_id is not None:
            properties["account_id"] = scan.account_id
        key = f"code_scanned:{scan.state}:{scan.customer_id}:{scan.account_id}:{at.isoformat()}"[:128]
        events.append(
            DomainEvent(
                org_id, scan.customer_id, EventType.code_scanned, at, properties, scan.account_id, key=key
            )
        )
    new = {ev.key for ev in emit_many(db, events)}
    # A subscriber (lead conversion) may have merged a profile into the commenter's.
    live = live_customers(db, org_id, [s.customer_id for s in scans])
    added = []
    for scan, ev in zip(scans, events, strict=True):
        code, customer_id = codes[scan.state], live.get(scan.customer_id, scan.customer_id)
        if ev.key in new and code is not None:
            _apply_auto_tags(db, org_id, code, customer_id)
            _apply_remark_template(db, org_id, code, access.live_customer(db, org_id, customer_id))
        added.append(
            CodeAdd(
                customer_id=customer_id,
                code_id=code.id if code is not None else None,
                welcome_text=welcome_for(code, welcome_default),
                new=ev.key in new,
            )
        )
    return added


def _apply_auto_tags(db: Session, org_id: int, code: ChannelCode, customer_id: int) -> None:
    # Tags deleted since the code was made are skipped, not an error: the add has happened anyway.
    wanted = list(code.tag_ids or [])
    if not wanted:
        return
    existing = set(db.scalars(select(Tag.id).where(Tag.org_id == org_id, Tag.id.in_(wanted))))
    customer_tagging.change_tags(
        db, org_id, customer_id, add=[t for t in wanted if t in existing], origin=RULE_ORIGIN
    )


def _apply_remark_template(db: Session, org_id: int, code: ChannelCode, customer: Customer) -> None:
    # An operator's own remark wins over the code's template; the composed one gives way to it.
    remark = render_remark(code, customer)
    if remark and not customer.remark_is_manual and remark != customer.remark:
        profiles.update_customer(db, org_id, customer.id, {"remark": remark}, origin=RULE_ORIGIN)


def render_remark(code: ChannelCode, customer: Customer) -> str:
    """The code's remark template filled for ``customer``, in words (the channel as 淘宝包裹卡, not its
    code), within WeCom's 20 characters; "" if the code has no template."""
    if not code.remark_template:
        return ""
    values = {
        "name": customer.name or "",
        "channel": source_label(code.channel),
        "campaign": code.campaign or "",
        "code": code.name,
        "intent": customer.intent or "",
        "mobile_last4": (customer.mobile or "")[-4:],
    }
    return code.remark_template.format_map(values).strip()[:WECOM_REMARK_MAX]


@dataclass(frozen=True)
class SandboxScan:
    """What a simulated scan did: the customer (after any lead merge) and the account routed to."""

    customer_id: int
    account_id: int


def simulate_scan(
    db: Session, org_id: int, code: ChannelCode, *, name: str = "", at: datetime | None = None
) -> SandboxScan:
    """Sandbox carrier only: a person scans the code and adds the routed account.

    The sandbox carrier's part of what WeCom does for a real code: route over the code's pool, create
    the contact (known to the carrier by its own id) and its follow; then the same use case as a WeCom
    callback (`channels.adds.contact_added_through_code`: attribution, code_scanned, lead conversion by
    its subscriber, auto-tags, remark).
    """
    if code.carrier is not CodeCarrier.sandbox:
        raise Invalid(
            "only sandbox codes are scanned from siyu; WeCom reports real scans by callback", field="code_id"
        )
    at = ensure_utc(at) if at is not None else utcnow()
    assignment = route_for_code(db, org_id, code, now=at)
    external_userid = f"sandbox_{code.state}_{time.time_ns():x}"
    customer, _ = profiles.find_or_create_by_identity(
        db,
        org_id,
        IdentityKind.wecom_external_userid,
        external_userid,
        {"name": name, "source": code.channel, "source_detail": code.name[:200]},
        origin=SANDBOX_ORIGIN,
        at=at,
    )
    follows.follow(
        db,
        org_id,
        customer.id,
        assignment.account_id,
        since=at,
        source=code.channel,
        state=code.state,
        origin=SANDBOX_ORIGIN,
    )
    added = contact_added_through_code(
        db, org_id, code.state, customer.id, assignment.account_id, at, origin=SANDBOX_ORIGIN, code=code
    )
    return SandboxScan(customer_id=added.customer_id, account_id=assignment.account_id)
