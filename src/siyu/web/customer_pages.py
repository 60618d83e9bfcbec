"""Customer pages: the searchable list and the detail page with in-place (HTMX) edits of tags,
remark and notes. Every read and write goes through the customer hub's services (``siyu.customers``) with
the principal, so visibility (404 for another organization's or another operator's customer) is theirs."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Query, Request, Response
from fastapi.responses import RedirectResponse
from pydantic import ValidationError
from sqlalchemy.orm import Session

from siyu.channels import service as channels
from siyu.commerce import service as commerce
from siyu.customers import (
    access,
    customer_tagging,
    listing,
    profiles,
    search,
    tagging,
    timelines,
)
from siyu.customers import (
    follows as follow_relations,
)
from siyu.customers import (
    identities as customer_identities,
)
from siyu.customers import (
    notes as customer_notes,
)
from siyu.customers.models import Customer, Stage
from siyu.customers.remarks import WECOM_REMARK_MAX, MaskedMobile, masked_remark
from siyu.customers.schemas import CustomerFilters, CustomerPatch, IdentityOut, NoteOut
from siyu.groups import service as groups
from siyu.kit.errors import DomainError, NotFound, TooManyRequests
from siyu.kit.phone import mask_mobile
from siyu.privacy import service as privacy
from siyu.tenancy.deps import DbSession
from siyu.tenancy.principal import Principal
from siyu.web import queries
from siyu.web.auth import Console, ConsoleRoute, is_htmx, safe_next
from siyu.web.errors import error_text
from siyu.web.privacy_pages import consent_view
from siyu.web.templating import PageContext, render

router = APIRouter(include_in_schema=False, route_class=ConsoleRoute)

PAGE_SIZE = 25
# The list shows its total counted up to here: past it "10,000+", and the exact figure on request (a full
# count reads every matching customer: seconds at a million).
TOTAL_SHOWN_UP_TO = 10_000
TIMELINE_PAGE = 30
ORDERS_SHOWN = 50


def _principal(ctx: PageContext) -> Principal:
    assert ctx.principal is not None  # Console only yields logged-in contexts
    return ctx.principal


def shown_mobile(principal: Principal, mobile: str | None) -> str | None:
    """The mobile as this principal may see it (masked for operators)."""
    return mobile if principal.sees_full_mobile else mask_mobile(mobile)


def shown_remark(principal: Principal, remark: str) -> str:
    """The remark as this principal may see it (mobiles inside masked for operators)."""
    return remark if principal.sees_full_mobile else masked_remark(remark)


# --- list -----------------------------------------------------------------------------------------


def _filter_error(ctx: PageContext, exc: ValidationError) -> str:
    field = str(exc.errors()[0]["loc"][0]) if exc.errors() and exc.errors()[0]["loc"] else ""
    if field == "mobile":
        return ctx.gettext("Enter a full 11-digit mobile number or its last 4 digits.")
    if field == "stage":
        return ctx.gettext("Unknown stage.")
    return ctx.gettext("Check the search fields.")


@router.get("/customers")
def customer_list(
    request: Request,
    db: DbSession,
    ctx: Console,
    q: str = "",
    mobile: str = "",
    tag: Annotated[str, Query()] = "",
    stage: str = "",
    source: str = "",
    cursor: int | None = None,
    exact: bool = False,
) -> Response:
    """Search visible customers by name or remark, mobile (or its last 4 digits), tag, stage and source; keyset
    pages. The total is counted up to TOTAL_SHOWN_UP_TO (not at all for a search the index cannot serve),
    exactly only on request (``exact``)."""
    principal = _principal(ctx)
    form = {"q": q.strip(), "mobile": mobile.strip(), "tag": tag.strip(), "stage": stage, "source": source}
    error: str | None = None
    rows: list[Customer] = []
    next_cursor: int | None = None
    total: int | None = None
    try:
        filters = CustomerFilters(
            text=form["q"] or None,
            mobile=form["mobile"] or None,
            tag_ids=[int(form["tag"])] if form["tag"].isdigit() else [],
            stage=Stage(stage) if stage else None,
            source=source or None,
        )
        settings = request.app.state.settings
        privacy.check_mobile_lookup(
            db, principal, request.app.state.mobile_lookups, settings.mobile_lookups_per_hour, filters.mobile
        )
        rows, next_cursor = listing.list_customers(db, principal, filters, cursor=cursor, limit=PAGE_SIZE)
        if exact:
            total = listing.count_customers(db, principal, filters)
        elif not (filters.text and not search.served_by_index(filters.text)):
            total = listing.count_customers(db, principal, filters, at_most=TOTAL_SHOWN_UP_TO + 1)
        # else a search too short for the index: counting it reads every customer, so only on request.
    except ValidationError as exc:
        error = _filter_error(ctx, exc)
    except ValueError:
        error = ctx.gettext("Unknown stage.")
    except TooManyRequests:
        error = ctx.gettext("Too many full-number searches this hour: search by the last 4 digits instead.")
    except DomainError as exc:
        error = ctx.gettext("Unknown tag.") if exc.field == "tag_ids" else error_text(ctx, exc)
    ids = [c.id for c in rows]
    query = {k: v for k, v in form.items() if v}
    here = "/customers" + (
        "?" + urlencode({**query, "cursor": cursor} if cursor else query) if query or cursor else ""
    )
    data: dict[str, Any] = {
        "rows": rows,
        "total": total,
        "total_up_to": TOTAL_SHOWN_UP_TO,
        "total_capped": not exact and total is not None and total > TOTAL_SHOWN_UP_TO,
        "count_on_request": total is None and error is None,
        "exact_url": "/customers?"
        + urlencode({**query, **({"cursor": cursor} if cursor else {}), "exact": 1}),
        "tags": queries.tags_by_customer(db, principal.org_id, ids),
        "owners": queries.owners_by_customer(db, principal.org_id, ids),
        "tag_groups": tagging.list_tag_groups(db, principal.org_id),
        "form": form,
        "error": error,
        "cursor": cursor,
        "here": here,
        "bulk": request.query_params.get("bulk", ""),
        "next_url": "/customers?" + urlencode({**query, "cursor": next_cursor}) if next_cursor else None,
        "first_url": "/customers" + ("?" + urlencode(query) if query else ""),
        "mobile_of": lambda c: shown_mobile(principal, c.mobile),
        "remark_of": lambda c: shown_remark(principal, c.remark),
    }
    if is_htmx(request) and request.headers.get("HX-Target") == "results":
        return render(ctx, "customers/_results.html", **data)
    return render(
        ctx,
        "customers/list.html",
        active="customers",
        stages=list(Stage),
        sources=queries.known_sources(db, principal.org_id),
        **data,
    )


@router.post("/customers/bulk-tags")
def customer_bulk_tags(
    db: DbSession,
    ctx: Console,
    customer_id: Annotated[list[int], Form()] = [],  # noqa: B006 - FastAPI copies defaults per request
    tag_id: Annotated[str, Form()] = "",
    action: Annotated[str, Form()] = "add",
    back: Annotated[str, Form()] = "/customers",
) -> Response:
    """Put a tag on, or take it off, every ticked customer (each through ``customer_tagging``, which records
    the tag events); all or nothing."""
    principal = _principal(ctx)
    target = safe_next(back, default="/customers")
    if not target.startswith("/customers"):
        target = "/customers"
    if not customer_id or not tag_id.isdigit() or action not in ("add", "remove"):
        outcome = "none"
    else:
        change = customer_tagging.add_tags if action == "add" else customer_tagging.remove_tags
        try:
            for one in customer_id:
                change(db, principal, one, [int(tag_id)], origin="console")
        except DomainError as exc:
            db.rollback()  # all or nothing: the customers changed before the failing one are not kept
            if isinstance(exc, NotFound):
                raise
            outcome = "failed"
        else:
            outcome = f"{action}:{len(customer_id)}"
    return RedirectResponse(
        target + ("&" if "?" in target else "?") + urlencode({"bulk": outcome}), status_code=303
    )


# --- detail ---------------------------------------------------------------------------------------


def _customer(db: Session, ctx: PageContext, customer_id: int) -> Customer:
    return access.get_customer(db, _principal(ctx), customer_id)


def _tags_fragment(
    db: Session, ctx: PageContext, customer: Customer, *, saved: bool = False, error: str | None = None
) -> Response:
    principal = _principal(ctx)
    groups = {g.id: g for g, _tags in tagging.list_tag_groups(db, principal.org_id)}
    return render(
        ctx,
        "customers/_tags.html",
        customer=customer,
        groups=groups,
        tags=customer_tagging.customer_tags(db, principal, customer.id),
        saved=saved,
        error=error,
    )


def _remark_fragment(
    ctx: PageContext, customer: Customer, *, saved: bool = False, error: str | None = None
) -> Response:
    return render(
        ctx,
        "customers/_remark.html",
        customer=customer,
        saved=saved,
        error=error,
        remark=shown_remark(_principal(ctx), customer.remark),
        remark_max=WECOM_REMARK_MAX,
    )


def _notes_fragment(
    db: Session, ctx: PageContext, customer: Customer, *, error: str | None = None, draft: str = ""
) -> Response:
    principal = _principal(ctx)
    notes = [NoteOut.build(n, principal) for n in customer_notes.list_notes(db, principal, customer.id)]
    authors = queries.user_names(db, principal.org_id, {n.author_id for n in notes if n.author_id})
    return render(
        ctx,
        "customers/_notes.html",
        customer=customer,
        notes=notes,
        authors=authors,
        error=error,
        draft=draft,
    )


def _timeline_data(db: Session, ctx: PageContext, customer: Customer, before: str | None) -> dict[str, Any]:
    principal = _principal(ctx)
    page = timelines.timeline(db, principal, customer.id, before=before, limit=TIMELINE_PAGE)
    account_ids = {i.account_id for i in page.items if i.account_id}
    author_ids = {i.data.get("author_id") for i in page.items if i.kind == "note" and i.data.get("author_id")}
    group_ids = {
        gid
        for i in page.items
        if i.kind == "event" and isinstance(gid := (i.data.get("properties") or {}).get("group_id"), int)
    }
    return {
        "customer": customer,
        "items": page.items,
        "next_before": page.next_before,
        "accounts": queries.account_names(db, principal.org_id, account_ids),
        "authors": queries.user_names(db, principal.org_id, {int(a) for a in author_ids if a}),
        "groups": groups.group_names(db, principal.org_id, group_ids),
    }


def _code_names(db: Session, org_id: int, states: set[str]) -> dict[str, str]:
    """The names of the channel codes behind these follow states (a state of no siyu code is left out)."""
    codes = (channels.code_for_state(db, org_id, state) for state in states)
    return {code.state: code.name for code in codes if code is not None}


@router.get("/customers/{customer_id}")
def customer_detail(customer_id: int, db: DbSession, ctx: Console) -> Response:
    """Profile, identities, follow relations, tags, remark, notes, timeline and orders of one customer."""
    principal = _principal(ctx)
    customer = _customer(db, ctx, customer_id)
    if customer.id != customer_id:
        # A merged-away id: show the surviving profile at its own address.
        return RedirectResponse(f"/customers/{customer.id}", status_code=303)
    follows = follow_relations.list_follows(db, principal, customer.id)
    identities = [
        IdentityOut.build(i, principal)
        for i in customer_identities.list_identities(db, principal, customer.id)
    ]
    notes = [NoteOut.build(n, principal) for n in customer_notes.list_notes(db, principal, customer.id)]
    groups = {g.id: g for g, _tags in tagging.list_tag_groups(db, principal.org_id)}
    order_count, order_net = queries.customer_order_totals(db, principal.org_id, customer.id)
    orders, _more = commerce.list_orders(db, principal, customer_id=customer.id, limit=ORDERS_SHOWN)
    return render(
        ctx,
        "customers/detail.html",
        active="customers",
        customer=customer,
        mobile=shown_mobile(principal, customer.mobile),
        remark=shown_remark(principal, customer.remark),
        remark_max=WECOM_REMARK_MAX,
        identities=identities,
        follows=follows,
        follow_accounts=queries.account_names(db, principal.org_id, {f.account_id for f in follows}),
        code_names=_code_names(db, principal.org_id, {f.state for f in follows if f.state}),
        tags=customer_tagging.customer_tags(db, principal, customer.id),
        groups=groups,
        saved=False,
        error=None,
        notes=notes,
        draft="",
        authors=queries.user_names(db, principal.org_id, {n.author_id for n in notes if n.author_id}),
        orders=commerce.with_items(db, orders),
        order_count=order_count,
        order_net=order_net,
        stage_choices=list(Stage),
        reason="",
        timeline=_timeline_data(db, ctx, customer, None),
        consent_error=None,
        **consent_view(db, ctx, customer.id),
    )


@router.get("/customers/{customer_id}/timeline")
def customer_timeline(customer_id: int, db: DbSession, ctx: Console, before: str | None = None) -> Response:
    """Timeline entries as an HTMX fragment: older ones (``before``) or, without it, the newest page."""
    customer = _customer(db, ctx, customer_id)
    try:
        data = _timeline_data(db, ctx, customer, before)
    except DomainError as exc:
        if isinstance(exc, NotFound):
            raise
        return Response(error_text(ctx, exc), status_code=422, media_type="text/plain")
    return render(ctx, "customers/_timeline_items.html", **data)


@router.get("/customers/{customer_id}/tags")
def customer_tags(customer_id: int, db: DbSession, ctx: Console) -> Response:
    """The tags of a customer as shown on the detail page (the picker's Cancel returns here)."""
    return _tags_fragment(db, ctx, _customer(db, ctx, customer_id))


@router.get("/customers/{customer_id}/tags/edit")
def customer_tags_edit(customer_id: int, db: DbSession, ctx: Console) -> Response:
    """The tag picker: every tag of the organization grouped by tag group, the customer's ones checked."""
    principal = _principal(ctx)
    customer = _customer(db, ctx, customer_id)
    chosen = {t.id for t in customer_tagging.customer_tags(db, principal, customer.id)}
    return render(
        ctx,
        "customers/_tag_picker.html",
        customer=customer,
        chosen=chosen,
        tag_groups=tagging.list_tag_groups(db, principal.org_id),
    )


@router.post("/customers/{customer_id}/tags")
def customer_tags_save(
    customer_id: int,
    request: Request,
    db: DbSession,
    ctx: Console,
    tag_id: Annotated[list[int], Form()] = [],  # noqa: B006 - FastAPI copies defaults per request
) -> Response:
    """Replace the customer's tags with the ticked ones and show the result in place."""
    customer = _customer(db, ctx, customer_id)
    try:
        customer_tagging.set_customer_tags(db, _principal(ctx), customer.id, tag_id)
    except DomainError as exc:
        if isinstance(exc, NotFound):
            raise
        db.rollback()
        return _tags_fragment(db, ctx, customer, error=error_text(ctx, exc))
    if not is_htmx(request):
        return RedirectResponse(f"/customers/{customer.id}", status_code=303)
    return _tags_fragment(db, ctx, customer, saved=True)


@router.post("/customers/{customer_id}/remark")
def customer_remark_save(
    customer_id: int,
    request: Request,
    db: DbSession,
    ctx: Console,
    remark: Annotated[str, Form()] = "",
) -> Response:
    """Write the remark by hand (it then stays until reset to the automatic one)."""
    principal = _principal(ctx)
    customer = _customer(db, ctx, customer_id)
    # An operator sees mobiles in the remark masked: the service puts the stored digits back for a masked
    # number that is the customer's own, and refuses any other (so no save ever erases the number).
    text = remark.strip()
    error: str | None = None
    if not text:
        error = ctx.gettext("The remark cannot be empty; use “Reset to automatic” instead.")
    elif len(text) > WECOM_REMARK_MAX:
        error = ctx.gettext("A remark holds at most %(n)d characters.") % {"n": WECOM_REMARK_MAX}
    if error is None:
        try:
            customer = profiles.update_customer_as(db, principal, customer.id, CustomerPatch(remark=text))
        except (ValidationError, DomainError) as exc:
            if isinstance(exc, NotFound):
                raise
            db.rollback()
            if isinstance(exc, MaskedMobile):
                error = ctx.gettext(
                    "A masked mobile number (138****1234) can only stand for this customer's own number: "
                    "type the full 11 digits."
                )
            elif isinstance(exc, DomainError):
                error = error_text(ctx, exc)
            else:
                error = ctx.gettext("The remark is not valid.")
    if not is_htmx(request) and error is None:
        return RedirectResponse(f"/customers/{customer.id}", status_code=303)
    return _remark_fragment(ctx, customer, saved=error is None, error=error)


@router.post("/customers/{customer_id}/remark/reset")
def customer_remark_reset(customer_id: int, request: Request, db: DbSession, ctx: Console) -> Response:
    """Go back to the automatic Name+Source+Intent+Mobile remark."""
    customer = _customer(db, ctx, customer_id)
    customer = profiles.reset_remark(db, _principal(ctx).org_id, customer.id)
    if not is_htmx(request):
        return RedirectResponse(f"/customers/{customer.id}", status_code=303)
    return _remark_fragment(ctx, customer, saved=True)


def _stage_fragment(
    ctx: PageContext, customer: Customer, *, saved: bool = False, error: str | None = None, reason: str = ""
) -> Response:
    return render(
        ctx,
        "customers/_stage.html",
        customer=customer,
        saved=saved,
        error=error,
        reason=reason,
        stage_choices=list(Stage),
    )


@router.post("/customers/{customer_id}/stage")
def customer_stage_save(
    customer_id: int,
    request: Request,
    db: DbSession,
    ctx: Console,
    stage: Annotated[str, Form()] = "",
    reason: Annotated[str, Form()] = "",
) -> Response:
    """Set the lifecycle stage by hand, with the reason (admins, and operators who see the customer)."""
    principal = _principal(ctx)
    customer = _customer(db, ctx, customer_id)
    error: str | None = None
    if not reason.strip():
        error = ctx.gettext("Say why the stage changes.")
    elif stage not in {s.value for s in Stage}:
        error = ctx.gettext("Choose a stage from the list.")
    else:
        patch = CustomerPatch(stage=Stage(stage), stage_reason=reason.strip())
        customer = profiles.update_customer_as(db, principal, customer.id, patch, origin="console")
    if not is_htmx(request) and error is None:
        return RedirectResponse(f"/customers/{customer.id}", status_code=303)
    return _stage_fragment(
        ctx, customer, saved=error is None, error=error, reason="" if error is None else reason
    )


@router.post("/customers/{customer_id}/notes")
def customer_note_add(
    customer_id: int,
    request: Request,
    db: DbSession,
    ctx: Console,
    body: Annotated[str, Form()] = "",
) -> Response:
    """Add a note and show the notes list again."""
    customer = _customer(db, ctx, customer_id)
    try:
        customer_notes.add_note(db, _principal(ctx), customer.id, body)
    except DomainError as exc:
        if isinstance(exc, NotFound):
            raise
        db.rollback()
        message = ctx.gettext("Write something first.") if exc.field == "body" else error_text(ctx, exc)
        return _notes_fragment(db, ctx, customer, error=message, draft=body)
    if not is_htmx(request):
        return RedirectResponse(f"/customers/{customer.id}", status_code=303)
    response = _notes_fragment(db, ctx, customer)
    # The timeline shows notes too: tell it to reload itself.
    response.headers["HX-Trigger"] = "timeline-changed"
    return response
