"""The chat sidebar (聊天工具栏): a mobile page WeCom shows beside every 1:1 and group chat.

WeCom opens ``/sidebar/{org}/`` inside its client. Without a console session the page sends the member
through WeCom's OAuth2 (``/sidebar/{org}/oauth`` turns the ``code`` into their userid, their account and
the siyu user who runs it, and starts that user's session). The page then signs ``wx.agentConfig`` with
the app's ``jsapi_ticket`` (``sidebar.js`` calls it), asks the JS-SDK which chat is open
(``getCurExternalContact`` / ``getCurExternalChat``) and loads that customer's or group's card. Tags,
remark and notes are edited through the console's own customer routes, so the same rules and events
apply; a script goes into the chat's input box with ``sendChatMessage``.
"""

from __future__ import annotations

import secrets
import time
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import RedirectResponse

from siyu.accounts import service as accounts
from siyu.commerce import service as commerce
from siyu.customers import customer_tagging, identities, tagging
from siyu.customers import notes as customer_notes
from siyu.customers.models import IdentityKind
from siyu.customers.remarks import WECOM_REMARK_MAX
from siyu.integrations.wecom.errors import WeComError
from siyu.integrations.wecom.jssdk import agent_config_signature, authorize_url, sdk_scripts
from siyu.kit.errors import NotFound
from siyu.leads import service as leads
from siyu.tenancy import service as identity
from siyu.tenancy.deps import DbSession, session_principal
from siyu.web import queries
from siyu.web.auth import Console, ConsoleRoute, anonymous_context, set_session_cookie
from siyu.web.customer_pages import shown_mobile, shown_remark
from siyu.web.security import content_security_policy
from siyu.web.sidebar_queries import first_lead, group_card, last_contact
from siyu.web.templating import PageContext, render
from siyu.wecom import credentials

router = APIRouter(include_in_schema=False, route_class=ConsoleRoute)

OAUTH_STATE_COOKIE = "siyu_sidebar_state"
ORDERS_SHOWN = 5
#: The JS-SDK calls the page makes; wx.agentConfig must list every one.
JS_API_LIST = ["getContext", "getCurExternalContact", "getCurExternalChat", "sendChatMessage"]


def _problem(ctx: PageContext, message: str, status_code: int) -> Response:
    return render(ctx, "sidebar/problem.html", status_code=status_code, message=message)


def _org_id(db: DbSession, org: str) -> int:
    try:
        return identity.organization_by_slug(db, org).id
    except NotFound:
        raise NotFound("organization not found", field="org") from None


@router.get("/sidebar/{org}/")
def sidebar_page(org: str, request: Request, db: DbSession) -> Response:
    """The sidebar: the page WeCom opens; without a session for this organization, WeCom's OAuth2 first."""
    org_id = _org_id(db, org)
    ctx = anonymous_context(request)
    row = credentials.get_credentials(db, org_id)
    if row is None:
        return _problem(
            ctx,
            ctx.gettext("WeCom is not connected yet: an admin connects it on the WeCom settings page."),
            409,
        )
    found = session_principal(request, db)
    if found is None or found[0].org_id != org_id:
        state = secrets.token_urlsafe(16)
        back = str(request.url_for("sidebar_oauth", org=org))
        response = RedirectResponse(
            authorize_url(row.base_url, row.corp_id, back, state, row.agent_id), status_code=302
        )
        response.set_cookie(
            OAUTH_STATE_COOKIE, state, httponly=True, samesite="lax", max_age=600, path="/sidebar/"
        )
        return response
    principal, csrf = found
    secret_key = request.app.state.settings.resolved_secret_key()
    try:
        ticket = credentials.client_for(
            credentials.plain_credentials(row, secret_key), timeout=5.0
        ).agent_ticket()
    except WeComError as exc:
        return _problem(
            ctx, ctx.label("wecom_connection_error", exc.errcode if exc.errcode is not None else ""), 502
        )
    # The page's own address, as the browser has it: that is what WeCom's JS-SDK signs and checks.
    url = str(request.url)
    timestamp, nonce = int(time.time()), secrets.token_urlsafe(12)
    page_ctx = PageContext(
        request=request,
        locale=ctx.locale,
        translations=ctx.translations,
        principal=principal,
        csrf_token=csrf,
        timezone=ctx.timezone,
    )
    scripts = sdk_scripts(row.base_url)
    page = render(
        page_ctx,
        "sidebar/page.html",
        org=org,
        sdk_scripts=scripts,
        agent_config={
            "corpid": row.corp_id,
            "agentid": row.agent_id,
            "timestamp": timestamp,
            "nonceStr": nonce,
            "signature": agent_config_signature(ticket, nonce, timestamp, url),
            "jsApiList": JS_API_LIST,
        },
    )
    origins = tuple(sorted({f"{u.scheme}://{u.netloc}" for u in map(urlsplit, scripts) if u.netloc}))
    page.headers["Content-Security-Policy"] = content_security_policy(origins)
    return page


