"""Applying WeCom data to customers, follow relations, groups and tags.

Two kinds of callers share these functions: the callback drain (one event at a time, ``apply_event``, or
contact events of different contacts set-wise, ``apply_contact_batch``, through the customers bulk writer)
and the reconciliation sync (whole snapshots: ``apply_contact``, ``apply_tags``, ``upsert_corp_tags``,
``upsert_group``). All of them flush and never commit, and all are idempotent: applying the same data
twice leaves the same rows.

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

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from siyu.accounts.departures import apply_transfer_fail
from siyu.channels import health as channel_health
from siyu.channels import service as channels
from siyu.channels.adds import CodeScan, contact_added_through_code, contacts_added_through_codes
from siyu.customers.batch import FollowEnd, end_follows_at, start_follows
from siyu.customers.bulk import FollowRecord, ProfileRecord, apply_profiles
from siyu.customers.models import (
    Customer,
    CustomerTag,
    FollowRelation,
    Gender,
    IdentityKind,
    Tag,
)
from siyu.customers.service import (
    change_tags,
    find_or_create_by_identities,
    find_or_create_by_identity,
    follow,
    follow_relation,
    relation_of,
)
from siyu.customers.service import end_follow as customers_end_follow
from siyu.customers.tagging import mirror_tag_library, unmirror
from siyu.groups.service import (
    apply_member_change,
    dismiss_group,
    ensure_group,
    ensure_wecom_account,
    upsert_group,
    wecom_account_id,
    wecom_account_ids,
)
from siyu.integrations.channel import ContactDetail, CorpTagGroup, ExternalContact, FollowInfo
from siyu.integrations.wecom import WeComClient, WeComError
from siyu.kit.bulk import insert_ignore, one_of
from siyu.kit.clock import ensure_utc, utcnow
from siyu.wecom.models import WelcomeSend
from siyu.wecom.sync_contacts import mirrored_groups

__all__ = [
    "WELCOME_WINDOW_SECONDS",
    "apply_contact",
    "apply_event",
    "apply_follow",
    "apply_tags",
    "delete_corp_tag",
    "end_follow",
    "ensure_wecom_account",
    "send_welcome",
    "source_from_state",
    "upsert_corp_tags",
    "upsert_group",
]

#: The ``origin`` of changes applied from WeCom: write-back to WeCom skips them.
ORIGIN = "wecom"
#: WeCom accepts a WelcomeCode for 20 seconds after the add_external_contact event.
WELCOME_WINDOW_SECONDS = 20
#: errcodes meaning "this person is not (or no longer) a contact": fall back to what the event says.
_GONE = frozenset({84061, 40096})
_GENDER = {1: Gender.male, 2: Gender.female}


def source_from_state(state: str | None) -> str | None:
    """The customer source recorded for a channel code's State (empty state: no source)."""
    state = (state or "").strip()
    return state[:60] or None


def _event_time(event: Mapping[str, Any]) -> datetime:
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
    if contact.gender in _GENDER:
        # Defaults fill empty fields but never the gender: it applies to a new profile only.
        defaults["gender"] = _GENDER[contact.gender]
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


# Built once: each contact callback runs these, and building a select costs more than running it on SQLite.
_TAGS_BY_EXTERNAL_ID = select(Tag.external_id, Tag.id).where(
    Tag.org_id == bindparam("org_id"), Tag.external_id.in_(bindparam("external_ids", expanding=True))
)
_CUSTOMER_TAGS = (
    select(CustomerTag.tag_id, Tag.external_id)
    .outerjoin(Tag, Tag.id == CustomerTag.tag_id)
    .where(CustomerTag.customer_id == bindparam("customer_id"))
)


