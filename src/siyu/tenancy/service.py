"""Organizations, users, password checks, API tokens and console sessions. Flushes, never commits."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from siyu.kit.clock import utcnow
from siyu.kit.errors import Conflict, Invalid, NotFound
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


def issue_api_token(db: Session, user: User, name: str) -> IssuedToken:
    """Create an API token for a user; only its SHA-256 is kept."""
    plaintext = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(
        org_id=user.org_id, user_id=user.id, name=name, prefix=plaintext[:12], token_hash=_sha256(plaintext)
    )
    db.add(token)
    db.flush()
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


def revoke_api_token(db: Session, principal: Principal, token_id: int) -> None:
    """Revoke a token of the caller's organization."""
    token = db.scalar(select(ApiToken).where(ApiToken.id == token_id, ApiToken.org_id == principal.org_id))
    if token is None:
        raise NotFound("api token not found")
    token.revoked_at = utcnow()


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
