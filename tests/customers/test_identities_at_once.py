"""find_or_create_by_identities: the callback worker's one-lookup path gives what the one-by-one calls give."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from siyu.customers import profiles
from siyu.customers.models import Customer, CustomerIdentity, Gender, IdentityKind, MergeAudit
from siyu.kit.errors import Invalid

EXT, UNION, MOBILE = IdentityKind.wecom_external_userid, IdentityKind.unionid, IdentityKind.mobile


def _identities(db: Session, customer_id: int) -> set[tuple[str, str]]:
    return {
        (str(i.kind), i.value)
        for i in db.scalars(select(CustomerIdentity).where(CustomerIdentity.customer_id == customer_id))
    }


def test_a_new_person_gets_one_profile_holding_every_identifier(db: Session, tenant) -> None:  # type: ignore[no-untyped-def]
    org = tenant.org_id
    c, created = profiles.find_or_create_by_identities(
        db, org, [(EXT, " wm-1 "), (UNION, "oz-1"), (EXT, "wm-1")], {"name": "甲", "gender": Gender.female}
    )
    assert created and c.name == "甲" and c.gender == Gender.female
    assert _identities(db, c.id) == {("wecom_external_userid", "wm-1"), ("unionid", "oz-1")}
    # Known now: found again, empty fields filled, gender (a default for new profiles only) untouched.
    again, created = profiles.find_or_create_by_identities(
        db, org, [(EXT, "wm-1"), (UNION, "oz-1")], {"name": "乙", "region": "杭州", "gender": Gender.male}
    )
    assert not created and again.id == c.id and again.name == "甲" and again.region == "杭州"
    assert again.gender == Gender.female
    assert db.scalar(select(MergeAudit).where(MergeAudit.org_id == org)) is None


def test_an_extra_identifier_of_an_existing_profile_attaches(db: Session, tenant) -> None:  # type: ignore[no-untyped-def]
    org = tenant.org_id
    c, _ = profiles.find_or_create_by_identities(db, org, [(EXT, "wm-2")], {"name": "丙"})
    found, created = profiles.find_or_create_by_identities(db, org, [(EXT, "wm-2"), (MOBILE, "13700001111")])
    assert not created and found.id == c.id
    # A mobile attached this way also becomes the profile's mobile, as add_identity does.
    assert found.mobile == "13700001111" and ("mobile", "13700001111") in _identities(db, c.id)


def test_an_identifier_held_by_another_profile_merges_them_with_the_reason(db: Session, tenant) -> None:  # type: ignore[no-untyped-def]
    org = tenant.org_id
    older, _ = profiles.find_or_create_by_identities(db, org, [(UNION, "oz-3")], {"name": "丁"})
    c, created = profiles.find_or_create_by_identities(
        db, org, [(EXT, "wm-3"), (UNION, "oz-3")], {"name": "丁二"}, reason="shared unionid from the test"
    )
    # The new profile merged into the older one: what comes back is the survivor, which is not new.
    assert not created and c.id == older.id
    assert _identities(db, older.id) == {("wecom_external_userid", "wm-3"), ("unionid", "oz-3")}
    audit = db.scalar(select(MergeAudit).where(MergeAudit.survivor_id == older.id))
    assert audit is not None and audit.reason == "shared unionid from the test"
    merged = db.get(Customer, audit.merged_id)
    assert merged is not None and merged.merged_into_id == older.id


def test_a_mobile_in_the_defaults_finds_the_profile_known_by_it(db: Session, tenant) -> None:  # type: ignore[no-untyped-def]
    org = tenant.org_id
    m = profiles.create_customer(db, org, {"name": "戊", "mobile": "13700002222"})
    found, created = profiles.find_or_create_by_identities(
        db, org, [(EXT, "wm-4"), (UNION, "oz-4")], {"mobile": "13700002222"}
    )
    assert not created and found.id == m.id
    assert {("wecom_external_userid", "wm-4"), ("unionid", "oz-4")} <= _identities(db, m.id)


def test_bad_identifiers_are_refused_naming_the_field(db: Session, tenant) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(Invalid) as err:
        profiles.find_or_create_by_identities(db, tenant.org_id, [])
    assert err.value.field == "identities"
    with pytest.raises(Invalid) as err:
        profiles.find_or_create_by_identities(db, tenant.org_id, [(EXT, "wm-5"), (UNION, "  ")])
    assert err.value.field == "value"


def test_a_nameless_older_profile_that_survives_a_merge_takes_the_carriers_name(db: Session, tenant) -> None:  # type: ignore[no-untyped-def]
    # The WeCom contact path relies on this instead of writing the name itself.
    org = tenant.org_id
    older, _ = profiles.find_or_create_by_identities(db, org, [(UNION, "oz-5")], {})
    assert older.name == ""
    c, created = profiles.find_or_create_by_identities(
        db, org, [(EXT, "wm-5"), (UNION, "oz-5")], {"name": "戊"}
    )
    assert not created and c.id == older.id and c.name == "戊"