def apply_tags(
    db: Session,
    org_id: int,
    customer_id: int,
    external_tag_ids: Iterable[str],
    *,
    replace: bool = False,
    new_customer: bool = False,
) -> list[str]:
    """Put the WeCom tags (by WeCom tag id) on the customer; with ``replace``, WeCom tags not listed are
    removed (tags created in siyu, without an external id, are never touched). Returns unknown tag ids.
    ``new_customer``: the customer was created in this transaction, so it has no tags to look up."""
    wanted_ext = {t for t in external_tag_ids if t}
    known: dict[str, int] = (
        {
            str(ext): int(tag_id)
            for ext, tag_id in db.execute(
                _TAGS_BY_EXTERNAL_ID, {"org_id": org_id, "external_ids": sorted(wanted_ext)}
            )
        }
        if wanted_ext
        else {}
    )
    wanted = set(known.values())
    have = [] if new_customer else db.execute(_CUSTOMER_TAGS, {"customer_id": customer_id}).all()
    have_wecom = {int(tag_id) for tag_id, ext in have if ext is not None}
    have_all = {int(tag_id) for tag_id, _ in have}
    gone = have_wecom - wanted if replace else set()
    if gone or wanted - have_all:
        # origin=wecom: these changes came from WeCom, so nothing writes them back there.
        change_tags(db, org_id, customer_id, add=wanted - have_all, remove=gone, origin=ORIGIN)
    return sorted(wanted_ext - set(known))


def upsert_corp_tags(db: Session, org_id: int, groups: Sequence[CorpTagGroup]) -> int:
    """Mirror WeCom's tag library (or the part a callback read) through ``customers.tagging``: created
    or updated by external id, then name; deleted ones removed. Returns how many tags were written."""
    return len(mirror_tag_library(db, org_id, mirrored_groups(groups), complete=False, origin=ORIGIN).tags)


def read_tags(client: WeComClient, tag_ids: Sequence[str]) -> list[CorpTagGroup]:
    """The tag groups holding these WeCom tags: from the corp library, then, for the ids it does not hold,
    from the rule-group tags (规则组标签), which WeCom keeps out of the corp library."""
    groups = client.list_corp_tags(tag_ids=tag_ids)
    found = {t.id for g in groups for t in g.tags}
    rest = [t for t in tag_ids if t not in found]
    return groups + (client.list_strategy_tags(tag_ids=rest) if rest else [])


def delete_corp_tag(db: Session, org_id: int, external_id: str, tag_type: str) -> bool:
    """Remove the local tag (``tag_type`` "tag") or tag group ("tag_group") mirroring a WeCom one, through
    ``customers.tagging`` (its customers lose it, with tag_removed). False when none mirrors it."""
    ids = {"group_ids": [external_id]} if tag_type == "tag_group" else {"tag_ids": [external_id]}
    report = unmirror(db, org_id, **ids, origin=ORIGIN)
    return sum(report.counts.values()) > 0


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
    if contact.name and not customer.name:
        customer.name = contact.name[:120]
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


# --- events -------------------------------------------------------------------------------------------


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
    age = ((now or utcnow()) - _event_time(event)).total_seconds()
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


def _ensure_tags(
    db: Session, org_id: int, client: WeComClient | None, external_tag_ids: Sequence[str]
) -> None:
    """Fetch WeCom tags not mirrored yet (a tag created since the last sync) before they are applied."""
    wanted = {t for t in external_tag_ids if t}
    if client is None or not wanted:
        return
    rows = db.execute(_TAGS_BY_EXTERNAL_ID, {"org_id": org_id, "external_ids": sorted(wanted)})
    known = {str(ext) for ext, _ in rows}
    if wanted - known:
        upsert_corp_tags(db, org_id, read_tags(client, sorted(wanted - known)))


#: The contact changes whose processing reads the customer from WeCom (externalcontact/get).
CONTACT_READING_CHANGES = frozenset(
    {"add_external_contact", "edit_external_contact", "add_half_external_contact"}
)


def _read_contact(client: WeComClient | None, eid: str) -> tuple[ContactDetail | None, str]:
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


