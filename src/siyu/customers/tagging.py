"""Tag groups and tags, like WeCom corporate tags: organization-wide, names unique per group."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from siyu.customers.models import CustomerTag, Tag, TagGroup
from siyu.customers.schemas import TagGroupIn, TagGroupPatch, TagIn, TagPatch
from siyu.integrations.channel import CorpTagGroup
from siyu.kit.errors import Conflict, Invalid, NotFound


def list_tag_groups(db: Session, org_id: int) -> list[tuple[TagGroup, list[Tag]]]:
    """Every tag group of the organization with its tags, in display order."""
    groups = db.scalars(
        select(TagGroup).where(TagGroup.org_id == org_id).order_by(TagGroup.sort_order, TagGroup.id)
    ).all()
    by_group: dict[int, list[Tag]] = {g.id: [] for g in groups}
    for tag in db.scalars(select(Tag).where(Tag.org_id == org_id).order_by(Tag.sort_order, Tag.id)):
        by_group.setdefault(tag.group_id, []).append(tag)
    return [(g, by_group[g.id]) for g in groups]


def get_tag_group(db: Session, org_id: int, group_id: int, *, field: str | None = None) -> TagGroup:
    """One tag group of the organization, or 404 (422 naming ``field`` when the id came in a body)."""
    group = db.scalar(select(TagGroup).where(TagGroup.id == group_id, TagGroup.org_id == org_id))
    if group is None:
        if field:
            raise Invalid(f"tag group {group_id} does not exist", field=field)
        raise NotFound("tag group not found")
    return group


def _check_group_name(db: Session, org_id: int, name: str, exclude: int | None = None) -> None:
    stmt = select(TagGroup.id).where(TagGroup.org_id == org_id, TagGroup.name == name)
    if exclude is not None:
        stmt = stmt.where(TagGroup.id != exclude)
    if db.scalar(stmt) is not None:
        raise Conflict(f"a tag group named {name!r} already exists", field="name")


def _check_tag_name(db: Session, org_id: int, group_id: int, name: str, exclude: int | None = None) -> None:
    stmt = select(Tag.id).where(Tag.org_id == org_id, Tag.group_id == group_id, Tag.name == name)
    if exclude is not None:
        stmt = stmt.where(Tag.id != exclude)
    if db.scalar(stmt) is not None:
        raise Conflict(f"the group already has a tag named {name!r}", field="name")


def create_tag_group(db: Session, org_id: int, data: TagGroupIn) -> tuple[TagGroup, list[Tag]]:
    """Create a tag group, with its first tags if given."""
    _check_group_name(db, org_id, data.name)
    group = TagGroup(org_id=org_id, name=data.name, sort_order=data.sort_order, external_id=data.external_id)
    db.add(group)
    db.flush()
    tags = [Tag(org_id=org_id, group_id=group.id, name=n, sort_order=i) for i, n in enumerate(data.tags)]
    db.add_all(tags)
    db.flush()
    return group, tags


def update_tag_group(db: Session, org_id: int, group_id: int, patch: TagGroupPatch) -> TagGroup:
    """Rename or reorder a tag group."""
    group = get_tag_group(db, org_id, group_id)
    if patch.name is not None:
        _check_group_name(db, org_id, patch.name, exclude=group.id)
        group.name = patch.name
    if patch.sort_order is not None:
        group.sort_order = patch.sort_order
    db.flush()
    return group


def delete_tag_group(db: Session, org_id: int, group_id: int) -> None:
    """Delete a tag group, its tags and their assignments to customers."""
    group = get_tag_group(db, org_id, group_id)
    for tag in db.scalars(select(Tag).where(Tag.group_id == group.id)).all():
        _delete_tag_row(db, tag)
    db.delete(group)
    db.flush()


def get_tag(db: Session, org_id: int, tag_id: int) -> Tag:
    """One tag of the organization, or 404."""
    tag = db.scalar(select(Tag).where(Tag.id == tag_id, Tag.org_id == org_id))
    if tag is None:
        raise NotFound("tag not found")
    return tag


def list_tags(db: Session, org_id: int, group_id: int | None = None) -> Sequence[Tag]:
    """The organization's tags, optionally of one group."""
    stmt = select(Tag).where(Tag.org_id == org_id)
    if group_id is not None:
        stmt = stmt.where(Tag.group_id == group_id)
    return db.scalars(stmt.order_by(Tag.group_id, Tag.sort_order, Tag.id)).all()


