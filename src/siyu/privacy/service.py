"""The personal-data use cases: export everything held on one person, erase them on request, guard the
full-number search, and the retention settings. Each admin action leaves an audit entry in the same
transaction. Flushes, never commits."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from siyu.audit import service as audit
from siyu.audit.service import AuditAction
from siyu.campaigns import service as campaigns
from siyu.commerce import service as commerce
from siyu.customers import access, personal_data
from siyu.customers import erasure as customer_erasure
from siyu.customers.erasure import Erasure
from siyu.groups import service as groups
from siyu.kit.clock import utcnow
from siyu.kit.errors import Forbidden, Invalid, TooManyRequests
from siyu.kit.phone import mask_mobile
from siyu.kit.ratelimit import AttemptCounter
from siyu.kit.settings import Settings
from siyu.leads import service as leads
from siyu.tenancy import service as tenancy
from siyu.tenancy.models import Organization
from siyu.tenancy.principal import Principal

EXPORT_FORMAT = "siyu.personal-data.v1"
ORDERS_PAGE = 200


def _require_admin(principal: Principal) -> None:
    if not principal.can_administer:
        raise Forbidden("this needs an admin or owner role")


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def export_customer(db: Session, principal: Principal, customer_id: int) -> dict[str, Any]:
    """Everything held on one customer as plain JSON data (admins; audited as customer_exported)."""
    _require_admin(principal)
    customer = access.get_customer(db, principal, customer_id)
    person = personal_data.person_record(db, customer)
    org = db.get(Organization, principal.org_id)
    orders: list[Any] = []
    cursor: int | None = None
    while True:
        page, cursor = commerce.list_orders(
            db, principal, customer_id=customer.id, cursor=cursor, limit=ORDERS_PAGE
        )
        orders += commerce.with_items(db, page)
        if cursor is None:
            break
    data: dict[str, Any] = {
        "format": EXPORT_FORMAT,
        "exported_at": utcnow().isoformat(),
        "organization": org.name if org else "",
        "profile": {
            "id": customer.id,
            "name": customer.name,
            "mobile": customer.mobile,
            "gender": customer.gender.value,
            "region": customer.region,
            "stage": customer.stage.value,
            "source": customer.source,
            "source_detail": customer.source_detail,
            "intent": customer.intent,
            "remark": customer.remark,
            "consent_marketing": customer.consent_marketing,
            "consent_analytics": customer.consent_analytics,
            "created_at": _iso(customer.created_at),
            "updated_at": _iso(customer.updated_at),
        },
        "identities": [
            {"kind": i.kind.value, "value": i.value, "created_at": _iso(i.created_at)}
            for i in person.identities
        ],
        "tags": [{"group": group, "tag": t.name} for t, group in person.tags],
        "notes": [{"body": n.body, "created_at": _iso(n.created_at)} for n in person.notes],
        "follows": [
            {
                "account_id": f.account_id,
                "since": _iso(f.since),
                "source": f.source,
                "status": f.status.value,
                "ended_at": _iso(f.ended_at),
            }
            for f in person.follows
        ],
        "consents": [
            {
                "scope": c.scope.value,
                "granted": c.granted,
                "source": c.source.value,
                "at": _iso(c.at),
                "note": c.note,
            }
            for c in person.consents
        ],
        "events": [
            {
                "type": e.type,
                "occurred_at": _iso(e.occurred_at),
                "account_id": e.account_id,
                "source": e.source,
                "properties": e.properties,
            }
            for e in person.events
        ],
        "orders": [o.model_dump(mode="json") for o in orders],
        "messages": [
            {
                "message_id": m.id,
                "text": m.text,
                "status": s.status.value,
                "reserved_at": _iso(s.reserved_at),
                "sent_at": _iso(s.sent_at),
            }
            for s, m in campaigns.messages_to(db, principal.org_id, customer.id)
        ],
        "lead_comments": [
            {
                "platform": c.platform.value,
                "item_title": c.item_title,
                "commenter_name": c.commenter_name,
                "content": c.content,
                "commented_at": _iso(c.commented_at),
                "intent": c.corrected_intent or c.intent,
                "reply": lead.reply_text if lead else "",
                "replied_at": _iso(lead.replied_at) if lead else None,
            }
            for c, lead in leads.comments_of(db, principal.org_id, customer.id)
        ],
        "groups": [
            {"group": g.name, "joined_at": _iso(m.joined_at), "left_at": _iso(m.quit_at)}
            for m, g in groups.memberships_of(db, principal.org_id, customer.id)
        ],
    }
    audit.record(
        db,
        principal.org_id,
        AuditAction.customer_exported,
        actor=principal,
        target_type="customer",
        target_id=customer.id,
        counts={k: len(v) for k, v in data.items() if isinstance(v, list)},
    )
    return data


def erase_customer(
    db: Session, principal: Principal, customer_id: int, confirm: str, *, origin: str = "api"
) -> tuple[Erasure, int]:
    """Erase a customer on request (admins): ``confirm`` must repeat the id. Returns the erasure and the id
    of its audit entry."""
    _require_admin(principal)
    customer = access.get_customer(db, principal, customer_id)
    if confirm.strip() != str(customer.id):
        raise Invalid(f"type the customer's id {customer.id} to confirm", field="confirm")
    erasure = customer_erasure.erase_customer(
        db, principal.org_id, customer.id, actor_id=principal.user_id, origin=origin
    )
    entry = audit.record(
        db,
        principal.org_id,
        AuditAction.customer_erased,
        actor=principal,
        target_type="customer",
        target_id=erasure.customer_id,
        merged_ids=erasure.merged_ids,
        counts=erasure.counts,
    )
    return erasure, entry.id


def check_mobile_lookup(
    db: Session, principal: Principal, counter: AttemptCounter, per_hour: int, mobile: str | None
) -> None:
    """A full-number search by a role that sees masked numbers confirms a guess of the hidden digits, so
    each counts against ``per_hour`` for the user (429 beyond) and is audited with the number masked."""
    if not mobile or len(mobile) != 11 or principal.sees_full_mobile:
        return
    count = counter.hit(f"mobile-lookup:{principal.user_id}")
    if count > per_hour:
        raise TooManyRequests(
            f"at most {per_hour} full-number searches an hour; search by the last 4 digits instead",
            field="mobile",
        )
    audit.record(
        db,
        principal.org_id,
        AuditAction.mobile_lookup,
        actor=principal,
        target_type="mobile",
        target_id=mask_mobile(mobile),
        count=count,
    )


def get_retention(db: Session, principal: Principal, settings: Settings) -> tenancy.Retention:
    """The organization's retention (admins)."""
    _require_admin(principal)
    org = db.get(Organization, principal.org_id)
    assert org is not None
    return tenancy.retention_of(org, tenancy.default_retention(settings))


def set_retention(
    db: Session, principal: Principal, settings: Settings, webhook_days: int, audit_days: int
) -> tenancy.Retention:
    """Change the organization's retention (admins; audited)."""
    before = get_retention(db, principal, settings)
    after = tenancy.set_retention(db, principal.org_id, webhook_days, audit_days)
    if after != before:
        audit.record(
            db,
            principal.org_id,
            AuditAction.retention_changed,
            actor=principal,
            target_type="organization",
            target_id=principal.org_id,
            webhook_days=after.webhook_days,
            audit_days=after.audit_days,
        )
    return after