def _contact_event(
    db: Session, org_id: int, event: Mapping[str, Any], client: WeComClient | None, welcome_text: str
) -> str:
    change = event.get("change_type")
    eid, userid, at = (
        str(event.get("external_user_id") or ""),
        str(event.get("user_id") or ""),
        _event_time(event),
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
    detail, outcome = _read_contact(client, eid)
    if detail is not None:
        follows = list(detail.follow_users)
        if change == "add_half_external_contact":
            _ensure_tags(db, org_id, client, [t for f in follows for t in f.tag_ids])
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


#: The group-change callback's JoinScene (0 invited by a member, directly or by link; 3 scanned the group's
#: QR code) in groupchat/get's terms (1 invited directly, 2 invited by link, 3 QR code), the one meaning the
#: join_scene column holds: the callback cannot tell a direct invitation from a link, so 0 becomes 1.
CALLBACK_JOIN_SCENES = {0: 1, 3: 3}


def _chat_event(db: Session, org_id: int, event: Mapping[str, Any], client: WeComClient | None) -> str:
    chat_id, change, at = str(event.get("chat_id") or ""), event.get("change_type"), _event_time(event)
    if not chat_id:
        return "ignored: no ChatId"
    if change == "dismiss":
        dismiss_group(db, org_id, chat_id, at=at)
        return "group dismissed"
    detail = event.get("update_detail")
    # Without MemChangeList WeCom did not say who joined or left: read the group (below) instead of
    # recording a change of nobody.
    if change == "update" and detail in ("add_member", "del_member") and event.get("mem_change_list"):
        joined = detail == "add_member"
        if joined:
            raw = event.get("join_scene")
            scene = CALLBACK_JOIN_SCENES.get(raw, raw) if raw is not None else None
        else:
            scene = event.get("quit_scene")
        group = apply_member_change(
            db, org_id, chat_id, list(event.get("mem_change_list") or []), joined=joined, at=at, scene=scene
        )
        return f"{'join' if joined else 'quit'} of {len(event.get('mem_change_list') or [])} applied ({group.member_count} members)"
    if client is None:
        ensure_group(db, org_id, chat_id)
        return "group recorded (no client to read details)"
    try:
        chat = client.get_group(chat_id)
    except WeComError as exc:
        if exc.errcode != 40050:
            raise
        return "group not visible in WeCom"
    group = upsert_group(db, org_id, chat, at=at)
    return f"group {change} applied ({group.member_count} members)"


def _tag_event(db: Session, org_id: int, event: Mapping[str, Any], client: WeComClient | None) -> str:
    """A change of the tag library. With a StrategyId the tag or group is a rule-group tag (规则组标签):
    WeCom answers it from get_strategy_tag_list, not from the corp library, and both share one mirror."""
    change, ext_id, tag_type = (
        event.get("change_type"),
        str(event.get("tag_id") or ""),
        str(event.get("tag_type") or "tag"),
    )
    raw_strategy = str(event.get("strategy_id") or "").strip()
    strategy = int(raw_strategy) if raw_strategy.isdigit() and int(raw_strategy) > 0 else None
    if change == "delete":
        return "tag deleted" if delete_corp_tag(db, org_id, ext_id, tag_type) else "tag already absent"
    if client is None:
        return "tag change needs a client; left to the periodic sync"
    ids: dict[str, list[str]] = {}
    if change != "shuffle" and ext_id:
        ids = {"group_ids": [ext_id]} if tag_type == "tag_group" else {"tag_ids": [ext_id]}
    if strategy is not None:
        groups = client.list_strategy_tags(strategy_id=strategy, **ids)
    else:
        groups = client.list_corp_tags(**ids)
    return f"{upsert_corp_tags(db, org_id, groups)} tags written"


def apply_event(
    db: Session,
    org_id: int,
    event: Mapping[str, Any],
    *,
    client: WeComClient | None = None,
    welcome_text: str = "",
) -> str:
    """Apply one decrypted callback (a ``CallbackEvent`` as stored in the inbox); returns what was done."""
    kind = event.get("event")
    if kind == "change_external_contact":
        return _contact_event(db, org_id, event, client, welcome_text)
    if kind == "change_external_chat":
        return _chat_event(db, org_id, event, client)
    if kind == "change_external_tag":
        return _tag_event(db, org_id, event, client)
    return f"ignored event {kind!r}"


# --- batches of contact events ------------------------------------------------------------------------

#: Contact changes a drain applies a batch at a time (``apply_contact_batch``). An add carrying a
#: WelcomeCode sends a message (an effect a failed batch could not take back) and stays per row, as do
#: add_half (it may mirror tags first), hand-over failures, group and tag library changes.
BATCH_CHANGES = frozenset(
    {"add_external_contact", "edit_external_contact", "del_external_contact", "del_follow_user"}
)


def batchable(event: Mapping[str, Any]) -> bool:
    """Whether ``apply_contact_batch`` can apply this callback with others."""
    return (
        event.get("event") == "change_external_contact"
        and event.get("change_type") in BATCH_CHANGES
        and bool(event.get("external_user_id"))
        and not event.get("welcome_code")
    )


def apply_contact_batch(
    db: Session,
    org_id: int,
    events: Sequence[Mapping[str, Any]],
    clients: Sequence[WeComClient | None],
    *,
    welcome_text: str = "",
) -> list[str]:
    """Apply ``batchable`` callbacks of different contacts set-wise, as ``apply_event`` would one by one;
    ``clients[i]`` reads event i's contact (a prefetching client). Returns the outcome of each."""
    outcomes = [""] * len(events)
    profiles: list[ProfileRecord] = []
    holders: list[int] = []  # the event of each profile record
    follows: list[list[FollowInfo]] = []  # per profile record; empty for ends
    edits: set[int] = set()  # profile records whose WeCom tags replace the mirrored ones
    ends: list[tuple[int, str, EndedBy, datetime]] = []  # (record, userid, by, at)
    codes: dict[str, Any] = {}
    for i, event in enumerate(events):
        change, eid = event.get("change_type"), str(event.get("external_user_id") or "")
        userid, at = str(event.get("user_id") or ""), _event_time(event)
        if change in ("del_external_contact", "del_follow_user"):
            if not userid:
                outcomes[i] = "ignored: no UserID"
                continue
            ends.append((len(profiles), userid, ended_by(event), at))
            profiles.append(
                ProfileRecord([(IdentityKind.wecom_external_userid.value, eid)], added_at=at, row=i)
            )
            holders.append(i)
            follows.append([])
            continue
        state = str(event.get("state") or "")
        if change == "add_external_contact" and state not in codes:
            codes[state] = channels.code_for_state(db, org_id, state)
        code = codes.get(state) if change == "add_external_contact" else None
        source_state = (code.channel if code is not None else state) or None
        detail, outcomes[i] = _read_contact(clients[i], eid)
        if detail is not None:
            contact, infos = detail.contact, [f for f in detail.follow_users if f.userid]
            if change == "edit_external_contact":
                edits.add(len(profiles))
        else:
            contact = ExternalContact(external_userid=eid, name="")
            infos = [FollowInfo(userid=userid, created_at=at, state=state)] if userid else []
        source = source_from_state(source_state) or next(
            (source_from_state(f.state) for f in infos if f.state), None
        )
        profiles.append(_profile_record(contact, source, i))
        holders.append(i)
        follows.append(infos)
    tags = _mirrored_tags(db, org_id, clients, [t for infos in follows for f in infos for t in f.tag_ids])
    for rec, infos in zip(profiles, follows, strict=True):
        rec.tags = sorted({tags[t] for f in infos for t in f.tag_ids if t in tags})
    done = apply_profiles(db, org_id, profiles, origin=ORIGIN, reason="WeCom callbacks")
    accounts = wecom_account_ids(
        db,
        org_id,
        [u for _, u, _, _ in ends]
        + [f.userid for infos in follows for f in infos]
        + [
            str(e.get("user_id"))
            for e in events
            if e.get("user_id") and e.get("change_type") == "add_external_contact"
        ],
    )
    account = accounts.__getitem__

    starts = [
        FollowRecord(
            done.customer_ids[r],
            account(f.userid),
            ensure_utc(f.created_at or _event_time(events[holders[r]])),
            source_from_state(f.state),
            (f.state or "")[:30] or None,
        )
        for r, infos in enumerate(follows)
        for f in infos
    ]
    start_follows(db, org_id, starts, origin=ORIGIN)
    _replace_mirrored_tags(db, org_id, {done.customer_ids[r]: set(profiles[r].tags) for r in sorted(edits)})
    ended = end_follows_at(
        db,
        org_id,
        [FollowEnd(done.customer_ids[r], account(u), by, at) for r, u, by, at in ends],
        origin=ORIGIN,
    )
    channel_health.note_deletions(
        db,
        org_id,
        [
            (account(u), by, at)
            for (_, u, by, at), went in zip(ends, ended, strict=True)
            if went and by != "transfer"  # a hand-over is no deletion
        ],
    )
    for (r, _, by, _), went in zip(ends, ended, strict=True):
        done_text = "follow ended by a hand-over" if by == "transfer" else "follow ended"
        outcomes[holders[r]] = done_text if went else "stale end ignored"
    ending = {r for r, _, _, _ in ends}
    contact_rows = [r for r in range(len(holders)) if r not in ending]
    # Adds with a State: the add-through-a-code use case, all of the batch's at once.
    scans = [
        (r, str(events[holders[r]].get("state") or ""), str(events[holders[r]].get("user_id") or ""))
        for r in contact_rows
        if events[holders[r]].get("change_type") == "add_external_contact" and events[holders[r]].get("state")
    ]
    added = contacts_added_through_codes(
        db,
        org_id,
        [
            CodeScan(
                state,
                done.customer_ids[r],
                account(userid) if userid else None,
                _event_time(events[holders[r]]),
                codes.get(state),
            )
            for r, state, userid in scans
        ],
        origin=ORIGIN,
        welcome_default=welcome_text,
    )
    final = {r: done.customer_ids[r] for r in contact_rows}
    for (r, _, _), add in zip(scans, added, strict=True):
        if add.customer_id != final[r]:
            outcomes[holders[r]] += f"; merged into customer {add.customer_id} (a lead's commenter)"
            final[r] = add.customer_id
    for r in contact_rows:
        outcomes[holders[r]] += f" (customer {final[r]})"
    return outcomes


def _profile_record(contact: ExternalContact, source: str | None, row: int) -> ProfileRecord:
    """``_customer_for``'s lookup and fill as a bulk record: name and source fill blanks, the gender only a
    new profile; a shared unionid merges."""
    identities = [(IdentityKind.wecom_external_userid.value, contact.external_userid)]
    if contact.unionid:
        identities.append((IdentityKind.unionid.value, contact.unionid))
    defaults: dict[str, Any] = {"name": contact.name[:120]}
    if source:
        defaults["source"] = source
    created = {"gender": _GENDER[contact.gender]} if contact.gender in _GENDER else {}
    return ProfileRecord(identities, defaults=defaults, created_with=created, row=row)


def _mirrored_tags(
    db: Session, org_id: int, clients: Sequence[WeComClient | None], external_ids: Iterable[str]
) -> dict[str, int]:
    """Local tag id of each WeCom tag id; tags created in WeCom since the last sync are mirrored first."""
    wanted = sorted({t for t in external_ids if t})
    if not wanted:
        return {}

    def known() -> dict[str, int]:
        rows = db.execute(_TAGS_BY_EXTERNAL_ID, {"org_id": org_id, "external_ids": wanted})
        return {str(ext): int(tag_id) for ext, tag_id in rows}

    found = known()
    client = next((c for c in clients if c is not None), None)
    if client is not None and len(found) < len(wanted):
        upsert_corp_tags(db, org_id, read_tags(client, [t for t in wanted if t not in found]))
        found = known()
    return found


def _replace_mirrored_tags(db: Session, org_id: int, wanted: Mapping[int, set[int]]) -> None:
    """Take the WeCom tags off each customer that WeCom no longer lists (``apply_tags(replace=True)``;
    putting the listed ones on was done with the profiles)."""
    if not wanted:
        return
    have = db.execute(
        select(CustomerTag.customer_id, CustomerTag.tag_id)
        .join(Tag, Tag.id == CustomerTag.tag_id)
        .where(one_of(db, CustomerTag.customer_id, sorted(wanted)), Tag.external_id.is_not(None))
    ).all()
    gone: dict[int, set[int]] = {}
    for cid, tag_id in have:
        if int(tag_id) not in wanted[int(cid)]:
            gone.setdefault(int(cid), set()).add(int(tag_id))
    for cid, tag_ids in sorted(gone.items()):
        change_tags(db, org_id, cid, remove=tag_ids, origin=ORIGIN)