def create_tag(db: Session, org_id: int, data: TagIn) -> Tag:
    """Create a tag in a group of the organization (a group id of another organization is 422)."""
    get_tag_group(db, org_id, data.group_id, field="group_id")
    _check_tag_name(db, org_id, data.group_id, data.name)
    tag = Tag(
        org_id=org_id,
        group_id=data.group_id,
        name=data.name,
        sort_order=data.sort_order,
        external_id=data.external_id,
    )
    db.add(tag)
    db.flush()
    return tag


def update_tag(db: Session, org_id: int, tag_id: int, patch: TagPatch) -> Tag:
    """Rename, reorder or move a tag, keeping names unique per group."""
    tag = get_tag(db, org_id, tag_id)
    group_id = tag.group_id
    if patch.group_id is not None:
        group_id = get_tag_group(db, org_id, patch.group_id, field="group_id").id
    name = patch.name if patch.name is not None else tag.name
    if name != tag.name or group_id != tag.group_id:
        _check_tag_name(db, org_id, group_id, name, exclude=tag.id)
    tag.name, tag.group_id = name, group_id
    if patch.sort_order is not None:
        tag.sort_order = patch.sort_order
    db.flush()
    return tag


def _delete_tag_row(db: Session, tag: Tag) -> None:
    # Explicit delete: SQLite only cascades when foreign keys are on, and we don't rely on that.
    db.execute(delete(CustomerTag).where(CustomerTag.tag_id == tag.id))
    db.delete(tag)


def delete_tag(db: Session, org_id: int, tag_id: int) -> None:
    """Delete a tag and remove it from every customer."""
    _delete_tag_row(db, get_tag(db, org_id, tag_id))
    db.flush()


def check_tag_ids(db: Session, org_id: int, tag_ids: Iterable[int], *, field: str = "tag_ids") -> list[int]:
    """The given tag ids, deduplicated, after checking each is a tag of the organization (else 422)."""
    wanted = list(dict.fromkeys(tag_ids))
    if not wanted:
        return []
    found = set(db.scalars(select(Tag.id).where(Tag.org_id == org_id, Tag.id.in_(wanted))))
    missing = [t for t in wanted if t not in found]
    if missing:
        raise Invalid(f"unknown tag ids: {', '.join(map(str, missing))}", field=field)
    return wanted


def ensure_tag(db: Session, org_id: int, group_name: str, tag_name: str) -> Tag:
    """The tag ``tag_name`` of the group ``group_name``, each created when missing (a tag siyu puts on by
    a rule, e.g. the intent tag 意向/求资料)."""
    group = db.scalar(select(TagGroup).where(TagGroup.org_id == org_id, TagGroup.name == group_name))
    if group is None:
        group = create_tag_group(db, org_id, TagGroupIn(name=group_name))[0]
    tag = db.scalar(select(Tag).where(Tag.org_id == org_id, Tag.group_id == group.id, Tag.name == tag_name))
    if tag is None:
        tag = create_tag(db, org_id, TagIn(group_id=group.id, name=tag_name))
    return tag


def link_carrier_tags(db: Session, org_id: int, group_id: int, library: CorpTagGroup) -> None:
    """Store the carrier's ids of the group ``group_id`` and of its tags, after the carrier's tag library
    answered them for tags siyu made (write-back put them there). Tags match by name within the group; a
    group or tag that already has an id keeps it, and an id another row already holds is not given twice."""
    group = get_tag_group(db, org_id, group_id)
    held_groups = select(TagGroup.id).where(
        TagGroup.org_id == org_id, TagGroup.external_id == library.group_id
    )
    if not group.external_id and library.group_id and db.scalar(held_groups) is None:
        group.external_id = library.group_id
    ids = {t.name: t.id for t in library.tags if t.id and not t.deleted}
    held = set(
        db.scalars(select(Tag.external_id).where(Tag.org_id == org_id, Tag.external_id.in_(ids.values())))
    )
    for tag in db.scalars(
        select(Tag).where(Tag.org_id == org_id, Tag.group_id == group.id, Tag.external_id.is_(None))
    ):
        found = ids.get(tag.name)
        if found and found not in held:
            tag.external_id = found
            held.add(found)
    db.flush()
