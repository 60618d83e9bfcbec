"""Console settings: routing pools (their rule, caps, warm-up and members) and carrier accounts (register one,
assign its operator, set its soft and hard caps and status), through the API's schemas and services."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Form, Response
from fastapi.responses import RedirectResponse
from pydantic import BaseModel, ValidationError

from siyu.accounts import service as accounts
from siyu.accounts.models import Account, AccountKind, AccountStatus
from siyu.accounts.schemas import AccountIn, AccountPatch
from siyu.channels import service as channels
from siyu.channels.models import RoutingPool, RoutingRule
from siyu.channels.schemas import MemberIn, PoolIn, PoolPatch
from siyu.kit.errors import DomainError
from siyu.tenancy import service as identity
from siyu.tenancy.deps import DbSession
from siyu.web.auth import Console, ConsoleRoute, admin_org_id
from siyu.web.forms import FORM, FormErrors, Refused, from_domain, from_validation, submit
from siyu.web.templating import PageContext, render

router = APIRouter(include_in_schema=False, route_class=ConsoleRoute)


def _all_accounts(db: DbSession, ctx: PageContext) -> list[Account]:
    assert ctx.principal is not None
    return list(db.scalars(accounts.visible_accounts(ctx.principal).order_by(Account.name, Account.id)))


# --- pools ------------------------------------------------------------------------------------------


def _pool_messages(ctx: PageContext) -> dict[str, str]:
    return {
        "name:Conflict": ctx.gettext("A routing pool with this name already exists."),
        "warmup": ctx.gettext("Enter whole numbers of at least 1, separated by commas, e.g. 20, 40, 80."),
        "members": ctx.gettext("A chosen account no longer exists: reload the page and choose again."),
    }


def _pool_form(
    db: DbSession,
    ctx: PageContext,
    *,
    pool: RoutingPool | None,
    values: dict[str, Any],
    errors: FormErrors | None = None,
    status_code: int = 200,
) -> Response:
    return render(
        ctx,
        "settings/pool_form.html",
        status_code=status_code,
        active="settings",
        section="pools",
        pool=pool,
        values=values,
        errors=errors or FormErrors(),
        rules=list(RoutingRule),
        accounts=_all_accounts(db, ctx),
    )


@router.get("/settings/pools")
def pools_page(db: DbSession, ctx: Console) -> Response:
    """Every routing pool with its rule, caps and members."""
    org_id = admin_org_id(ctx)
    names = {a.id: a.name for a in _all_accounts(db, ctx)}
    return render(
        ctx,
        "settings/pools.html",
        active="settings",
        section="pools",
        pools=[channels.pool_out(db, p) for p in channels.list_pools(db, org_id)],
        names=names,
    )


@router.get("/settings/pools/new")
def new_pool_form(db: DbSession, ctx: Console) -> Response:
    """An empty pool form with the defaults of PoolIn."""
    admin_org_id(ctx)
    defaults = PoolIn(name="x")
    values: dict[str, Any] = {
        "rule": defaults.rule.value,
        "daily_cap": defaults.daily_cap,
        "warmup": ", ".join(map(str, defaults.warmup)),
        "members": [],
        "backups": [],
    }
    return _pool_form(db, ctx, pool=None, values=values)


@router.get("/settings/pools/{pool_id}/edit")
def edit_pool_form(pool_id: int, db: DbSession, ctx: Console) -> Response:
    """A pool's form, filled in."""
    org_id = admin_org_id(ctx)
    out = channels.pool_out(db, channels.get_pool(db, org_id, pool_id))
    values = {
        "name": out.name,
        "rule": out.rule.value,
        "daily_cap": out.daily_cap,
        "warmup": ", ".join(map(str, out.warmup)),
        "members": [m.account_id for m in out.members],
        "backups": [m.account_id for m in out.members if m.is_backup],
    }
    pool = channels.get_pool(db, org_id, pool_id)
    return _pool_form(db, ctx, pool=pool, values=values)


def _ids(raw: list[str] | None) -> list[int]:
    return [int(v) for v in raw or [] if v.isdigit()]


