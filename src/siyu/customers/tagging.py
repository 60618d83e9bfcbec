"""Tag groups and tags, like WeCom corporate tags: organization-wide, names unique per group.

Also THE mirror of a carrier's tag library (``mirror_tag_library``, used by the WeCom callbacks and the
reconciliation sync alike) with its one clash rule (``unique_name``), and the import's tags by name.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import delete, func, or_, select
from sqlalchemy.orm import Session

from siyu.customers.models import CustomerTag, Tag, TagGroup
from siyu.customers.schemas import TagGroupIn, TagGroupPatch, TagIn, TagPatch
from siyu.events.bus import DomainEvent, emit_many
from siyu.events.vocabulary import EventType
from siyu.integrations.channel import CorpTagGroup
from siyu.kit.bulk import IN_LIST_SIZE, chunked, insert_ignore, one_of
from siyu.kit.clock import utcnow
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


def delete_tag_group(db: Session, org_id: int, group_id: int, *, origin: str = "") -> None:
    """Delete a tag group and its tags; the customers who had them lose them (tag_removed each)."""
    group = get_tag_group(db, org_id, group_id)
    _take_off(db, org_id, db.scalars(select(Tag).where(Tag.group_id == group.id)).all(), origin=origin)
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


def delete_tag(db: Session, org_id: int, tag_id: int, *, origin: str = "") -> None:
    """Delete a tag and take it off every customer who had it (tag_removed each)."""
    _take_off(db, org_id, [get_tag(db, org_id, tag_id)], origin=origin)
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


# --- a carrier's tag library, mirrored ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MirroredTag:
    """A tag of a carrier's library (e.g. a WeCom corp tag), as siyu mirrors it."""

    external_id: str
    name: str
    order: int = 0
    deleted: bool = False


@dataclass(frozen=True, slots=True)
class MirroredGroup:
    """A tag group of a carrier's library with its tags; ``strategy_id`` is the carrier's rule group for
    rule-group tags (WeCom 规则组标签), None for the library's own groups."""

    external_id: str
    name: str
    order: int = 0
    tags: tuple[MirroredTag, ...] = ()
    deleted: bool = False
    strategy_id: int | None = None


@dataclass
class MirrorReport:
    """What mirroring a library did: the siyu tag of each carrier tag id, and counts per kind
    ("tag_groups", "tags") and what ("created", "updated", "ended")."""

    tags: dict[str, int] = field(default_factory=dict)
    counts: Counter[tuple[str, str]] = field(default_factory=Counter)
    samples: list[str] = field(default_factory=list)


def unique_name(name: str, taken: Collection[str]) -> str:
    """THE clash rule for mirrored names: the carrier's name (at most 60 characters), or, when another
    group (for groups) or another tag of the group (for tags) already has it, "name (2)", "name (3)"...
    Readable in the console and stable, unlike a suffix of the carrier's id."""
    base = name[:60] or "-"
    candidate, n = base, 1
    while candidate in taken:
        n += 1
        candidate = f"{base[:55]} ({n})"
    return candidate


