"""Lead inbox rules: Douyin app config, reply templates, listing, replying with a channel code,
intent corrections and retraining, and converting a lead when the commenter adds an account."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Final

from sqlalchemy import bindparam, delete, or_, select, update
from sqlalchemy.orm import Session

from siyu.audit import service as audit
from siyu.audit.service import AuditAction
from siyu.customers import access, customer_tagging, merge, profiles, tagging
from siyu.customers.merge import register_merge_hook
from siyu.customers.models import Customer
from siyu.customers.recording import record
from siyu.events.bus import DomainEvent, subscriptions
from siyu.events.vocabulary import EventType
from siyu.integrations.channel import CommentReplier
from siyu.integrations.douyin.client import DouyinApiError, DouyinClient
from siyu.kit.bulk import IN_LIST_SIZE, chunked
from siyu.kit.clock import ensure_utc, utcnow
from siyu.kit.crypto import decrypt_secret, encrypt_secret
from siyu.kit.db import json_mentions
from siyu.kit.errors import Conflict, DomainError, Invalid, NotFound
from siyu.leads.intake import DEFAULT_REPLY_SECONDS, create_lead, is_high_intent
from siyu.leads.intent import classify
from siyu.leads.intent_rules import INTENT_WORDS, INTENTS
from siyu.leads.models import Comment, DouyinApp, Lead, LeadStatus, Platform, ReplyTemplate, WebhookReceipt
from siyu.tenancy.principal import Principal

# Seeded suggestions; {code} becomes the channel-code link, {name} the commenter's nickname.
DEFAULT_TEMPLATES: Final[dict[str, str]] = {
    "material": "{name}你好，资料已经整理好啦～添加顾问即可领取：{code}",
    "purchase": "{name}你好，感谢关注！添加顾问领取购买链接和专属优惠：{code}",
    "question": "{name}你好，这个问题顾问可以详细解答，欢迎添加：{code}",
    "complaint": "{name}非常抱歉给您带来不好的体验，请添加客服为您处理：{code}",
    "other": "感谢支持～更多福利请添加顾问：{code}",
}
MAX_TEMPLATE = 500


class PlatformError(DomainError):
    """The platform refused or could not take the reply."""

    status_code = 502


# --- Douyin app configuration --------------------------------------------------------------------


def configure_douyin(
    db: Session,
    org_id: int,
    secret_key: str,
    *,
    client_key: str,
    client_secret: str | None,
    account_open_id: str = "",
    access_token: str | None = "",
    api_base_url: str = "",
    actor: Principal | None = None,
) -> DouyinApp:
    """Create or replace the organization's Douyin app; secrets are stored encrypted. A secret given as
    None keeps the stored one (the console leaves secret fields empty); an empty access token removes it.
    Audited (without the secrets)."""
    app = db.scalar(select(DouyinApp).where(DouyinApp.org_id == org_id))
    if not client_key.strip():
        raise Invalid("client_key is required", field="client_key")
    if (client_secret is None and app is None) or (client_secret is not None and not client_secret.strip()):
        raise Invalid("client_secret is required", field="client_secret")
    if api_base_url and not api_base_url.startswith(("http://", "https://")):
        raise Invalid("api_base_url must be an http(s) URL", field="api_base_url")
    if app is None:
        app = DouyinApp(org_id=org_id)
        db.add(app)
    app.client_key = client_key.strip()
    if client_secret is not None:
        app.client_secret_enc = encrypt_secret(client_secret.strip(), secret_key)
    app.account_open_id = account_open_id.strip()
    if access_token is not None:
        app.access_token_enc = (
            encrypt_secret(access_token.strip(), secret_key) if access_token.strip() else ""
        )
    app.api_base_url = (api_base_url or "https://open.douyin.com").rstrip("/")
    db.flush()
    audit.record(
        db,
        org_id,
        AuditAction.douyin_app_saved,
        actor=actor,
        target_type="douyin_app",
        target_id=app.id,
        client_key=app.client_key,
        access_token_changed=access_token is not None,
    )
    return app


def douyin_app(db: Session, org_id: int) -> DouyinApp | None:
    """The organization's Douyin app, if configured."""
    return db.scalar(select(DouyinApp).where(DouyinApp.org_id == org_id))


