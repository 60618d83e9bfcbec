"""Submitting a reserved mass message to WeCom, in the worker, so that a crash at any moment neither loses
nor repeats a recipient.

`sending.reserve` has committed one "reserved" row per recipient. `run` then, holding the message's
`process_lock` (released by the database or the kernel the moment its process dies, so a successor can tell
"still running" from "crashed" at once):

1. cuts the reserved rows into batches, one sender and at most `per_task` recipients each, and commits them
   (`wecom_mass_batches`, each row pointing at its batch);
2. for each batch, commits the batch as `calling` (with the time) BEFORE calling add_msg_template, then
   commits WeCom's msgid and per-recipient answer in one transaction: a crash leaves at most one batch whose
   fate is unknown, and it is marked as such;
3. a batch found `calling` by a later run is looked up in WeCom (`find_task`): the tasks listed by
   get_groupmsg_list_v2 since its call (paged in windows of at most `LIST_WINDOW`: WeCom refuses a range
   over one month) with the same text, not claimed by any other batch (`(org_id, msgid)` is unique), whose
   recipients for this sender (get_groupmsg_send_result) are exactly the batch's recipients, or a subset
   of them (the rest were in WeCom's fail_list). `creator` is not used: WeCom does not return it for tasks
   created through the API. Found: the batch is recorded with that task; not found: it never reached WeCom
   and is called again. Before looking, a run waits until `IN_FLIGHT_GRACE` after the call started, so a
   request still on its way when its process died has landed;
4. when WeCom refuses a whole call for its sender (40003: the member left, 60111, 84074...), that batch's
   recipients fail with the reason in words and the other senders go on. Rate limits, busy answers and
   lost connections stop the run (the message stays "submitting" and is resumed); an answered error means
   no task was made, so the batch goes back to `planned`.

A message stopped half-way (the worker was killed) is resumed by `resume_stalled`, which the worker runs at
start-up and every minute: every message "submitting" or "cancelling" whose lock nobody holds. An admin may
cancel: the run (or the next one) settles the batch it may have been calling and cancels the batches not
yet called, whose rows stop counting against the cap.

For groups WeCom lists a task's groups only once they are sent, so a group batch is recognised by text,
sender and time alone: two same-text group batches of one sender both crashed mid-call could be told apart
only by chance. Nothing in add_msg_template carries an identity of the caller's choosing.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from siyu.accounts.models import Account
from siyu.campaigns.models import (
    BatchState,
    MassBatch,
    MassChatType,
    MassGroupSend,
    MassMessage,
    MassMessageStatus,
    MassSend,
    SendStatus,
)
from siyu.campaigns.sending import Audience, SubmitResult, get_message, paged, settle_rows
from siyu.integrations.channel import MassMessageRecord, MassMessenger, MessageContent
from siyu.integrations.wecom.errors import (
    RETRYABLE_ERRCODES,
    WeComAuthError,
    WeComError,
    WeComPermissionError,
    WeComRateLimited,
    WeComTransportError,
)
from siyu.kit.bulk import IN_LIST_SIZE, chunked
from siyu.kit.clock import ensure_utc, utcnow
from siyu.kit.db import transaction
from siyu.kit.errors import Conflict
from siyu.kit.locks import is_locked, process_lock

log = logging.getLogger(__name__)

LOCK = "mass-message"
#: How long after a call started its request may still reach WeCom (it was sent as the process died).
IN_FLIGHT_GRACE = timedelta(seconds=3)
#: get_groupmsg_list_v2 refuses a range over one month ("起止时间间隔不能超过1个月"); 28 days is within a
#: month whichever month it starts in.
LIST_WINDOW = timedelta(days=28)
#: siyu's clock and WeCom's may differ; tasks are looked for this much either side of the call.
CLOCK_SKEW = timedelta(minutes=10)
_ACTIVE = (MassMessageStatus.submitting, MassMessageStatus.cancelling)
_OPEN = (BatchState.planned, BatchState.calling)
CANCELLED = "the mass message was cancelled before this part reached WeCom"


@dataclass
class _Batch:
    """A batch as a run works on it."""

    id: int
    seq: int
    sender: str
    state: BatchState
    called_at: datetime | None
    sends: list[tuple[int, str]]  # (send row id, WeCom address)


def _engine(factory: sessionmaker[Session]) -> Engine:
    bind = factory.kw["bind"]
    assert isinstance(bind, Engine), "the sessionmaker is bound to an engine"
    return bind


def is_running(factory: sessionmaker[Session], message_id: int) -> bool:
    """Whether a live process is submitting this message right now."""
    return is_locked(_engine(factory), LOCK, message_id)


def run(
    factory: sessionmaker[Session],
    org_id: int,
    message_id: int,
    client: MassMessenger,
    audience: Audience,
    *,
    grace: timedelta = IN_FLIGHT_GRACE,
) -> SubmitResult | None:
    """Submit (or resume, or finish cancelling) a reserved message; None when another live process holds it."""
    with process_lock(_engine(factory), LOCK, message_id) as taken:
        if not taken:
            return None
        return _run(factory, org_id, message_id, client, audience, grace)


def _run(
    factory: sessionmaker[Session],
    org_id: int,
    message_id: int,
    client: MassMessenger,
    audience: Audience,
    grace: timedelta,
) -> SubmitResult:
    result = SubmitResult(message_id=message_id)
    with factory() as db:
        msg = get_message(db, org_id, message_id)
        if msg.status not in _ACTIVE:
            return result
        content = MessageContent(text=msg.text, attachments=tuple(msg.attachments or ()))
    _cut_batches(factory, org_id, message_id, audience)
    for batch in _open_batches(factory, audience, message_id):
        cancelling = _status(factory, org_id, message_id) == MassMessageStatus.cancelling
        if batch.state == BatchState.calling:
            found = find_task(factory, org_id, client, audience, batch, content.text, grace)
            if found is not None:
                msgid, present = found
                _record(factory, org_id, message_id, audience, batch, msgid, present, result, recovered=True)
                continue
        if cancelling:
            _cancel_batch(factory, org_id, message_id, audience, batch)
            continue
        _call(factory, org_id, message_id, client, audience, batch, content, result)
    _finish(factory, org_id, message_id, audience)
    return result


def _status(factory: sessionmaker[Session], org_id: int, message_id: int) -> MassMessageStatus:
    with factory() as db:
        return get_message(db, org_id, message_id).status


def _cut_batches(factory: sessionmaker[Session], org_id: int, message_id: int, audience: Audience) -> None:
    """Put every reserved row not yet in a batch into one: per sender, at most `per_task` rows a batch."""
    model = audience.model
    with transaction(factory) as db:
        rows = db.execute(
            select(model.id, model.account_id, Account.external_id)
            .join(Account, Account.id == model.account_id)
            .where(
                model.message_id == message_id,
                model.status == SendStatus.reserved,
                model.batch_id.is_(None),
            )
            .order_by(model.id)
        ).all()
        if not rows:
            return
        seq = db.scalar(select(func.max(MassBatch.seq)).where(MassBatch.message_id == message_id)) or 0
        by_sender: dict[tuple[str, int], list[int]] = defaultdict(list)
        for send_id, account_id, userid in rows:
            by_sender[(userid, account_id)].append(send_id)
        for (userid, account_id), ids in by_sender.items():
            for part in chunked(ids, audience.per_task):
                seq += 1
                batch = MassBatch(
                    org_id=org_id,
                    message_id=message_id,
                    seq=seq,
                    sender=userid,
                    account_id=account_id,
                    recipients=len(part),
                    state=BatchState.planned,
                    outcome="",
                )
                db.add(batch)
                db.flush()
                for some in chunked(list(part), IN_LIST_SIZE):
                    db.execute(
                        update(model)
                        .where(model.id.in_(some))
                        .values(batch_id=batch.id)
                        .execution_options(synchronize_session=False)
                    )


def _open_batches(factory: sessionmaker[Session], audience: Audience, message_id: int) -> Iterator[_Batch]:
    """The message's batches not yet answered, in order, each with its reserved rows."""
    model = audience.model
    with factory() as db:
        batches = list(
            db.scalars(
                select(MassBatch)
                .where(MassBatch.message_id == message_id, MassBatch.state.in_(_OPEN))
                .order_by(MassBatch.seq)
            )
        )
        found = [(b.id, b.seq, b.sender, b.state, b.called_at) for b in batches]
    for batch_id, seq, sender, state, called_at in found:
        with factory() as db:
            sends = [
                (int(i), str(a))
                for i, a in db.execute(
                    select(model.id, getattr(model, audience.address))
                    .where(model.batch_id == batch_id, model.status == SendStatus.reserved)
                    .order_by(model.id)
                )
            ]
        yield _Batch(batch_id, seq, sender, state, called_at and ensure_utc(called_at), sends)


