"""Reconciliation with WeCom: a full sync that repairs whatever lost or reordered callbacks missed.

WeCom is the source of truth. The sync reads members (get_follow_user_list), every member's customers
(batch/get_by_user, 100 members and one cursor page at a time), the corp tag library and the customer
groups, and makes siyu agree: missing accounts, customers, identities, follow relations, tags, customer
tags, groups and group members are created; stale follow relations (WeCom no longer has them) end.

Contacts are written set-based in chunks (identity resolution, inserts that ignore conflicts, executemany
updates) so 100,000 contacts cost a few dozen statements per 2,000 contacts, not an ORM object each. Every
API call passes the per-(corp, api) token bucket of `pacing.py` first. The function only flushes; the
caller commits (`run_sync` does, and records the report).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel, Field
from sqlalchemy import Table, and_, bindparam, delete, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from siyu.accounts.models import Account, AccountKind, AccountStatus
from siyu.customers.models import (
    Customer,
    CustomerIdentity,
    CustomerTag,
    FollowRelation,
    FollowStatus,
    IdentityKind,
    Tag,
    TagGroup,
)
from siyu.customers.resolution import lookup_identities, resolve_identities
from siyu.customers.service import add_identity
from siyu.integrations.channel import ContactSync, ContactWithFollow, CorpTagReader, GroupReader
from siyu.kit.bulk import IN_LIST_SIZE, chunked, driver_datetime, executemany_raw, insert_ignore
from siyu.kit.clock import utcnow
from siyu.kit.db import transaction
from siyu.wecom.models_ops import WeComSyncRun
from siyu.wecom.pacing import ApiPacer
from siyu.wecom.sync_groups import sync_groups

T = TypeVar("T")
CUSTOMERS: Table = Customer.__table__  # type: ignore[assignment]
IDENTITIES: Table = CustomerIdentity.__table__  # type: ignore[assignment]
FOLLOWS: Table = FollowRelation.__table__  # type: ignore[assignment]
CUSTOMER_TAGS: Table = CustomerTag.__table__  # type: ignore[assignment]
ACCOUNTS: Table = Account.__table__  # type: ignore[assignment]
MEMBERS_PER_PAGE = 100  # batch/get_by_user takes at most 100 userids
PREFETCH_PAGES = 50
SOURCE = "wecom"


class KindCounts(BaseModel):
    """What the sync did to one kind of record."""

    created: int = 0
    updated: int = 0
    ended: int = 0


class SyncReport(BaseModel):
    """Counts of created/updated/ended per kind, samples of what changed, and where the time went."""

    org_id: int
    started_at: str = ""
    finished_at: str = ""
    members: int = 0
    contacts_seen: int = 0
    follows_seen: int = 0
    groups_seen: int = 0
    merged: int = Field(default=0, description="Profiles merged because WeCom showed a shared unionid.")
    counts: dict[str, KindCounts] = Field(default_factory=dict)
    samples: dict[str, list[str]] = Field(default_factory=dict)
    api_calls: int = 0
    api_seconds: float = Field(default=0.0, description="Time inside WeCom calls (HTTP, back-off included).")
    wait_seconds: float = Field(default=0.0, description="Time waiting for the client-side quota.")
    siyu_seconds: float = Field(default=0.0, description="Time in siyu itself (database, mapping).")
    contact_api_seconds: float = Field(
        default=0.0, description="Of api + wait: contact pages, fetched in parallel with siyu's writes.")

    def count(self, kind: str, what: str, n: int = 1) -> None:
        """Add `n` to one counter."""
        counts = self.counts.setdefault(kind, KindCounts())
        setattr(counts, what, getattr(counts, what) + n)

    def sample(self, kind: str, text: str, limit: int = 10) -> None:
        """Keep a few examples of each kind of change for the operator."""
        bucket = self.samples.setdefault(kind, [])
        if len(bucket) < limit:
            bucket.append(text)

    def changed(self) -> int:
        """Total of every counter."""
        return sum(c.created + c.updated + c.ended for c in self.counts.values())


@dataclass
class Caller:
    """Calls the adapter through the pacer, timing API time and quota waits separately."""

    pacer: ApiPacer | None
    report: SyncReport
    clock: Callable[[], float] = time.perf_counter

    def __call__(self, api: str, fn: Callable[[], T]) -> T:
        if self.pacer is not None:
            self.report.wait_seconds += self.pacer.acquire(api)
        start = self.clock()
        try:
            return fn()
        finally:
            self.report.api_seconds += self.clock() - start
            self.report.api_calls += 1


@dataclass
class _State:
    """What the sync learnt so far (keys to reconcile at the end)."""

    accounts: dict[str, int] = field(default_factory=dict)  # userid -> account id
    tags: dict[str, int] = field(default_factory=dict)  # WeCom tag id -> siyu tag id
    seen_follows: set[tuple[int, int]] = field(default_factory=set)  # (customer, account)
    wanted_tags: set[tuple[int, int]] = field(default_factory=set)  # (customer, tag)
    customers: set[int] = field(default_factory=set)
    eids: set[str] = field(default_factory=set)  # contacts seen, once each however many members follow them


class WeComSource(ContactSync, CorpTagReader, GroupReader, Protocol):
    """What the sync needs from a carrier adapter (the WeCom client implements all three Protocols)."""


def full_sync(
    db: Session, org_id: int, client: WeComSource, *, pacer: ApiPacer | None = None, chunk_size: int = 2000,
    include_groups: bool = True,
) -> SyncReport:
    """Make siyu agree with WeCom for one organization and report what changed (flushes, never commits)."""
    if chunk_size < 1:
        raise ValueError("chunk_size must be >= 1")
    started = time.perf_counter()
    report = SyncReport(org_id=org_id, started_at=utcnow().isoformat())
    call = Caller(pacer, report)
    state = _State()
    _sync_tags(db, org_id, call, client, report, state)
    userids = call("externalcontact/get_follow_user_list", client.list_follow_users)
    report.members = len(userids)
    _sync_members(db, org_id, userids, report, state)
    # Pages are fetched by a helper thread while this one writes the previous chunk, so the sync costs
    # roughly max(API time, database time) rather than their sum; the bounded queue caps memory.
    pages: queue.Queue[list[ContactWithFollow] | BaseException | None] = queue.Queue(maxsize=PREFETCH_PAGES)
    stop = threading.Event()
    fetcher = threading.Thread(target=_fetch_pages, args=(call, client, userids, pages, stop),
                               name="wecom-sync-fetch", daemon=True)
    fetcher.start()
    buffer: list[ContactWithFollow] = []
    blocked = 0.0
    try:
        while True:
            t0 = time.perf_counter()
            item = pages.get()
            blocked += time.perf_counter() - t0
            if item is None:
                break
            if isinstance(item, BaseException):
                raise item
            buffer.extend(item)
            if len(buffer) >= chunk_size:
                _apply_contacts(db, org_id, buffer, report, state)
                buffer = []
    finally:
        stop.set()
        fetcher.join(timeout=60)
    if buffer:
        _apply_contacts(db, org_id, buffer, report, state)
    _end_stale_follows(db, org_id, report, state)
    _reconcile_customer_tags(db, org_id, report, state)
    _recount_friends(db, org_id)
    if include_groups:
        sync_groups(db, org_id, call, client, report, state.accounts)
    db.flush()
    report.finished_at = utcnow().isoformat()
    # siyu's own time: everything this thread did except waiting for pages and its own API calls.
    contact_calls = report.contact_api_seconds
    report.siyu_seconds = max(0.0, time.perf_counter() - started - blocked
                              - (report.api_seconds + report.wait_seconds - contact_calls))
    return report


# --- tags ------------------------------------------------------------------------------------------


def _fetch_pages(
    call: Caller, client: WeComSource, userids: list[str],
    pages: queue.Queue[list[ContactWithFollow] | BaseException | None], stop: threading.Event,
) -> None:
    """Producer: every member's contacts, 100 members and one cursor page at a time, then None."""
    try:
        for start in range(0, len(userids), MEMBERS_PER_PAGE):
            members = userids[start : start + MEMBERS_PER_PAGE]
            cursor = ""
            while not stop.is_set():
                t0 = time.perf_counter()
                page = call(
                    "externalcontact/batch/get_by_user",
                    lambda m=members, c=cursor: client.list_contacts_by_user(m, cursor=c, limit=100),
                )
                call.report.contact_api_seconds += time.perf_counter() - t0
                _put(pages, page.items, stop)
                if not page.next_cursor:
                    break
                cursor = page.next_cursor
        _put(pages, None, stop)
    except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which re-raises it in the sync's thread
        _put(pages, exc, stop)


