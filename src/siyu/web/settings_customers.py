"""Console pages for customers the API alone could do: create one, import a CSV through the importer (with its
row-level report in words), edit a profile, and merge two duplicates by hand (``customers.merge``).

The stage is edited on the customer page (``customer_pages``); this profile form leaves it alone."""

from __future__ import annotations

import contextlib
import re
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Response, UploadFile
from fastapi.responses import RedirectResponse
from pydantic import BaseModel

from siyu.accounts import service as accounts
from siyu.accounts.models import Account
from siyu.customers import access, listing, profiles
from siyu.customers import merge as merging
from siyu.customers.importer import import_customers_csv
from siyu.customers.models import Customer, Gender
from siyu.customers.schemas import CustomerFilters, CustomerIn, CustomerPatch, MergeIn
from siyu.kit.bulk import ImportReport, RowError
from siyu.kit.errors import DomainError
from siyu.tenancy.deps import DbSession
from siyu.web.auth import Console, ConsoleRoute, admin_org_id
from siyu.web.customer_pages import shown_mobile
from siyu.web.forms import FormErrors, Refused, submit
from siyu.web.templating import PageContext, render

router = APIRouter(include_in_schema=False, route_class=ConsoleRoute)

#: Sources offered in the profile forms (labels in ``web/labels.py``); a stored one not listed is kept.
SOURCES = (
    "douyin",
    "douyin_comment",
    "douyin_live",
    "kuaishou",
    "xiaohongshu",
    "taobao_order",
    "taobao_parcel_card",
    "jd_order",
    "live_room",
    "offline_flyer",
    "referral",
    "official_account",
    "outbound_call",
    "manual",
)
PROFILE_FIELDS = ("name", "mobile", "gender", "region", "source", "source_detail", "intent")


def _profile_messages(ctx: PageContext) -> dict[str, str]:
    return {
        "mobile": ctx.gettext("Enter an 11-digit mainland mobile number, e.g. 138 1234 5678."),
        "mobile:Invalid": ctx.gettext("Enter an 11-digit mainland mobile number, e.g. 138 1234 5678."),
        "mobile:Conflict": ctx.gettext(
            "This mobile belongs to another customer you cannot see: ask an admin to merge the two."
        ),
        "account_id": ctx.gettext("Choose one of your accounts: it follows the new customer."),
    }


def _sources(value: str | None) -> list[str]:
    return [*SOURCES, value] if value and value not in SOURCES else list(SOURCES)


def _visible_accounts(db: DbSession, ctx: PageContext) -> list[Account]:
    assert ctx.principal is not None
    return list(db.scalars(accounts.visible_accounts(ctx.principal).order_by(Account.name, Account.id)))


def _profile_input(values: dict[str, Any]) -> dict[str, Any]:
    """Form values as profile fields: an empty field is not sent (the API's "leave it as it is")."""
    data = {k: values[k].strip() for k in PROFILE_FIELDS if values.get(k, "").strip()}
    data["consent_marketing"] = values.get("consent_marketing") == "on"
    return data


# --- create -----------------------------------------------------------------------------------------


def _new_form(
    db: DbSession,
    ctx: PageContext,
    values: dict[str, Any],
    errors: FormErrors | None = None,
    status_code: int = 200,
) -> Response:
    return render(
        ctx,
        "settings/customer_new.html",
        status_code=status_code,
        active="settings",
        section="customer-new",
        values=values,
        errors=errors or FormErrors(),
        genders=list(Gender),
        sources=_sources(values.get("source")),
        accounts=_visible_accounts(db, ctx),
    )


class ProfileForm(BaseModel):
    """The profile form's fields as typed; the API's schema validates them."""

    name: str = ""
    mobile: str = ""
    gender: str = "unknown"
    region: str = ""
    source: str = ""
    source_detail: str = ""
    intent: str = ""
    consent_marketing: str = ""


class NewCustomerForm(ProfileForm):
    """The new-customer form: the profile and the account that follows the customer."""

    account_id: str = ""


@router.get("/settings/customers/new")
def new_customer_form(db: DbSession, ctx: Console) -> Response:
    """An empty customer form."""
    return _new_form(db, ctx, {"gender": Gender.unknown.value, "source": "manual"})


@router.post("/settings/customers")
def create_customer(db: DbSession, ctx: Console, form: Annotated[NewCustomerForm, Form()]) -> Response:
    """Create a customer (CustomerIn and ``customers.profiles.create_customer_as``, as the API); a mobile
    another profile holds merges the two, and the page opens the profile that remains."""
    assert ctx.principal is not None
    values = form.model_dump()
    account_id = form.account_id
    messages = _profile_messages(ctx)
    principal = ctx.principal
    outcome = submit(
        db,
        ctx,
        lambda: profiles.create_customer_as(
            db,
            principal,
            CustomerIn.model_validate(_profile_input(values)),
            account_id=int(account_id) if account_id.isdigit() else None,
            origin="console",
        ),
        messages,
    )
    if isinstance(outcome, Refused):
        return _new_form(db, ctx, values, outcome.errors, status_code=outcome.status_code)
    customer, _created = outcome
    return RedirectResponse(f"/customers/{customer.id}", status_code=303)