def _call(
    factory: sessionmaker[Session],
    org_id: int,
    message_id: int,
    client: MassMessenger,
    audience: Audience,
    batch: _Batch,
    content: MessageContent,
    result: SubmitResult,
) -> None:
    """Record the call as started, make it, record its answer."""
    with transaction(factory) as db:
        db.execute(
            update(MassBatch)
            .where(MassBatch.id == batch.id)
            .values(state=BatchState.calling, called_at=utcnow())
        )
    addresses = [a for _, a in batch.sends]
    to_groups = audience.chat_type == MassChatType.group
    try:
        submission = client.submit_mass_message(
            content,
            external_userids=() if to_groups else addresses,
            chat_ids=addresses if to_groups else (),
            sender=batch.sender,
            chat_type=audience.chat_type.value,
        )
    except WeComError as exc:
        if isinstance(exc, WeComTransportError):
            raise  # the call may have reached WeCom: the batch stays "calling" and is looked up next run
        # WeCom answered, so no task was made.
        if _stops_the_run(exc):
            _set_state(factory, batch.id, BatchState.planned)
            raise
        _refuse(factory, org_id, message_id, audience, batch, exc)
        result.failed += len(batch.sends)
        return
    msgid = submission.msgids[0] if submission.msgids else ""
    refused = set(submission.fail_list)
    present = {a for a in addresses if a not in refused}
    _record(factory, org_id, message_id, audience, batch, msgid, present, result, recovered=False)