def _pool_input(
    db: DbSession, ctx: PageContext, pool: RoutingPool | None, values: dict[str, Any]
) -> tuple[dict[str, Any], FormErrors]:
    """The pool as PoolIn/PoolPatch fields, keeping the regions and hours of members that stay."""
    errors = FormErrors()
    parts = [p for p in re.split(r"[,，\s]+", values["warmup"]) if p]
    if not all(re.fullmatch(r"-?\d+", p) for p in parts):
        errors["warmup"] = _pool_messages(ctx)["warmup"]
    kept = {m.account_id: m for m in channels.pool_out(db, pool).members} if pool is not None else {}
    members = [
        MemberIn(
            account_id=account_id,
            is_backup=account_id in values["backups"],
            regions=kept[account_id].regions if account_id in kept else [],
            hours=kept[account_id].hours if account_id in kept else {},
        )
        for account_id in values["members"]
    ]
    fields = {
        "name": values["name"],
        "rule": values["rule"],
        "daily_cap": values["daily_cap"],
        "warmup": [int(p) for p in parts] if "warmup" not in errors else [],
        "members": members,
    }
    return fields, errors


class PoolForm(BaseModel):
    """The pool form's fields as typed; the API's schema validates them."""

    name: str = ""
    rule: str = "least_loaded"
    daily_cap: str = ""
    warmup: str = ""
    members: list[str] | None = None
    backups: list[str] | None = None


def _save_pool(db: DbSession, ctx: PageContext, pool_id: int | None, form: PoolForm) -> Response:
    org_id = admin_org_id(ctx)
    pool = channels.get_pool(db, org_id, pool_id) if pool_id is not None else None
    values = form.model_dump() | {"members": _ids(form.members), "backups": _ids(form.backups)}
    messages = _pool_messages(ctx)
    fields, errors = _pool_input(db, ctx, pool, values)
    data: PoolIn | PoolPatch | None = None
    try:
        data = PoolIn.model_validate(fields) if pool is None else PoolPatch.model_validate(fields)
    except ValidationError as exc:
        errors = FormErrors(from_validation(ctx, exc, messages) | errors)
    if errors or data is None:
        return _pool_form(db, ctx, pool=pool, values=values, errors=errors, status_code=422)
    try:
        if isinstance(data, PoolIn):
            saved = channels.create_pool(db, org_id, data)
        else:
            assert pool is not None
            saved = channels.update_pool(db, pool, data)
    except DomainError as exc:
        db.rollback()
        pool = channels.get_pool(db, org_id, pool_id) if pool_id is not None else None
        errors = from_domain(ctx, exc, messages)
        return _pool_form(db, ctx, pool=pool, values=values, errors=errors, status_code=exc.status_code)
    return RedirectResponse(f"/settings/pools?saved={saved.id}", status_code=303)


@router.post("/settings/pools")
def create_pool(db: DbSession, ctx: Console, form: Annotated[PoolForm, Form()]) -> Response:
    """Create a pool (PoolIn and ``channels.service.create_pool``)."""
    return _save_pool(db, ctx, None, form)


@router.post("/settings/pools/{pool_id}")
def update_pool(pool_id: int, db: DbSession, ctx: Console, form: Annotated[PoolForm, Form()]) -> Response:
    """Change a pool; the ticked accounts become its members (PoolPatch, as the API)."""
    return _save_pool(db, ctx, pool_id, form)


# --- accounts ---------------------------------------------------------------------------------------


def _account_messages(ctx: PageContext) -> dict[str, str]:
    return {
        "soft_cap": ctx.gettext("The soft cap cannot be above the hard cap."),
        "hard_cap:Invalid": ctx.gettext("A personal WeChat account holds at most 5,000 friends."),
        "operator_id": ctx.gettext("Choose a user of this organization."),
        "external_id:Conflict": ctx.gettext("This account is already registered."),
    }


def _account_form(
    db: DbSession,
    ctx: PageContext,
    *,
    account: Account | None,
    values: dict[str, Any],
    errors: FormErrors | None = None,
    status_code: int = 200,
) -> Response:
    org_id = admin_org_id(ctx)
    return render(
        ctx,
        "settings/account_form.html",
        status_code=status_code,
        active="settings",
        section="accounts",
        account=account,
        values=values,
        errors=errors or FormErrors(),
        users=[u for u in identity.list_users(db, org_id) if u.is_active],
        kinds=list(AccountKind),
        statuses=list(AccountStatus),
    )


