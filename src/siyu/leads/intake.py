"""Comment intake: the Douyin webhook and CSV/JSON imports land here, get classified, and become leads.

Inbox-first: a delivery is verified, recorded once by (org, platform, Msg-Id), its comment stored once by
(org, platform, comment id), classified, and only a *new* high-intent comment makes a lead. A retry or a
re-import therefore never makes a second lead, and a rejected delivery stores nothing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from siyu.customers import profiles
from siyu.customers.models import IdentityKind
from siyu.customers.recording import record
from siyu.events.vocabulary import EventType
from siyu.integrations.douyin import webhook as dy
from siyu.kit.bulk import ImportReport, RowError, insert_ignore, open_csv
from siyu.kit.clock import ensure_utc, utcnow
from siyu.kit.crypto import decrypt_secret
from siyu.kit.errors import DomainError, Forbidden, Invalid, NotFound
from siyu.leads.intent import IntentClassifier, org_classifier
from siyu.leads.models import Comment, DouyinApp, Lead, LeadStatus, Platform, WebhookReceipt
from siyu.tenancy.service import organization_by_slug

# Intents worth an immediate reply; the others stay in the comment log for analysis.
HIGH_INTENTS: Final = frozenset({"material", "purchase"})
MIN_LEAD_CONFIDENCE: Final = 0.5
DEFAULT_REPLY_SECONDS: Final = 300
MAX_IMPORT_ROWS: Final = 50_000

# A classifier, or a function giving an organization's (its id in, its layer or the shared base out): the
# first fit takes seconds, so callers defer it until a comment actually needs classifying (a rejected or
# duplicate webhook never pays for it). None: the organization's classifier in this process.
ClassifierSource = IntentClassifier | Callable[[int], IntentClassifier] | None


class BadRequest(DomainError):
    """A malformed webhook body."""

    status_code = 400


class BadSignature(DomainError):
    """A webhook without a valid signature."""

    status_code = 401


@dataclass(frozen=True, slots=True)
class IncomingComment:
    """A comment from any platform, before storage."""

    platform: Platform
    external_id: str
    content: str
    commented_at: datetime
    item_id: str = ""
    item_title: str = ""
    commenter_id: str = ""
    commenter_name: str = ""


@dataclass
class IntakeResult:
    """What an intake call stored: new comments, comments already known, and the leads created."""

    new_comment_ids: list[int] = field(default_factory=list)
    duplicates: int = 0
    lead_ids: list[int] = field(default_factory=list)


def is_high_intent(intent: str, confidence: float) -> bool:
    """Whether a classified comment deserves a lead with a reply deadline."""
    return intent in HIGH_INTENTS and confidence >= MIN_LEAD_CONFIDENCE


def source_detail_for(platform: str, item_id: str, item_title: str = "") -> str:
    """The customer's source detail naming the content the comment was under."""
    what = item_title or item_id
    return f"{platform} video {what}"[:200] if what else platform


def _customer_for(db: Session, org_id: int, c: IncomingComment) -> int | None:
    # Only Douyin gives a stable user id the identity model knows; other platforms' exports
    # link to a customer later, when the commenter adds an account through the code.
    if c.platform != Platform.douyin or not c.commenter_id:
        return None
    customer, _ = profiles.find_or_create_by_identity(
        db,
        org_id,
        IdentityKind.douyin_open_id,
        c.commenter_id,
        {
            "name": c.commenter_name[:120],
            "source": "douyin_comment",
            "source_detail": source_detail_for("douyin", c.item_id, c.item_title),
        },
    )
    return customer.id


def create_lead(db: Session, comment: Comment, intent: str, reply_seconds: int, now: datetime) -> Lead | None:
    """Open a lead for the comment unless it has one; the deadline counts from ``now``."""
    new_id = db.scalar(
        insert_ignore(db, Lead.__table__, ["comment_id"])
        .values(
            org_id=comment.org_id,
            comment_id=comment.id,
            customer_id=comment.customer_id,
            intent=intent,
            status=LeadStatus.open.value,
            created_at=now,
            reply_due_at=now + timedelta(seconds=reply_seconds),
            reply_text="",
            code_url="",
            reply_ref="",
        )
        .returning(Lead.__table__.c.id)
    )
    # RETURNING yields no row on conflict (rowcount is -1 on PostgreSQL with RETURNING, so not usable).
    return None if new_id is None else db.get(Lead, new_id)