def _stops_the_run(exc: WeComError) -> bool:
    """An answer about the organization or the moment, not about this sender: try the batch again later."""
    return (
        isinstance(exc, WeComAuthError | WeComPermissionError | WeComRateLimited)
        or exc.errcode in RETRYABLE_ERRCODES
    )


def _set_state(factory: sessionmaker[Session], batch_id: int, state: BatchState) -> None:
    with transaction(factory) as db:
        db.execute(update(MassBatch).where(MassBatch.id == batch_id).values(state=state))


def _record(
    factory: sessionmaker[Session],
    org_id: int,
    message_id: int,
    audience: Audience,
    batch: _Batch,
    msgid: str,
    present: set[str],
    result: SubmitResult,
    *,
    recovered: bool,
) -> None:
    """In one transaction: the batch has WeCom task `msgid`, holding the recipients at `present`; the others
    of the batch were refused by WeCom."""
    ok = [i for i, a in batch.sends if a in present]
    bad = [i for i, a in batch.sends if a not in present]
    words = f"WeCom task {msgid}: {len(ok)} submitted" + (f", {len(bad)} refused" if bad else "")
    with transaction(factory) as db:
        db.execute(
            update(MassBatch)
            .where(MassBatch.id == batch.id)
            .values(state=BatchState.submitted, msgid=msgid or None, settled_at=utcnow(), outcome=words)
        )
        settle_rows(db, audience, org_id, message_id, ok, SendStatus.submitted, msgid)
        settle_rows(
            db, audience, org_id, message_id, bad, SendStatus.failed, msgid, audience.refused(batch.sender)
        )
    if recovered:
        result.recovered += len(ok)
    else:
        result.submitted += len(ok)
    result.failed += len(bad)
    result.msgids.append(msgid)


def _refuse(
    factory: sessionmaker[Session],
    org_id: int,
    message_id: int,
    audience: Audience,
    batch: _Batch,
    exc: WeComError,
) -> None:
    """WeCom refused the whole call for this sender: its recipients fail, with WeCom's reason in words."""
    words = f"WeCom refused to send as {batch.sender} ({exc.errcode}): {exc.explanation}"
    if exc.errcode in (40003, 60111):
        words += " The member may have left the company: hand their customers over, then send again."
    with transaction(factory) as db:
        db.execute(
            update(MassBatch)
            .where(MassBatch.id == batch.id)
            .values(state=BatchState.refused, settled_at=utcnow(), outcome=words[:300])
        )
        settle_rows(
            db, audience, org_id, message_id, [i for i, _ in batch.sends], SendStatus.failed, "", words
        )


def _cancel_batch(
    factory: sessionmaker[Session], org_id: int, message_id: int, audience: Audience, batch: _Batch
) -> None:
    with transaction(factory) as db:
        db.execute(
            update(MassBatch)
            .where(MassBatch.id == batch.id)
            .values(state=BatchState.cancelled, settled_at=utcnow(), outcome=CANCELLED)
        )
        ids = [i for i, _ in batch.sends]
        settle_rows(db, audience, org_id, message_id, ids, SendStatus.cancelled, "", CANCELLED)


def _finish(factory: sessionmaker[Session], org_id: int, message_id: int, audience: Audience) -> None:
    """Close the message once no batch is open: cancelled, submitted, or failed (nobody was submitted)."""
    model = audience.model
    with transaction(factory) as db:
        msg = get_message(db, org_id, message_id)
        still_open = db.scalar(
            select(func.count())
            .select_from(MassBatch)
            .where(MassBatch.message_id == message_id, MassBatch.state.in_(_OPEN))
        )
        if still_open:
            return
        if msg.status == MassMessageStatus.cancelling:
            # Rows never put in a batch (reserved after the last cut) are cancelled too.
            loose = list(
                db.scalars(
                    select(model.id).where(
                        model.message_id == message_id, model.status == SendStatus.reserved
                    )
                )
            )
            settle_rows(db, audience, org_id, message_id, loose, SendStatus.cancelled, "", CANCELLED)
        reached = db.scalar(
            select(func.count())
            .select_from(model)
            .where(
                model.message_id == message_id,
                model.status.in_((SendStatus.submitted, SendStatus.sent, SendStatus.not_friend)),
            )
        )
        if msg.status == MassMessageStatus.cancelling:
            msg.status = MassMessageStatus.cancelled
            if reached:
                msg.submitted_at = utcnow()  # its submitted part is read back like any other's
            return
        msg.status = MassMessageStatus.submitted if reached else MassMessageStatus.failed
        msg.submitted_at = utcnow()