def douyin_replier(db: Session, org_id: int, secret_key: str) -> CommentReplier | None:
    """A client replying as the org's Douyin account, or None when no account token is configured."""
    app = douyin_app(db, org_id)
    if app is None or not app.access_token_enc or not app.account_open_id:
        return None
    return DouyinClient(
        decrypt_secret(app.access_token_enc, secret_key), app.account_open_id, base_url=app.api_base_url
    )


# --- templates ------------------------------------------------------------------------------------


def _check_intent(intent: str, field: str = "intent") -> str:
    if intent not in INTENTS:
        raise Invalid(f"intent must be one of {', '.join(INTENTS)}, not {intent!r}", field=field)
    return intent


def reply_templates(db: Session, org_id: int) -> dict[str, str]:
    """Every intent's template: the organization's own, else the seeded default."""
    own = {t.intent: t.body for t in db.scalars(select(ReplyTemplate).where(ReplyTemplate.org_id == org_id))}
    return {intent: own.get(intent, DEFAULT_TEMPLATES[intent]) for intent in INTENTS}


def set_reply_template(db: Session, org_id: int, intent: str, body: str) -> ReplyTemplate:
    """Set the organization's template for one intent (it should contain {code})."""
    _check_intent(intent)
    body = body.strip()
    if not body:
        raise Invalid("the template is empty", field="body")
    if len(body) > MAX_TEMPLATE:
        raise Invalid(f"the template is longer than {MAX_TEMPLATE} characters", field="body")
    try:
        body.format(code="", name="")
    except (KeyError, IndexError, ValueError) as exc:
        raise Invalid(f"the template may only use {{code}} and {{name}}: {exc}", field="body") from exc
    row = db.scalar(
        select(ReplyTemplate).where(ReplyTemplate.org_id == org_id, ReplyTemplate.intent == intent)
    )
    if row is None:
        row = ReplyTemplate(org_id=org_id, intent=intent, body=body)
        db.add(row)
    row.body = body
    db.flush()
    return row


def chat_scripts(
    db: Session, org_id: int, name: str, *, lead_intent: str | None = None, intent_text: str | None = None
) -> list[tuple[str, str]]:
    """Every intent's template as a script for a chat with someone who is already a contact: ``{name}`` is
    their name and the code link (they need no code now) is left out. The intent of the lead that brought
    them comes first, else the intent the comment classifier reads in their profile's intent words."""
    first_intent = lead_intent or (classify(intent_text).intent if intent_text else None)
    scripts = []
    for intent, template in reply_templates(db, org_id).items():
        text = template.replace(NAME_PLACEHOLDER, name).replace(CODE_PLACEHOLDER, "")
        scripts.append((intent, text.rstrip(" ：:，,")))
    scripts.sort(key=lambda item: item[0] != first_intent)
    return scripts


CODE_PLACEHOLDER: Final = "{code}"
NAME_PLACEHOLDER: Final = "{name}"


def _mention(comment: Comment) -> str:
    return f"@{comment.commenter_name} " if comment.commenter_name else ""


def suggested_reply(db: Session, org_id: int, lead: Lead, comment: Comment) -> str:
    """The template of the lead's intent with the commenter's name filled in and ``{code}`` left in place.

    The suggestion is shown to the operator (console textarea, API) before a code is chosen; the reply
    path fills ``{code}`` with the link of the code it sends (see ``fill_reply``).
    """
    template = reply_templates(db, org_id)[lead.intent]
    return template.format(code=CODE_PLACEHOLDER, name=_mention(comment))


