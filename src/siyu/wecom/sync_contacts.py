"""Contact part of the reconciliation: WeCom's contacts mapped to customers' records, chunk by chunk.

The sync never writes customer tables itself: each chunk of batch/get_by_user items becomes plain
records (``customers.bulk.ProfileRecord`` / ``FollowRecord``) handed to the customers bulk writer, which
resolves identities (one resolver, ``customers.resolution``), creates and fills profiles, merges on a
shared unionid, starts follows and records the events, with a handful of statements per chunk. A
contact followed by several members is resolved once per sync and then served from
``SyncState.holders``.

History is dated honestly: a follow starts at WeCom's ``createtime``, a new profile is dated by its
earliest follow (``customers.bulk.record_added`` at the end of the sync), and on an organization's
first sync (no WeCom follows before) those events are flagged backfill.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.orm import Session

from siyu.customers import bulk
from siyu.customers.bulk import FollowRecord, ProfileRecord
from siyu.customers.models import IdentityKind
from siyu.customers.tagging import MirroredGroup, MirroredTag
from siyu.integrations.channel import ContactWithFollow, CorpTagGroup, ExternalContact
from siyu.wecom.sync_report import SyncReport

SOURCE = "wecom"
ORIGIN = "wecom"
EXTERNAL = IdentityKind.wecom_external_userid.value
UNIONID = IdentityKind.unionid.value
_GENDERS = {1: "male", 2: "female"}


@dataclass
class SyncState:
    """What the sync learnt so far (keys to reconcile at the end) and what siyu held when it started."""

    accounts: dict[str, int] = field(default_factory=dict)  # userid -> account id
    wecom_accounts: set[int] = field(default_factory=set)  # every WeCom member account of the org
    tags: dict[str, int] = field(default_factory=dict)  # WeCom tag id -> siyu tag id
    seen_follows: set[tuple[int, int]] = field(default_factory=set)  # (customer, account)
    wanted_tags: set[tuple[int, int]] = field(default_factory=set)  # (customer, tag)
    customers: set[int] = field(default_factory=set)
    created: set[int] = field(default_factory=set)  # profiles this sync created
    holders: dict[str, int] = field(default_factory=dict)  # external_userid -> live customer, once resolved
    # (customer, account) -> status of the relations siyu held when the sync started (after merges: as the
    # merge left them); what the sync ends as stale is read from here, not from the table again.
    follows: dict[tuple[int, int], str] = field(default_factory=dict)
    #: Accounts of members WeCom would not read (no interoperability licence): their relations are unknown.
    unlicensed: set[int] = field(default_factory=set)
    #: The organization had no WeCom follows before: what this sync finds is history (backfill).
    first: bool = False

    def remap(self, merges: dict[int, int]) -> None:
        """Point everything learnt about merged-away customers at their survivors."""

        def to(cid: int) -> int:
            return merges.get(cid, cid)

        self.holders = {eid: to(cid) for eid, cid in self.holders.items()}
        self.customers = {to(cid) for cid in self.customers}
        self.created = {cid for cid in self.created if cid not in merges}
        self.seen_follows = {(to(cid), aid) for cid, aid in self.seen_follows}
        self.wanted_tags = {(to(cid), tid) for cid, tid in self.wanted_tags}
        # The merge moved the merged-away profiles' relations; `apply_contacts` then reads the survivors'.
        self.follows = {(to(cid), aid): status for (cid, aid), status in self.follows.items()}


def preload(db: Session, org_id: int, state: SyncState) -> None:
    """Read the organization's follow relations once (one query), and whether this is its first sync."""
    state.follows = bulk.follow_statuses(db, org_id)
    state.first = not any(aid in state.wecom_accounts for _, aid in state.follows)


def mirrored_groups(groups: Iterable[CorpTagGroup]) -> list[MirroredGroup]:
    """WeCom's corp tag groups (and rule-group tag groups) as customers' library records."""
    return [
        MirroredGroup(
            external_id=g.group_id,
            name=g.group_name,
            order=g.order,
            deleted=g.deleted,
            tags=tuple(MirroredTag(t.id, t.name, t.order, t.deleted) for t in g.tags),
            strategy_id=g.strategy_id,
        )
        for g in groups
    ]


