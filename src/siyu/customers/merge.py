"""Merging two profiles of one person: everything moves to the survivor, nothing is lost, all is audited."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from siyu.accounts.models import Account
from siyu.commerce.models import Order
from siyu.customers import stages
from siyu.customers.models import (
    Customer,
    CustomerIdentity,
    CustomerTag,
    FollowRelation,
    FollowStatus,
    Gender,
    MergeAudit,
    Note,
    Stage,
    Tag,
)
from siyu.customers.recording import record
from siyu.customers.remarks import compose_remark
from siyu.events.models import Event
from siyu.events.vocabulary import EventType
from siyu.kit.errors import Invalid, NotFound

# Other domains that point at customers (groups, campaigns, leads...) register a function here that
# re-points their rows from merged_id to survivor_id and returns how many moved; the count is audited.
MergeHook = Callable[[Session, int, int, int], int]
MERGE_HOOKS: dict[str, MergeHook] = {}

_STAGE_RANK = {
    stage: rank
    for rank, stage in enumerate(
        (Stage.new, Stage.contacted, Stage.retained, Stage.engaged, Stage.converted, Stage.repeat)
    )
}
# Profile fields the survivor takes from the merged profile when its own are empty.
FILLABLE = ("name", "mobile", "region", "source", "source_detail", "intent")


def register_merge_hook(name: str, hook: MergeHook) -> None:
    """Let another domain move its customer references during a merge (name is the audit key)."""
    MERGE_HOOKS[name] = hook


def refresh_remark(customer: Customer) -> None:
    """Recompute the automatic remark from name/source/intent/mobile unless it was written by hand."""
    if not customer.remark_is_manual:
        customer.remark = compose_remark(customer.name, customer.source, customer.intent, customer.mobile)


def _live(db: Session, org_id: int, customer_id: int, field: str) -> Customer:
    customer = db.scalar(select(Customer).where(Customer.id == customer_id, Customer.org_id == org_id))
    if customer is None:
        raise NotFound("customer not found", field=field)
    if customer.merged_into_id is not None:
        raise Invalid(
            f"customer {customer_id} was already merged into {customer.merged_into_id}", field=field
        )
    return customer


def _repoint(db: Session, model: Any, merged_id: int, survivor_id: int) -> int:
    result = db.execute(
        update(model)
        .where(model.customer_id == merged_id)
        .values(customer_id=survivor_id)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def _move_tags(db: Session, org_id: int, merged_id: int, survivor_id: int) -> int:
    """The survivor gets the union of both profiles' tags. Both histories now sit in the survivor's log,
    interleaved, so one profile's tag_removed may come after the other's tag_added: the merge records a
    tag_added for every tag of the union, the log's last word on each."""
    have = set(db.scalars(select(CustomerTag.tag_id).where(CustomerTag.customer_id == survivor_id)))
    moved = 0
    for row in db.scalars(select(CustomerTag).where(CustomerTag.customer_id == merged_id)).all():
        if row.tag_id not in have:
            db.add(
                CustomerTag(
                    customer_id=survivor_id, tag_id=row.tag_id, org_id=org_id, created_at=row.created_at
                )
            )
            moved += 1
            have.add(row.tag_id)
        db.delete(row)
    db.flush()
    for tag in db.scalars(select(Tag).where(Tag.id.in_(sorted(have)))):
        record(
            db,
            org_id,
            survivor_id,
            EventType.tag_added,
            origin="merge",
            tag_id=tag.id,
            tag=tag.name,
            external_id=tag.external_id,
        )
    return moved


def _move_follows(db: Session, merged_id: int, survivor_id: int) -> tuple[int, int]:
    """Re-point follow relations; on the same account keep one row with the earliest ``since``, active if
    either was."""
    mine = {
        f.account_id: f
        for f in db.scalars(select(FollowRelation).where(FollowRelation.customer_id == survivor_id))
    }
    moved = deduped = 0
    joined: list[FollowRelation] = []
    for rel in db.scalars(select(FollowRelation).where(FollowRelation.customer_id == merged_id)).all():
        keep = mine.get(rel.account_id)
        if keep is None:
            rel.customer_id = survivor_id
            moved += 1
            continue
        if rel.since < keep.since:
            keep.since, keep.source, keep.state = (
                rel.since,
                rel.source or keep.source,
                rel.state or keep.state,
            )
        if rel.status == FollowStatus.active and keep.status != FollowStatus.active:
            keep.status, keep.ended_at = FollowStatus.active, None
        elif rel.status == FollowStatus.active:
            # Two active rows counted twice in the account's friend_count become one.
            db.execute(
                update(Account)
                .where(Account.id == rel.account_id, Account.friend_count > 0)
                .values(friend_count=Account.friend_count - 1)
                .execution_options(synchronize_session=False)
            )
        db.delete(rel)
        deduped += 1
        joined.append(keep)
    db.flush()
    # Both profiles had this account: the log holds both histories, so say where the one relation stands
    # now (a replay of the log then ends where the table does).
    for keep in joined:
        if keep.status == FollowStatus.active:
            record(
                db,
                keep.org_id,
                survivor_id,
                EventType.follow_started,
                account_id=keep.account_id,
                origin="merge",
            )
        else:
            by = "customer" if keep.status == FollowStatus.deleted_by_customer else "staff"
            record(
                db,
                keep.org_id,
                survivor_id,
                EventType.follow_ended,
                account_id=keep.account_id,
                by=by,
                origin="merge",
            )
    return moved, deduped


