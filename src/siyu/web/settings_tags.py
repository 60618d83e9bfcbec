"""Console settings: the tag library (groups and tags: create, rename, delete) and the lead inbox's reply
templates, one per intent. Each form builds the API's schema and calls the same service as the API.

Several small forms share a page, so a refusal is keyed by the form it belongs to (``group-3``, ``tag-7``,
``new-tag-3``, ``template-purchase``) and shown beside that form's field with what was typed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Form, Response

from siyu.customers import tagging
from siyu.customers.schemas import TagGroupIn, TagGroupPatch, TagIn, TagPatch
from siyu.leads import service as leads
from siyu.leads.intent_rules import INTENTS
from siyu.leads.schemas import TemplateIn
from siyu.tenancy.deps import DbSession
from siyu.web.auth import Console, ConsoleRoute, admin_org_id
from siyu.web.forms import FormErrors, Refused, submit
from siyu.web.templating import PageContext, render

router = APIRouter(include_in_schema=False, route_class=ConsoleRoute)


def _tag_messages(ctx: PageContext) -> dict[str, str]:
    return {
        "name:Conflict": ctx.gettext("This name is already used here: choose another."),
        "tags": ctx.gettext("Tag names must be 1 to 60 characters and differ from each other."),
        "group_id": ctx.gettext("This group no longer exists; reload the page."),
    }


def _tags_page(
    db: DbSession,
    ctx: PageContext,
    *,
    form: str = "",
    values: dict[str, Any] | None = None,
    errors: FormErrors | None = None,
    saved: bool = False,
    status_code: int = 200,
) -> Response:
    org_id = admin_org_id(ctx)
    return render(
        ctx,
        "settings/tags.html",
        status_code=status_code,
        active="settings",
        section="tags",
        groups=tagging.list_tag_groups(db, org_id),
        form=form,
        values=values or {},
        errors=errors or FormErrors(),
        saved=saved,
    )


def _save(
    db: DbSession, ctx: PageContext, form: str, values: dict[str, Any], action: Callable[[], object]
) -> Response:
    """Run a tag form's action: the page again, saved, or with the refusal beside the form's field and the
    typed values kept."""
    refused = submit(db, ctx, action, _tag_messages(ctx))
    if isinstance(refused, Refused):
        return _tags_page(
            db, ctx, form=form, values=values, errors=refused.errors, status_code=refused.status_code
        )
    return _tags_page(db, ctx, saved=True)


@router.get("/settings/tags")
def tags_page(db: DbSession, ctx: Console) -> Response:
    """Every tag group with its tags, and the forms that change them."""
    return _tags_page(db, ctx)


@router.post("/settings/tags/groups")
def create_group(
    db: DbSession, ctx: Console, name: Annotated[str, Form()] = "", tags: Annotated[str, Form()] = ""
) -> Response:
    """A new group with its first tags, one per line or separated by commas (TagGroupIn)."""
    org_id = admin_org_id(ctx)
    values = {"name": name, "tags": tags}
    names = [t for t in tags.replace("，", ",").replace("\n", ",").split(",") if t.strip()]
    return _save(
        db,
        ctx,
        "new-group",
        values,
        lambda: tagging.create_tag_group(db, org_id, TagGroupIn(name=name, tags=names)),
    )


@router.post("/settings/tags/groups/{group_id}")
def rename_group(group_id: int, db: DbSession, ctx: Console, name: Annotated[str, Form()] = "") -> Response:
    """Rename a group (TagGroupPatch)."""
    org_id = admin_org_id(ctx)
    return _save(
        db,
        ctx,
        f"group-{group_id}",
        {"name": name},
        lambda: tagging.update_tag_group(db, org_id, group_id, TagGroupPatch(name=name)),
    )


@router.post("/settings/tags/groups/{group_id}/delete")
def delete_group(group_id: int, db: DbSession, ctx: Console) -> Response:
    """Delete a group with its tags; customers lose those tags."""
    tagging.delete_tag_group(db, admin_org_id(ctx), group_id, origin="console")
    return _tags_page(db, ctx, saved=True)


@router.post("/settings/tags/groups/{group_id}/tags")
def add_tag(group_id: int, db: DbSession, ctx: Console, name: Annotated[str, Form()] = "") -> Response:
    """Add a tag at the end of a group (TagIn)."""
    org_id = admin_org_id(ctx)
    last = max((t.sort_order for t in tagging.list_tags(db, org_id, group_id)), default=-1)
    return _save(
        db,
        ctx,
        f"new-tag-{group_id}",
        {"name": name},
        lambda: tagging.create_tag(db, org_id, TagIn(group_id=group_id, name=name, sort_order=last + 1)),
    )


@router.post("/settings/tags/{tag_id}")
def rename_tag(tag_id: int, db: DbSession, ctx: Console, name: Annotated[str, Form()] = "") -> Response:
    """Rename a tag (TagPatch); customers keep it under its new name."""
    org_id = admin_org_id(ctx)
    return _save(
        db,
        ctx,
        f"tag-{tag_id}",
        {"name": name},
        lambda: tagging.update_tag(db, org_id, tag_id, TagPatch(name=name)),
    )


@router.post("/settings/tags/{tag_id}/delete")
def delete_tag(tag_id: int, db: DbSession, ctx: Console) -> Response:
    """Delete a tag; customers lose it."""
    tagging.delete_tag(db, admin_org_id(ctx), tag_id, origin="console")
    return _tags_page(db, ctx, saved=True)


# --- lead reply templates ---------------------------------------------------------------------------


def _templates_page(
    db: DbSession,
    ctx: PageContext,
    *,
    form: str = "",
    values: dict[str, Any] | None = None,
    errors: FormErrors | None = None,
    saved: str = "",
    status_code: int = 200,
) -> Response:
    org_id = admin_org_id(ctx)
    return render(
        ctx,
        "settings/reply_templates.html",
        status_code=status_code,
        active="settings",
        section="templates",
        templates=leads.reply_templates(db, org_id),
        intents=INTENTS,
        form=form,
        values=values or {},
        errors=errors or FormErrors(),
        saved=saved,
    )


@router.get("/settings/reply-templates")
def templates_page(db: DbSession, ctx: Console) -> Response:
    """The reply suggested for each intent in the lead inbox."""
    return _templates_page(db, ctx)


@router.post("/settings/reply-templates/{intent}")
def save_template(intent: str, db: DbSession, ctx: Console, body: Annotated[str, Form()] = "") -> Response:
    """Set one intent's template (TemplateIn and ``leads.service.set_reply_template``, as the API)."""
    org_id = admin_org_id(ctx)
    form = f"template-{intent}"
    messages = {
        "body": ctx.gettext(
            "Only {code} (the link to add us) and {name} (the commenter) may be used in braces."
        ),
        "intent": ctx.gettext("Choose one of the options."),
    }

    def save() -> None:
        data = TemplateIn(intent=intent, body=body.strip())
        leads.set_reply_template(db, org_id, data.intent, data.body)

    refused = submit(db, ctx, save, messages)
    if isinstance(refused, Refused):
        return _templates_page(
            db, ctx, form=form, values={"body": body}, errors=refused.errors, status_code=refused.status_code
        )
    return _templates_page(db, ctx, saved=intent)