def ingest_comments(
    db: Session,
    org_id: int,
    comments: Sequence[IncomingComment],
    *,
    origin: str = "webhook",
    reply_seconds: int = DEFAULT_REPLY_SECONDS,
    classifier: ClassifierSource = None,
    now: datetime | None = None,
) -> IntakeResult:
    """Store, classify and turn into leads the comments not seen before (idempotent per platform comment id)."""
    now = ensure_utc(now) if now is not None else utcnow()
    result = IntakeResult()
    seen: set[tuple[str, str]] = set()
    batch: list[IncomingComment] = []
    for c in comments:
        key = (c.platform.value, c.external_id)
        if key in seen:
            result.duplicates += 1
            continue
        seen.add(key)
        batch.append(c)
    if not batch:
        return result
    if classifier is None:
        clf = org_classifier(org_id)
    elif isinstance(classifier, IntentClassifier):
        clf = classifier
    else:
        clf = classifier(org_id)
    verdicts = clf.classify_many([c.content for c in batch])
    table = Comment.__table__
    for c, verdict in zip(batch, verdicts, strict=True):
        new_id = db.scalar(
            insert_ignore(db, table, ["org_id", "platform", "external_id"])
            .values(
                org_id=org_id,
                platform=c.platform.value,
                external_id=c.external_id,
                item_id=c.item_id,
                item_title=c.item_title,
                commenter_id=c.commenter_id,
                commenter_name=c.commenter_name,
                content=c.content,
                commented_at=ensure_utc(c.commented_at),
                received_at=now,
                intent=verdict.intent,
                confidence=verdict.confidence,
                matched_rule=verdict.matched_rule,
                origin=origin,
            )
            .returning(table.c.id)
        )
        if new_id is None:
            result.duplicates += 1
            continue
        comment = db.get(Comment, new_id)
        assert comment is not None
        result.new_comment_ids.append(comment.id)
        comment.customer_id = _customer_for(db, org_id, c)
        db.flush()
        lead = (
            create_lead(db, comment, verdict.intent, reply_seconds, now)
            if is_high_intent(verdict.intent, verdict.confidence)
            else None
        )
        if lead is not None:
            result.lead_ids.append(lead.id)
        if comment.customer_id is not None:  # a commenter known by id (Douyin); others are linked later
            record(
                db,
                org_id,
                comment.customer_id,
                EventType.lead_commented,
                at=c.commented_at,
                origin="import" if origin == "import" else c.platform.value,
                key=f"lead_commented:{c.platform.value}:{c.external_id}"[:128],
                source=f"{c.platform.value}_comment",
                lead_id=lead.id if lead is not None else None,
                comment_id=c.external_id,
                platform=c.platform.value,
                intent=verdict.intent,
                confidence=round(verdict.confidence, 4),
            )
    db.flush()
    return result


# --- the Douyin webhook -----------------------------------------------------------------------------


def _douyin_app(db: Session, org_slug: str) -> DouyinApp:
    org = organization_by_slug(db, org_slug)
    app = db.scalar(select(DouyinApp).where(DouyinApp.org_id == org.id))
    if app is None:
        raise NotFound("this organization has no Douyin app configured", field="org")
    return app