def fill_reply(text: str, code_url: str, mention: str) -> str:
    """The text to post: ``{name}`` filled, and the code link in it exactly once.

    Any text may carry the placeholders: an operator sends the suggestion back edited, or types them.
    The first ``{code}`` becomes the link and later ones are dropped; if the text already holds the
    link every ``{code}`` is dropped; if it holds neither, the link is appended. Only these two
    placeholders are replaced (plain replacement, not ``str.format``): other braces a person typed are
    sent as typed.
    """
    body = text.replace(NAME_PLACEHOLDER, mention)
    if code_url not in body:
        body = body.replace(CODE_PLACEHOLDER, code_url, 1)
    body = body.replace(CODE_PLACEHOLDER, "")
    if code_url not in body:
        # The code is the point of the reply: never send one without it.
        body = f"{body} {code_url}"
    return body.strip()


# --- inbox ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InboxRow:
    """A lead with its comment."""

    lead: Lead
    comment: Comment


def list_inbox(
    db: Session,
    principal: Principal,
    status: str = "open",
    limit: int = 100,
    before_id: int | None = None,
) -> list[InboxRow]:
    """The organization's leads, open ones by deadline (most urgent first), others newest first.

    Leads are a team queue over public comments, so every role of the organization sees them all.
    """
    stmt = (
        select(Lead, Comment)
        .join(Comment, Comment.id == Lead.comment_id)
        .where(Lead.org_id == principal.org_id)
    )
    if status == "open":
        stmt = stmt.where(Lead.status == LeadStatus.open).order_by(Lead.reply_due_at, Lead.id)
    elif status in ("replied", "dismissed"):
        stmt = stmt.where(Lead.status == LeadStatus(status)).order_by(Lead.id.desc())
    elif status == "all":
        stmt = stmt.order_by(Lead.id.desc())
    else:
        raise Invalid("status must be open, replied, dismissed or all", field="status")
    if before_id is not None and status != "open":
        stmt = stmt.where(Lead.id < before_id)
    return [InboxRow(lead, comment) for lead, comment in db.execute(stmt.limit(max(1, min(limit, 500))))]


def get_lead(db: Session, principal: Principal, lead_id: int) -> InboxRow:
    """One lead of the caller's organization (404 for another organization's)."""
    row = db.execute(
        select(Lead, Comment)
        .join(Comment, Comment.id == Lead.comment_id)
        .where(Lead.id == lead_id, Lead.org_id == principal.org_id)
    ).first()
    if row is None:
        raise NotFound("lead not found", field="lead_id")
    return InboxRow(row[0], row[1])


# --- replying -------------------------------------------------------------------------------------

# (db, org_id, lead, comment) -> (state, url) of the channel code to give; (db, org_id, code_id) -> the
# same for a code the operator chose. The channels domain's are wired in by ``siyu/subscriptions.py``
# (leads and channels never import each other); a deployment may override the provider (a code per lead).
CodeProvider = Callable[[Session, int, Lead, Comment], tuple[str, str]]
CodeLookup = Callable[[Session, int, int], tuple[str, str]]


@dataclass
class _CodeSource:
    provider: CodeProvider | None = None
    lookup: CodeLookup | None = None
    override: CodeProvider | None = None


_codes = _CodeSource()


def wire_channel_codes(provider: CodeProvider, lookup: CodeLookup) -> None:
    """How replies get channel codes by default (called once by ``siyu/subscriptions.py``)."""
    _codes.provider, _codes.lookup = provider, lookup


def register_code_provider(provider: CodeProvider | None) -> None:
    """Override how a replied lead gets its channel code (None restores the channels default)."""
    _codes.override = provider


def _wired() -> _CodeSource:
    subscriptions()  # loads siyu/subscriptions.py, which wires the channels domain in
    return _codes


def _provided_code(db: Session, org_id: int, lead: Lead, comment: Comment) -> tuple[str, str]:
    """The registered provider's code, else the channels domain's newest active code for the platform."""
    codes = _wired()
    provider = codes.override or codes.provider
    if provider is None:
        raise Invalid("no channel codes are set up: pass code_url", field="code_url")
    try:
        return provider(db, org_id, lead, comment)
    except Invalid as exc:
        if codes.override is not None:
            raise
        raise Invalid(
            f"no channel code to give: pass code_url or code_id ({exc.message})", field="code_url"
        ) from exc


