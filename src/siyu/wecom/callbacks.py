"""Receiving WeCom callbacks: verify, decrypt, store in the inbox once, and say whether it was new.

Dedupe key. WeCom callbacks carry no message id, and a retry re-sends the same event (same CreateTime and
fields) under a fresh nonce and ciphertext. The key is therefore taken from the *decrypted* content:
SHA-256 of the canonical JSON (keys sorted) of every field of the event XML, hex. The same event delivered
any number of times maps to one inbox row; two different events differ in at least one field (CreateTime,
ChangeType, ids, WelcomeCode, member version...). The one collapse this allows — an identical event
repeated within the same second — has no additional effect anyway, and the periodic full sync repairs
anything lost.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from sqlalchemy import Connection, bindparam, select
from sqlalchemy.orm import Session

from siyu.integrations.wecom import CallbackCrypto, CallbackError
from siyu.integrations.wecom.crypto import CallbackEvent
from siyu.kit.bulk import insert_ignore, pg_unnest_insert
from siyu.kit.clock import utcnow
from siyu.kit.errors import NotFound
from siyu.tenancy.models import Organization
from siyu.wecom.credentials import PlainCredentials, plain_credentials
from siyu.wecom.models import InboxItem, WeComCredential

SOURCE = "wecom"

_CRYPTO_CACHE: dict[tuple[int, str], CallbackCrypto] = {}
_CRYPTO_LOCK = threading.Lock()


def dedupe_key(event: CallbackEvent) -> str:
    """The stable inbox key of a decrypted callback (see the module docstring)."""
    canonical = json.dumps(
        event["raw"], sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def event_kind(event: CallbackEvent) -> str:
    """A short label such as ``change_external_contact/add_external_contact``."""
    return f"{event['event']}/{event['change_type']}".strip("/")[:80]


def partition_key(event: Mapping[str, Any]) -> str:
    """What the event is about, as the inbox's ordering key: events of one key are applied in arrival order.

    A contact event is about its ExternalUserID, a group event about its ChatId; tag events share one key
    (a shuffle or a group change touches many tags at once). An event without its id gets the key of its
    kind, so such events keep their order among themselves and stay apart from every contact's."""
    kind = str(event.get("event") or "")
    if kind == "change_external_contact" and event.get("external_user_id"):
        return f"contact:{event['external_user_id']}"[:160]
    if kind == "change_external_chat" and event.get("chat_id"):
        return f"chat:{event['chat_id']}"[:160]
    if kind == "change_external_tag":
        return "tags"
    return f"other:{kind}"[:160]


def credentials_for_slug(db: Session, slug: str, secret_key: str) -> PlainCredentials:
    """Decrypted credentials of the organization with this slug; unknown or unconfigured is 404."""
    row = db.scalar(
        select(WeComCredential)
        .join(Organization, Organization.id == WeComCredential.org_id)
        .where(Organization.slug == slug)
    )
    if row is None:
        raise NotFound("no WeCom callback is configured here", field="org")
    return plain_credentials(row, secret_key)


def crypto_for(creds: PlainCredentials) -> CallbackCrypto:
    """The callback crypto for these credentials, cached until the stored row changes."""
    key = (creds.org_id, creds.version)
    found = _CRYPTO_CACHE.get(key)
    if found is not None:
        return found
    crypto = CallbackCrypto(creds.token, creds.encoding_aes_key, creds.corp_id)
    with _CRYPTO_LOCK:
        for stale in [k for k in _CRYPTO_CACHE if k[0] == creds.org_id]:
            del _CRYPTO_CACHE[stale]
        _CRYPTO_CACHE[key] = crypto
    return crypto


def payload_of(event: CallbackEvent) -> dict[str, Any]:
    """The JSON stored in the inbox: the parsed fields (the raw XML fields included for audits)."""
    return dict(event.items())


_INSERT_CACHE: dict[str, Any] = {}


def _inbox_insert(conn: Connection) -> Any:
    """The inbox INSERT ... ON CONFLICT DO NOTHING RETURNING the new rows' keys, built once per dialect.

    Building and cache-keying a fresh statement per callback cost more CPU than running it; a statement
    with bound parameters is compiled once and reused (SQLAlchemy's compiled cache keys on it)."""
    dialect = conn.dialect.name
    stmt = _INSERT_CACHE.get(dialect)
    if stmt is None:
        table = InboxItem.__table__
        # insert_ignore only asks the session for its dialect; a session bound to conn gives the same answer.
        with Session(bind=conn) as probe:
            stmt = (
                insert_ignore(probe, table, ["org_id", "source", "external_key"])
                .values({name: bindparam(name, type_=table.c[name].type) for name in _INBOX_COLUMNS})
                .returning(table.c.id, table.c.org_id, table.c.external_key)
            )
        _INSERT_CACHE[dialect] = stmt
    return stmt


_INBOX_COLUMNS = (
    "org_id",
    "source",
    "external_key",
    "kind",
    "partition_key",
    "payload",
    "received_at",
    "attempts",
)


def store_event(db: Session | Connection, org_id: int, event: CallbackEvent) -> int | None:
    """Insert the event into the inbox; return the new row id, or None when it is a duplicate."""
    return store_events(db, [(org_id, event)])[0]


def store_events(db: Session | Connection, events: Sequence[tuple[int, CallbackEvent]]) -> list[int | None]:
    """Insert many (org_id, event) pairs in one statement; per pair the new row id, or None for a duplicate.

    One INSERT ... ON CONFLICT DO NOTHING RETURNING for the whole list, so a burst of callbacks costs one
    round trip, not one per callback, and the statement is atomic on its own (the inbox writer runs it
    in autocommit on PostgreSQL: no BEGIN and COMMIT round trips). A key repeated inside the list is
    stored once; its later copies get None."""
    if not events:
        return []
    # Core execution on the connection (a session's own, in its transaction): no ORM execute layer.
    conn = db.connection() if isinstance(db, Session) else db
    now = utcnow()
    rows = [
        {
            "org_id": org_id,
            "source": SOURCE,
            "external_key": dedupe_key(event),
            "kind": event_kind(event),
            "partition_key": partition_key(event),
            "payload": payload_of(event),
            "received_at": now,
            "attempts": 0,
        }
        for org_id, event in events
    ]
    if conn.dialect.name == "postgresql":
        # One fixed statement whatever the batch size: psycopg prepares it once per connection.
        sql = pg_unnest_insert(
            conn.dialect,
            InboxItem.__table__,
            _INBOX_COLUMNS,
            ("org_id", "source", "external_key"),
            ("id", "org_id", "external_key"),
        )
        returned = conn.exec_driver_sql(sql, _pg_arrays(rows))
    else:
        returned = conn.execute(_inbox_insert(conn), rows)
    inserted = {(org_id, key): row_id for row_id, org_id, key in returned}
    ids: list[int | None] = []
    for row in rows:
        # pop: a second copy of the same key in this list is a duplicate of the first.
        ids.append(inserted.pop((row["org_id"], row["external_key"]), None))
    return ids


def _pg_arrays(rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """The rows as one list per column, the payloads as JSON text (cast to json by the statement)."""
    arrays: dict[str, list[Any]] = {name: [row[name] for row in rows] for name in _INBOX_COLUMNS}
    arrays["payload"] = [orjson.dumps(p).decode() for p in arrays["payload"]]
    return arrays


__all__ = [
    "SOURCE",
    "CallbackError",
    "PlainCredentials",
    "credentials_for_slug",
    "crypto_for",
    "dedupe_key",
    "partition_key",
    "store_event",
    "store_events",
]
