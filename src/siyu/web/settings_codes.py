"""Console settings: channel codes (渠道活码) — create and edit a code (welcome text, auto-tags, remark
template, pool, cost) with the API's schemas and service, and a sheet to print or download its QR."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Response
from fastapi.responses import RedirectResponse
from pydantic import ValidationError

from siyu.channels import service
from siyu.channels.carriers import code_creator
from siyu.channels.models import ChannelCode, CodeCarrier, CodeStatus
from siyu.channels.schemas import REMARK_FIELDS, CodeIn, CodePatch
from siyu.customers import tagging
from siyu.integrations.wecom.errors import WeComError
from siyu.kit.errors import DomainError
from siyu.tenancy.deps import DbSession
from siyu.web.auth import Console, ConsoleRoute, admin_org_id
from siyu.web.forms import FormErrors, fen_to_yuan, from_domain, from_validation, yuan_to_fen
from siyu.web.templating import PageContext, render

router = APIRouter(include_in_schema=False, route_class=ConsoleRoute)

#: The channels a code is usually printed for (labels in ``web/labels.py``); a stored one not listed is kept.
CHANNELS = (
    "douyin",
    "kuaishou",
    "xiaohongshu",
    "taobao_parcel_card",
    "jd_order",
    "live_room",
    "offline_flyer",
    "referral",
    "official_account",
    "outbound_call",
    "zhihu",
)


def _messages(ctx: PageContext) -> dict[str, str]:
    """What the schema's and the service's rules on each field mean, in the reader's words."""
    fields = " ".join("{" + f + "}" for f in REMARK_FIELDS)
    return {
        "state": ctx.gettext("Use only letters, digits, _ - and . (at most 30 characters)."),
        "state:Conflict": ctx.gettext("Another code already uses this code ID: choose another."),
        "state:Invalid": ctx.gettext(
            "The carrier refused this code ID: use letters, digits, _ - and . only."
        ),
        "remark_template": ctx.gettext("The remark template may only use %(fields)s.") % {"fields": fields},
        "pool_id": ctx.gettext("Choose a routing pool that has at least one active account."),
        "channel:string_too_short": ctx.gettext("Choose a channel"),
        "pool_id:int_parsing": ctx.gettext("Choose a routing pool that has at least one active account."),
        "tag_ids": ctx.gettext("A chosen tag no longer exists: reload the page and choose again."),
        "carrier": ctx.gettext(
            "WeCom is not connected yet: save its credentials in WeCom settings, or issue the code in the sandbox."
        ),
        "carrier:Conflict": ctx.gettext(
            "WeCom refused to create the code: check that the pool's members may use customer contact in WeCom."
        ),
        "cost_fen": ctx.gettext("Enter an amount in yuan, for example 500 or 12.50."),
    }


def _values_of(code: ChannelCode) -> dict[str, Any]:
    return {
        "name": code.name,
        "state": code.state,
        "channel": code.channel,
        "campaign": code.campaign,
        "content_item": code.content_item,
        "pool_id": code.pool_id,
        "carrier": code.carrier.value,
        "tag_ids": list(code.tag_ids),
        "remark_template": code.remark_template,
        "welcome_message": code.welcome_message,
        "cost": fen_to_yuan(code.cost_fen),
        "status": code.status.value,
    }


def _form(
    db: DbSession,
    ctx: PageContext,
    org_id: int,
    *,
    code: ChannelCode | None,
    values: dict[str, Any],
    errors: FormErrors | None = None,
    status_code: int = 200,
) -> Response:
    channels = list(CHANNELS)
    if values.get("channel") and values["channel"] not in channels:
        channels.append(values["channel"])
    return render(
        ctx,
        "settings/code_form.html",
        status_code=status_code,
        active="settings",
        section="codes",
        code=code,
        values=values,
        errors=errors or FormErrors(),
        pools=service.list_pools(db, org_id),
        tag_groups=tagging.list_tag_groups(db, org_id),
        channels=channels,
        remark_placeholders=" ".join("{" + f + "}" for f in REMARK_FIELDS),
    )


@router.get("/settings/channel-codes")
def codes_page(db: DbSession, ctx: Console, saved: str = "") -> Response:
    """Every channel code with its pool, auto-tags and cost, and links to edit it and print its QR."""
    org_id = admin_org_id(ctx)
    pools = {p.id: p.name for p in service.list_pools(db, org_id)}
    tags = {t.id: t.name for _g, group_tags in tagging.list_tag_groups(db, org_id) for t in group_tags}
    return render(
        ctx,
        "settings/codes.html",
        active="settings",
        section="codes",
        codes=service.list_codes(db, org_id),
        pools=pools,
        tags=tags,
        saved=saved,
    )


@router.get("/settings/channel-codes/new")
def new_code_form(db: DbSession, ctx: Console) -> Response:
    """An empty channel code form."""
    org_id = admin_org_id(ctx)
    values: dict[str, Any] = {"carrier": CodeCarrier.sandbox.value, "cost": "", "tag_ids": []}
    return _form(db, ctx, org_id, code=None, values=values)


def _tag_ids(raw: list[str]) -> list[int]:
    # Checkbox values are the page's own tag ids; anything else is not a tag (the service refuses it).
    return [int(v) for v in raw if v.isdigit()]