@router.get("/settings/accounts")
def accounts_page(db: DbSession, ctx: Console, saved: str = "") -> Response:
    """Every account with its operator, friends and caps."""
    org_id = admin_org_id(ctx)
    users = {u.id: u.name for u in identity.list_users(db, org_id)}
    return render(
        ctx,
        "settings/accounts.html",
        active="settings",
        section="accounts",
        accounts=_all_accounts(db, ctx),
        users=users,
        saved=saved,
    )


@router.get("/settings/accounts/new")
def new_account_form(db: DbSession, ctx: Console) -> Response:
    """An empty account form."""
    values = {"kind": AccountKind.wecom_member.value, "status": AccountStatus.active.value}
    return _account_form(db, ctx, account=None, values=values)


@router.get("/settings/accounts/{account_id}/edit")
def edit_account_form(account_id: int, db: DbSession, ctx: Console) -> Response:
    """An account's form, filled in."""
    admin_org_id(ctx)
    assert ctx.principal is not None
    account = accounts.get_account(db, ctx.principal, account_id)
    values = {
        "name": account.name,
        "operator_id": account.operator_id or "",
        "soft_cap": account.soft_cap,
        "hard_cap": account.hard_cap,
        "status": account.status.value,
    }
    return _account_form(db, ctx, account=account, values=values)


def _caps_beside_fields(errors: FormErrors, messages: dict[str, str]) -> FormErrors:
    # AccountPatch checks soft <= hard on the whole model; the console shows it beside the soft cap.
    if FORM in errors:
        errors.pop(FORM)
        errors.setdefault("soft_cap", messages["soft_cap"])
    return errors


@router.post("/settings/accounts")
def create_account(
    db: DbSession,
    ctx: Console,
    kind: Annotated[str, Form()] = "",
    external_id: Annotated[str, Form()] = "",
    name: Annotated[str, Form()] = "",
    operator_id: Annotated[str, Form()] = "",
    soft_cap: Annotated[str, Form()] = "",
    hard_cap: Annotated[str, Form()] = "",
    status: Annotated[str, Form()] = "active",
) -> Response:
    """Register an account (AccountIn and ``accounts.service.create_account``); empty caps take the kind's
    defaults."""
    org_id = admin_org_id(ctx)
    values = {
        "kind": kind,
        "external_id": external_id,
        "name": name,
        "operator_id": operator_id,
        "soft_cap": soft_cap,
        "hard_cap": hard_cap,
        "status": status,
    }
    messages = _account_messages(ctx)
    fields = {k: (v if v != "" else None) for k, v in values.items()} | {"kind": kind}
    account = submit(
        db, ctx, lambda: accounts.create_account(db, org_id, AccountIn.model_validate(fields)), messages
    )
    if isinstance(account, Refused):
        errors = _caps_beside_fields(account.errors, messages)
        return _account_form(
            db, ctx, account=None, values=values, errors=errors, status_code=account.status_code
        )
    return RedirectResponse(f"/settings/accounts?saved={account.id}", status_code=303)


@router.post("/settings/accounts/{account_id}")
def update_account(
    account_id: int,
    db: DbSession,
    ctx: Console,
    name: Annotated[str, Form()] = "",
    operator_id: Annotated[str, Form()] = "",
    soft_cap: Annotated[str, Form()] = "",
    hard_cap: Annotated[str, Form()] = "",
    status: Annotated[str, Form()] = "active",
) -> Response:
    """Assign the operator, set the caps, the status or the name (AccountPatch, as the API's PATCH)."""
    admin_org_id(ctx)
    assert ctx.principal is not None
    account = accounts.get_account(db, ctx.principal, account_id)
    values = {
        "name": name,
        "operator_id": operator_id,
        "soft_cap": soft_cap,
        "hard_cap": hard_cap,
        "status": status,
    }
    messages = _account_messages(ctx)
    # An empty operator unassigns; empty caps are refused (the API needs a number to change one).
    patch = values | {"operator_id": operator_id or None}
    saved = submit(
        db, ctx, lambda: accounts.update_account(db, account, AccountPatch.model_validate(patch)), messages
    )
    if isinstance(saved, Refused):
        account = accounts.get_account(db, ctx.principal, account_id)
        errors = _caps_beside_fields(saved.errors, messages)
        return _account_form(
            db, ctx, account=account, values=values, errors=errors, status_code=saved.status_code
        )
    return RedirectResponse(f"/settings/accounts?saved={account.id}", status_code=303)
