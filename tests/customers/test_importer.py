"""Bulk customer CSV import: idempotent by identity, merges, tags, bad rows reported, strict mode."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from siyu.customers.importer import import_customers_csv
from siyu.customers.models import Customer, CustomerIdentity, CustomerTag, MergeAudit, Tag, TagGroup
from siyu.customers.remarks import compose_remark
from siyu.kit.errors import Invalid

HEADER = "name,mobile,gender,region,stage,source,intent,tags,wecom_external_userid,unionid"


def _csv(*lines: str, header: str = HEADER) -> bytes:
    return ("\n".join((header, *lines)) + "\n").encode("utf-8")


def _count(db: Session, model: type) -> int:
    return int(db.scalar(select(func.count()).select_from(model)) or 0)


def _by_mobile(db: Session, mobile: str) -> Customer:
    db.expire_all()
    customer = db.scalar(
        select(Customer)
        .join(CustomerIdentity, CustomerIdentity.customer_id == Customer.id)
        .where(CustomerIdentity.kind == "mobile", CustomerIdentity.value == mobile)
    )
    assert customer is not None
    return customer


def _tags(db: Session, customer_id: int) -> set[str]:
    rows = db.execute(
        select(TagGroup.name, Tag.name)
        .join(Tag, Tag.group_id == TagGroup.id)
        .join(CustomerTag, CustomerTag.tag_id == Tag.id)
        .where(CustomerTag.customer_id == customer_id)
    )
    return {f"{g}:{t}" for g, t in rows}


GOOD = _csv(
    "王小美,13800000001,女,上海,engaged,douyin_comment,求资料,意向:高;痛点：祛痘,wm-001,",
    "李雷,+86 139-0000-0002,male,,new,,,,,oU-002",
    "韩梅梅,13800000003,,,,offline,,意向:高,,",
)


def test_import_creates_then_reimport_changes_nothing(engine: Engine, tenant, db: Session) -> None:  # type: ignore[no-untyped-def]
    report = import_customers_csv(engine, tenant.org_id, GOOD)
    assert (report.rows_read, report.created, report.updated, report.skipped) == (3, 3, 0, 0), report
    mei = _by_mobile(db, "13800000001")
    assert (mei.name, mei.gender, mei.region, mei.stage, mei.source, mei.intent) == (
        "王小美",
        "female",
        "上海",
        "engaged",
        "douyin_comment",
        "求资料",
    )
    assert mei.remark == compose_remark("王小美", "douyin_comment", "求资料", "13800000001")
    assert mei.remark.startswith("王小") and mei.remark.endswith("+13800000001") and not mei.remark_is_manual
    assert _tags(db, mei.id) == {"意向:高", "痛点:祛痘"}
    lei = _by_mobile(db, "13900000002")
    idents = set(
        db.execute(
            select(CustomerIdentity.kind, CustomerIdentity.value).where(
                CustomerIdentity.customer_id == lei.id
            )
        ).all()
    )
    assert idents == {("mobile", "13900000002"), ("unionid", "oU-002")}

    again = import_customers_csv(engine, tenant.org_id, GOOD)
    assert (again.created, again.updated, again.unchanged) == (0, 0, 3)
    assert _count(db, Customer) == 3 and _count(db, CustomerIdentity) == 5 and _count(db, CustomerTag) == 3
    assert _count(db, Tag) == 2  # 意向:高 is shared, not created twice


def test_reimport_updates_and_blank_cells_keep_values(engine: Engine, tenant, db: Session) -> None:  # type: ignore[no-untyped-def]
    import_customers_csv(engine, tenant.org_id, GOOD)
    # Found by unionid only: the name changes, blank cells keep what is stored, a tag is added.
    update = _csv(",,,,converted,,,付费意愿:强,,oU-002")
    report = import_customers_csv(engine, tenant.org_id, update)
    assert (report.created, report.updated) == (0, 1)
    lei = _by_mobile(db, "13900000002")
    assert (lei.name, lei.gender, lei.stage) == ("李雷", "male", "converted")
    assert _tags(db, lei.id) == {"付费意愿:强"}
    assert _count(db, Customer) == 3


def test_row_linking_two_customers_merges_them(engine: Engine, tenant, db: Session) -> None:  # type: ignore[no-untyped-def]
    import_customers_csv(engine, tenant.org_id, GOOD)
    older, newer = _by_mobile(db, "13800000001"), _by_mobile(db, "13900000002")
    report = import_customers_csv(engine, tenant.org_id, _csv(",13800000001,,,,,,,,oU-002"))
    assert report.merged == 1 and report.created == 0
    db.expire_all()
    merged = db.get(Customer, newer.id)
    assert merged is not None and merged.merged_into_id == older.id
    owners = set(
        db.scalars(
            select(CustomerIdentity.customer_id).where(
                CustomerIdentity.value.in_(["13800000001", "13900000002", "oU-002", "wm-001"])
            )
        )
    )
    assert owners == {older.id}
    audit = db.scalar(select(MergeAudit))
    assert audit is not None and (audit.survivor_id, audit.merged_id) == (older.id, newer.id)
    assert "row 2" in audit.reason
    # Importing the same file again finds one live customer and merges nothing more.
    assert import_customers_csv(engine, tenant.org_id, _csv(",13800000001,,,,,,,,oU-002")).merged == 0


def test_rows_of_one_person_across_chunks_make_one_customer(engine: Engine, tenant, db: Session) -> None:  # type: ignore[no-untyped-def]
    data = _csv(
        "甲,13800000011,,,,,,,wm-11,",
        "乙,13800000012,,,,,,,,",
        ",,,,,,,,wm-11,oU-11",  # same person as row 2, in the next chunk, adds a unionid
        "甲二,13800000011,,,,,,,,",  # and again in the same chunk: the last name wins
    )
    report = import_customers_csv(engine, tenant.org_id, data, chunk_size=2)
    assert report.created == 2 and report.skipped == 0
    person = _by_mobile(db, "13800000011")
    assert person.name == "甲二"
    values = set(db.scalars(select(CustomerIdentity.value).where(CustomerIdentity.customer_id == person.id)))
    assert values == {"13800000011", "wm-11", "oU-11"}


def test_bad_rows_reported_by_row_number_and_nothing_half_written(
    engine: Engine, tenant, db: Session
) -> None:  # type: ignore[no-untyped-def]
    data = _csv(
        "好人,13800000021,,,,,,,,",
        "坏手机,1380000,,,,,,意向:高,,",
        "坏阶段,13800000023,,,vip,,,,,",
        "坏标签,13800000024,,,,,,没有分组,,",
        "无标识,,,,,,,,,",
        "坏性别,13800000026,x,,,,,,,",
        "好人二,,,,,,,,wm-27,",
    )
    report = import_customers_csv(engine, tenant.org_id, data)
    assert (report.rows_read, report.created, report.skipped) == (7, 2, 5)
    assert [(e.row, e.field) for e in report.errors] == [
        (3, "mobile"),
        (4, "stage"),
        (5, "tags"),
        (6, "mobile"),
        (7, "gender"),
    ]
    assert "vip" in report.errors[1].reason
    assert _count(db, Customer) == 2 and _count(db, Tag) == 0  # the bad row's tag was not created

    strict = import_customers_csv(
        engine, tenant.org_id, data.replace(b"13800000021", b"13800000099"), strict=True
    )
    assert strict.created == 0 and strict.skipped == 5
    assert _count(db, Customer) == 2


def test_gbk_file_with_chinese_headers(engine: Engine, tenant, db: Session) -> None:  # type: ignore[no-untyped-def]
    data = (
        "姓名 , 手机号 ,性别,阶段,标签,备注\r\n张三,13800000031,男,contacted,渠道:门店,老客户介绍\r\n".encode(
            "gbk"
        )
    )
    report = import_customers_csv(engine, tenant.org_id, data)
    assert report.created == 1, report
    zhang = _by_mobile(db, "13800000031")
    assert (zhang.name, zhang.gender, zhang.stage) == ("张三", "male", "contacted")
    assert (zhang.remark, zhang.remark_is_manual) == ("老客户介绍", True)


def test_header_without_identifier_is_refused(engine: Engine, tenant) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(Invalid, match="identifier column"):
        import_customers_csv(engine, tenant.org_id, b"name,region\nA,B\n")
    with pytest.raises(Invalid, match="empty"):
        import_customers_csv(engine, tenant.org_id, b"")


def test_import_endpoint(client, make_tenant, db: Session) -> None:  # type: ignore[no-untyped-def]
    tenant, other = make_tenant("brand-one"), make_tenant("brand-two")
    files = {"file": ("customers.csv", GOOD, "text/csv")}
    response = client.post("/api/v1/imports/customers", files=files, headers=tenant.auth())
    assert response.status_code == 200, response.text
    assert response.json()["created"] == 3
    # Same file into another organization: its own customers, nothing shared.
    assert client.post("/api/v1/imports/customers", files=files, headers=other.auth()).json()["created"] == 3
    owners = set(db.scalars(select(Customer.org_id)))
    assert owners == {tenant.org_id, other.org_id}
    assert (
        client.post("/api/v1/imports/customers", files=files, headers=tenant.auth("operator")).status_code
        == 403
    )
    bad = client.post(
        "/api/v1/imports/customers",
        files={"file": ("x.csv", b"name\nA\n", "text/csv")},
        headers=tenant.auth(),
    )
    assert bad.status_code == 422 and bad.json()["field"] == "header"


@pytest.mark.slow
def test_a_bad_byte_deep_in_the_file_names_its_row_and_stores_nothing(client, tenant, db: Session) -> None:  # type: ignore[no-untyped-def]
    lines = [f"客户{i},139{i:08d},,,,,,,," for i in range(2, 12_006)]  # rows 2..12005
    data = bytearray(_csv(*lines))
    bad_row = 12_002
    at = data.index(f"客户{bad_row},".encode())
    data[at : at + len(f"客户{bad_row}".encode())] = b"\xff\xfe" + str(bad_row).encode()  # not UTF-8
    files = {"file": ("customers.csv", bytes(data), "text/csv")}
    response = client.post("/api/v1/imports/customers", files=files, headers=tenant.auth())
    assert response.status_code == 422, response.text
    assert response.json()["detail"].startswith(f"row {bad_row}:")
    db.expire_all()
    assert db.scalar(select(func.count()).select_from(Customer)) == 0
