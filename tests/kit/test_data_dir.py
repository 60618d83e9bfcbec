"""The data directory and what siyu creates in it are readable by their owner only."""

from __future__ import annotations

import stat
from pathlib import Path

from sqlalchemy import text

from siyu.kit.db import make_engine
from siyu.kit.settings import Settings


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_data_dir_database_and_key_are_owner_only(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "var" / "data")
    engine = make_engine(settings.resolved_database_url())
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE t (x INTEGER)"))
            conn.execute(text("INSERT INTO t VALUES (1)"))
        settings.resolved_secret_key()
        data = settings.data_dir
        assert _mode(data) == 0o700
        assert _mode(data / "siyu.db") == 0o600
        assert _mode(data / "secret.key") == 0o600
        for side in data.glob("siyu.db-*"):  # WAL and shared-memory files follow the database's mode
            assert _mode(side) == 0o600, side
    finally:
        engine.dispose()