# --- edit the profile -------------------------------------------------------------------------------


def _edit_form(
    ctx: PageContext,
    customer: Customer,
    values: dict[str, Any],
    errors: FormErrors | None = None,
    status_code: int = 200,
) -> Response:
    return render(
        ctx,
        "customers/edit.html",
        status_code=status_code,
        active="customers",
        customer=customer,
        values=values,
        errors=errors or FormErrors(),
        genders=list(Gender),
        sources=_sources(values.get("source")),
    )


@router.get("/customers/{customer_id}/edit")
def edit_customer_form(customer_id: int, db: DbSession, ctx: Console) -> Response:
    """A visible customer's profile form (the mobile masked for operators, as everywhere)."""
    assert ctx.principal is not None
    customer = access.get_customer(db, ctx.principal, customer_id)
    values = {k: getattr(customer, k) or "" for k in PROFILE_FIELDS}
    values["gender"] = customer.gender.value
    values["mobile"] = shown_mobile(ctx.principal, customer.mobile) or ""
    values["consent_marketing"] = "on" if customer.consent_marketing else ""
    return _edit_form(ctx, customer, values)


@router.post("/customers/{customer_id}/edit")
def update_customer(
    customer_id: int, db: DbSession, ctx: Console, form: Annotated[ProfileForm, Form()]
) -> Response:
    """Save the profile (CustomerPatch and ``update_customer_as``, as the API's PATCH). A cleared text field
    is cleared; the mobile, once set, is replaced rather than cleared (it is an identity)."""
    assert ctx.principal is not None
    customer = access.get_customer(db, ctx.principal, customer_id)
    values = form.model_dump()
    cleared = {k: None for k in ("region", "source", "source_detail", "intent") if not values[k].strip()}
    messages = _profile_messages(ctx)
    principal = ctx.principal
    saved = submit(
        db,
        ctx,
        lambda: profiles.update_customer_as(
            db,
            principal,
            customer.id,
            CustomerPatch.model_validate(
                _profile_input(values) | cleared | {"name": form.name.strip(), "gender": form.gender}
            ),
            origin="console",
        ),
        messages,
    )
    if isinstance(saved, Refused):
        customer = access.get_customer(db, principal, customer_id)
        return _edit_form(ctx, customer, values, saved.errors, status_code=saved.status_code)
    return RedirectResponse(f"/customers/{saved.id}", status_code=303)


# --- import -----------------------------------------------------------------------------------------


def _row_reason(ctx: PageContext, error: RowError) -> str:
    """Why the importer skipped a row, in the reader's words (its own text is for the API and the CLI)."""
    if error.reason.startswith("the row has no identifier"):
        return ctx.gettext("The row has neither a mobile nor an external ID, so it cannot be matched.")
    words = {
        "mobile": ctx.gettext("Not an 11-digit mainland mobile number."),
        "tags": ctx.gettext(
            "Write tags as group:tag separated by semicolons; names have at most 60 characters."
        ),
        "gender": ctx.gettext("Unknown gender: use 男, 女 or 未知."),
        "stage": ctx.gettext("Unknown stage."),
        "remark": ctx.gettext("A remark holds at most 200 characters."),
    }
    return words.get(error.field or "", ctx.gettext("Too long for this column."))


def _column_name(ctx: PageContext, field: str | None) -> str:
    """A CSV column as the reader calls it (an identifier column by its identity's name)."""
    names = {
        "name": ctx.gettext("Name"),
        "mobile": ctx.gettext("Mobile"),
        "gender": ctx.gettext("Gender"),
        "region": ctx.gettext("Region"),
        "stage": ctx.gettext("Stage"),
        "source": ctx.gettext("Source"),
        "source_detail": ctx.gettext("Source detail"),
        "intent": ctx.gettext("Intent"),
        "tags": ctx.gettext("Tags"),
        "remark": ctx.gettext("Remark"),
    }
    return names.get(field or "") or ctx.label("identity", field or "")


def _file_error(ctx: PageContext, exc: DomainError) -> str:
    """Why the importer could not read the file at all, in the reader's words."""
    if exc.field == "header":
        if "twice" in exc.message:
            return ctx.gettext("A column appears twice in the header row.")
        return ctx.gettext(
            "The header row needs a mobile column (手机号) or an external ID column such as unionid."
        )
    row = re.match(r"row (\d+)", exc.message)
    if row:
        return ctx.gettext(
            "Row %(row)s cannot be read: save the file again as CSV (UTF-8 or GBK). Rows before it were imported."
        ) % {"row": row.group(1)}
    if "empty" in exc.message:
        return ctx.gettext("The file is empty: it needs a header row.")
    return ctx.gettext("This file cannot be read as a CSV with a header row (UTF-8 or GBK).")


