"""WeCom's tags: the tag library mirrored through ``customers.tagging`` (the change_external_tag callback,
rule-group tags / 规则组标签 included, and tag ids a contact carries that siyu has not mirrored yet), and the
WeCom tags put on a customer, one customer (``apply_tags``) or a batch's (``replace_mirrored_tags``) at a
time. Flushes, never commits; idempotent.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from siyu.customers.customer_tagging import change_tags
from siyu.customers.models import CustomerTag, Tag
from siyu.customers.tagging import mirror_tag_library, unmirror
from siyu.integrations.channel import CorpTagGroup
from siyu.integrations.wecom import WeComClient
from siyu.kit.bulk import one_of
from siyu.wecom.sync_contacts import ORIGIN, mirrored_groups

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


def ensure_tags(
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


def mirrored_tag_ids(
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


def replace_mirrored_tags(db: Session, org_id: int, wanted: Mapping[int, set[int]]) -> None:
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


def tag_event(db: Session, org_id: int, event: Mapping[str, Any], client: WeComClient | None) -> str:
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