def _channel_code(db: Session, org_id: int, code_id: int) -> tuple[str, str]:
    lookup = _wired().lookup
    if lookup is None:
        raise Invalid("no channel codes are set up: pass code_url", field="code_id")
    return lookup(db, org_id, code_id)


def lead_state(lead: Lead) -> str:
    """The default channel-code state for a lead; it comes back on the follow it brings."""
    return f"lead{lead.id}"


def reply_to_lead(
    db: Session,
    principal: Principal,
    lead_id: int,
    *,
    replier: CommentReplier | None,
    text: str | None = None,
    code_url: str | None = None,
    code_state: str | None = None,
    code_id: int | None = None,
    now: datetime | None = None,
    origin: str = "api",
) -> InboxRow:
    """Reply to the comment on its platform with the channel code, once; records the lead_replied event
    (an outbound touch: the commenter's stage moves to contacted).

    The lead is reserved (open -> replied) before the platform call, in the same transaction: a
    concurrent second reply finds it taken, and a failed call rolls the reservation back.
    """
    row = get_lead(db, principal, lead_id)
    lead, comment = row.lead, row.comment
    if lead.status != LeadStatus.open:
        raise Conflict(f"lead {lead_id} is already {lead.status.value}", field="lead_id")
    now = ensure_utc(now) if now is not None else utcnow()
    state, url = code_state or "", code_url or ""
    if code_id is not None:
        state, url = _channel_code(db, principal.org_id, code_id)
    if not url:
        state, url = _provided_code(db, principal.org_id, lead, comment)
    if not url:
        raise Invalid("no channel code to give: pass code_url or set up channel codes", field="code_url")
    state = (state or lead_state(lead))[:60]
    body = fill_reply(
        (text or "").strip() or suggested_reply(db, principal.org_id, lead, comment), url, _mention(comment)
    )
    taken = db.execute(
        update(Lead)
        .where(Lead.id == lead.id, Lead.status == LeadStatus.open)
        .values(
            status=LeadStatus.replied,
            replied_at=now,
            replied_by_id=principal.user_id,
            reply_text=body,
            code_state=state,
            code_url=url[:500],
        )
        .execution_options(synchronize_session=False)
    )
    if not taken.rowcount:  # type: ignore[attr-defined]
        raise Conflict(f"lead {lead_id} was just replied to by someone else", field="lead_id")
    reply_ref = "manual"
    if comment.platform == Platform.douyin:
        if replier is None:
            raise Invalid("the Douyin account is not connected: configure its access token", field="replier")
        try:
            reply_ref = replier.reply_to_comment(comment.item_id, comment.external_id, body)
        except DouyinApiError as exc:
            raise PlatformError(
                f"Douyin refused the reply: {exc.code} {exc.description}", field="reply"
            ) from exc
    db.execute(
        update(Lead)
        .where(Lead.id == lead.id)
        .values(reply_ref=reply_ref[:128])
        .execution_options(synchronize_session=False)
    )
    db.refresh(lead)
    if lead.customer_id is not None:  # a commenter known by id (Douyin); others are linked on conversion
        record(
            db,
            principal.org_id,
            lead.customer_id,
            EventType.lead_replied,
            at=now,
            origin=origin,
            key=f"lead_replied:{lead.id}",
            source=f"{comment.platform.value}_comment",
            lead_id=lead.id,
            comment_id=comment.external_id,
            platform=comment.platform.value,
            code_state=state,
            seconds_to_reply=round((now - ensure_utc(lead.created_at)).total_seconds(), 3),
        )
    db.flush()
    return InboxRow(lead, comment)


