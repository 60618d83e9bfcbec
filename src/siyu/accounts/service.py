"""Rules for carrier accounts: caps per kind, operator assignment, visibility. Flushes, never commits."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import Select, bindparam, select, update
from sqlalchemy.orm import Session

from siyu.accounts.models import (
    DEFAULT_SOFT_CAP,
    PERSONAL_WECHAT_HARD_CAP,
    Account,
    AccountKind,
    AccountStatus,
    CustomerTransfer,
)
from siyu.accounts.schemas import AccountIn, AccountPatch
from siyu.kit.bulk import IN_LIST_SIZE, chunked, insert_ignore, one_of
from siyu.kit.clock import utcnow
from siyu.kit.errors import Conflict, Invalid, NotFound
from siyu.tenancy.models import User
from siyu.tenancy.principal import Principal

# WeCom's own limit depends on the corporation's certification; 5,000 is its default too, and configurable.
DEFAULT_HARD_CAP = {
    AccountKind.personal_wechat: PERSONAL_WECHAT_HARD_CAP,
    AccountKind.wecom_member: 5000,
    AccountKind.official_account: 10_000_000,
}


def visible_accounts(principal: Principal) -> Select[Account]:
    """Accounts the principal may see: all of the organization for admins, their own for operators."""
    stmt = select(Account).where(Account.org_id == principal.org_id)
    if not principal.sees_whole_org:
        stmt = stmt.where(Account.operator_id == principal.user_id)
    return stmt


def get_account(db: Session, principal: Principal, account_id: int) -> Account:
    """One visible account, or 404 (also for another organization's)."""
    account = db.scalar(visible_accounts(principal).where(Account.id == account_id))
    if account is None:
        raise NotFound("account not found")
    return account


def wecom_member_account(db: Session, org_id: int, userid: str) -> Account | None:
    """The organization's account of a WeCom member (by its userid), if siyu knows it."""
    return db.scalar(
        select(Account).where(
            Account.org_id == org_id, Account.kind == AccountKind.wecom_member, Account.external_id == userid
        )
    )


# Built once: every contact callback looks its member up, and building a select costs more than running it.
_WECOM_ACCOUNT = select(Account).where(
    Account.org_id == bindparam("org_id"),
    Account.kind == AccountKind.wecom_member,
    Account.external_id == bindparam("userid"),
)
_WECOM_ACCOUNT_ID = _WECOM_ACCOUNT.with_only_columns(Account.id)


def ensure_wecom_account(db: Session, org_id: int, userid: str) -> Account:
    """The organization's account for a WeCom member userid, created (unassigned) on first sight."""

    def find() -> Account | None:
        return db.scalar(_WECOM_ACCOUNT, {"org_id": org_id, "userid": userid})

    account = find()
    if account is None:
        # Two workers may meet the same new member at once: insert-or-nothing, then read whichever won.
        db.execute(
            insert_ignore(db, Account.__table__, ["org_id", "kind", "external_id"]).values(
                org_id=org_id,
                kind=AccountKind.wecom_member.value,
                external_id=userid,
                name=userid[:120],
                friend_count=0,
                soft_cap=DEFAULT_SOFT_CAP,
                hard_cap=DEFAULT_HARD_CAP[AccountKind.wecom_member],
                status=AccountStatus.active.value,
                created_at=utcnow(),
            )
        )
        account = find()
        assert account is not None
    return account


def wecom_account_id(db: Session, org_id: int, userid: str) -> int:
    """``ensure_wecom_account(...).id`` reading only the id when the account exists (the usual case)."""
    account_id = db.scalar(_WECOM_ACCOUNT_ID, {"org_id": org_id, "userid": userid})
    return int(account_id) if account_id is not None else ensure_wecom_account(db, org_id, userid).id


def wecom_account_ids(db: Session, org_id: int, userids: Iterable[str]) -> dict[str, int]:
    """``wecom_account_id`` of many members: one query for those that exist, then each new one created."""
    wanted = sorted(set(userids))
    found: dict[str, int] = {}
    for part in chunked(wanted, IN_LIST_SIZE):
        found.update(
            (str(userid), int(account_id))
            for userid, account_id in db.execute(
                select(Account.external_id, Account.id).where(
                    Account.org_id == org_id,
                    Account.kind == AccountKind.wecom_member,
                    one_of(db, Account.external_id, part),
                )
            )
        )
    for userid in wanted:
        if userid not in found:
            found[userid] = ensure_wecom_account(db, org_id, userid).id
    return found


def wecom_accounts_by_userid(db: Session, org_id: int) -> dict[str, int]:
    """Every WeCom member account of the organization: account id by member userid."""
    rows = db.execute(
        select(Account.external_id, Account.id).where(
            Account.org_id == org_id, Account.kind == AccountKind.wecom_member
        )
    )
    return {str(userid): int(account_id) for userid, account_id in rows}


def _check_operator(db: Session, org_id: int, operator_id: int | None) -> None:
    if operator_id is None:
        return
    if db.scalar(select(User.id).where(User.id == operator_id, User.org_id == org_id)) is None:
        raise Invalid("operator_id is not a user of this organization", field="operator_id")


def create_account(db: Session, org_id: int, data: AccountIn) -> Account:
    """Register a carrier account with caps defaulted by kind."""
    _check_operator(db, org_id, data.operator_id)
    hard_cap = data.hard_cap or DEFAULT_HARD_CAP[data.kind]
    if data.kind == AccountKind.personal_wechat and hard_cap > PERSONAL_WECHAT_HARD_CAP:
        raise Invalid(
            f"a personal WeChat account holds at most {PERSONAL_WECHAT_HARD_CAP} friends", field="hard_cap"
        )
    soft_cap = data.soft_cap or min(DEFAULT_SOFT_CAP, hard_cap)
    if soft_cap > hard_cap:
        raise Invalid("soft_cap must not exceed hard_cap", field="soft_cap")
    exists = select(Account.id).where(
        Account.org_id == org_id, Account.kind == data.kind, Account.external_id == data.external_id
    )
    if db.scalar(exists) is not None:
        raise Conflict(f"{data.kind} account {data.external_id!r} already exists", field="external_id")
    account = Account(
        org_id=org_id,
        kind=data.kind,
        external_id=data.external_id,
        name=data.name,
        operator_id=data.operator_id,
        soft_cap=soft_cap,
        hard_cap=hard_cap,
        status=data.status,
    )
    db.add(account)
    db.flush()
    return account


def update_account(db: Session, account: Account, patch: AccountPatch) -> Account:
    """Apply an admin's changes, keeping soft cap <= hard cap and personal WeChat under 5,000."""
    changes = patch.model_dump(exclude_unset=True)
    if "operator_id" in changes:
        _check_operator(db, account.org_id, changes["operator_id"])
    soft = changes.get("soft_cap", account.soft_cap)
    hard = changes.get("hard_cap", account.hard_cap)
    if soft > hard:
        raise Invalid("soft_cap must not exceed hard_cap", field="soft_cap")
    if account.kind == AccountKind.personal_wechat and hard > PERSONAL_WECHAT_HARD_CAP:
        raise Invalid(
            f"a personal WeChat account holds at most {PERSONAL_WECHAT_HARD_CAP} friends", field="hard_cap"
        )
    for key, value in changes.items():
        if value is not None or key == "operator_id":
            setattr(account, key, value)
    db.flush()
    return account


def forget_person(db: Session, org_id: int, customer_ids: Sequence[int], identifiers: Sequence[str]) -> int:
    """Erasure: a person's hand-over records keep their outcome (the 90-day rule counts them) but lose the
    WeCom external user id; returns rows changed."""
    result = db.execute(
        update(CustomerTransfer)
        .where(CustomerTransfer.org_id == org_id, CustomerTransfer.customer_id.in_(customer_ids))
        .values(external_userid="")
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
