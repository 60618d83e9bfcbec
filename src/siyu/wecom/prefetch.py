"""Reading a row's WeCom contact details before the row is claimed, outside its transaction.

Applying a contact event (add, edit, add_half) waits on externalcontact/get for a good part of its time.
Made inside the row's transaction, that wait holds the transaction open, and on SQLite it holds the
database's one write lock, so no other drain could write meanwhile. The drain therefore reads the details
first (``fetch_contact`` for a row applied on its own, ``fetch_contacts`` for a batch, several reads at a
time and the credentials read once per part) and hands them to the transaction, where ``PrefetchedClient``
answers the one read they were fetched for. A fetch never writes; a row another drain claims first only
wastes its fetch.

Freshness: externalcontact/get answers WeCom's current state. The fetch starts after the row's event was
stored, so it sees at least what the event announced, and after the previous row of the same contact was
applied (a contact's rows are applied one after the other by one drain worker, see ``siyu.wecom.tasks``),
so a row never applies an older answer than the row before it did. A batch holds only the first waiting row
of each key, and the next batch's reads start while a batch is applied only for rows that are already the
first waiting rows of keys outside it. A change made in WeCom after the fetch
sends a callback of its own, applied later.

The client is built through ``callback_client``, whose cache is per thread (a ``requests.Session`` is not
meant to be shared between threads), and an answer fetched with other credentials than the row is applied
with is not used.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from siyu.integrations.channel import ContactDetail
from siyu.integrations.wecom import WeComClient, WeComError, WeComTransportError
from siyu.wecom.contact_events import CONTACT_READING_CHANGES
from siyu.wecom.credentials import (
    StoredCredentials,
    callback_client,
    client_from_stored,
    get_credentials,
    stored_credentials,
)
from siyu.wecom.models import WeComCredential

log = logging.getLogger(__name__)


def contact_to_fetch(event: Mapping[str, Any]) -> str | None:
    """The ExternalUserID whose details applying this callback reads from WeCom, if any."""
    if (
        event.get("event") != "change_external_contact"
        or event.get("change_type") not in CONTACT_READING_CHANGES
    ):
        return None
    return str(event.get("external_user_id") or "") or None


def _same_account(a: WeComClient, b: WeComClient) -> bool:
    return a is b or (a.api.corp_id, a.api.secret, a.api.API_BASE_URL) == (
        b.api.corp_id,
        b.api.secret,
        b.api.API_BASE_URL,
    )


@dataclass(frozen=True, slots=True)
class _Fetched:
    client: WeComClient
    detail: ContactDetail | None
    error: WeComError | None  # WeCom's answer was an error (not a failed HTTP exchange)


def _fetch(client: WeComClient, external_userid: str) -> _Fetched:
    try:
        return _Fetched(client, client.get_contact_all_followers(external_userid), None)
    except WeComTransportError:
        raise  # no answer from WeCom: the caller's fallback
    except WeComError as exc:
        return _Fetched(client, None, exc)


def fetch_contact(
    factory: sessionmaker[Session], org_id: int, event: Mapping[str, Any], secret_key: Callable[[], str]
) -> Prefetch | None:
    """Read the contact details applying this event will need (None when it reads none). A failed HTTP
    exchange or credentials read is not an answer: the row's transaction then reads inline and decides."""
    external_userid = contact_to_fetch(event)
    if external_userid is None:
        return None
    try:
        with factory() as db:
            client, _ = callback_client(db, org_id, secret_key)
        if client is None:
            return None
        fetched: _Fetched | None = _fetch(client, external_userid)
    except Exception:
        log.debug("reading contact %s ahead failed; the row reads it inline", external_userid, exc_info=True)
        fetched = None
    return Prefetch(org_id, external_userid, fetched)


def fetch_contacts(
    factory: sessionmaker[Session],
    rows: Sequence[tuple[int, Mapping[str, Any]]],
    secret_key: Callable[[], str],
    pool: Executor,
    parts: int,
) -> list[Prefetch | None]:
    """``fetch_contact`` for many (org_id, event) rows, ``parts`` reads at a time on ``pool``. The
    credentials are read once for all the rows; each part takes its own client from them (clients are per
    thread)."""
    found: list[Prefetch | None] = [None] * len(rows)
    stored: dict[int, StoredCredentials] = {}
    try:
        with factory() as db:
            for org_id in {org_id for org_id, event in rows if contact_to_fetch(event)}:
                if (credentials := stored_credentials(db, org_id)) is not None:
                    stored[org_id] = credentials
    except Exception:
        log.debug("reading credentials ahead failed; the rows read inline", exc_info=True)

    def load(org_id: int) -> WeComCredential | None:
        with factory() as db:
            return get_credentials(db, org_id)

    def part(indexes: range) -> None:
        clients: dict[int, WeComClient | None] = {}
        try:
            for org_id in {rows[i][0] for i in indexes} & stored.keys():
                clients[org_id] = client_from_stored(
                    stored[org_id], org_id, secret_key, functools.partial(load, org_id)
                )
        except Exception:
            log.debug("reading credentials ahead failed; the rows read inline", exc_info=True)
        for i in indexes:
            org_id, event = rows[i]
            external_userid = contact_to_fetch(event)
            client = clients.get(org_id)
            if external_userid is None or client is None:
                continue
            try:
                fetched: _Fetched | None = _fetch(client, external_userid)
            except Exception:
                log.debug("reading contact %s ahead failed; read inline", external_userid, exc_info=True)
                fetched = None
            found[i] = Prefetch(org_id, external_userid, fetched)

    parts = max(1, min(parts, len(rows)))
    for future in [pool.submit(part, range(k, len(rows), parts)) for k in range(parts)]:
        future.result()
    return found


@dataclass(frozen=True, slots=True)
class Prefetch:
    """One row's contact details, read before the row was claimed (None: the read could not be made)."""

    org_id: int
    external_userid: str
    fetched: _Fetched | None

    def answer_for(self, client: WeComClient) -> ContactDetail | None:
        """The fetched details, or None when the caller should fetch them itself; raises WeCom's error as the
        inline call would have raised it."""
        fetched = self.fetched
        if fetched is None or not _same_account(fetched.client, client):
            return None
        if fetched.error is not None:
            raise fetched.error
        return fetched.detail


class PrefetchedClient:
    """The WeCom client for applying one inbox row: ``get_contact_all_followers`` of the row's contact answers
    from its prefetch, once; every other call goes to the real client."""

    def __init__(self, client: WeComClient, prefetch: Prefetch) -> None:
        self._client = client
        self._prefetch: Prefetch | None = prefetch

    def get_contact_all_followers(self, external_userid: str) -> ContactDetail:
        """The customer with every follow user: prefetched when available, else read from WeCom now."""
        prefetch, self._prefetch = self._prefetch, None
        if prefetch is not None and prefetch.external_userid == external_userid:
            detail = prefetch.answer_for(self._client)
            if detail is not None:
                return detail
        return self._client.get_contact_all_followers(external_userid)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)
