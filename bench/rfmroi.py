"""Benchmark: the RFM, ROI, CLV and channel-cost pages and APIs over a prepared brand (issue 14: <= 300 ms).

Times the requests of ``bench/page_scale.py`` whose name mentions rfm, roi, clv or channel-costs, served
in-process over an existing database and data dir (a copy: the projection writes to its DuckDB file).
Without ``--url`` it builds or reuses page_scale's 100,000-customer SQLite brand (``--quick``: 10,000).

    python bench/rfmroi.py --url sqlite:////tmp/rfmroi-1m/pages.db --data-dir /tmp/rfmroi-1m/pages.var
Last line: rfmroi_worst_p50_ms=N (slowest median of five warm requests).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import page_scale

WANTED = ("rfm", "roi", "clv", "channel-costs")


def main() -> None:
    """Time the wanted probes once over the given (or built) brand and print the worst median."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="")
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--quick", action="store_true", help="10,000 customers when building")
    parser.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "siyu-bench")
    args = parser.parse_args()
    now = datetime.now(UTC)
    url, data_dir = args.url, args.data_dir
    if not url:
        end = now.replace(hour=0, minute=0, second=0, microsecond=0)
        url, data_dir = page_scale.sqlite_database(10_000 if args.quick else 100_000, args.cache_dir, end)
    all_probes = page_scale.probes

    def wanted(sample: dict[str, Any], at: datetime) -> list[page_scale.Probe]:
        return [p for p in all_probes(sample, at) if any(w in p.name for w in WANTED)]

    page_scale.probes = wanted  # time_size times whatever `probes` lists
    medians = page_scale.time_size(url, data_dir, now)
    print(f"rfmroi_worst_p50_ms={max(medians.values()):.0f}", flush=True)


if __name__ == "__main__":
    main()
