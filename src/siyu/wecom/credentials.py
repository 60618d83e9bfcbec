"""Per-organization WeCom credentials, encrypted at rest, and the "test connection" check.

Encryption: ``siyu.kit.crypto`` (Fernet with a key derived by HKDF-SHA256 from
``settings.resolved_secret_key()`` and a purpose label of its own), so the same process secret that signs
sessions never serves directly as an encryption key. The secret, the callback token and the
EncodingAESKey are encrypted; the corp id (public, shown in every callback) is kept in clear. Rotating
the process secret makes stored credentials unreadable: re-enter them on the console page.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Row, bindparam, select
from sqlalchemy.orm import Session

from siyu.audit import service as audit
from siyu.audit.service import AuditAction
from siyu.integrations.wecom import CallbackCrypto, CallbackError, WeComClient, WeComError
from siyu.kit.clock import utcnow
from siyu.kit.crypto import decrypt_secret, encrypt_secret
from siyu.kit.errors import Invalid, NotFound
from siyu.kit.settings import WECOM_API_HOST
from siyu.tenancy.principal import Principal
from siyu.wecom.models import DEFAULT_BASE_URL, WeComCredential
from siyu.wecom.schemas import ConnectionTest, CredentialsIn

_PURPOSE = "siyu wecom credentials v1"
_CORP_ID = re.compile(r"^[A-Za-z0-9_-]{4,64}$")


def encrypt(secret_key: str, plaintext: str) -> str:
    """Encrypt one credential value for storage."""
    return encrypt_secret(plaintext, secret_key, _PURPOSE)


def decrypt(secret_key: str, token: str, *, field: str = "credentials") -> str:
    """Decrypt a stored credential value; a changed process secret is reported in words."""
    try:
        return decrypt_secret(token, secret_key, _PURPOSE)
    except Invalid as exc:
        raise Invalid(
            "stored WeCom credentials cannot be decrypted: the server's secret key changed; "
            "enter the credentials again",
            field=field,
        ) from exc


@dataclass(frozen=True, slots=True)
class PlainCredentials:
    """Decrypted credentials, for building clients and callback crypto; never serialized."""

    org_id: int
    corp_id: str
    secret: str
    token: str
    encoding_aes_key: str
    base_url: str
    welcome_text: str
    version: str  # changes whenever the stored row changes (cache key)


def get_credentials(db: Session, org_id: int) -> WeComCredential | None:
    """The organization's stored (encrypted) credential row, if any."""
    return db.scalar(select(WeComCredential).where(WeComCredential.org_id == org_id))


def _check(data: CredentialsIn) -> None:
    if not _CORP_ID.match(data.corp_id):
        raise Invalid(
            "corp_id must be the CorpID from My Company > Company Info (letters and digits)", field="corp_id"
        )
    if data.encoding_aes_key is not None:
        try:
            CallbackCrypto(data.token or "x", data.encoding_aes_key, data.corp_id)
        except CallbackError as exc:
            raise Invalid(f"encoding_aes_key: {exc}", field="encoding_aes_key") from exc


def check_base_url(url: str, allowed_hosts: Collection[str]) -> None:
    """Refuse an API base URL whose host is not allowed: the server calls it with the organization's secret,
    so a tenant admin could otherwise make it request any host (an internal address, a metadata service)."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if host not in allowed_hosts:
        raise Invalid(
            f"base_url must be WeCom's API ({', '.join(sorted(allowed_hosts))}), not {host or url!r}",
            field="base_url",
        )
    if host == WECOM_API_HOST and parts.scheme != "https":
        raise Invalid(f"base_url: WeCom's API is reached over https://{WECOM_API_HOST}", field="base_url")


def save_credentials(
    db: Session,
    org_id: int,
    data: CredentialsIn,
    secret_key: str,
    *,
    allowed_hosts: Collection[str] | None = None,
    actor: Principal | None = None,
) -> WeComCredential:
    """Create or update the organization's credentials; omitted secrets keep their stored values. Audited
    with the names (never the values) of the secrets that changed.

    Endpoints pass ``allowed_hosts`` (``Settings.allowed_wecom_hosts()``) for the base URL a tenant admin
    typed; None is for the process's own callers (tests and benchmarks pointing at the fake server)."""
    _check(data)
    if data.base_url is not None and allowed_hosts is not None:
        check_base_url(str(data.base_url), allowed_hosts)
    row = get_credentials(db, org_id)
    if row is None:
        for name in ("secret", "token", "encoding_aes_key"):
            if not getattr(data, name):
                raise Invalid(f"{name} is required the first time credentials are entered", field=name)
        row = WeComCredential(
            org_id=org_id, corp_id=data.corp_id, secret_enc="", token_enc="", aes_key_enc=""
        )
        db.add(row)
    row.corp_id = data.corp_id
    if data.secret:
        row.secret_enc = encrypt(secret_key, data.secret)
    if data.token:
        row.token_enc = encrypt(secret_key, data.token)
    if data.encoding_aes_key:
        row.aes_key_enc = encrypt(secret_key, data.encoding_aes_key)
    if data.base_url is not None:
        row.base_url = str(data.base_url).rstrip("/")
    elif not row.base_url:
        row.base_url = DEFAULT_BASE_URL
    if data.welcome_text is not None:
        row.welcome_text = data.welcome_text
    if data.agent_id is not None:
        row.agent_id = data.agent_id
    row.updated_at = utcnow()
    db.flush()
    changed = [name for name in ("secret", "token", "encoding_aes_key") if getattr(data, name)]
    audit.record(
        db,
        org_id,
        AuditAction.wecom_credentials_saved,
        actor=actor,
        target_type="wecom_credentials",
        target_id=row.id,
        corp_id=row.corp_id,
        secrets_changed=changed,
        base_url=row.base_url,
    )
    return row


