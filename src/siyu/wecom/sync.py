"""Reconciliation with WeCom: a full sync that repairs whatever lost or reordered callbacks missed.

WeCom is the source of truth. The sync reads members (get_follow_user_list), every member's customers
(batch/get_by_user, 100 members and one cursor page at a time), the corp tag library with the rule-group
tags and the customer groups, and makes siyu agree: missing accounts, customers, identities, follow relations, tags, customer
tags, groups and group members are created; stale follow relations (WeCom no longer has them) end.

The sync is a thin driver: it maps what WeCom returns to customers' own records and hands them to
``customers.bulk`` (contacts, in chunks, by `sync_contacts.py`) and ``customers.tagging`` (the tag
library), which write set-wise and record the events, so 100,000 contacts cost a few statements per
2,000 contacts, not an ORM object each. Every API call passes the per-(corp,
api) token bucket of `pacing.py` first. The function only flushes; the caller commits (`run_sync` does,
and records the report).
"""

from __future__ import annotations

import queue
import threading
import time
from datetime import datetime, timedelta
from functools import partial
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from siyu.accounts.service import ensure_wecom_account, wecom_accounts_by_userid
from siyu.customers import bulk
from siyu.customers.follows import recount_friends
from siyu.customers.models import FollowStatus
from siyu.customers.tagging import mirror_tag_library
from siyu.integrations.channel import ContactSync, ContactWithFollow, CorpTagReader, GroupChat, GroupReader
from siyu.integrations.wecom import WeComError
from siyu.kit.clock import utcnow
from siyu.kit.db import transaction
from siyu.kit.errors import Conflict
from siyu.kit.serving import collector_paused
from siyu.wecom.models import WeComSyncRun
from siyu.wecom.pacing import ApiPacer
from siyu.wecom.sync_contacts import ORIGIN, SyncState, apply_contacts, mirrored_groups, preload
from siyu.wecom.sync_groups import list_chat_ids, sync_groups
from siyu.wecom.sync_report import Caller, SyncReport

MEMBERS_PER_PAGE = 100  # batch/get_by_user takes at most 100 userids
PREFETCH_PAGES = 50
FETCH_THREADS = 3
GROUP_PREFETCH = 200  # group snapshots read ahead of their turn (each holds up to 500 members)


class WeComSource(ContactSync, CorpTagReader, GroupReader, Protocol):
    """What the sync needs from a carrier adapter (the WeCom client implements all three Protocols)."""


def full_sync(
    db: Session,
    org_id: int,
    client: WeComSource,
    *,
    pacer: ApiPacer | None = None,
    chunk_size: int = 2000,
    include_groups: bool = True,
) -> SyncReport:
    """Make siyu agree with WeCom for one organization and report what changed (flushes, never commits)."""
    if chunk_size < 1:
        raise ValueError("chunk_size must be >= 1")
    with collector_paused():
        return _full_sync(db, org_id, client, pacer, chunk_size, include_groups)


