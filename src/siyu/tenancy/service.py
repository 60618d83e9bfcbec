"""Organizations, users, password checks, API tokens and console sessions. Flushes, never commits."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from siyu.audit import service as audit
from siyu.audit.service import AuditAction
from siyu.kit.clock import utcnow
from siyu.kit.errors import Conflict, Forbidden, Invalid, NotFound
from siyu.kit.settings import Settings, get_settings
from siyu.tenancy.models import ApiToken, Organization, Role, User, WebSession
from siyu.tenancy.principal import Principal

_hasher = PasswordHasher()
TOKEN_PREFIX = "siyu_"
SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9-]{1,58}[a-z0-9]$")
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
MIN_PASSWORD_LENGTH = 8


def _sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def hash_password(password: str) -> str:
    """Hash a password with argon2id."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise Invalid(f"password must be at least {MIN_PASSWORD_LENGTH} characters", field="password")
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """True when the password matches the stored argon2 hash."""
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def create_organization(db: Session, name: str, slug: str) -> Organization:
    """Create a tenant; the slug is its stable short name (lowercase letters, digits, hyphens)."""
    if not SLUG_RE.match(slug):
        raise Invalid("slug must be 3-60 lowercase letters, digits or hyphens", field="slug")
    if db.scalar(select(Organization.id).where(Organization.slug == slug)) is not None:
        raise Conflict(f"organization {slug!r} already exists", field="slug")
    org = Organization(name=name.strip() or slug, slug=slug)
    db.add(org)
    db.flush()
    return org


def organization_by_slug(db: Session, slug: str) -> Organization:
    """Look an organization up by slug."""
    org = db.scalar(select(Organization).where(Organization.slug == slug))
    if org is None:
        raise NotFound(f"no organization {slug!r}", field="org")
    return org


def org_timezone(db: Session, org_id: int, default: str) -> str:
    """The organization's time zone (its ``timezone`` setting), else ``default``: the zone the console
    shows times and calendar days in."""
    settings = db.scalar(select(Organization.settings).where(Organization.id == org_id)) or {}
    zone = settings.get("timezone")
    return zone if isinstance(zone, str) and _is_zone(zone) else default


def org_zone(db: Session, org_id: int) -> ZoneInfo:
    """The organization's time zone for domain code (day buckets, daily caps, schedules): its setting,
    else the installation's (``SIYU_TIMEZONE``), as the console shows it."""
    return ZoneInfo(org_timezone(db, org_id, get_settings().timezone))


def set_org_timezone(db: Session, org_id: int, zone: str) -> None:
    """Set the organization's time zone (an IANA name such as Asia/Shanghai); 422 naming the field else."""
    if not _is_zone(zone):
        raise Invalid(f"unknown time zone {zone!r}; use an IANA name such as Asia/Shanghai", field="timezone")
    org = db.get(Organization, org_id)
    if org is None:
        raise NotFound("organization not found", field="org_id")
    org.settings = {**(org.settings or {}), "timezone": zone}
    db.flush()


def _is_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ValueError, ZoneInfoNotFoundError):
        return False
    return True


def create_user(db: Session, org_id: int, email: str, name: str, password: str, role: Role) -> User:
    """Create a console user; emails are unique across the installation because they log in by email."""
    email = email.strip().lower()
    if not EMAIL_RE.match(email):
        raise Invalid("email is not a valid address", field="email")
    if db.scalar(select(User.id).where(User.email == email)) is not None:
        raise Conflict(f"a user with email {email} already exists", field="email")
    user = User(
        org_id=org_id,
        email=email,
        name=name.strip() or email,
        password_hash=hash_password(password),
        role=role,
    )
    db.add(user)
    db.flush()
    return user


def add_user(db: Session, actor: Principal, email: str, name: str, password: str, role: Role) -> User:
    """``create_user`` in the actor's organization; only an owner may create another owner. Audited."""
    if role == Role.owner and actor.role != Role.owner:
        raise Forbidden("only an owner can create an owner", field="role")
    user = create_user(db, actor.org_id, email, name, password, role)
    audit.record(
        db,
        actor.org_id,
        AuditAction.user_created,
        actor=actor,
        target_type="user",
        target_id=user.id,
        role=user.role.value,
    )
    return user


def list_users(db: Session, org_id: int) -> list[User]:
    """The organization's users, oldest first."""
    return list(db.scalars(select(User).where(User.org_id == org_id).order_by(User.id)))


def get_user(db: Session, org_id: int, user_id: int) -> User:
    """A user of the organization, or 404."""
    user = db.scalar(select(User).where(User.id == user_id, User.org_id == org_id))
    if user is None:
        raise NotFound("user not found", field="user_id")
    return user