def dismiss_lead(db: Session, principal: Principal, lead_id: int) -> InboxRow:
    """Take an open lead off the queue without replying."""
    row = get_lead(db, principal, lead_id)
    if row.lead.status != LeadStatus.open:
        raise Conflict(f"lead {lead_id} is already {row.lead.status.value}", field="lead_id")
    row.lead.status = LeadStatus.dismissed
    db.flush()
    return row


# --- corrections and retraining -------------------------------------------------------------------


def correct_intent(
    db: Session,
    principal: Principal,
    comment_id: int,
    intent: str,
    *,
    reply_seconds: int = DEFAULT_REPLY_SECONDS,
    now: datetime | None = None,
) -> Comment:
    """Store an operator's intent correction; a comment corrected to high intent gets a lead, and an
    open lead corrected away from high intent is dismissed."""
    _check_intent(intent)
    comment = db.scalar(select(Comment).where(Comment.id == comment_id, Comment.org_id == principal.org_id))
    if comment is None:
        raise NotFound("comment not found", field="comment_id")
    now = ensure_utc(now) if now is not None else utcnow()
    comment.corrected_intent, comment.corrected_by_id, comment.corrected_at = intent, principal.user_id, now
    lead = db.scalar(select(Lead).where(Lead.comment_id == comment.id))
    if is_high_intent(intent, 1.0):
        if lead is None:
            create_lead(db, comment, intent, reply_seconds, now)
        elif lead.status == LeadStatus.open:
            lead.intent = intent
    elif lead is not None and lead.status == LeadStatus.open:
        lead.status = LeadStatus.dismissed
    db.flush()
    return comment


def stored_corrections(db: Session, org_id: int) -> list[tuple[str, str]]:
    """The organization's operator corrections, oldest first (later corrections of the same text win)."""
    rows = db.execute(
        select(Comment.content, Comment.corrected_intent)
        .where(Comment.org_id == org_id, Comment.corrected_intent.is_not(None))
        .order_by(Comment.corrected_at, Comment.id)
    )
    return [(text, intent) for text, intent in rows if intent]


@dataclass(frozen=True, slots=True)
class RetrainReport:
    """What retraining used and how the new classifiers score (held-out figures averaged over the
    organizations' layers, or the shared base's when none has corrections)."""

    corrections: int
    organizations: int
    heldout_accuracy: float
    heldout_macro_f1: float
    corrections_accuracy: float


def retrain_from_corrections(db: Session, layer_dir: Path | None = None) -> RetrainReport:
    """Refit each organization's layer from its own stored corrections (one organization's corrections
    never change another's results); organizations without corrections keep the shared base.

    The held-out figures come from second fits on the training split plus the same corrections, so the
    held-out rows stay unseen; the classifiers put in service are fitted on everything.
    """
    from sklearn.metrics import accuracy_score, f1_score

    from siyu.leads import intent as intent_mod
    from siyu.leads.intent_model import load_examples, validate_example

    test = load_examples(split="test")
    truth = [e.intent for e in test]
    org_ids: list[int | None] = list(
        db.scalars(
            select(Comment.org_id)
            .where(Comment.corrected_intent.is_not(None))
            .distinct()
            .order_by(Comment.org_id)
        )
    )
    if layer_dir is not None and layer_dir.is_dir():
        for stale in layer_dir.glob("org-*.joblib"):  # organizations whose corrections are all gone
            if stale.stem.removeprefix("org-") not in {str(o) for o in org_ids}:
                stale.unlink()
    accuracy: list[float] = []
    macro_f1: list[float] = []
    total = right = 0
    for org_id in org_ids or [None]:  # None: no corrections anywhere, the base's own figures
        pairs = stored_corrections(db, org_id) if org_id is not None else []
        extra = [validate_example(t, i, f"correction {n}") for n, (t, i) in enumerate(pairs, start=1)]
        probe = intent_mod.IntentClassifier.fit(load_examples(split="train"), extra)
        predicted = [r.intent for r in probe.classify_many([e.text for e in test])]
        accuracy.append(float(accuracy_score(truth, predicted)))
        macro_f1.append(
            float(f1_score(truth, predicted, labels=list(INTENTS), average="macro", zero_division=0))
        )
        if org_id is None:
            continue
        served = intent_mod.retrain_org(org_id, pairs, layer_dir=layer_dir)
        assert served is not None
        total += len(pairs)
        right += sum(
            r.intent == i
            for r, (_, i) in zip(served.classify_many([t for t, _ in pairs]), pairs, strict=True)
        )
    return RetrainReport(
        corrections=total,
        organizations=len(org_ids),
        heldout_accuracy=sum(accuracy) / len(accuracy),
        heldout_macro_f1=sum(macro_f1) / len(macro_f1),
        corrections_accuracy=right / total if total else float("nan"),
    )