def mirror_tag_library(
    db: Session,
    org_id: int,
    groups: Sequence[MirroredGroup],
    *,
    complete: bool,
    origin: str,
    strategies_read: bool = True,
) -> MirrorReport:
    """Make siyu's tag groups and tags mirror a carrier's library (matched by external id, then a
    hand-made one of the same name is adopted; names clash by ``unique_name``). Groups and tags flagged
    deleted are removed; with ``complete`` (the whole library was read) so are mirrored ones it no longer
    lists, and mirrored groups left empty; ``strategies_read`` False says the rule-group tags could not be
    read, so those of groups with a ``strategy_id`` are kept. Removing a tag takes it off its customers
    (tag_removed)."""
    report = MirrorReport()
    all_groups = list(db.scalars(select(TagGroup).where(TagGroup.org_id == org_id).order_by(TagGroup.id)))
    all_tags = list(db.scalars(select(Tag).where(Tag.org_id == org_id).order_by(Tag.id)))
    group_by_ext = {g.external_id: g for g in all_groups if g.external_id}
    tag_by_ext = {t.external_id: t for t in all_tags if t.external_id}
    tags_in: dict[int, list[Tag]] = {}
    for t in all_tags:
        tags_in.setdefault(t.group_id, []).append(t)
    doomed: list[Tag] = []
    doomed_groups: list[TagGroup] = []
    live_groups: set[str] = set()
    for wg in groups:
        group = group_by_ext.get(wg.external_id)
        if wg.deleted:
            if group is not None:
                doomed += tags_in.get(group.id, [])
                doomed_groups.append(group)
            continue
        live_groups.add(wg.external_id)
        name = wg.name[:60] or wg.external_id[:60]
        if group is None:
            group = next((g for g in all_groups if g.name == name and not g.external_id), None)
            if group is not None:
                report.counts["tag_groups", "updated"] += 1
        if group is None:
            group = TagGroup(
                org_id=org_id,
                name=unique_name(name, {g.name for g in all_groups}),
                external_id=wg.external_id,
                sort_order=max(0, wg.order),
                strategy_id=wg.strategy_id,
            )
            db.add(group)
            db.flush()
            all_groups.append(group)
            report.counts["tag_groups", "created"] += 1
            report.samples.append(f"created tag group {group.name}")
        elif group.external_id and (
            group.name != name or group.sort_order != max(0, wg.order) or group.strategy_id != wg.strategy_id
        ):
            if group.name != name:
                group.name = unique_name(name, {g.name for g in all_groups if g is not group})
            report.counts["tag_groups", "updated"] += 1
        group.external_id, group.sort_order = wg.external_id, max(0, wg.order)
        group.strategy_id = wg.strategy_id
        group_by_ext[wg.external_id] = group
        siblings = tags_in.setdefault(group.id, [])
        for wt in wg.tags:
            tag = tag_by_ext.get(wt.external_id)
            if wt.deleted:
                if tag is not None:
                    doomed.append(tag)
                continue
            tname = wt.name[:60] or wt.external_id[:60]
            if tag is None:
                tag = next((t for t in siblings if t.name == tname and not t.external_id), None)
                if tag is not None:
                    report.counts["tags", "updated"] += 1
            if tag is None:
                tag = Tag(
                    org_id=org_id,
                    group_id=group.id,
                    name=unique_name(tname, {t.name for t in siblings}),
                    external_id=wt.external_id,
                    sort_order=max(0, wt.order),
                )
                db.add(tag)
                siblings.append(tag)
                report.counts["tags", "created"] += 1
                report.samples.append(f"created tag {group.name}/{tag.name}")
            elif tag.external_id and (
                tag.name != tname or tag.group_id != group.id or tag.sort_order != max(0, wt.order)
            ):
                if tag.group_id != group.id:
                    tags_in.get(tag.group_id, []).remove(tag)
                    siblings.append(tag)
                    tag.group_id = group.id
                if tag.name != tname:
                    tag.name = unique_name(tname, {t.name for t in siblings if t is not tag})
                report.counts["tags", "updated"] += 1
            tag.external_id, tag.sort_order = wt.external_id, max(0, wt.order)
            tag_by_ext[wt.external_id] = tag
            db.flush()
            report.tags[wt.external_id] = tag.id
    unread = (
        set()
        if strategies_read
        else {
            g.id
            for g in group_by_ext.values()
            if g.strategy_id is not None and g.external_id not in live_groups
        }
    )
    if complete:
        doomed += [
            t
            for ext, t in tag_by_ext.items()
            if ext not in report.tags and t not in doomed and t.group_id not in unread
        ]
    _remove_tags(db, org_id, doomed, origin=origin, report=report)
    for group in doomed_groups:
        db.delete(group)
        report.counts["tag_groups", "ended"] += 1
    if complete:
        for group in all_groups:
            if (
                group not in doomed_groups
                and group.id not in unread
                and group.external_id
                and group.external_id not in live_groups
                and db.scalar(select(func.count()).select_from(Tag).where(Tag.group_id == group.id)) == 0
            ):
                db.delete(group)
                report.counts["tag_groups", "ended"] += 1
    db.flush()
    return report