@router.get("/sidebar/{org}/oauth", name="sidebar_oauth")
def sidebar_oauth(
    org: str,
    request: Request,
    db: DbSession,
    code: Annotated[str, Query(max_length=512)] = "",
    state: Annotated[str, Query(max_length=128)] = "",
) -> Response:
    """WeCom's OAuth2 comes back here: the code names the member; their account's operator is signed in."""
    org_id = _org_id(db, org)
    ctx = anonymous_context(request)
    expected = request.cookies.get(OAUTH_STATE_COOKIE, "")
    if not code or not expected or not secrets.compare_digest(expected, state):
        return _problem(
            ctx, ctx.gettext("The sign-in through WeCom has expired: open the sidebar again."), 403
        )
    row = credentials.get_credentials(db, org_id)
    if row is None:
        return _problem(
            ctx,
            ctx.gettext("WeCom is not connected yet: an admin connects it on the WeCom settings page."),
            409,
        )
    secret_key = request.app.state.settings.resolved_secret_key()
    try:
        userid = credentials.client_for(
            credentials.plain_credentials(row, secret_key), timeout=5.0
        ).user_of_code(code)
    except WeComError:
        return _problem(
            ctx, ctx.gettext("The sign-in through WeCom has expired: open the sidebar again."), 403
        )
    account = accounts.wecom_member_account(db, org_id, userid) if userid else None
    if account is None:
        return _problem(
            ctx,
            ctx.gettext("This WeCom member is not an account in siyu yet: ask an admin to sync WeCom."),
            403,
        )
    user = identity.active_user(db, org_id, account.operator_id) if account.operator_id else None
    if user is None:
        return _problem(
            ctx,
            ctx.gettext("No one in siyu runs this WeCom account yet: ask an admin to assign it to you."),
            403,
        )
    settings = request.app.state.settings
    session = identity.start_session(db, user, settings.session_ttl_hours)
    response = RedirectResponse(f"/sidebar/{org}/", status_code=303)
    set_session_cookie(response, settings, session.cookie_value)
    response.delete_cookie(OAUTH_STATE_COOKIE, path="/sidebar/")
    return response


def _contact_data(db: DbSession, ctx: PageContext, external_userid: str) -> dict[str, Any]:
    assert ctx.principal is not None
    principal = ctx.principal
    customer = identities.customer_by_identity(
        db, principal, IdentityKind.wecom_external_userid, external_userid
    )
    brought = first_lead(db, principal.org_id, customer.id)
    orders = commerce.latest_orders(db, principal.org_id, customer.id, limit=ORDERS_SHOWN)
    order_count, order_net = queries.customer_order_totals(db, principal.org_id, customer.id)
    notes = customer_notes.list_notes(db, principal, customer.id)
    return {
        "customer": customer,
        "mobile": shown_mobile(principal, customer.mobile),
        "remark": shown_remark(principal, customer.remark),
        "remark_max": WECOM_REMARK_MAX,
        "lead": brought[0] if brought else None,
        "comment": brought[1] if brought else None,
        "tags": customer_tagging.customer_tags(db, principal, customer.id),
        "groups": {g.id: g for g, _tags in tagging.list_tag_groups(db, principal.org_id)},
        "saved": False,
        "error": None,
        "notes": notes,
        "draft": "",
        "authors": queries.user_names(db, principal.org_id, {n.author_id for n in notes if n.author_id}),
        "orders": orders,
        "order_count": order_count,
        "order_net": order_net,
        "last_contact": last_contact(db, principal.org_id, customer.id),
        "scripts": leads.chat_scripts(
            db,
            principal.org_id,
            customer.name,
            lead_intent=brought[0].intent if brought else None,
            intent_text=customer.intent,
        ),
    }


@router.get("/sidebar/{org}/contact/{external_userid}")
def sidebar_contact(org: str, external_userid: str, db: DbSession, ctx: Console) -> Response:
    """The card of the customer in a 1:1 chat (by their WeCom external userid)."""
    assert ctx.principal is not None
    if _org_id(db, org) != ctx.principal.org_id:
        raise NotFound("organization not found", field="org")
    return render(ctx, "sidebar/_contact.html", **_contact_data(db, ctx, external_userid))


@router.get("/sidebar/{org}/group/{chat_id}")
def sidebar_group(org: str, chat_id: str, db: DbSession, ctx: Console) -> Response:
    """The card of a customer group chat: members, their most common tags and the group's activity."""
    assert ctx.principal is not None
    if _org_id(db, org) != ctx.principal.org_id:
        raise NotFound("organization not found", field="org")
    return render(ctx, "sidebar/_group.html", card=group_card(db, ctx.principal, chat_id))