# --- conversion -----------------------------------------------------------------------------------


# Built once: every WeCom add through a channel code asks for its lead (the callback worker's hot path).
_REPLIED_WITH_STATE = select(Lead).where(
    Lead.org_id == bindparam("org_id"),
    Lead.code_state == bindparam("state"),
    Lead.status == LeadStatus.replied,
)
_OWN_LEAD = (
    _REPLIED_WITH_STATE.where(Lead.customer_id == bindparam("customer_id")).order_by(Lead.id.desc()).limit(1)
)
_OPEN_LEAD = (
    _REPLIED_WITH_STATE.where(Lead.converted_at.is_(None))
    .order_by(Lead.replied_at.desc(), Lead.id.desc())
    .limit(1)
)


def lead_for_state(db: Session, org_id: int, state: str, customer_id: int | None = None) -> Lead | None:
    """The replied lead an add with ``state`` answers: the commenter's own lead if the adder is known,
    else the latest-replied lead with that state not converted yet (a code may be shared by many leads)."""
    if not state:
        return None
    params = {"org_id": org_id, "state": state}
    if customer_id is not None:
        own = db.scalar(_OWN_LEAD, {**params, "customer_id": customer_id})
        if own is not None:
            return own
    return db.scalar(_OPEN_LEAD, params)


#: Tags siyu puts on a converted commenter: one per intent, in words, in this group.
INTENT_TAG_GROUP: Final = "意向"
#: The origin of what conversion derives (intent, intent tag): siyu's rules, written back to the carrier.
RULE_ORIGIN: Final = "rule"


def on_contact_added(
    db: Session,
    org_id: int,
    customer_id: int,
    state: str,
    at: datetime | None = None,
) -> Lead | None:
    """A customer added an account through a code with ``state``: convert the lead that was sent it.

    The carrier knows the adder by a different id (e.g. a WeCom external userid) than Douyin does, so
    the profile created by the add and the commenter's profile are the same person: merge them (the
    lower id survives) so the source naming the video and the add land on one customer. The comment's
    intent, in words (求资料), fills an empty profile intent and puts the intent tag on (意向/求资料).
    """
    lead = lead_for_state(db, org_id, state, customer_id)
    if lead is None:
        return None
    at = ensure_utc(at) if at is not None else utcnow()
    survivor = access.live_customer(db, org_id, customer_id)
    comment = db.get(Comment, lead.comment_id)
    assert comment is not None
    source = f"{comment.platform.value}_comment"
    if lead.customer_id is None:
        lead.customer_id = comment.customer_id = survivor.id
    elif lead.customer_id != survivor.id:
        keep, drop = sorted((lead.customer_id, survivor.id))
        merge.merge_customers(db, org_id, keep, drop, reason=f"added through the code of lead {lead.id}")
        survivor = access.live_customer(db, org_id, keep)
    if lead.converted_at is None:
        lead.converted_at = at
    db.flush()
    record(
        db,
        org_id,
        survivor.id,
        EventType.lead_converted,
        at=at,
        origin=RULE_ORIGIN,
        key=f"lead_converted:{lead.id}",
        source=source,
        lead_id=lead.id,
        state=state,
    )
    _apply_intent(db, org_id, survivor, comment.corrected_intent or lead.intent)
    return lead


