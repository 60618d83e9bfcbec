"""WeCom contacts applied to customers and follow relations: the change_external_contact callback one at a
time (``contact_event``), and a contact snapshot (``apply_contact``, ``apply_follow``, ``end_follow``)
shared with the batch driver. Adds through a channel code hand over to ``channels.adds``; the welcome
message is sent at most once per WelcomeCode. Flushes, never commits; idempotent.

Ordering. Callbacks can arrive late, twice or out of order. Every follow relation keeps ``since`` and
``ended_at``; news older than what a relation already records is ignored:
  * an end (del_external_contact / del_follow_user) for a relation that does not exist yet creates it
    already ended at the event time, so a late add_external_contact older than that end stays ended;
  * an add whose time is not after the recorded end does not re-activate the relation;
  * an end older than the relation's ``since`` (the pair became contacts again later) is ignored.
Ties go to the end. When a client is available, contact events re-read the customer from WeCom
(externalcontact/get, following the cursor past 500 followers), which is the truth at processing time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy.orm import Session

from siyu.accounts.departures import apply_transfer_fail
from siyu.accounts.service import ensure_wecom_account, wecom_account_id
from siyu.channels import health as channel_health
from siyu.channels import service as channels
from siyu.channels.adds import contact_added_through_code
from siyu.customers.follows import end_follow as customers_end_follow
from siyu.customers.follows import follow, follow_relation, relation_of
from siyu.customers.models import Customer, FollowRelation, Gender, IdentityKind
from siyu.customers.profiles import find_or_create_by_identities, find_or_create_by_identity
from siyu.integrations.channel import ContactDetail, ExternalContact, FollowInfo
from siyu.integrations.wecom import WeComClient, WeComError
from siyu.kit.bulk import insert_ignore
from siyu.kit.clock import ensure_utc, utcnow
from siyu.wecom.models import WelcomeSend
from siyu.wecom.sync_contacts import ORIGIN
from siyu.wecom.tag_events import apply_tags, ensure_tags, read_tags, upsert_corp_tags

#: WeCom accepts a WelcomeCode for 20 seconds after the add_external_contact event.
WELCOME_WINDOW_SECONDS = 20
#: errcodes meaning "this person is not (or no longer) a contact": fall back to what the event says.
_GONE = frozenset({84061, 40096})
#: WeCom's gender codes as siyu's (0, unknown, is left out).
GENDERS = {1: Gender.male, 2: Gender.female}


def source_from_state(state: str | None) -> str | None:
    """The customer source recorded for a channel code's State (empty state: no source)."""
    state = (state or "").strip()
    return state[:60] or None


def event_time(event: Mapping[str, Any]) -> datetime:
    """When the callback says it happened (its CreateTime), or now when it carries none."""
    seconds = int(event.get("create_time") or 0)
    return datetime.fromtimestamp(seconds, UTC) if seconds > 0 else utcnow()


def _customer_for(
    db: Session, org_id: int, contact: ExternalContact, source: str | None
) -> tuple[Customer, bool]:
    """The contact's profile (found by external userid or unionid, merging on a shared unionid), and
    whether it is new."""
    defaults: dict[str, Any] = {"name": contact.name[:120]}
    if source:
        defaults["source"] = source
    if contact.gender in GENDERS:
        # Defaults fill empty fields but never the gender: it applies to a new profile only.
        defaults["gender"] = GENDERS[contact.gender]
    identities = [(IdentityKind.wecom_external_userid, contact.external_userid)]
    if contact.unionid:
        # A shared unionid is the same WeChat user: the profile holding it merges with this one (audited).
        identities.append((IdentityKind.unionid, contact.unionid))
    reason = f"shared unionid from WeCom contact {contact.external_userid}"
    return find_or_create_by_identities(db, org_id, identities, defaults, reason=reason, origin=ORIGIN)


def apply_follow(
    db: Session,
    org_id: int,
    customer: Customer,
    info: FollowInfo,
    *,
    at: datetime | None = None,
    new_customer: bool = False,
) -> FollowRelation | None:
    """Make the member in ``info`` follow the customer unless a later end is already recorded (then None).
    ``new_customer``: the customer was created in this transaction, so it has no relation to look up."""
    account_id = wecom_account_id(db, org_id, info.userid)
    since = ensure_utc(info.created_at or at or utcnow())
    state = (info.state or "")[:30] or None
    source = source_from_state(info.state)
    if customer.merged_into_id is not None:  # follow() resolves the survivor and looks its relation up
        return follow(
            db, org_id, customer.id, account_id, since=since, source=source, state=state, origin=ORIGIN
        )
    # The live customer, an account of the organization and the relation are in hand: no lookup twice.
    # A stale add (the relation ended at or after it) is ignored there.
    rel = None if new_customer else relation_of(db, customer.id, account_id)
    return follow_relation(
        db, org_id, customer, account_id, rel, since=since, source=source, state=state, origin=ORIGIN
    )


