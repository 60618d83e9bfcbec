"""Reading WeCom contact details for the next inbox rows while the drain applies the current one.

Applying a contact event (add, edit, add_half) waits on externalcontact/get for about a quarter of its
time while the database sits idle. The drain knows which rows come next, so a small pool of threads
fetches their details meanwhile. What is applied, and in what order, does not change: rows are still
claimed and applied one at a time in id order by the drain, and a fetch never writes. A row another
drain claims first only wastes its fetch.

Freshness: externalcontact/get answers WeCom's current state, and the inline call made it right before
the row was applied. A fetch here starts at most ``AHEAD`` rows before its row is applied (a fraction of
a second) and after its event was stored, so it sees at least what the event announced; a change made in
WeCom after the fetch sends a callback of its own, applied later. Only the first row of a contact in the
window is fetched ahead: a later row of the same contact fetches inline, after the earlier one's answer,
so it never applies an older answer than the row before it did.

Each pool thread builds its clients through ``callback_client``, whose cache is per thread (a
``requests.Session`` is not meant to be shared between threads), and an answer fetched with other
credentials than the row is applied with is not used.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from siyu.integrations.channel import ContactDetail
from siyu.integrations.wecom import WeComClient, WeComError, WeComTransportError
from siyu.wecom.credentials import callback_client
from siyu.wecom.models import InboxItem
from siyu.wecom.processing import CONTACT_READING_CHANGES

#: Rows whose details may be fetched before the row being applied (including it).
AHEAD = 8
THREADS = 4

# Threads start on the first submit, so importing this module (the web app does) starts none.
_POOL = ThreadPoolExecutor(max_workers=THREADS, thread_name_prefix="wecom-prefetch")


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


def _fetch(
    factory: sessionmaker[Session], org_id: int, external_userid: str, secret_key: Callable[[], str]
) -> _Fetched | None:
    with factory() as db:
        client, _ = callback_client(db, org_id, secret_key)
    if client is None:
        return None
    try:
        return _Fetched(client, client.get_contact_all_followers(external_userid), None)
    except WeComTransportError:
        raise
    except WeComError as exc:
        return _Fetched(client, None, exc)


@dataclass(frozen=True, slots=True)
class Prefetch:
    """A fetch of one row's contact details, started ahead of applying the row."""

    org_id: int
    external_userid: str
    future: Future[_Fetched | None]

    def answer_for(self, client: WeComClient) -> ContactDetail | None:
        """The fetched details, or None when the caller should fetch them itself; raises WeCom's error as the
        inline call would have raised it."""
        if self.future.cancel():  # not started yet: fetching inline now is sooner than waiting its turn
            return None
        try:
            fetched = self.future.result()
        except Exception:  # the HTTP exchange or the credentials read failed: the inline call decides
            return None
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


class Lookahead:
    """Starts the contact fetches of a batch's next rows as the drain walks it (use as a context manager)."""

    def __init__(
        self,
        factory: sessionmaker[Session],
        secret_key: Callable[[], str],
        ids: Sequence[int],
        ahead: int = AHEAD,
    ) -> None:
        self._factory, self._secret_key, self._ahead = factory, secret_key, ahead
        self._ids = list(ids)
        # Read without claiming: the drain claims each row when it applies it.
        with factory() as db:
            rows = db.execute(
                select(InboxItem.id, InboxItem.org_id, InboxItem.payload).where(
                    InboxItem.id.in_(self._ids), InboxItem.processed_at.is_(None)
                )
            ).all()
        self._wanted = {row.id: (row.org_id, eid) for row in rows if (eid := contact_to_fetch(row.payload))}
        self._started = 0  # rows before this position have had their fetch started (or skipped)
        self._pending: dict[int, Prefetch] = {}
        self._in_flight: set[tuple[int, str]] = set()

    def take(self, position: int) -> Prefetch | None:
        """The prefetch of the row at this position of the batch (None: fetch inline), after starting the
        fetches of the rows up to ``ahead`` positions on."""
        end = min(position + self._ahead, len(self._ids))
        while self._started < end:
            self._start(self._ids[self._started])
            self._started += 1
        prefetch = self._pending.pop(self._ids[position], None)
        if prefetch is not None:
            self._in_flight.discard((prefetch.org_id, prefetch.external_userid))
        return prefetch

    def _start(self, inbox_id: int) -> None:
        wanted = self._wanted.get(inbox_id)
        if wanted is None or wanted in self._in_flight:
            return
        try:
            future = _POOL.submit(_fetch, self._factory, *wanted, self._secret_key)
        except RuntimeError:  # the interpreter is shutting down: the rows fetch inline
            return
        self._in_flight.add(wanted)
        self._pending[inbox_id] = Prefetch(*wanted, future)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for prefetch in self._pending.values():
            prefetch.future.cancel()