def plain_credentials(row: WeComCredential, secret_key: str) -> PlainCredentials:
    """Decrypt a stored row."""
    return PlainCredentials(
        org_id=row.org_id,
        corp_id=row.corp_id,
        secret=decrypt(secret_key, row.secret_enc, field="secret"),
        token=decrypt(secret_key, row.token_enc, field="token"),
        encoding_aes_key=decrypt(secret_key, row.aes_key_enc, field="encoding_aes_key"),
        base_url=row.base_url,
        welcome_text=row.welcome_text,
        version=f"{row.id}:{row.updated_at.isoformat()}",
    )


def load_plain(db: Session, org_id: int, secret_key: str) -> PlainCredentials:
    """Decrypted credentials of an organization, or 404 when none are configured."""
    row = get_credentials(db, org_id)
    if row is None:
        raise NotFound("WeCom is not configured for this organization", field="wecom")
    return plain_credentials(row, secret_key)


def client_for(creds: PlainCredentials, *, timeout: float = 10.0, max_retries: int = 3) -> WeComClient:
    """A WeCom adapter for these credentials (tokens cached per process, keyed by corp and secret hash);
    ``max_retries`` bounds its own back-off on 45009 / -1 (0 for callers that retry later themselves)."""
    return WeComClient(
        creds.corp_id, creds.secret, base_url=creds.base_url, timeout=timeout, max_retries=max_retries
    )


def set_writeback(db: Session, org_id: int, enabled: bool) -> WeComCredential:
    """Turn write-back of tags and remarks to WeCom on or off (404 when WeCom is not configured)."""
    row = get_credentials(db, org_id)
    if row is None:
        raise NotFound("WeCom is not configured for this organization", field="wecom")
    row.writeback_enabled = enabled
    db.flush()
    return row


def check_connection(db: Session, org_id: int, secret_key: str) -> ConnectionTest:
    """Call gettoken with the stored credentials and explain the outcome in words; the result is remembered."""
    row = get_credentials(db, org_id)
    if row is None:
        raise NotFound("WeCom is not configured for this organization", field="wecom")
    creds = plain_credentials(row, secret_key)
    client = client_for(creds, timeout=5.0)
    try:
        # Force a real gettoken: a cached token would hide a secret that was reset in WeCom.
        client.api.invalidate(None)
        client.api.fetch_access_token()
        result = ConnectionTest(ok=True, errcode=0, message="Connected: WeCom issued an access token.")
    except WeComError as exc:
        result = ConnectionTest(ok=False, errcode=exc.errcode, message=exc.explanation)
    row.last_test_at, row.last_test_ok, row.last_test_message = utcnow(), result.ok, result.message[:500]
    db.flush()
    return result


_CREDENTIALS = select(WeComCredential).where(WeComCredential.org_id == bindparam("org_id"))
# The columns the cache key needs, without loading an ORM object per event (the row is only built on a miss).
_CREDENTIALS_KEY = _CREDENTIALS.with_only_columns(
    WeComCredential.corp_id,
    WeComCredential.secret_enc,
    WeComCredential.token_enc,
    WeComCredential.aes_key_enc,
    WeComCredential.base_url,
    WeComCredential.welcome_text,
)
#: Corp id, the three ciphertexts, base URL, welcome text: what a client is cached by (``_CREDENTIALS_KEY``).
StoredCredentials = Row[str, str, str, str, str, str]
#: Per thread (a requests session is not meant to be shared between threads): key -> client.
_CLIENTS = threading.local()
_MAX_CLIENTS = 32


def callback_client(
    db: Session, org_id: int, secret_key: Callable[[], str]
) -> tuple[WeComClient | None, str]:
    """The WeCom client and welcome text for applying an organization's callbacks ((None, "") without
    stored credentials). The row is read every time, so an edit applies to the next event; the client is
    reused (per thread) while the stored secrets and address are unchanged: decrypting three secrets and
    opening a new HTTP session for every event cost more than the rest of the event's bookkeeping."""
    stored = stored_credentials(db, org_id)
    if stored is None:
        return None, ""
    client = client_from_stored(
        stored, org_id, secret_key, lambda: db.scalar(_CREDENTIALS, {"org_id": org_id})
    )
    return client, str(stored.welcome_text) if client is not None else ""


def stored_credentials(db: Session, org_id: int) -> StoredCredentials | None:
    """What ``client_from_stored`` needs of an organization's stored credentials (None: none stored)."""
    return db.execute(_CREDENTIALS_KEY, {"org_id": org_id}).first()


def client_from_stored(
    stored: StoredCredentials,
    org_id: int,
    secret_key: Callable[[], str],
    load: Callable[[], WeComCredential | None],
) -> WeComClient | None:
    """This thread's client for credentials read by ``stored_credentials`` (in any thread); ``load`` reads
    the whole row when the client must be built (None: deleted in between, as if never stored)."""
    key = secret_key()
    # The ciphertexts are in the key: any change to the stored credentials (or the secret key) is a miss.
    cache_key = (org_id, *stored[:-1], key)  # all but the welcome text, read fresh by the caller
    clients: dict[tuple[Any, ...], WeComClient] | None = getattr(_CLIENTS, "by_key", None)
    if clients is None:
        clients = _CLIENTS.by_key = {}
    client = clients.get(cache_key)
    if client is None:
        row = load()
        if row is None:
            return None
        if len(clients) >= _MAX_CLIENTS:
            clients.clear()
        client = clients[cache_key] = client_for(plain_credentials(row, key))
    return client