EndedBy = Literal["customer", "staff", "transfer"]
#: del_external_contact's Source when an in-service hand-over (在职继承) moved the customer to another member.
DELETE_BY_TRANSFER = "DELETE_BY_TRANSFER"


def ended_by(event: Mapping[str, Any]) -> EndedBy:
    """Who ended a follow, from a del_external_contact / del_follow_user callback.

    del_follow_user: the customer deleted the member. del_external_contact: the member deleted the customer,
    unless its Source is DELETE_BY_TRANSFER: then WeCom ended the handing-over member's relation because a
    hand-over completed, which is no deletion by anyone (no staff-deletion alert)."""
    if event.get("change_type") == "del_follow_user":
        return "customer"
    return "transfer" if event.get("source") == DELETE_BY_TRANSFER else "staff"


def end_follow(
    db: Session,
    org_id: int,
    external_userid: str,
    userid: str,
    *,
    by: EndedBy,
    at: datetime,
) -> FollowRelation | None:
    """Record that a follow ended at ``at``; an end older than the relation's start is ignored (None)."""
    customer, _ = find_or_create_by_identity(
        db, org_id, IdentityKind.wecom_external_userid, external_userid, {}, origin=ORIGIN, at=at
    )
    account = ensure_wecom_account(db, org_id, userid)
    return customers_end_follow(db, org_id, customer.id, account.id, by=by, at=at, origin=ORIGIN)


def apply_contact(
    db: Session,
    org_id: int,
    contact: ExternalContact,
    follow_infos: Sequence[FollowInfo],
    *,
    source_state: str | None = None,
    replace_tags: bool = False,
    at: datetime | None = None,
) -> Customer:
    """Create or update the customer for a WeCom contact, with a follow relation per follow info and
    their tags. The source is ``source_state`` or the first follow's State (only if none is set yet)."""
    return _apply_contact(
        db, org_id, contact, follow_infos, source_state=source_state, replace_tags=replace_tags, at=at
    )[0]


def _apply_contact(
    db: Session,
    org_id: int,
    contact: ExternalContact,
    follow_infos: Sequence[FollowInfo],
    *,
    source_state: str | None,
    replace_tags: bool,
    at: datetime | None,
) -> tuple[Customer, list[str]]:
    """``apply_contact``, also returning the WeCom tag ids not mirrored locally (left off the customer)."""
    source = source_from_state(source_state) or next(
        (source_from_state(f.state) for f in follow_infos if f.state), None
    )
    customer, created = _customer_for(db, org_id, contact, source)
    seen: set[str] = set()
    for info in follow_infos:
        if info.userid:
            # A second follow info of the same member must see the relation the first one wrote.
            apply_follow(db, org_id, customer, info, at=at, new_customer=created and info.userid not in seen)
            seen.add(info.userid)
    tag_ids = [t for f in follow_infos for t in f.tag_ids]
    unknown: list[str] = []
    if tag_ids or replace_tags:
        unknown = apply_tags(db, org_id, customer.id, tag_ids, replace=replace_tags, new_customer=created)
    db.flush()
    return customer, unknown


def send_welcome(
    db: Session,
    org_id: int,
    client: WeComClient,
    event: Mapping[str, Any],
    text: str,
    *,
    now: datetime | None = None,
) -> str:
    """Send the welcome message for an add_external_contact's WelcomeCode, at most once per code.

    The reservation row is written (and flushed) before the call; a second attempt finds it and sends
    nothing. Codes older than WeCom's 20 s window are recorded as expired without a call."""
    code = str(event.get("welcome_code") or "")
    if not code or not text.strip():
        return "no welcome"
    stmt = (
        insert_ignore(db, WelcomeSend.__table__, ["org_id", "welcome_code"])
        .values(
            org_id=org_id,
            welcome_code=code[:128],
            external_userid=str(event.get("external_user_id") or "")[:128],
            userid=str(event.get("user_id") or "")[:64],
            status="reserved",
            error="",
            created_at=utcnow(),
        )
        .returning(WelcomeSend.__table__.c.id)
    )
    send_id = db.scalar(stmt)
    if send_id is None:
        return "welcome already handled"
    row = db.get(WelcomeSend, send_id)
    assert row is not None
    age = ((now or utcnow()) - event_time(event)).total_seconds()
    if age > WELCOME_WINDOW_SECONDS:
        row.status, row.error = (
            "expired",
            f"welcome code was {age:.0f} s old (WeCom accepts {WELCOME_WINDOW_SECONDS} s)",
        )
        db.flush()
        return "welcome expired"
    try:
        client.post("externalcontact/send_welcome_msg", {"welcome_code": code, "text": {"content": text}})
    except WeComError as exc:
        row.status, row.error = "failed", str(exc)[:500]
        db.flush()
        return "welcome failed"
    row.status = "sent"
    db.flush()
    return "welcome sent"