# --- recovery -------------------------------------------------------------------------------------------


def listed_tasks(
    client: MassMessenger, start: datetime, end: datetime, chat_type: MassChatType
) -> Iterator[MassMessageRecord]:
    """Every task get_groupmsg_list_v2 lists between `start` and `end`, asked in windows of `LIST_WINDOW`."""
    at = ensure_utc(start)
    end = ensure_utc(end)
    while at < end:
        upto = min(at + LIST_WINDOW, end)
        yield from paged(partial(client.list_mass_messages, at, upto, chat_type=chat_type.value))
        at = upto


def _claimed(db: Session, org_id: int, since: datetime) -> set[str]:
    """msgids already recorded for some batch or send of the organization since `since`."""
    claimed = {m for m in db.scalars(select(MassBatch.msgid).where(MassBatch.org_id == org_id)) if m}
    for model in (MassSend, MassGroupSend):
        claimed.update(
            db.scalars(
                select(model.msgid)
                .where(model.org_id == org_id, model.reserved_at >= since, model.msgid != "")
                .distinct()
            )
        )
    return claimed


def find_task(
    factory: sessionmaker[Session],
    org_id: int,
    client: MassMessenger,
    audience: Audience,
    batch: _Batch,
    text: str,
    grace: timedelta = IN_FLIGHT_GRACE,
) -> tuple[str, set[str]] | None:
    """The WeCom task a `calling` batch made, as (msgid, the batch's addresses it holds); None if it made none."""
    assert batch.called_at is not None
    wait = (batch.called_at + grace - utcnow()).total_seconds()
    if wait > 0:
        time.sleep(wait)
    start = batch.called_at - CLOCK_SKEW
    with factory() as db:
        claimed = _claimed(db, org_id, start - timedelta(days=1))
    wanted = {a for _, a in batch.sends}
    best: tuple[str, set[str]] | None = None
    for record in listed_tasks(client, start, utcnow() + CLOCK_SKEW, audience.chat_type):
        if record.msgid in claimed or record.text != text:
            continue
        held = {
            getattr(s, audience.address)
            for s in paged(partial(client.list_mass_send_results, record.msgid, batch.sender))
            if s.userid in ("", batch.sender)
        }
        if audience.lists_unsent:
            if not held or not held <= wanted:
                continue  # another sender's task, or one made for other recipients
            if held == wanted:
                return record.msgid, held
            if best is None or len(held) > len(best[1]):
                best = (record.msgid, held)
        elif held <= wanted and (
            held or batch.sender in {t.userid for t in paged(partial(client.list_mass_tasks, record.msgid))}
        ):
            return record.msgid, wanted  # unsent groups are not listed: the task holds the whole batch
    return best


# --- resuming and cancelling -----------------------------------------------------------------------------


def stalled(factory: sessionmaker[Session]) -> list[tuple[int, int]]:
    """(org_id, message_id) of every message being submitted or cancelled that no live process holds."""
    with factory() as db:
        found = db.execute(
            select(MassMessage.org_id, MassMessage.id)
            .where(MassMessage.status.in_(_ACTIVE))
            .order_by(MassMessage.id)
        ).all()
    return [(int(o), int(m)) for o, m in found if not is_running(factory, int(m))]


def request_cancel(db: Session, org_id: int, message_id: int) -> MassMessage:
    """Ask for a message being submitted to stop: batches not yet called will not be (flushes)."""
    msg = get_message(db, org_id, message_id)
    if msg.status not in _ACTIVE:
        raise Conflict(
            f"only a message being submitted can be cancelled, not a {msg.status.value} one",
            field="message_id",
        )
    msg.status = MassMessageStatus.cancelling
    db.flush()
    return msg


def progress(db: Session, message_id: int) -> list[dict[str, object]]:
    """The message's batches for the console: sender, recipients, state and outcome in words."""
    return [
        {
            "seq": b.seq,
            "sender": b.sender,
            "recipients": b.recipients,
            "state": b.state.value,
            "msgid": b.msgid or "",
            "outcome": b.outcome,
        }
        for b in db.scalars(
            select(MassBatch).where(MassBatch.message_id == message_id).order_by(MassBatch.seq)
        )
    ]