def _keep_an_owner(db: Session, user: User) -> None:
    """Refuse a change that would leave the organization without an active owner."""
    others = db.scalar(
        select(User.id).where(
            User.org_id == user.org_id, User.id != user.id, User.role == Role.owner, User.is_active.is_(True)
        )
    )
    if user.role == Role.owner and user.is_active and others is None:
        raise Conflict("the organization needs at least one active owner", field="role")


def change_role(db: Session, actor: Principal, user_id: int, role: Role) -> User:
    """Give a user of the actor's organization another role; only an owner grants or takes away ownership,
    nobody changes their own role, and the last active owner stays one. Audited."""
    user = get_user(db, actor.org_id, user_id)
    if role == user.role:
        return user
    if Role.owner in (role, user.role) and actor.role != Role.owner:
        raise Forbidden("only an owner can make or unmake an owner", field="role")
    _keep_an_owner(db, user)
    if user.id == actor.user_id:
        raise Forbidden("you cannot change your own role", field="role")
    previous, user.role = user.role, role
    db.flush()
    audit.record(
        db,
        actor.org_id,
        AuditAction.user_role_changed,
        actor=actor,
        target_type="user",
        target_id=user.id,
        previous=previous.value,
        role=user.role.value,
    )
    return user


def set_active(db: Session, actor: Principal, user_id: int, active: bool) -> User:
    """Deactivate a user (their sessions end and their API tokens stop working at once) or reactivate one."""
    user = get_user(db, actor.org_id, user_id)
    if active == user.is_active:
        return user
    if not active:
        if user.id == actor.user_id:
            raise Invalid("you cannot deactivate yourself", field="is_active")
        if user.role == Role.owner and actor.role != Role.owner:
            raise Forbidden("only an owner can deactivate an owner", field="is_active")
        _keep_an_owner(db, user)
        db.execute(delete(WebSession).where(WebSession.user_id == user.id))
    user.is_active = active
    db.flush()
    return user


def authenticate(db: Session, email: str, password: str) -> User | None:
    """The active user with this email and password, or None (same answer for unknown email and bad password)."""
    user = db.scalar(select(User).where(User.email == email.strip().lower()))
    if user is None:
        _hasher.hash(password)  # spend the same time so unknown emails can't be told apart by timing
        return None
    if not user.is_active or not verify_password(user.password_hash, password):
        return None
    return user


def principal_for(user: User) -> Principal:
    """The principal a user acts as."""
    return Principal(org_id=user.org_id, user_id=user.id, role=user.role, name=user.name, locale=user.locale)


@dataclass(frozen=True)
class IssuedToken:
    """A freshly issued API token: the plaintext is shown once and never stored."""

    token: ApiToken
    plaintext: str


def issue_api_token(db: Session, user: User, name: str, *, actor: Principal | None = None) -> IssuedToken:
    """Create an API token for a user; only its SHA-256 is kept. Audited when a signed-in ``actor`` asks."""
    plaintext = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(
        org_id=user.org_id, user_id=user.id, name=name, prefix=plaintext[:12], token_hash=_sha256(plaintext)
    )
    db.add(token)
    db.flush()
    if actor is not None:
        audit.record(
            db,
            actor.org_id,
            AuditAction.api_token_created,
            actor=actor,
            target_type="api_token",
            target_id=token.id,
            prefix=token.prefix,
        )
    return IssuedToken(token=token, plaintext=plaintext)


def principal_from_token(db: Session, plaintext: str) -> Principal | None:
    """The principal behind a bearer token, or None when unknown, revoked or its user inactive."""
    row = db.execute(
        select(ApiToken, User)
        .join(User, User.id == ApiToken.user_id)
        .where(
            ApiToken.token_hash == _sha256(plaintext), ApiToken.revoked_at.is_(None), User.is_active.is_(True)
        )
    ).first()
    if row is None:
        return None
    token, user = row
    now = utcnow()
    # Write last_used_at at most once a minute: a hot API client must not turn reads into writes.
    if token.last_used_at is None or now - token.last_used_at > timedelta(minutes=1):
        token.last_used_at = now
    return principal_for(user)


def list_api_tokens(db: Session, principal: Principal) -> list[ApiToken]:
    """The caller's own API tokens, oldest first."""
    stmt = select(ApiToken).where(ApiToken.org_id == principal.org_id, ApiToken.user_id == principal.user_id)
    return list(db.scalars(stmt.order_by(ApiToken.id)))