@router.post("/settings/channel-codes")
def create_code(
    db: DbSession,
    ctx: Console,
    name: Annotated[str, Form()] = "",
    state: Annotated[str, Form()] = "",
    channel: Annotated[str, Form()] = "",
    campaign: Annotated[str, Form()] = "",
    content_item: Annotated[str, Form()] = "",
    pool_id: Annotated[str, Form()] = "",
    carrier: Annotated[str, Form()] = "sandbox",
    tag_ids: Annotated[list[str] | None, Form()] = None,
    remark_template: Annotated[str, Form()] = "",
    welcome_message: Annotated[str, Form()] = "",
    cost: Annotated[str, Form()] = "",
) -> Response:
    """Issue a new code on its carrier (CodeIn and ``channels.service.create_code``, as the API does)."""
    org_id = admin_org_id(ctx)
    values: dict[str, Any] = {
        "name": name,
        "state": state,
        "channel": channel,
        "campaign": campaign,
        "content_item": content_item,
        "pool_id": pool_id,
        "carrier": carrier,
        "tag_ids": _tag_ids(tag_ids or []),
        "remark_template": remark_template,
        "welcome_message": welcome_message,
        "cost": cost,
    }
    messages = _messages(ctx)
    errors = FormErrors()
    cost_fen = yuan_to_fen(cost)
    if cost_fen is None or cost_fen < 0:
        errors["cost"] = messages["cost_fen"]
    try:
        data = CodeIn.model_validate(
            {k: v for k, v in values.items() if k != "cost"} | {"cost_fen": max(cost_fen or 0, 0)}
        )
    except ValidationError as exc:
        errors = FormErrors(from_validation(ctx, exc, messages) | errors)
    if errors:
        return _form(db, ctx, org_id, code=None, values=values, errors=errors, status_code=422)
    try:
        creator = code_creator(ctx.request, db, org_id, data.carrier)
        code = service.create_code(db, org_id, data, creator)
    except WeComError:
        return _form(
            db,
            ctx,
            org_id,
            code=None,
            values=values,
            errors=FormErrors({"carrier": messages["carrier:Conflict"]}),
            status_code=409,
        )
    except DomainError as exc:
        db.rollback()
        errors = from_domain(ctx, exc, messages)
        return _form(db, ctx, org_id, code=None, values=values, errors=errors, status_code=exc.status_code)
    return RedirectResponse(f"/settings/channel-codes/{code.id}/qr?created=1", status_code=303)


@router.get("/settings/channel-codes/{code_id}/edit")
def edit_code_form(code_id: int, db: DbSession, ctx: Console) -> Response:
    """A code's form, filled in."""
    org_id = admin_org_id(ctx)
    code = service.get_code(db, org_id, code_id)
    return _form(db, ctx, org_id, code=code, values=_values_of(code))


@router.post("/settings/channel-codes/{code_id}")
def update_code(
    code_id: int,
    db: DbSession,
    ctx: Console,
    name: Annotated[str, Form()] = "",
    campaign: Annotated[str, Form()] = "",
    content_item: Annotated[str, Form()] = "",
    pool_id: Annotated[str, Form()] = "",
    tag_ids: Annotated[list[str] | None, Form()] = None,
    remark_template: Annotated[str, Form()] = "",
    welcome_message: Annotated[str, Form()] = "",
    cost: Annotated[str, Form()] = "",
    status: Annotated[str, Form()] = "active",
) -> Response:
    """Change a code (CodePatch and ``channels.service.update_code``); its code ID and carrier stay."""
    org_id = admin_org_id(ctx)
    code = service.get_code(db, org_id, code_id)
    values = _values_of(code) | {
        "name": name,
        "campaign": campaign,
        "content_item": content_item,
        "pool_id": pool_id,
        "tag_ids": _tag_ids(tag_ids or []),
        "remark_template": remark_template,
        "welcome_message": welcome_message,
        "cost": cost,
        "status": status,
    }
    messages = _messages(ctx)
    errors = FormErrors()
    cost_fen = yuan_to_fen(cost)
    if cost_fen is None or cost_fen < 0:
        errors["cost"] = messages["cost_fen"]
    patch_fields = ("name", "campaign", "content_item", "pool_id", "tag_ids", "remark_template")
    try:
        patch = CodePatch.model_validate(
            {k: values[k] for k in (*patch_fields, "welcome_message", "status")}
            | {"cost_fen": max(cost_fen or 0, 0)}
        )
    except ValidationError as exc:
        errors = FormErrors(from_validation(ctx, exc, messages) | errors)
    if errors:
        return _form(db, ctx, org_id, code=code, values=values, errors=errors, status_code=422)
    try:
        service.update_code(db, code, patch)
    except DomainError as exc:
        db.rollback()
        code = service.get_code(db, org_id, code_id)
        errors = from_domain(ctx, exc, messages)
        return _form(db, ctx, org_id, code=code, values=values, errors=errors, status_code=exc.status_code)
    return RedirectResponse(f"/settings/channel-codes?saved={code.id}", status_code=303)


@router.get("/settings/channel-codes/{code_id}/qr")
def qr_sheet(code_id: int, db: DbSession, ctx: Console, created: str = "") -> Response:
    """A printable sheet with the code's QR, name and welcome text, and PNG/SVG downloads."""
    org_id = admin_org_id(ctx)
    code = service.get_code(db, org_id, code_id)
    return render(
        ctx,
        "settings/code_qr.html",
        active="settings",
        section="codes",
        code=code,
        pool=service.get_pool(db, org_id, code.pool_id),
        created=bool(created),
        archived=code.status is CodeStatus.archived,
    )