def handle_douyin_webhook(
    db: Session,
    org_slug: str,
    body: bytes,
    signature: str | None,
    msg_id: str | None,
    secret_key: str,
    *,
    reply_seconds: int = DEFAULT_REPLY_SECONDS,
    classifier: ClassifierSource = None,
) -> dict[str, Any]:
    """Verify, dedupe and ingest one webhook delivery; returns the JSON to answer with (200).

    Douyin's URL verification (``verify_webhook``) carries an empty client key and may come unsigned: it
    is answered with its challenge when any signature it has matches and any client key it names is this
    app's. It writes nothing, and echoing a challenge tells the sender nothing."""
    app = _douyin_app(db, org_slug)
    try:
        parsed: dy.DouyinEvent | None = dy.parse_event(body)
    except dy.WebhookError:
        parsed = None  # reported below, once the signature shows Douyin sent it
    verifying = parsed is not None and parsed.event == dy.VERIFY_EVENT
    if not signature and not verifying:
        raise BadSignature(f"missing {dy.SIGNATURE_HEADER} header", field=dy.SIGNATURE_HEADER)
    if signature and not dy.signature_ok(decrypt_secret(app.client_secret_enc, secret_key), body, signature):
        raise BadSignature(f"{dy.SIGNATURE_HEADER} does not match the body", field=dy.SIGNATURE_HEADER)
    try:
        event = parsed or dy.parse_event(body)
        if event.client_key != app.client_key and not (verifying and not event.client_key):
            raise Forbidden("client_key is not this organization's Douyin app", field="client_key")
        if verifying:
            return {"challenge": dy.challenge_of(event)}
        comment = dy.parse_comment(event) if event.event == dy.COMMENT_EVENT else None
    except dy.WebhookError as exc:
        raise BadRequest(str(exc), field=exc.field) from exc
    if comment is not None and classifier is not None and not isinstance(classifier, IntentClassifier):
        # Load (or first fit) the model before the first write, so no write lock is held meanwhile.
        classifier = classifier(app.org_id)
    delivery_id = (msg_id or "").strip() or event.log_id or hashlib.sha1(body).hexdigest()
    receipt_id = db.scalar(
        insert_ignore(db, WebhookReceipt.__table__, ["org_id", "platform", "msg_id"])
        .values(
            org_id=app.org_id,
            platform=Platform.douyin.value,
            msg_id=delivery_id[:128],
            event=event.event[:60],
            body=dy.without_nul(json.loads(body)),
            received_at=utcnow(),
        )
        .returning(WebhookReceipt.__table__.c.id)
    )
    if receipt_id is None:
        return {"status": "duplicate"}
    if comment is None:
        return {"status": "ignored", "event": event.event}
    if app.account_open_id and comment.comment_user_id == app.account_open_id:
        # Our own replies under the video come back as comment events too.
        return {"status": "own_reply"}
    result = ingest_comments(
        db,
        app.org_id,
        [
            IncomingComment(
                platform=Platform.douyin,
                external_id=comment.comment_id,
                content=comment.content,
                commented_at=comment.created_at,
                item_id=comment.item_id,
                commenter_id=comment.comment_user_id,  # Douyin sends no name: the inbox says so
            )
        ],
        origin="webhook",
        reply_seconds=reply_seconds,
        classifier=classifier,
    )
    return {
        "status": "stored" if result.new_comment_ids else "duplicate",
        "lead_id": result.lead_ids[0] if result.lead_ids else None,
    }


# --- file import (platforms without an open API) ----------------------------------------------------

FIELD_ALIASES: Final[dict[str, tuple[str, ...]]] = {
    "external_id": ("comment_id", "id", "评论id", "评论ID"),
    "content": ("content", "text", "comment", "评论内容", "内容"),
    "commented_at": ("commented_at", "created_at", "create_time", "time", "评论时间", "时间"),
    "item_id": ("item_id", "video_id", "note_id", "room_id", "作品id", "视频id", "笔记id", "直播间id"),
    "item_title": ("item_title", "title", "video_title", "作品标题", "标题"),
    "commenter_id": ("user_id", "commenter_id", "用户id", "用户ID"),
    "commenter_name": ("user_name", "nickname", "nick_name", "commenter_name", "昵称", "用户昵称"),
}


def _parse_time(value: Any, now: datetime) -> datetime:
    if value is None or (isinstance(value, str) and not value.strip()):
        return now
    if (isinstance(value, (int, float)) and not isinstance(value, bool)) or (
        isinstance(value, str) and value.strip().isdigit()
    ):
        number = float(value)
        # Exports mix seconds and milliseconds.
        return datetime.fromtimestamp(number / 1000 if number > 1e11 else number, UTC)
    text = str(value).strip().replace("/", "-")
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        # Chinese platforms export local wall-clock time without an offset.
        from siyu.kit.clock import SHANGHAI

        parsed = parsed.replace(tzinfo=SHANGHAI)
    return parsed.astimezone(UTC)