def _put(pages: queue.Queue[Any], item: Any, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            pages.put(item, timeout=0.5)
            return
        except queue.Full:
            continue


def _sync_tags(db: Session, org_id: int, call: Caller, client: Any, report: SyncReport, state: _State) -> None:
    groups = [g for g in call("externalcontact/get_corp_tag_list", client.list_corp_tags) if not g.deleted]
    local_groups = list(db.scalars(select(TagGroup).where(TagGroup.org_id == org_id)))
    by_ext = {g.external_id: g for g in local_groups if g.external_id}
    by_name = {g.name: g for g in local_groups}
    live_group_ids: set[str] = set()
    for wg in groups:
        live_group_ids.add(wg.group_id)
        name = wg.group_name[:60] or wg.group_id[:60]
        group = by_ext.get(wg.group_id)
        if group is None:
            same_name = by_name.get(name)
            if same_name is not None and not same_name.external_id:
                group = same_name  # a hand-made group of that name becomes the WeCom group
                group.external_id = wg.group_id
                report.count("tag_groups", "updated")
            else:
                if same_name is not None:
                    name = f"{name[:50]} {wg.group_id[-8:]}"
                group = TagGroup(org_id=org_id, name=name, external_id=wg.group_id, sort_order=wg.order)
                db.add(group)
                report.count("tag_groups", "created")
                report.sample("tag_groups", f"created {name}")
            db.flush()
            by_name[group.name] = group
        elif group.name != name or group.sort_order != wg.order:
            if name not in by_name or by_name[name] is group:
                group.name = name
            group.sort_order = wg.order
            report.count("tag_groups", "updated")
        local_tags = {t.external_id: t for t in db.scalars(select(Tag).where(Tag.org_id == org_id, Tag.external_id.is_not(None)))}
        names_in_group = {t.name: t for t in db.scalars(select(Tag).where(Tag.group_id == group.id))}
        for wt in wg.tags:
            if wt.deleted:
                continue
            tname = wt.name[:60] or wt.id[:60]
            tag = local_tags.get(wt.id)
            if tag is None:
                tag = names_in_group.get(tname)
                if tag is not None and not tag.external_id:
                    tag.external_id = wt.id
                    report.count("tags", "updated")
                else:
                    if tag is not None:
                        tname = f"{tname[:50]} {wt.id[-8:]}"
                    tag = Tag(org_id=org_id, group_id=group.id, name=tname, external_id=wt.id, sort_order=wt.order)
                    db.add(tag)
                    report.count("tags", "created")
                    report.sample("tags", f"created {group.name}/{tname}")
                db.flush()
                names_in_group[tag.name] = tag
            elif tag.name != tname or tag.group_id != group.id or tag.sort_order != wt.order:
                clash = names_in_group.get(tname)
                if clash is None or clash is tag:
                    tag.name = tname
                tag.group_id, tag.sort_order = group.id, wt.order
                report.count("tags", "updated")
                db.flush()
            state.tags[wt.id] = tag.id
    # WeCom tags that are gone: their customer tags go with them (the cascade removes them).
    stale = list(db.scalars(select(Tag).where(Tag.org_id == org_id, Tag.external_id.is_not(None))))
    for tag in stale:
        if tag.external_id not in state.tags:
            report.count("tags", "ended")
            report.sample("tags", f"deleted {tag.name} (gone from WeCom)")
            db.execute(delete(CustomerTag).where(CustomerTag.tag_id == tag.id))
            db.delete(tag)
    for group in local_groups:
        if group.external_id and group.external_id not in live_group_ids and \
                db.scalar(select(func.count()).select_from(Tag).where(Tag.group_id == group.id)) == 0:
            db.delete(group)
            report.count("tag_groups", "ended")
    db.flush()


# --- members ---------------------------------------------------------------------------------------


def _sync_members(db: Session, org_id: int, userids: list[str], report: SyncReport, state: _State) -> None:
    existing = dict(db.execute(
        select(Account.external_id, Account.id).where(Account.org_id == org_id, Account.kind == AccountKind.wecom_member)
    ).all())
    for userid in userids:
        if userid not in existing:
            account = Account(org_id=org_id, kind=AccountKind.wecom_member, external_id=userid, name=userid,
                              status=AccountStatus.active)
            db.add(account)
            db.flush()
            existing[userid] = account.id
            report.count("accounts", "created")
            report.sample("accounts", f"created WeCom member {userid}")
        state.accounts[userid] = existing[userid]


# --- contacts --------------------------------------------------------------------------------------


def _gender(value: int) -> str:
    return {1: "male", 2: "female"}.get(value, "unknown")


def _apply_contacts(
    db: Session, org_id: int, items: list[ContactWithFollow], report: SyncReport, state: _State
) -> None:
    contacts = {i.contact.external_userid: i.contact for i in items if i.contact.external_userid}
    report.contacts_seen += len(contacts.keys() - state.eids)
    state.eids.update(contacts)
    refs = [(IdentityKind.wecom_external_userid.value, eid) for eid in contacts]
    holders, created = resolve_identities(db, org_id, refs, source=SOURCE)
    if created:
        report.count("customers", "created", created)
        report.sample("customers", f"created {created} customers WeCom had and siyu lacked")
    # Fill the WeCom name and gender into profiles that have none (new ones, or ones created by a bare event).
    fills = [
        {"cid": holders[(IdentityKind.wecom_external_userid.value, eid)], "nm": c.name[:120], "g": _gender(c.gender)}
        for eid, c in contacts.items() if c.name
    ]
    if fills:
        db.execute(
            update(CUSTOMERS).where(CUSTOMERS.c.id == bindparam("cid"), CUSTOMERS.c.name == "")
            .values(name=bindparam("nm"), gender=bindparam("g")),
            fills,
        )
    report.merged += _link_unionids(db, org_id, contacts, holders, report)
    if report.merged:
        holders = lookup_identities(db, org_id, refs)  # merges moved some contacts to a survivor
    by_eid = {eid: holders[(IdentityKind.wecom_external_userid.value, eid)] for eid in contacts}
    state.customers.update(by_eid.values())
    _apply_follows(db, org_id, items, by_eid, report, state)
    for item in items:
        cid = by_eid.get(item.contact.external_userid)
        if cid is None:
            continue
        for ext_tag in item.follow.tag_ids:
            tag_id = state.tags.get(ext_tag)
            if tag_id is not None:
                state.wanted_tags.add((cid, tag_id))
    db.flush()


def _link_unionids(
    db: Session, org_id: int, contacts: dict[str, Any], holders: dict[tuple[str, str], int], report: SyncReport
) -> int:
    """Attach unionids; a unionid another profile holds means the same person: merge (audited)."""
    wanted = {
        c.unionid: holders[(IdentityKind.wecom_external_userid.value, eid)]
        for eid, c in contacts.items() if c.unionid
    }
    if not wanted:
        return 0
    held = lookup_identities(db, org_id, [(IdentityKind.unionid.value, u) for u in wanted])
    now = driver_datetime(db)(utcnow())
    new_rows = [
        {"org_id": org_id, "customer_id": cid, "kind": IdentityKind.unionid.value, "value": u, "created_at": now}
        for u, cid in wanted.items() if (IdentityKind.unionid.value, u) not in held
    ]
    if new_rows:
        executemany_raw(db, insert_ignore(db, IDENTITIES, ["org_id", "kind", "value"]), new_rows)
        report.count("identities", "created", len(new_rows))
    merged = 0
    for u, cid in wanted.items():
        holder = held.get((IdentityKind.unionid.value, u))
        if holder is not None and holder != cid:
            survivor = add_identity(db, org_id, cid, IdentityKind.unionid, u, reason="shared unionid (WeCom sync)")
            merged += 1
            report.sample("merges", f"customers {min(cid, holder)} and {max(cid, holder)} share a unionid: "
                                    f"merged into {survivor.id}")
    return merged


def _apply_follows(
    db: Session, org_id: int, items: list[ContactWithFollow], by_eid: dict[str, int], report: SyncReport,
    state: _State,
) -> None:
    wanted: dict[tuple[int, int], ContactWithFollow] = {}
    for item in items:
        cid = by_eid.get(item.contact.external_userid)
        account_id = state.accounts.get(item.follow.userid)
        if cid is not None and account_id is not None:
            wanted.setdefault((cid, account_id), item)
    state.seen_follows.update(wanted)
    report.follows_seen += len(wanted)
    existing: dict[tuple[int, int], str] = {}
    cids = sorted({cid for cid, _ in wanted})
    for part in chunked(cids, IN_LIST_SIZE):
        for cid, aid, status in db.execute(
            select(FOLLOWS.c.customer_id, FOLLOWS.c.account_id, FOLLOWS.c.status)
            .where(FOLLOWS.c.org_id == org_id, FOLLOWS.c.customer_id.in_(part))
        ):
            existing[(cid, aid)] = str(status)
    now = utcnow()
    stamp = driver_datetime(db)
    inserts: list[dict[str, Any]] = []
    revive: list[dict[str, Any]] = []
    for (cid, aid), item in wanted.items():
        since = item.follow.created_at or now
        status = existing.get((cid, aid))
        if status is None:
            inserts.append({
                "org_id": org_id, "customer_id": cid, "account_id": aid, "since": stamp(since),
                "source": SOURCE, "state": item.follow.state[:30] or None, "status": FollowStatus.active.value,
                "ended_at": None,
            })
            report.sample("follows", f"added {item.follow.userid} -> {item.contact.external_userid}")
        elif status != FollowStatus.active.value:
            revive.append({"cid": cid, "aid": aid, "sn": since})
            report.sample("follows", f"re-activated {item.follow.userid} -> {item.contact.external_userid}")
    if inserts:
        executemany_raw(db, insert_ignore(db, FOLLOWS, ["org_id", "customer_id", "account_id"]), inserts)
        report.count("follows", "created", len(inserts))
    if revive:
        db.execute(
            update(FOLLOWS).where(and_(FOLLOWS.c.org_id == org_id, FOLLOWS.c.customer_id == bindparam("cid"),
                                       FOLLOWS.c.account_id == bindparam("aid")))
            .values(status=FollowStatus.active.value, ended_at=None, since=bindparam("sn")),
            revive,
        )
        report.count("follows", "updated", len(revive))


def _end_stale_follows(db: Session, org_id: int, report: SyncReport, state: _State) -> None:
    """End active follows of listed members that WeCom no longer has (a deletion whose callback was lost)."""
    account_ids = sorted(state.accounts.values())
    stale: list[tuple[int, int]] = []
    for part in chunked(account_ids, IN_LIST_SIZE):
        for cid, aid in db.execute(
            select(FOLLOWS.c.customer_id, FOLLOWS.c.account_id).where(
                FOLLOWS.c.org_id == org_id, FOLLOWS.c.account_id.in_(part),
                FOLLOWS.c.status == FollowStatus.active.value,
            )
        ):
            if (cid, aid) not in state.seen_follows:
                stale.append((cid, aid))
    if not stale:
        return
    now = utcnow()
    # WeCom does not say who deleted whom; a relation that vanished is most often the customer's doing.
    db.execute(
        update(FOLLOWS).where(and_(FOLLOWS.c.org_id == org_id, FOLLOWS.c.customer_id == bindparam("cid"),
                                   FOLLOWS.c.account_id == bindparam("aid")))
        .values(status=FollowStatus.deleted_by_customer.value, ended_at=now),
        [{"cid": cid, "aid": aid} for cid, aid in stale],
    )
    report.count("follows", "ended", len(stale))
    userid_of = {v: k for k, v in state.accounts.items()}
    for cid, aid in stale[:10]:
        report.sample("follows", f"ended customer {cid} / {userid_of.get(aid, aid)} (gone from WeCom)")


def _reconcile_customer_tags(db: Session, org_id: int, report: SyncReport, state: _State) -> None:
    """Customer tags of WeCom tags follow WeCom, for the customers the sync saw; hand-made tags stay."""
    existing: set[tuple[int, int]] = set()
    for cid, tid in db.execute(
        select(CUSTOMER_TAGS.c.customer_id, CUSTOMER_TAGS.c.tag_id)
        .join(Tag, Tag.id == CUSTOMER_TAGS.c.tag_id)
        .where(CUSTOMER_TAGS.c.org_id == org_id, Tag.external_id.is_not(None))
    ):
        existing.add((cid, tid))
    add = sorted(state.wanted_tags - existing)
    remove = sorted(p for p in existing - state.wanted_tags if p[0] in state.customers)
    now = driver_datetime(db)(utcnow())
    executemany_raw(
        db, insert_ignore(db, CUSTOMER_TAGS, ["customer_id", "tag_id"]),
        [{"customer_id": c, "tag_id": t, "org_id": org_id, "created_at": now} for c, t in add],
    )
    if add:
        report.count("customer_tags", "created", len(add))
        report.sample("customer_tags", f"tagged {len(add)} customers as WeCom shows")
    if remove:
        db.execute(
            delete(CUSTOMER_TAGS).where(CUSTOMER_TAGS.c.customer_id == bindparam("c"),
                                        CUSTOMER_TAGS.c.tag_id == bindparam("t")),
            [{"c": c, "t": t} for c, t in remove],
        )
        report.count("customer_tags", "ended", len(remove))
        report.sample("customer_tags", f"removed {len(remove)} tags WeCom no longer shows")


def _recount_friends(db: Session, org_id: int) -> None:
    counted = (
        select(func.count()).select_from(FOLLOWS)
        .where(FOLLOWS.c.account_id == ACCOUNTS.c.id, FOLLOWS.c.status == FollowStatus.active.value)
        .scalar_subquery()
    )
    db.execute(
        update(ACCOUNTS).where(ACCOUNTS.c.org_id == org_id, ACCOUNTS.c.kind == AccountKind.wecom_member.value)
        .values(friend_count=counted)
    )
    db.expire_all()


# --- running and recording -------------------------------------------------------------------------


def last_run(db: Session, org_id: int) -> WeComSyncRun | None:
    """The organization's last sync run (running, succeeded or failed), if any."""
    return db.scalar(select(WeComSyncRun).where(WeComSyncRun.org_id == org_id))


def _record(db: Session, org_id: int, **values: Any) -> WeComSyncRun:
    run = last_run(db, org_id)
    if run is None:
        run = WeComSyncRun(org_id=org_id)
        db.add(run)
    for key, value in values.items():
        setattr(run, key, value)
    db.flush()
    return run


def run_sync(
    factory: sessionmaker[Session], org_id: int, client: WeComSource, *, pacer: ApiPacer | None = None,
    chunk_size: int = 2000, include_groups: bool = True,
) -> SyncReport:
    """Sync in one transaction and store the report; a failure is recorded (in its own transaction) and re-raised."""
    started = utcnow()
    try:
        with transaction(factory) as db:
            report = full_sync(db, org_id, client, pacer=pacer, chunk_size=chunk_size, include_groups=include_groups)
            _record(db, org_id, status="succeeded", started_at=started, finished_at=utcnow(), error="",
                    report=report.model_dump())
        return report
    except Exception as exc:
        with transaction(factory) as db:
            _record(db, org_id, status="failed", started_at=started, finished_at=utcnow(),
                    error=f"{type(exc).__name__}: {exc}"[:2000], report={})
        raise


def sync_org(factory: sessionmaker[Session], org_id: int, secret_key: str) -> SyncReport:
    """Sync an organization with the client built from its stored credentials (for the worker)."""
    from siyu.wecom.credentials import client_for, load_plain
    from siyu.wecom.pacing import pacer_for

    with transaction(factory) as db:
        creds = load_plain(db, org_id, secret_key)
    return run_sync(factory, org_id, client_for(creds), pacer=pacer_for(creds.corp_id))

