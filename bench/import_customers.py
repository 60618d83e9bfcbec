"""Benchmark: bulk customer CSV import into a fresh SQLite database.

Generates a seeded CSV (100,000 rows; --quick: 20,000), migrates a fresh SQLite file and imports it with
``siyu.customers.importer.import_customers_csv``. Baseline in the same run: a naive importer that looks
up and writes one row at a time through the ORM and commits each row, timed on a 5,000-row sample
(--quick: 1,000) and extrapolated. Target: 100,000 rows in at most 10 s.

    python bench/import_customers.py [--quick] [--rows N] [--seed S]
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import select

from siyu.customers.importer import ColumnMap, import_customers_csv, parse_customer_row
from siyu.customers.models import Customer, CustomerIdentity, CustomerTag, Tag, TagGroup
from siyu.customers.remarks import compose_remark
from siyu.kit.bulk import RowInvalid, open_csv
from siyu.kit.db import make_engine, make_sessionmaker, transaction
from siyu.kit.migrate import upgrade
from siyu.tenancy import service as identity

SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈"
)
GIVEN = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英华玉萍红娥玲芬燕彩春菊兰凤洁梅琳素云莲真环雪荣爱妹霞香月莺媛"
REGIONS = ["上海", "北京", "广东深圳", "浙江杭州", "江苏南京", "四川成都", "湖北武汉", "福建厦门", ""]
STAGES = ["new", "contacted", "retained", "engaged", "converted", "repeat", ""]
SOURCES = ["douyin_comment", "taobao_order", "live", "offline", "referral", "zhihu", ""]
INTENTS = ["高", "中", "低", "求资料", ""]
TAGS = ["意向:高", "意向:中", "痛点:祛痘", "痛点:美白", "付费意愿:强", "渠道:门店", "年龄:90后"]


def generate(path: Path, rows: int, seed: int) -> None:
    """Write a realistic customer CSV: unique mobiles, some external ids, tags, ~1% repeated people."""
    rng = random.Random(seed)
    mobiles: list[str] = []
    seen: set[str] = set()
    with path.open("w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        out.writerow(
            [
                "name",
                "mobile",
                "gender",
                "region",
                "stage",
                "source",
                "intent",
                "tags",
                "wecom_external_userid",
                "unionid",
            ]
        )
        for n in range(rows):
            if mobiles and rng.random() < 0.01:
                mobile = rng.choice(mobiles)  # the same person again, e.g. from a second sheet
            else:
                while True:
                    mobile = f"1{rng.choice('3456789')}{rng.randrange(10**9):09d}"
                    if mobile not in seen:
                        break
                seen.add(mobile)
                mobiles.append(mobile)
            name = rng.choice(SURNAMES) + "".join(rng.choice(GIVEN) for _ in range(rng.choice((1, 2))))
            tags = ";".join(rng.sample(TAGS, rng.choice((0, 1, 1, 2))))
            wecom = f"wmXyz{mobile[-9:]}{n % 7}" if rng.random() < 0.5 else ""
            unionid = f"oU{mobile}{seed}" if rng.random() < 0.3 else ""
            out.writerow(
                [
                    name,
                    mobile,
                    rng.choice(("男", "女", "")),
                    rng.choice(REGIONS),
                    rng.choice(STAGES),
                    rng.choice(SOURCES),
                    rng.choice(INTENTS),
                    tags,
                    wecom,
                    unionid,
                ]
            )


def fresh_db(tmp: Path, name: str):  # type: ignore[no-untyped-def]
    """A migrated SQLite file with one organization; returns (engine, org_id)."""
    url = f"sqlite:///{tmp / name}"
    upgrade(url)
    engine = make_engine(url)
    with transaction(make_sessionmaker(engine)) as db:
        org_id = identity.create_organization(db, "Bench", "bench").id
    return engine, org_id


def naive_import(engine, org_id: int, path: Path) -> int:  # type: ignore[no-untyped-def]
    """Baseline: per row, ORM look-ups and inserts and a commit (what a straightforward loop does)."""
    factory = make_sessionmaker(engine)
    source = open_csv(path)
    cols = ColumnMap.from_header(source.header)
    done = 0
    for number, cells in source.rows:
        try:
            row = parse_customer_row(number, cells, cols)
        except RowInvalid:
            continue
        with transaction(factory) as db:
            customer = None
            for kind, value in row.identities:
                ident = db.scalar(
                    select(CustomerIdentity).where(
                        CustomerIdentity.org_id == org_id,
                        CustomerIdentity.kind == kind,
                        CustomerIdentity.value == value,
                    )
                )
                if ident is not None:
                    customer = db.get(Customer, ident.customer_id)
                    break
            if customer is None:
                customer = Customer(org_id=org_id)
                db.add(customer)
            for key, value in row.fields.items():
                setattr(customer, key, value)
            customer.remark = compose_remark(customer.name, customer.source, customer.intent, customer.mobile)
            db.flush()
            for kind, value in row.identities:
                if (
                    db.scalar(
                        select(CustomerIdentity.id).where(
                            CustomerIdentity.org_id == org_id,
                            CustomerIdentity.kind == kind,
                            CustomerIdentity.value == value,
                        )
                    )
                    is None
                ):
                    db.add(CustomerIdentity(org_id=org_id, customer_id=customer.id, kind=kind, value=value))
            for group_name, tag_name in row.tags:
                group = db.scalar(
                    select(TagGroup).where(TagGroup.org_id == org_id, TagGroup.name == group_name)
                )
                if group is None:
                    group = TagGroup(org_id=org_id, name=group_name)
                    db.add(group)
                    db.flush()
                tag = db.scalar(select(Tag).where(Tag.group_id == group.id, Tag.name == tag_name))
                if tag is None:
                    tag = Tag(org_id=org_id, group_id=group.id, name=tag_name)
                    db.add(tag)
                    db.flush()
                if db.get(CustomerTag, (customer.id, tag.id)) is None:
                    db.add(CustomerTag(customer_id=customer.id, tag_id=tag.id, org_id=org_id))
        done += 1
    return done


def main() -> None:
    """Run the import and the baseline; the last line is rows_per_s=N."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20,000 rows and a 1,000-row baseline (<30 s)")
    parser.add_argument("--rows", type=int, default=None)
    parser.add_argument("--seed", type=int, default=20240601)
    args = parser.parse_args()
    rows = args.rows or (20_000 if args.quick else 100_000)
    sample = 1_000 if args.quick else 5_000
    with tempfile.TemporaryDirectory(prefix="siyu-bench-") as tmpdir:
        tmp = Path(tmpdir)
        big, small = tmp / "customers.csv", tmp / "sample.csv"
        generate(big, rows, args.seed)
        generate(small, sample, args.seed + 1)
        print(
            f"generated {rows:,} rows ({big.stat().st_size / 1e6:.1f} MB) and a {sample:,}-row baseline sample"
        )

        engine, org_id = fresh_db(tmp, "bulk.db")
        started, cpu = time.perf_counter(), time.process_time()
        report = import_customers_csv(engine, org_id, big)
        bulk_s, bulk_cpu = time.perf_counter() - started, time.process_time() - cpu
        # On a shared machine wall time includes waiting for a core; CPU time shows the work itself.
        print(
            f"bulk import: {bulk_s:.2f} s wall, {bulk_cpu:.2f} s CPU  created={report.created:,} "
            f"updated={report.updated:,} "
            f"unchanged={report.unchanged:,} merged={report.merged} skipped={report.skipped}"
        )
        started = time.perf_counter()
        again = import_customers_csv(engine, org_id, big)
        print(
            f"re-import (idempotent): {time.perf_counter() - started:.2f} s  created={again.created} "
            f"updated={again.updated} unchanged={again.unchanged:,}"
        )
        engine.dispose()

        engine, org_id = fresh_db(tmp, "naive.db")
        started, cpu = time.perf_counter(), time.process_time()
        done = naive_import(engine, org_id, small)
        naive_s, naive_cpu = time.perf_counter() - started, time.process_time() - cpu
        engine.dispose()
        naive_rate = done / naive_s
        bulk_rate = rows / bulk_s
        print(
            f"baseline orm_rowwise: {done:,} rows in {naive_s:.2f} s ({naive_cpu:.2f} s CPU) = {naive_rate:,.0f} rows/s "
            f"(extrapolated to {rows:,} rows: {rows / naive_rate:.1f} s)"
        )
        print(
            f"CPU-time rate: {rows / bulk_cpu:,.0f} rows/s (100,000 rows in {100_000 / (rows / bulk_cpu):.1f} s CPU); "
            f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
        )
        print(
            f"target: 100,000 rows in <= 10 s -> {'met' if bulk_rate * 10 >= 100_000 else 'NOT met'} "
            f"({100_000 / bulk_rate:.1f} s at this rate)"
        )
        print(f"ratio_vs_orm_rowwise={bulk_rate / naive_rate:.1f}")
        print(f"rows_per_s={bulk_rate:.0f}")


if __name__ == "__main__":
    sys.exit(main())