def _row_to_comment(platform: Platform, row: dict[str, Any], now: datetime) -> IncomingComment:
    # No database text column can hold NUL (PostgreSQL refused the whole file with a 500): a bad row.
    for name, aliases in FIELD_ALIASES.items():
        if any(isinstance(row.get(alias), str) and "\x00" in row[alias] for alias in aliases):
            raise Invalid(f"{name} contains the NUL character (\\u0000)", field=name)

    def pick(name: str) -> Any:
        for alias in FIELD_ALIASES[name]:
            if alias in row and row[alias] not in (None, ""):
                return row[alias]
        return None

    external_id = pick("external_id")
    if external_id is None or not str(external_id).strip():
        raise Invalid("comment_id is required", field="comment_id")
    content = pick("content")
    if content is None or not isinstance(content, (str, int, float)):
        raise Invalid("content is required", field="content")
    try:
        commented_at = _parse_time(pick("commented_at"), now)
    except (ValueError, OverflowError, OSError) as exc:
        raise Invalid(f"commented_at is not a time: {pick('commented_at')!r}", field="commented_at") from exc
    if commented_at > now + timedelta(hours=1):
        raise Invalid("commented_at is in the future", field="commented_at")

    def text(name: str, limit: int) -> str:
        value = pick(name)
        return "" if value is None else str(value).strip()[:limit]

    return IncomingComment(
        platform=platform,
        external_id=str(external_id).strip()[:128],
        content=str(content)[:5000],
        commented_at=commented_at,
        item_id=text("item_id", 200),
        item_title=text("item_title", 200),
        commenter_id=text("commenter_id", 128),
        commenter_name=text("commenter_name", 120),
    )


def _rows(data: bytes, fmt: str) -> tuple[list[tuple[int, dict[str, Any]]], list[RowError]]:
    if fmt == "json":
        try:
            parsed = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise Invalid(f"the file is not JSON: {exc}", field="file") from exc
        if isinstance(parsed, dict) and isinstance(parsed.get("comments"), list):
            parsed = parsed["comments"]
        if not isinstance(parsed, list):
            raise Invalid('JSON must be an array of comment objects (or {"comments": [...]})', field="file")
        rows: list[tuple[int, dict[str, Any]]] = []
        errors: list[RowError] = []
        # JSON rows are numbered from 1 in array order.
        for i, item in enumerate(parsed, start=1):
            if isinstance(item, dict):
                rows.append((i, item))
            else:
                errors.append(RowError(row=i, reason="each comment must be a JSON object"))
        return rows, errors
    if fmt == "csv":
        source = open_csv(data)
        header = source.header
        return [(n, dict(zip(header, cells, strict=False))) for n, cells in source.rows], []
    raise Invalid(f"format must be csv or json, not {fmt!r}", field="format")


def import_comments(
    db: Session,
    org_id: int,
    platform: str,
    data: bytes,
    fmt: str,
    *,
    reply_seconds: int = DEFAULT_REPLY_SECONDS,
    classifier: ClassifierSource = None,
    now: datetime | None = None,
) -> ImportReport:
    """Import a comment export (CSV or JSON): good rows are ingested, bad rows reported by row number."""
    try:
        plat = Platform(platform)
    except ValueError:
        raise Invalid(
            f"platform must be one of {', '.join(p.value for p in Platform)}", field="platform"
        ) from None
    now = ensure_utc(now) if now is not None else utcnow()
    rows, errors = _rows(data, fmt)
    if len(rows) > MAX_IMPORT_ROWS:
        raise Invalid(f"at most {MAX_IMPORT_ROWS} comments per file; split it", field="file")
    report = ImportReport(rows_read=len(rows) + len(errors), errors=errors)
    good: list[IncomingComment] = []
    for number, row in rows:
        try:
            good.append(_row_to_comment(plat, row, now))
        except Invalid as exc:
            report.errors.append(RowError(row=number, field=exc.field, reason=exc.message))
    report.errors.sort(key=lambda e: e.row)
    result = ingest_comments(
        db, org_id, good, origin="import", reply_seconds=reply_seconds, classifier=classifier, now=now
    )
    report.created = len(result.new_comment_ids)
    report.unchanged = result.duplicates
    report.skipped = len(report.errors)
    return report