def _fill_profile(survivor: Customer, merged: Customer) -> list[str]:
    filled = []
    for field in FILLABLE:
        if not getattr(survivor, field) and getattr(merged, field):
            setattr(survivor, field, getattr(merged, field))
            filled.append(field)
    if survivor.gender == Gender.unknown and merged.gender != Gender.unknown:
        survivor.gender = merged.gender
        filled.append("gender")
    if not survivor.remark_is_manual and merged.remark_is_manual:
        survivor.remark, survivor.remark_is_manual = merged.remark, True
        filled.append("remark")
    return filled


def merge_customers(
    db: Session, org_id: int, survivor_id: int, merged_id: int, reason: str, actor_id: int | None = None
) -> MergeAudit:
    """Merge ``merged_id`` into ``survivor_id``: move identities, tags (union), notes, events, orders and
    follow relations (deduped per account), fill the survivor's empty fields, mark the merged profile and
    write a MergeAudit with the counts. Consent flags stay the survivor's: a merge never widens consent."""
    if survivor_id == merged_id:
        raise Invalid("a customer cannot be merged into itself", field="merged_id")
    survivor = _live(db, org_id, survivor_id, "survivor_id")
    merged = _live(db, org_id, merged_id, "merged_id")
    db.flush()
    moved: dict[str, Any] = {
        "identities": _repoint(db, CustomerIdentity, merged_id, survivor_id),
        "tags": _move_tags(db, org_id, merged_id, survivor_id),
        "notes": _repoint(db, Note, merged_id, survivor_id),
        "events": _repoint(db, Event, merged_id, survivor_id),
        "orders": _repoint(db, Order, merged_id, survivor_id),
    }
    moved["follows"], moved["follows_deduped"] = _move_follows(db, merged_id, survivor_id)
    for name, hook in MERGE_HOOKS.items():
        moved[name] = hook(db, org_id, survivor_id, merged_id)
    moved["fields"] = _fill_profile(survivor, merged)
    # Stages set by hand on either profile (not what the rules gave them), to keep after the rules re-derive.
    hand_set = [
        p.stage for p in (survivor, merged) if p.stage_by_rules is not None and p.stage != p.stage_by_rules
    ]
    refresh_remark(survivor)
    merged.merged_into_id = survivor_id
    # Keep every pointer one hop long: profiles merged into the merged one now point at the survivor.
    db.execute(
        update(Customer)
        .where(Customer.merged_into_id == merged_id, Customer.org_id == org_id)
        .values(merged_into_id=survivor_id)
        .execution_options(synchronize_session=False)
    )
    db.flush()
    # The rules derive the survivor's stage afresh from the joined history (customer_merged resets it)...
    record(db, org_id, survivor_id, EventType.customer_merged, merged_id=merged_id, reason=reason[:200])
    # ...and a later stage one of them had by hand is kept, as a hand-set stage (so a replay gives it too):
    # a merge never moves a customer back in the lifecycle.
    kept = max(hand_set, key=lambda s: _STAGE_RANK.get(s, -1), default=None)
    if kept is not None and _STAGE_RANK.get(kept, -1) > _STAGE_RANK.get(survivor.stage, -1):
        stages.set_stage(
            db, survivor, kept, f"kept from the merge with profile {merged_id}", actor_id=actor_id
        )
        moved["fields"].append("stage")
    audit = MergeAudit(
        org_id=org_id,
        survivor_id=survivor_id,
        merged_id=merged_id,
        reason=reason[:200],
        moved=moved,
        actor_id=actor_id,
    )
    db.add(audit)
    db.flush()
    # Bulk updates bypassed the identity map; reload what callers may still hold.
    for obj in list(db.identity_map.values()):
        if isinstance(obj, (CustomerIdentity, Note, Event, Order, Account)) or (
            isinstance(obj, Customer) and obj.id not in (survivor_id, merged_id)
        ):
            db.expire(obj)
    return audit
