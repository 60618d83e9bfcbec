"""WeCom's part in write-back (the rules are in ``siyu.customers.writeback``): the organization's switch,
and a client of its credentials that is paced per API and turns WeCom's rate limits into ``RetryLater``.

45009 (API frequency limit) is retried when WeCom lifts its block: after a minute, or after an hour when
the adapter saw the hourly limit (its frequency-limit page); sooner would only meet the same block. -1 (system busy) and 45033 (too many
concurrent calls) are retried after a few seconds. The client is built without its own back-off
(``max_retries=0``) so a limited call frees the drain at once instead of sleeping in it; the outbox
schedules the retry. An answer about the request itself (``REFUSED``), or a value the client refuses
before calling (a tag name longer than WeCom takes), gives up at once; every other WeCom error
propagates: the outbox records it (errcode and explanation in words) as a failure and retries it with
back-off. A tag whose WeCom id WeCom no longer knows (deleted there) answers 40068: write-back never creates
a tag that has an id again (see ``siyu.customers.writeback``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from sqlalchemy import select
from sqlalchemy.orm import Session

from siyu.accounts.models import AccountKind
from siyu.customers.models import IdentityKind
from siyu.customers.writeback import CarrierLink
from siyu.events.outbox import GiveUp, RetryLater
from siyu.integrations.channel import CorpTagGroup
from siyu.integrations.wecom import WeComClient, WeComError, WeComInputError, WeComRateLimited
from siyu.wecom.credentials import client_for, plain_credentials
from siyu.wecom.models import WeComCredential
from siyu.wecom.pacing import ApiPacer, pacer_for
from siyu.worker.queue import settings

#: Seconds to wait before retrying a call WeCom refused for its rate (by errcode).
RETRY_AFTER = {45009: 60.0, 45033: 5.0, -1: 5.0}
#: Answers about the request itself (bad tag or remark, no API permission, not a contact, unknown member):
#: the same call would be refused again, so the row fails at once and shows on the settings page.
REFUSED = frozenset({40003, 40058, 40068, 40096, 48002, 60111, 84061})
HANDLER = "customers.writeback.wecom"
ORIGIN = "wecom"
_ERRCODE = re.compile(r"WeCom error (-?\d+)")


def enabled(db: Session, org_id: int) -> bool:
    """Whether the organization has WeCom credentials with write-back on. Read once per transaction (a
    writer's transaction may emit thousands of events); the next transaction reads it again."""
    transaction = db.get_transaction()
    held = db.info.get("siyu_wecom_writeback")
    if held is None or held[0] is not transaction:
        held = db.info["siyu_wecom_writeback"] = (transaction, {})
    cache: dict[int, bool] = held[1]
    if org_id not in cache:
        found = db.scalar(select(WeComCredential.writeback_enabled).where(WeComCredential.org_id == org_id))
        cache[org_id] = bool(found)
    return cache[org_id]


class PacedWriter:
    """Adds corporate tags, marks tags and sets remarks through the WeCom client, each call paced by the
    corporation's pacer."""

    def __init__(self, client: WeComClient, pacer: ApiPacer) -> None:
        self.client = client
        self.pacer = pacer

    def add_corp_tag(self, names: Sequence[str], *, group_id: str = "", group_name: str = "") -> CorpTagGroup:
        """Put the named tags in the tag library (existing names answer their ids); every request paced."""
        with _rate_limits():
            return self.client.add_corp_tag(
                names, group_id=group_id, group_name=group_name, pace=self.pacer.acquire
            )

    def mark_tag(
        self, userid: str, external_userid: str, add: Sequence[str] = (), remove: Sequence[str] = ()
    ) -> None:
        """Apply tag changes to the customer as seen by ``userid``."""
        self.pacer.acquire("externalcontact/mark_tag")
        with _rate_limits():
            self.client.mark_tag(userid, external_userid, add=add, remove=remove)

    def set_remark(
        self,
        userid: str,
        external_userid: str,
        *,
        remark: str | None = None,
        description: str | None = None,
        remark_company: str | None = None,
        remark_mobiles: Sequence[str] | None = None,
    ) -> None:
        """Set the member's remark (and mobiles) on the customer."""
        self.pacer.acquire("externalcontact/remark")
        with _rate_limits():
            self.client.set_remark(
                userid,
                external_userid,
                remark=remark,
                description=description,
                remark_company=remark_company,
                remark_mobiles=remark_mobiles,
            )


@contextmanager
def _rate_limits() -> Iterator[None]:
    """Turn WeCom's rate-limit answers into ``RetryLater`` (not a failure: the call is simply early)."""
    try:
        yield
    except WeComRateLimited as exc:
        if exc.errcode in RETRY_AFTER:
            # WeCom's own block (a minute, or an hour after the hourly limit) when the adapter knows it.
            raise RetryLater(max(exc.retry_after, RETRY_AFTER[exc.errcode]), str(exc)) from exc
        raise
    except WeComError as exc:
        if exc.errcode in REFUSED:
            raise GiveUp(str(exc)) from exc
        raise
    except WeComInputError as exc:
        # Refused before calling (a tag name over WeCom's 30 characters): the same call would be again.
        raise GiveUp(str(exc)) from exc


def writer_for(db: Session, org_id: int) -> PacedWriter | None:
    """A paced writer of the organization's WeCom app, or None when write-back is off or unconfigured."""
    row = db.scalar(select(WeComCredential).where(WeComCredential.org_id == org_id))
    if row is None or not row.writeback_enabled:
        return None
    creds = plain_credentials(row, settings().resolved_secret_key())
    return PacedWriter(client_for(creds, max_retries=0), pacer_for(creds.corp_id))


def errcode_of(error: str) -> int | None:
    """The WeCom errcode an outbox error text names (the settings page words it in the user's language)."""
    found = _ERRCODE.search(error)
    return int(found.group(1)) if found else None


LINK = CarrierLink(
    handler=HANDLER,
    origin=ORIGIN,
    identity=IdentityKind.wecom_external_userid,
    account_kind=AccountKind.wecom_member,
    enabled=enabled,
    writer=writer_for,
)