def unmirror(
    db: Session, org_id: int, *, tag_ids: Collection[str] = (), group_ids: Collection[str] = (), origin: str
) -> MirrorReport:
    """Remove the mirrored tags and groups (with their tags) a carrier deleted, by its ids: the carrier's
    delete callback names only the id. Removing a tag takes it off its customers (tag_removed)."""
    report = MirrorReport()
    groups = (
        list(
            db.scalars(select(TagGroup).where(TagGroup.org_id == org_id, TagGroup.external_id.in_(group_ids)))
        )
        if group_ids
        else []
    )
    conditions = []
    if tag_ids:
        conditions.append(Tag.external_id.in_(tag_ids))
    if groups:
        conditions.append(Tag.group_id.in_([g.id for g in groups]))
    tags = list(db.scalars(select(Tag).where(Tag.org_id == org_id, or_(*conditions)))) if conditions else []
    _remove_tags(db, org_id, tags, origin=origin, report=report)
    for group in groups:
        db.delete(group)
        report.counts["tag_groups", "ended"] += 1
    db.flush()
    return report


def _remove_tags(db: Session, org_id: int, tags: Sequence[Tag], *, origin: str, report: MirrorReport) -> None:
    """Delete mirrored tags gone from the carrier, taking them off their customers (tag_removed)."""
    _take_off(db, org_id, tags, origin=origin)
    for tag in tags:
        report.counts["tags", "ended"] += 1
        report.samples.append(f"deleted tag {tag.name} (gone from the carrier)")
    db.flush()


def _take_off(db: Session, org_id: int, tags: Sequence[Tag], *, origin: str) -> None:
    """Delete tags: tag_removed for each customer who had one, then their assignments and the tags, set-wise."""
    if not tags:
        return
    by_id = {t.id: t for t in tags}
    ids = sorted(by_id)
    now = utcnow()
    events = [
        DomainEvent(
            org_id=org_id,
            customer_id=int(cid),
            type=EventType.tag_removed,
            occurred_at=now,
            properties={
                "tag_id": int(tid),
                "tag": by_id[tid].name,
                "external_id": by_id[tid].external_id,
                **({"origin": origin} if origin else {}),
            },
        )
        for part in chunked(ids, IN_LIST_SIZE)
        for cid, tid in db.execute(
            select(CustomerTag.customer_id, CustomerTag.tag_id).where(one_of(db, CustomerTag.tag_id, part))
        )
    ]
    emit_many(db, events)
    # Explicit delete: SQLite only cascades when foreign keys are on, and we don't rely on that.
    for part in chunked(ids, IN_LIST_SIZE):
        db.execute(delete(CustomerTag).where(one_of(db, CustomerTag.tag_id, part)))
    for tag in by_id.values():
        db.delete(tag)


class TagsByName:
    """The organization's tag ids by (group name, tag name), loaded once per import; ``ensure`` creates
    the missing ones (ON CONFLICT, so a concurrent import is harmless)."""

    def __init__(self, db: Session, org_id: int) -> None:
        self.org_id = org_id
        self.groups: dict[str, int] = dict(
            db.execute(select(TagGroup.name, TagGroup.id).where(TagGroup.org_id == org_id)).all()
        )
        self.tags: dict[tuple[str, str], int] = {
            (g, t): i
            for g, t, i in db.execute(
                select(TagGroup.name, Tag.name, Tag.id)
                .join(Tag, Tag.group_id == TagGroup.id)
                .where(TagGroup.org_id == org_id)
            )
        }

    def ensure(self, db: Session, pairs: set[tuple[str, str]]) -> None:
        """Create the tag groups and tags not seen yet."""
        missing = pairs - self.tags.keys()
        if not missing:
            return
        new_groups = sorted({g for g, _ in missing} - self.groups.keys())
        if new_groups:
            db.execute(
                insert_ignore(db, TagGroup.__table__, ["org_id", "name"]),
                [{"org_id": self.org_id, "name": g, "sort_order": 0} for g in new_groups],
            )
            self.groups.update(
                db.execute(
                    select(TagGroup.name, TagGroup.id).where(
                        TagGroup.org_id == self.org_id, TagGroup.name.in_(new_groups)
                    )
                ).all()
            )
        db.execute(
            insert_ignore(db, Tag.__table__, ["org_id", "group_id", "name"]),
            [
                {"org_id": self.org_id, "group_id": self.groups[g], "name": t, "sort_order": 0}
                for g, t in sorted(missing)
            ],
        )
        for g, t, i in db.execute(
            select(TagGroup.name, Tag.name, Tag.id)
            .join(Tag, Tag.group_id == TagGroup.id)
            .where(Tag.org_id == self.org_id, Tag.group_id.in_({self.groups[g] for g, _ in missing}))
        ):
            self.tags[(g, t)] = i


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