def revoke_api_token(db: Session, principal: Principal, token_id: int) -> None:
    """Revoke a token of the caller's organization: admins any, others only their own (another's is 404)."""
    token = db.scalar(select(ApiToken).where(ApiToken.id == token_id, ApiToken.org_id == principal.org_id))
    if token is None or (token.user_id != principal.user_id and not principal.can_administer):
        raise NotFound("api token not found")
    token.revoked_at = utcnow()
    audit.record(
        db,
        principal.org_id,
        AuditAction.api_token_revoked,
        actor=principal,
        target_type="api_token",
        target_id=token_id,
        owner_id=token.user_id,
    )


@dataclass(frozen=True)
class NewSession:
    """A console session: the cookie value and its CSRF token."""

    cookie_value: str
    csrf_token: str


def active_user(db: Session, org_id: int, user_id: int) -> User | None:
    """An active user of the organization, or None."""
    user = db.get(User, user_id)
    return user if user is not None and user.org_id == org_id and user.is_active else None


def start_session(db: Session, user: User, ttl_hours: int) -> NewSession:
    """Create a console session for a user who just logged in."""
    cookie_value = secrets.token_urlsafe(32)
    csrf_token = secrets.token_urlsafe(32)
    now = utcnow()
    db.execute(delete(WebSession).where(WebSession.expires_at < now))
    db.add(
        WebSession(
            id_hash=_sha256(cookie_value),
            user_id=user.id,
            csrf_token=csrf_token,
            expires_at=now + timedelta(hours=ttl_hours),
        )
    )
    db.flush()
    return NewSession(cookie_value=cookie_value, csrf_token=csrf_token)


def resolve_session(db: Session, cookie_value: str) -> tuple[Principal, str] | None:
    """The principal and CSRF token of a live session cookie, or None."""
    row = db.execute(
        select(WebSession, User)
        .join(User, User.id == WebSession.user_id)
        .where(
            WebSession.id_hash == _sha256(cookie_value),
            WebSession.expires_at > utcnow(),
            User.is_active.is_(True),
        )
    ).first()
    if row is None:
        return None
    session, user = row
    return principal_for(user), session.csrf_token


def end_session(db: Session, cookie_value: str) -> None:
    """Log out: delete the session row so the cookie is dead everywhere."""
    db.execute(delete(WebSession).where(WebSession.id_hash == _sha256(cookie_value)))


# --- retention of raw payloads and the audit log --------------------------------------------------

RETENTION_KEY = "retention"
WEBHOOK_DAYS = (1, 365)
AUDIT_DAYS = (180, 3650)


@dataclass(frozen=True)
class Retention:
    """How many days raw webhook payloads and audit entries are kept."""

    webhook_days: int
    audit_days: int


def default_retention(settings: Settings) -> Retention:
    """The installation-wide retention (``SIYU_WEBHOOK_RETENTION_DAYS``, ``SIYU_AUDIT_RETENTION_DAYS``),
    used where an organization set none."""
    return Retention(settings.webhook_retention_days, settings.audit_retention_days)


def retention_of(org: Organization, defaults: Retention) -> Retention:
    """The organization's retention: its own setting where it has one, else ``defaults`` (global settings)."""
    own = (org.settings or {}).get(RETENTION_KEY) or {}
    return Retention(
        webhook_days=int(own.get("webhook_days") or defaults.webhook_days),
        audit_days=int(own.get("audit_days") or defaults.audit_days),
    )


def retention_by_org(db: Session, defaults: Retention) -> dict[int, Retention]:
    """Every organization's retention (the nightly pruning jobs read this)."""
    return {org.id: retention_of(org, defaults) for org in db.scalars(select(Organization))}


def set_retention(db: Session, org_id: int, webhook_days: int, audit_days: int) -> Retention:
    """Store an organization's retention days (422 naming the field when out of bounds)."""
    for field, value, (low, high) in (
        ("webhook_days", webhook_days, WEBHOOK_DAYS),
        ("audit_days", audit_days, AUDIT_DAYS),
    ):
        if not low <= value <= high:
            raise Invalid(f"{field} must be between {low} and {high} days", field=field)
    org = db.get(Organization, org_id)
    if org is None:
        raise NotFound("organization not found")
    # A new dict: the JSON column only notices assignment, not in-place changes.
    org.settings = {
        **(org.settings or {}),
        RETENTION_KEY: {"webhook_days": webhook_days, "audit_days": audit_days},
    }
    db.flush()
    return Retention(webhook_days, audit_days)


def webhook_days_by_org(db: Session, defaults: Retention, keep: timedelta | None = None) -> dict[int, float]:
    """Days to keep raw webhook payloads, per organization: ``keep`` for all when given (tests, one-off
    runs), else each organization's retention."""
    by_org = retention_by_org(db, defaults)
    if keep is not None:
        return {org_id: keep / timedelta(days=1) for org_id in by_org}
    return {org_id: float(r.webhook_days) for org_id, r in by_org.items()}