def _profile(contact: ExternalContact, added_at: datetime | None) -> ProfileRecord:
    identities = [(EXTERNAL, contact.external_userid)]
    if contact.unionid:
        # A shared unionid is the same WeChat user: the resolver merges the profiles holding it.
        identities.append((UNIONID, contact.unionid))
    named = bool(contact.name)
    return ProfileRecord(
        identities=identities,
        # WeCom's name and gender fill a profile that lacks them; a new profile is "from WeCom".
        defaults={"name": contact.name[:120], "gender": _GENDERS.get(contact.gender, "unknown")}
        if named
        else {},
        created_with={"source": SOURCE},
        added_at=added_at,
    )


def apply_contacts(
    db: Session, org_id: int, items: Sequence[ContactWithFollow], report: SyncReport, state: SyncState
) -> None:
    """Apply one chunk of batch/get_by_user items: customers, identities, unionid merges, follows, tags."""
    contacts = {i.contact.external_userid: i.contact for i in items if i.contact.external_userid}
    # A contact followed by several members comes once per member: only its first sighting in this sync
    # needs resolving, naming and unionid linking; later ones reuse the cached customer id.
    fresh = [eid for eid in contacts if eid not in state.holders]
    report.contacts_seen += len(fresh)
    if fresh:
        earliest: dict[str, datetime] = {}
        for i in items:
            at = i.follow.created_at
            if at is not None and (
                i.contact.external_userid not in earliest or at < earliest[i.contact.external_userid]
            ):
                earliest[i.contact.external_userid] = at
        outcome = bulk.apply_profiles(
            db,
            org_id,
            [_profile(contacts[eid], earliest.get(eid)) for eid in fresh],
            origin=ORIGIN,
            reason="WeCom sync",
            record_added=False,
        )
        state.holders.update(zip(fresh, outcome.customer_ids, strict=True))
        state.created.update(outcome.created)
        if outcome.created:
            report.count("customers", "created", len(outcome.created))
            report.sample("customers", f"created {len(outcome.created)} customers WeCom had and siyu lacked")
        unionids = sum(1 for kind, _ in outcome.new_identities if kind == UNIONID)
        if unionids:
            report.count("identities", "created", unionids)
        if outcome.merges:
            report.merged += len(outcome.merges)
            for gone, survivor in outcome.merges.items():
                report.sample(
                    "merges", f"customers {gone} and {survivor} share a unionid: merged into {survivor}"
                )
            state.remap(outcome.merges)
            survivors = set(outcome.merges.values())
            state.follows = {k: v for k, v in state.follows.items() if k[0] not in survivors}
            state.follows.update(bulk.follow_statuses_of(db, survivors))
    by_eid = {eid: state.holders[eid] for eid in contacts}
    state.customers.update(by_eid.values())
    follows: list[FollowRecord] = []
    examples: list[str] = []  # what the console's sync report shows of the changes, a few of them
    room = 10 - len(report.samples.get("follows", ()))
    seen = state.seen_follows
    accounts = state.accounts
    for item in items:
        cid = by_eid.get(item.contact.external_userid)
        account_id = accounts.get(item.follow.userid)
        if cid is None or account_id is None or (cid, account_id) in seen:
            continue
        seen.add((cid, account_id))
        follows.append(
            FollowRecord(cid, account_id, item.follow.created_at, SOURCE, item.follow.state[:30] or None)
        )
        status = state.follows.get((cid, account_id))
        if len(examples) < room and status != "active":
            verb = "added" if status is None else "re-activated"
            examples.append(f"{verb} {item.follow.userid} -> {item.contact.external_userid}")
    report.follows_seen += len(follows)
    if follows:
        created, restarted = bulk.apply_follows(
            db, org_id, follows, state.follows, origin=ORIGIN, backfill=state.first
        )
        if created:
            report.count("follows", "created", created)
        if restarted:
            report.count("follows", "updated", restarted)
        for text in examples:
            report.sample("follows", text)
    tags = state.tags
    wanted_tags = state.wanted_tags
    for item in items:
        if item.follow.tag_ids:
            cid = by_eid.get(item.contact.external_userid)
            if cid is None:
                continue
            for ext_tag in item.follow.tag_ids:
                tag_id = tags.get(ext_tag)
                if tag_id is not None:
                    wanted_tags.add((cid, tag_id))