def _apply_intent(db: Session, org_id: int, customer: Customer, intent: str) -> None:
    words = INTENT_WORDS.get(intent, intent)
    if not customer.intent:
        profiles.update_customer(db, org_id, customer.id, {"intent": words}, origin=RULE_ORIGIN)
    tag = tagging.ensure_tag(db, org_id, INTENT_TAG_GROUP, words)
    customer_tagging.change_tags(db, org_id, customer.id, add=[tag.id], origin=RULE_ORIGIN)


def convert_on_scan(db: Session, events: Sequence[DomainEvent]) -> None:
    """In-transaction subscriber of ``code_scanned`` (registered in ``siyu/subscriptions.py``): the add
    through a code converts the lead that was sent that code's state."""
    scans = [(ev, str(ev.properties.get("state") or "")) for ev in events]
    # Most adds come through codes no lead was ever sent (a live room's, a parcel card's): one query per
    # organization finds the states a replied lead carries, so a batch of adds costs one query, not two each.
    wanted: dict[int, set[str]] = defaultdict(set)
    for ev, state in scans:
        if state:
            wanted[ev.org_id].add(state)
    answered = {
        (org_id, str(state))
        for org_id, states in wanted.items()
        for part in chunked(sorted(states), IN_LIST_SIZE)
        for state in db.scalars(
            select(Lead.code_state)
            .where(Lead.org_id == org_id, Lead.status == LeadStatus.replied, Lead.code_state.in_(part))
            .distinct()
        )
    }
    for ev, state in scans:
        if (ev.org_id, state) in answered:
            on_contact_added(db, ev.org_id, ev.customer_id, state, ev.occurred_at)


def _move_customer(db: Session, org_id: int, survivor_id: int, merged_id: int) -> int:
    moved = 0
    for model in (Lead, Comment):
        result = db.execute(
            update(model)
            .where(model.org_id == org_id, model.customer_id == merged_id)
            .values(customer_id=survivor_id)
            .execution_options(synchronize_session=False)
        )
        moved += int(result.rowcount or 0)  # type: ignore[attr-defined]
    return moved


register_merge_hook("leads", _move_customer)


def forget_person(db: Session, org_id: int, customer_ids: Sequence[int], identifiers: Sequence[str]) -> int:
    """Erasure: blank the comments a person wrote (text, commenter id and name, the platform's comment id),
    our replies to them, and delete the raw webhook receipts naming them; returns rows changed."""
    comments = list(
        db.scalars(
            select(Comment).where(
                Comment.org_id == org_id,
                or_(Comment.customer_id.in_(customer_ids), Comment.commenter_id.in_(identifiers)),
            )
        )
    )
    needles = [*identifiers, *(c.external_id for c in comments)]
    for comment in comments:
        comment.commenter_id = ""
        comment.commenter_name = ""
        comment.content = ""
        comment.external_id = f"erased:{comment.id}"
    changed = len(comments)
    comment_ids = [c.id for c in comments]
    if comment_ids:
        changed += int(
            db.execute(  # type: ignore[attr-defined]
                update(Lead).where(Lead.comment_id.in_(comment_ids)).values(reply_text="")
            ).rowcount
            or 0
        )
    changed += int(
        db.execute(  # type: ignore[attr-defined]
            delete(WebhookReceipt).where(
                WebhookReceipt.org_id == org_id, json_mentions(WebhookReceipt.body, needles)
            )
        ).rowcount
        or 0
    )
    db.flush()
    return changed


def comments_of(db: Session, org_id: int, customer_id: int) -> list[tuple[Comment, Lead | None]]:
    """A customer's comments with the lead each opened (if any), oldest first (for a data export)."""
    rows = db.execute(
        select(Comment, Lead)
        .outerjoin(Lead, Lead.comment_id == Comment.id)
        .where(Comment.org_id == org_id, Comment.customer_id == customer_id)
        .order_by(Comment.commented_at, Comment.id)
    ).all()
    return [(c, lead) for c, lead in rows]