#: The contact changes whose processing reads the customer from WeCom (externalcontact/get).
CONTACT_READING_CHANGES = frozenset(
    {"add_external_contact", "edit_external_contact", "add_half_external_contact"}
)


def read_contact(client: WeComClient | None, eid: str) -> tuple[ContactDetail | None, str]:
    """The contact as WeCom has it now (None without a client, or when WeCom says it is no contact) and
    the outcome to report; WeCom's other errors propagate."""
    if client is None:
        return None, "contact applied"
    try:
        return client.get_contact_all_followers(eid), "contact applied"
    except WeComError as exc:
        if exc.errcode not in _GONE:
            raise
        return None, "contact gone in WeCom; applied from the event"


def contact_event(
    db: Session, org_id: int, event: Mapping[str, Any], client: WeComClient | None, welcome_text: str
) -> str:
    """Apply one change_external_contact callback: end, hand-over failure, or (re-read) add / edit."""
    change = event.get("change_type")
    eid, userid, at = (
        str(event.get("external_user_id") or ""),
        str(event.get("user_id") or ""),
        event_time(event),
    )
    if not eid:
        return "ignored: no ExternalUserID"
    if change in ("del_external_contact", "del_follow_user"):
        if not userid:
            return "ignored: no UserID"
        by = ended_by(event)
        rel = end_follow(db, org_id, eid, userid, by=by, at=at)
        if rel is None:
            return "stale end ignored"
        if by == "transfer":
            return "follow ended by a hand-over"
        channel_health.note_deletion(db, org_id, rel.account_id, by=by, at=at)
        return "follow ended"
    if change == "transfer_fail":
        # UserID is the receiving member; settle the matching waiting hand-over now (polling is the fallback).
        return apply_transfer_fail(db, org_id, userid, eid, str(event.get("fail_reason") or ""), at)
    if change not in CONTACT_READING_CHANGES:
        return f"ignored change type {change!r}"
    state = str(event.get("state") or "")
    # A State of one of siyu's codes gives the source as the code's channel (taobao_parcel_card), not the
    # raw state; another State (a contact way made elsewhere) is the source itself.
    code = channels.code_for_state(db, org_id, state) if change == "add_external_contact" else None
    source_state = (code.channel if code is not None else state) or None
    detail, outcome = read_contact(client, eid)
    if detail is not None:
        follows = list(detail.follow_users)
        if change == "add_half_external_contact":
            ensure_tags(db, org_id, client, [t for f in follows for t in f.tag_ids])
            follows = []  # the member has not accepted yet: a customer, not yet a contact
        replace = change == "edit_external_contact"
        customer, unknown = _apply_contact(
            db, org_id, detail.contact, follows, source_state=source_state, replace_tags=replace, at=at
        )
        if unknown and client is not None:
            # Tags created in WeCom since the last sync: mirror them, then put them on the customer too
            # (apply_tags is idempotent; the first pass already applied the known ones).
            upsert_corp_tags(db, org_id, read_tags(client, unknown))
            apply_tags(db, org_id, customer.id, [t for f in follows for t in f.tag_ids], replace=replace)
    else:
        follows = (
            []
            if change == "add_half_external_contact" or not userid
            else [FollowInfo(userid=userid, created_at=at, state=state)]
        )
        customer = apply_contact(
            db,
            org_id,
            ExternalContact(external_userid=eid, name=""),
            follows,
            source_state=source_state,
            at=at,
        )
    customer_id = customer.id
    if change == "add_external_contact" and state:
        # The State names the channel code the customer scanned: the one add-through-a-code use case
        # (attribution, code_scanned and the lead it converts, auto-tags, remark) and its welcome text.
        added = contact_added_through_code(
            db,
            org_id,
            state,
            customer.id,
            wecom_account_id(db, org_id, userid) if userid else None,
            at,
            origin=ORIGIN,
            code=code,
            welcome_default=welcome_text,
        )
        customer_id, welcome_text = added.customer_id, added.welcome_text
        if customer_id != customer.id:
            outcome += f"; merged into customer {customer_id} (a lead's commenter)"
    if change == "add_external_contact" and client is not None and event.get("welcome_code"):
        outcome += "; " + send_welcome(db, org_id, client, event, welcome_text)
    return f"{outcome} (customer {customer_id})"