def _full_sync(
    db: Session,
    org_id: int,
    client: WeComSource,
    pacer: ApiPacer | None,
    chunk_size: int,
    include_groups: bool,
) -> SyncReport:
    started = time.perf_counter()
    report = SyncReport(org_id=org_id, started_at=utcnow().isoformat())
    call = Caller(pacer, report)
    state = SyncState()
    _sync_tags(db, org_id, call, client, report, state)
    userids = call("externalcontact/get_follow_user_list", client.list_follow_users)
    report.members = len(userids)
    _sync_members(db, org_id, userids, report, state)
    preload(db, org_id, state)
    # Pages are fetched by helper threads while this one writes the previous chunk, so the sync costs
    # roughly max(API time, database time) rather than their sum; the bounded queue caps memory. Several
    # fetchers (each its own members, so its own cursor chain) keep a request in flight while another
    # thread holds the GIL: one fetcher spent most of its time waiting to run again after each socket read.
    stop = threading.Event()
    batches = _member_batches(userids, FETCH_THREADS)
    fetching = min(FETCH_THREADS, len(batches))
    # One bounded queue per fetcher, read one page from each fetcher in turn: the order pages are applied
    # in depends only on each fetcher's own page order, never on which thread got its answer first, so
    # the rows (and their ids, which break ties such as a mass message's choice of sender) do not depend
    # on timing. Taking turns page by page, not batch by batch, keeps every fetcher busy: reading one
    # fetcher's whole batch first left the others blocked on full queues and this thread waiting on one.
    queues: list[queue.Queue[list[ContactWithFollow] | BaseException | None]] = [
        queue.Queue(maxsize=max(2, PREFETCH_PAGES // max(1, fetching))) for _ in range(fetching)
    ]
    unlicensed: set[str] = set()
    fetchers = [
        threading.Thread(
            target=_fetch_pages,
            args=(call, client, batches[k::FETCH_THREADS], queues[k], unlicensed, stop),
            name=f"wecom-sync-fetch-{k}",
            daemon=True,
        )
        for k in range(fetching)
    ]
    # The groups are read meanwhile too (a bounded number ahead), so their calls are not waited for after
    # the contacts; they are applied after the contacts, whose customers their members mostly are.
    groups: queue.Queue[list[str] | GroupChat | BaseException | None] = queue.Queue(maxsize=GROUP_PREFETCH)
    if include_groups:
        fetchers.append(
            threading.Thread(
                target=_fetch_groups,
                args=(call, client, userids, groups, stop),
                name="wecom-sync-groups",
                daemon=True,
            )
        )
    for fetcher in fetchers:
        fetcher.start()
    buffer: list[ContactWithFollow] = []
    blocked = 0.0

    def take(items: queue.Queue[Any]) -> Any:
        nonlocal blocked
        t0 = time.perf_counter()
        try:
            return _take(items)
        finally:
            blocked += time.perf_counter() - t0

    try:
        turns = list(queues)
        while turns:
            for pages in list(turns):
                item = take(pages)
                if item is None:  # this fetcher has read its last page
                    turns.remove(pages)
                    continue
                buffer.extend(item)
                if len(buffer) >= chunk_size:
                    apply_contacts(db, org_id, buffer, report, state)
                    buffer = []
        if buffer:
            apply_contacts(db, org_id, buffer, report, state)
        # Every fetcher has handed over its last page, so the set is complete.
        _note_unlicensed(unlicensed, report, state)
        _end_stale_follows(db, org_id, report, state)
        _reconcile_customer_tags(db, org_id, report, state)
        # Each new profile dated by its earliest follow, now that every member's pages were read.
        bulk.record_added(db, org_id, state.created, origin=ORIGIN, backfill=state.first)
        recount_friends(db, org_id)
        if include_groups:
            chat_ids: list[str] = take(groups)
            sync_groups(
                db,
                org_id,
                chat_ids,
                (take(groups) for _ in chat_ids),
                report,
                state.accounts,
                state.holders,
                owners=set(userids),
            )
    finally:
        stop.set()
        for fetcher in fetchers:
            fetcher.join(timeout=60)
    db.flush()
    report.finished_at = utcnow().isoformat()
    # siyu's own time: everything this thread did except waiting for fetched items and its own API calls.
    background_calls = report.background_api_seconds
    report.siyu_seconds = max(
        0.0,
        time.perf_counter()
        - started
        - blocked
        - (report.api_seconds + report.wait_seconds - background_calls),
    )
    return report


# --- tags ------------------------------------------------------------------------------------------


def _member_batches(userids: list[str], fetchers: int) -> list[list[str]]:
    """Members in batches of at most 100, small enough that every fetcher has one to page through.

    Each extra batch costs at most one extra (partly filled) page, a few calls out of ~1,500 per 100,000
    contacts.
    """
    size = max(1, min(MEMBERS_PER_PAGE, -(-len(userids) // max(1, fetchers))))
    return [userids[start : start + size] for start in range(0, len(userids), size)]


def _fetch_pages(
    call: Caller,
    client: WeComSource,
    batches: list[list[str]],
    pages: queue.Queue[list[ContactWithFollow] | BaseException | None],
    unlicensed: set[str],
    stop: threading.Event,
) -> None:
    """Producer: the contacts of each batch of members, one cursor page at a time, then None.

    Members WeCom would not read (no interoperability licence) are added to ``unlicensed``. An error is
    handed over in place of the next page; the consumer re-raises it when it reads there.
    """
    try:
        for members in batches:
            cursor = ""
            while not stop.is_set():
                page = call(
                    "externalcontact/batch/get_by_user",
                    partial(client.list_contacts_by_user, members, cursor=cursor, limit=100),
                )
                if page.unlicensed:
                    with call.lock:
                        unlicensed.update(page.unlicensed)
                _put(pages, page.items, stop)
                if not page.next_cursor:
                    break
                cursor = page.next_cursor
        _put(pages, None, stop)
    except BaseException as exc:
        _put(pages, exc, stop)


def _fetch_groups(
    call: Caller,
    client: WeComSource,
    owners: list[str],
    out: queue.Queue[list[str] | GroupChat | BaseException | None],
    stop: threading.Event,
) -> None:
    """Producer: the chat ids of the owners' groups, then each group's snapshot in that order (an error in
    place of one)."""
    try:
        chat_ids = list_chat_ids(call, client, owners)
        _put(out, chat_ids, stop)
        for chat_id in chat_ids:
            if stop.is_set():
                return
            _put(out, call("externalcontact/groupchat/get", partial(client.get_group, chat_id)), stop)
    except BaseException as exc:
        _put(out, exc, stop)


def _take(items: queue.Queue[Any]) -> Any:
    """The next item a producer handed over, re-raising the error it handed over instead."""
    item = items.get()
    if isinstance(item, BaseException):
        raise item
    return item


def _put(pages: queue.Queue[Any], item: Any, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            pages.put(item, timeout=0.5)
            return
        except queue.Full:
            continue


def _sync_tags(
    db: Session, org_id: int, call: Caller, client: WeComSource, report: SyncReport, state: SyncState
) -> None:
    """Mirror the whole tag library through ``customers.tagging`` (one clash rule for every path): the corp
    library and the rule-group tags (规则组标签), which WeCom answers apart; read without the second, the
    first would make every mirrored rule-group tag look deleted.

    WeCom lets an app read only the rule-group tags it may manage: when it refuses the call, the mirrored
    rule-group tags are kept as they are (and the refusal is in the report), never taken as deleted."""
    groups = [g for g in call("externalcontact/get_corp_tag_list", client.list_corp_tags) if not g.deleted]
    strategies_read = True
    try:
        strategy_groups = call("externalcontact/get_strategy_tag_list", client.list_strategy_tags)
    except WeComError as exc:
        strategies_read, strategy_groups = False, []
        report.strategy_tags_error = f"{exc.errcode}: {exc.errmsg}"[:200]
    groups += [g for g in strategy_groups if not g.deleted]
    mirror = mirror_tag_library(
        db, org_id, mirrored_groups(groups), complete=True, origin=ORIGIN, strategies_read=strategies_read
    )
    for (kind, what), n in sorted(mirror.counts.items()):
        report.count(kind, what, n)
    for text in mirror.samples:
        report.sample("tags", text)
    state.tags = dict(mirror.tags)


# --- members ---------------------------------------------------------------------------------------


def _sync_members(db: Session, org_id: int, userids: list[str], report: SyncReport, state: SyncState) -> None:
    existing = wecom_accounts_by_userid(db, org_id)
    for userid in userids:
        if userid not in existing:
            existing[userid] = ensure_wecom_account(db, org_id, userid).id
            report.count("accounts", "created")
            report.sample("accounts", f"created WeCom member {userid}")
        state.accounts[userid] = existing[userid]
    state.wecom_accounts = set(existing.values())


# --- after the contacts ----------------------------------------------------------------------------


def _note_unlicensed(unlicensed: set[str], report: SyncReport, state: SyncState) -> None:
    """Remember the members WeCom would not read: the sync leaves their relations and tags alone."""
    if not unlicensed:
        return
    report.unlicensed_members = sorted(unlicensed)
    state.unlicensed = {state.accounts[u] for u in unlicensed if u in state.accounts}
    report.sample(
        "accounts",
        f"{len(unlicensed)} members without an interoperability licence: their customers left as they were",
    )


def _end_stale_follows(db: Session, org_id: int, report: SyncReport, state: SyncState) -> None:
    """End active follows of listed members that WeCom no longer has (a deletion whose callback was lost).

    The candidates are the relations `preload` read when the sync started (kept current through merges),
    not a second read of the whole table: that re-read 150,000 rows in a 100,000-contact sync, and it would
    also have ended relations a callback added during the sync after their member's pages were read.
    """
    # An unlicensed member's customers were not listed, not deleted: WeCom did not say either way.
    listed = set(state.accounts.values()) - state.unlicensed
    active = FollowStatus.active.value
    seen = state.seen_follows
    stale = sorted(
        key
        for key, status in state.follows.items()
        if status == active and key[1] in listed and key not in seen
    )
    if not stale:
        return
    # WeCom does not say who deleted whom; a relation that vanished is most often the customer's doing.
    # Only still-active rows end: a callback may have ended one meanwhile, with its own reason and time.
    ended = bulk.end_follows(db, org_id, stale, by="customer", origin=ORIGIN)
    report.count("follows", "ended", ended)
    userid_of = {v: k for k, v in state.accounts.items()}
    for cid, aid in stale[:10]:
        report.sample("follows", f"ended customer {cid} / {userid_of.get(aid, aid)} (gone from WeCom)")


def _reconcile_customer_tags(db: Session, org_id: int, report: SyncReport, state: SyncState) -> None:
    """Customer tags of WeCom tags follow WeCom, for the customers the sync saw; hand-made tags stay.

    A customer an unlicensed member also follows keeps the WeCom tags the sync did not see: that member's
    tags on them were not listed."""
    seen = state.customers
    if state.unlicensed:
        active = FollowStatus.active.value
        unread = {
            cid
            for (cid, aid), status in state.follows.items()
            if aid in state.unlicensed and status == active
        }
        seen = seen - unread
    added, removed = bulk.replace_tags(
        db,
        org_id,
        state.wanted_tags,
        seen,
        state.tags.values(),
        origin=ORIGIN,
        backfill=state.first,
    )
    if added:
        report.count("customer_tags", "created", added)
        report.sample("customer_tags", f"tagged {added} customers as WeCom shows")
    if removed:
        report.count("customer_tags", "ended", removed)
        report.sample("customer_tags", f"removed {removed} tags WeCom no longer shows")


# --- running and recording -------------------------------------------------------------------------


#: A run still marked running this long after it started was interrupted (its process died): a new
#: sync may start, and the console says so. A sync of a million contacts at the quota takes minutes.
RUN_STALE_AFTER = timedelta(hours=1)


def last_run(db: Session, org_id: int) -> WeComSyncRun | None:
    """The organization's last sync run (running, succeeded or failed), if any."""
    return db.scalar(select(WeComSyncRun).where(WeComSyncRun.org_id == org_id))


def is_running(run: WeComSyncRun | None) -> bool:
    """Whether this run is in progress (marked running, and not so long ago that it must have died)."""
    return run is not None and run.status == "running" and run.started_at > utcnow() - RUN_STALE_AFTER


def ensure_not_running(run: WeComSyncRun | None) -> None:
    """Refuse (Conflict) to start a sync while this run is in progress."""
    if run is not None and is_running(run):
        raise Conflict(
            f"a sync with WeCom is already running (started {run.started_at:%Y-%m-%d %H:%M} UTC)",
            field="sync",
        )


def _record(db: Session, org_id: int, run: WeComSyncRun | None = None, **values: Any) -> WeComSyncRun:
    """Write these values on the organization's run row (``run`` when already read), creating it first."""
    run = run or last_run(db, org_id)
    if run is None:
        run = WeComSyncRun(org_id=org_id)
        db.add(run)
    for key, value in values.items():
        setattr(run, key, value)
    db.flush()
    return run


def _claim_run(factory: sessionmaker[Session], org_id: int, started: datetime) -> None:
    """Mark the organization's sync as running (committed, so the console shows it); Conflict if one runs."""
    with transaction(factory) as db:
        run = db.scalar(select(WeComSyncRun).where(WeComSyncRun.org_id == org_id).with_for_update())
        ensure_not_running(run)
        _record(db, org_id, run, status="running", started_at=started, finished_at=None, error="", report={})


def run_sync(
    factory: sessionmaker[Session],
    org_id: int,
    client: WeComSource,
    *,
    pacer: ApiPacer | None = None,
    chunk_size: int = 2000,
    include_groups: bool = True,
) -> SyncReport:
    """Sync in one transaction and store the report; a failure is recorded (in its own transaction) and re-raised.

    The run is marked running first, in its own transaction, and a second sync of the organization is
    refused (Conflict) while one runs."""
    started = utcnow()
    _claim_run(factory, org_id, started)
    try:
        with transaction(factory) as db:
            report = full_sync(
                db, org_id, client, pacer=pacer, chunk_size=chunk_size, include_groups=include_groups
            )
            _record(
                db,
                org_id,
                status="succeeded",
                started_at=started,
                finished_at=utcnow(),
                error="",
                report=report.model_dump(),
            )
        return report
    except Exception as exc:
        with transaction(factory) as db:
            _record(
                db,
                org_id,
                status="failed",
                started_at=started,
                finished_at=utcnow(),
                error=f"{type(exc).__name__}: {exc}"[:2000],
                report={},
            )
        raise


def sync_org(factory: sessionmaker[Session], org_id: int, secret_key: str) -> SyncReport:
    """Sync an organization with the client built from its stored credentials (for the worker)."""
    from siyu.wecom.credentials import client_for, load_plain
    from siyu.wecom.pacing import pacer_for

    with transaction(factory) as db:
        creds = load_plain(db, org_id, secret_key)
    return run_sync(factory, org_id, client_for(creds), pacer=pacer_for(creds.corp_id))