def _import_page(
    ctx: PageContext, report: ImportReport | None = None, error: str = "", status_code: int = 200
) -> Response:
    rows = [(e.row, _column_name(ctx, e.field), _row_reason(ctx, e)) for e in report.errors] if report else []
    return render(
        ctx,
        "settings/customer_import.html",
        status_code=status_code,
        active="settings",
        section="customer-import",
        report=report,
        rows=rows,
        errors=FormErrors({"file": error}) if error else FormErrors(),
    )


@router.get("/settings/customers/import")
def import_page(ctx: Console) -> Response:
    """The CSV upload form with the columns it understands."""
    admin_org_id(ctx)
    return _import_page(ctx)


@router.post("/settings/customers/import")
def import_customers(
    ctx: Console,
    file: Annotated[UploadFile | None, File()] = None,
    strict: Annotated[str, Form()] = "",
) -> Response:
    """Run the importer on the upload (in chunks, each its own transaction, as the API and the CLI do) and
    show its report: counts, and each skipped row with its number and reason."""
    org_id = admin_org_id(ctx)
    if file is None or not file.filename:
        return _import_page(ctx, error=ctx.gettext("Choose a CSV file to import."), status_code=422)
    try:
        report = import_customers_csv(
            ctx.request.app.state.sessionmaker, org_id, file.file, strict=strict == "on"
        )
    except DomainError as exc:
        return _import_page(ctx, error=_file_error(ctx, exc), status_code=exc.status_code)
    return _import_page(ctx, report=report, status_code=200 if not report.errors else 422)


# --- merge ------------------------------------------------------------------------------------------


def _merge_messages(ctx: PageContext) -> dict[str, str]:
    return {
        "survivor_id": ctx.gettext("No customer has this ID (or it was already merged away)."),
        "merged_id": ctx.gettext("No customer has this ID (or it was already merged away)."),
        "merged_id:Invalid": ctx.gettext("Choose two different customers."),
    }


def _merge_page(
    db: DbSession,
    ctx: PageContext,
    values: dict[str, Any],
    *,
    errors: FormErrors | None = None,
    found: list[Customer] | None = None,
    merged: dict[str, Any] | None = None,
    status_code: int = 200,
) -> Response:
    assert ctx.principal is not None
    principal = ctx.principal
    picked = {}
    for key in ("survivor_id", "merged_id"):
        raw = str(values.get(key, ""))
        if raw.isdigit():
            with contextlib.suppress(DomainError):  # an unknown id shows no name; the merge names the error
                picked[key] = access.get_customer(db, principal, int(raw))
    return render(
        ctx,
        "settings/customer_merge.html",
        status_code=status_code,
        active="settings",
        section="customer-merge",
        values=values,
        errors=errors or FormErrors(),
        found=found or [],
        picked=picked,
        merged=merged,
        mobile_of=lambda c: shown_mobile(principal, c.mobile),
    )


@router.get("/settings/customers/merge")
def merge_page(
    db: DbSession, ctx: Console, q: str = "", survivor_id: str = "", merged_id: str = ""
) -> Response:
    """Find the two profiles (by name, or a mobile or its last 4 digits) and pick which one is kept."""
    admin_org_id(ctx)
    assert ctx.principal is not None
    values = {"q": q, "survivor_id": survivor_id, "merged_id": merged_id}
    found: list[Customer] = []
    query = q.strip()
    if query:
        digits = query.replace(" ", "")
        is_mobile = digits.isdigit() and len(digits) in (4, 11)
        filters = CustomerFilters(mobile=digits) if is_mobile else CustomerFilters(name=query[:120])
        found, _next = listing.list_customers(db, ctx.principal, filters, limit=20)
    return _merge_page(db, ctx, values, found=found)


@router.post("/settings/customers/merge")
def merge_customers(
    db: DbSession,
    ctx: Console,
    survivor_id: Annotated[str, Form()] = "",
    merged_id: Annotated[str, Form()] = "",
    reason: Annotated[str, Form()] = "",
) -> Response:
    """Merge one profile into the other (MergeIn and ``customers.merge.merge_customers``, as the API):
    identities, tags, notes, events, orders and follows move to the profile kept."""
    org_id = admin_org_id(ctx)
    assert ctx.principal is not None
    values = {"survivor_id": survivor_id, "merged_id": merged_id, "reason": reason}
    messages = _merge_messages(ctx)
    user_id = ctx.principal.user_id

    def merge() -> Any:
        data = MergeIn.model_validate(values)
        return merging.merge_customers(db, org_id, data.survivor_id, data.merged_id, data.reason, user_id)

    audit = submit(db, ctx, merge, messages)
    if isinstance(audit, Refused):
        return _merge_page(db, ctx, values, errors=audit.errors, status_code=audit.status_code)
    moved = {k: v for k, v in audit.moved.items() if isinstance(v, int)}
    return _merge_page(
        db, ctx, {}, merged={"survivor_id": audit.survivor_id, "merged_id": audit.merged_id, "moved": moved}
    )
