"""The siyu command line, run as a user would: a fresh SQLite database, real files, real output."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from siyu.cli import app
from siyu.commerce.models import Order
from siyu.customers.models import Customer
from siyu.kit.db import make_engine, make_sessionmaker
from siyu.kit.settings import get_settings

runner = CliRunner()


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the CLI at an empty data directory through the environment, as a user would."""
    monkeypatch.setenv("SIYU_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.delenv("SIYU_DATABASE_URL", raising=False)
    get_settings.cache_clear()
    yield tmp_path / "var"
    get_settings.cache_clear()


def _count(data_dir: Path, model: type) -> int:
    engine = make_engine(f"sqlite:///{data_dir / 'siyu.db'}")
    with make_sessionmaker(engine)() as db:
        n = int(db.scalar(select(func.count()).select_from(model)) or 0)
    engine.dispose()
    return n


def _setup_org(data_dir: Path) -> None:
    assert runner.invoke(app, ["migrate"]).exit_code == 0
    result = runner.invoke(app, ["create-org", "Lily Tea", "--slug", "lily-tea"])
    assert result.exit_code == 0, result.output


def test_org_user_and_token(data_dir: Path) -> None:
    _setup_org(data_dir)
    result = runner.invoke(
        app,
        [
            "create-user",
            "--org",
            "lily-tea",
            "--email",
            "ops@lily.test",
            "--name",
            "小王",
            "--role",
            "operator",
            "--password",
            "password123",
        ],
    )
    assert result.exit_code == 0, result.output
    token = runner.invoke(app, ["create-token", "--email", "ops@lily.test"])
    assert token.exit_code == 0 and token.output.strip().startswith("siyu_")


@pytest.mark.slow
def test_clear_errors_for_bad_input(data_dir: Path) -> None:
    _setup_org(data_dir)
    again = runner.invoke(app, ["create-org", "Other", "--slug", "lily-tea"])
    assert again.exit_code == 1 and "already exists" in again.output
    bad_role = runner.invoke(
        app,
        [
            "create-user",
            "--org",
            "lily-tea",
            "--email",
            "a@b.test",
            "--name",
            "A",
            "--role",
            "boss",
            "--password",
            "password123",
        ],
    )
    assert bad_role.exit_code == 1 and "--role must be one of" in bad_role.output
    no_org = runner.invoke(
        app,
        ["create-user", "--org", "nope", "--email", "a@b.test", "--name", "A", "--password", "password123"],
    )
    assert no_org.exit_code == 1 and "no organization 'nope'" in no_org.output


def test_customer_import_reports_file_and_row_and_is_idempotent(data_dir: Path, tmp_path: Path) -> None:
    _setup_org(data_dir)
    csv_file = tmp_path / "customers.csv"
    csv_file.write_text(
        "name,mobile,stage,source,tags\n"
        "王小美,13800000001,engaged,douyin_comment,意向:高\n"
        "李雷,12345,new,,\n"
        "韩梅梅,13800000003,new,offline_flyer,\n",
        encoding="utf-8",
    )
    first = runner.invoke(app, ["import", "customers", str(csv_file), "--org", "lily-tea"])
    assert first.exit_code == 2  # a bad row is an error the shell can see
    assert f"{csv_file}: row 3, column mobile" in first.output
    assert "created 2" in first.output
    assert _count(data_dir, Customer) == 2
    second = runner.invoke(app, ["import", "customers", str(csv_file), "--org", "lily-tea"])
    assert "created 0" in second.output
    assert _count(data_dir, Customer) == 2


def test_strict_import_stores_nothing_when_a_row_is_bad(data_dir: Path, tmp_path: Path) -> None:
    _setup_org(data_dir)
    csv_file = tmp_path / "customers.csv"
    csv_file.write_text("name,mobile\n王小美,13800000001\n李雷,12345\n", encoding="utf-8")
    result = runner.invoke(app, ["import", "customers", str(csv_file), "--org", "lily-tea", "--strict"])
    assert result.exit_code == 2 and "nothing was stored" in result.output
    assert _count(data_dir, Customer) == 0


def test_taobao_order_import(data_dir: Path) -> None:
    _setup_org(data_dir)
    fixture = Path(__file__).parent / "data" / "taobao_orders_gbk.csv"
    result = runner.invoke(app, ["import", "orders", str(fixture), "--org", "lily-tea", "--format", "taobao"])
    stored = _count(data_dir, Order)
    assert stored > 0, result.output
    again = runner.invoke(app, ["import", "orders", str(fixture), "--org", "lily-tea", "--format", "taobao"])
    assert _count(data_dir, Order) == stored
    assert "created 0" in again.output


def test_unreadable_file_is_named(data_dir: Path, tmp_path: Path) -> None:
    _setup_org(data_dir)
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    result = runner.invoke(app, ["import", "customers", str(empty), "--org", "lily-tea"])
    assert result.exit_code == 1 and str(empty) in result.output


def test_unknown_format_is_refused(data_dir: Path, tmp_path: Path) -> None:
    _setup_org(data_dir)
    f = tmp_path / "x.csv"
    f.write_text("a\n1\n")
    result = runner.invoke(app, ["import", "orders", str(f), "--org", "lily-tea", "--format", "jd"])
    assert result.exit_code == 1 and "--format must be generic or taobao" in result.output
