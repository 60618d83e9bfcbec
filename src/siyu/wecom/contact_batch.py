"""The batch driver: contact callbacks of different contacts applied set-wise in one transaction, as
``contact_events`` would apply them one by one, through the customers bulk writer (profiles, follow starts
and ends, tags) and the add-through-a-code use case of ``channels.adds``. ``batchable`` says which callbacks
qualify; the drain (``tasks.py``) applies the others one at a time through ``dispatch.apply_event``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from siyu.accounts.service import wecom_account_ids
from siyu.channels import health as channel_health
from siyu.channels import service as channels
from siyu.channels.adds import CodeScan, contacts_added_through_codes
from siyu.customers.batch import FollowEnd, end_follows_at, start_follows
from siyu.customers.bulk import FollowRecord, ProfileRecord, apply_profiles
from siyu.customers.models import IdentityKind
from siyu.integrations.channel import ExternalContact, FollowInfo
from siyu.integrations.wecom import WeComClient
from siyu.kit.clock import ensure_utc
from siyu.wecom.contact_events import GENDERS, EndedBy, ended_by, event_time, read_contact, source_from_state
from siyu.wecom.sync_contacts import ORIGIN
from siyu.wecom.tag_events import mirrored_tag_ids, replace_mirrored_tags

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
        userid, at = str(event.get("user_id") or ""), event_time(event)
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
        detail, outcomes[i] = read_contact(clients[i], eid)
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
    tags = mirrored_tag_ids(db, org_id, clients, [t for infos in follows for f in infos for t in f.tag_ids])
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
            ensure_utc(f.created_at or event_time(events[holders[r]])),
            source_from_state(f.state),
            (f.state or "")[:30] or None,
        )
        for r, infos in enumerate(follows)
        for f in infos
    ]
    start_follows(db, org_id, starts, origin=ORIGIN)
    replace_mirrored_tags(db, org_id, {done.customer_ids[r]: set(profiles[r].tags) for r in sorted(edits)})
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
                event_time(events[holders[r]]),
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
    created = {"gender": GENDERS[contact.gender]} if contact.gender in GENDERS else {}
    return ProfileRecord(identities, defaults=defaults, created_with=created, row=row)
