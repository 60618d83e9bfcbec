"""Calibration summaries (frequency, recency, T, mean repeat spend) from raw transactions.

This is the input every buy-till-you-die model takes: per customer, the number of *repeat*
purchase periods (``frequency``), the age of the customer at their last purchase
(``recency``), their age at the end of observation (``T``) and the mean value of their
repeat purchases (``monetary_value``, the first purchase is excluded as in Fader, Hardie
& Lee's gamma-gamma spend model).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from siyu.kit.errors import Invalid

_NS_PER_DAY = 86_400 * 1_000_000_000


class CLVInputError(Invalid, ValueError):
    """Bad input to a CLV computation; names the offending field."""


@dataclass(frozen=True, slots=True)
class RFMSummary:
    """Per-customer calibration summary, one entry per customer in every array (same order)."""

    customer_ids: NDArray[Any]
    frequency: NDArray[np.int64]
    recency: NDArray[np.float64]
    T: NDArray[np.float64]
    # Mean value of repeat purchases in the caller's money unit (fen); 0.0 where frequency == 0.
    monetary_value: NDArray[np.float64]
    period_days: float

    def __len__(self) -> int:
        return int(self.frequency.shape[0])


def _to_datetime64_ns(values: ArrayLike | Sequence[datetime], field: str) -> NDArray[np.datetime64]:
    """Timestamps as UTC datetime64[ns]; aware datetimes are converted, naive ones rejected."""
    if isinstance(values, np.ndarray) and np.issubdtype(values.dtype, np.datetime64):
        # numpy datetimes carry no zone: by the project's convention they are UTC.
        return values.astype("datetime64[ns]")
    items = list(values)  # type: ignore[arg-type]
    out = np.empty(len(items), dtype="datetime64[ns]")
    for i, item in enumerate(items):
        if isinstance(item, datetime):
            offset = item.utcoffset()
            if offset is None:
                raise CLVInputError(
                    f"{field}[{i}] is a naive datetime ({item.isoformat()}); give timezone-aware UTC times",
                    field=field,
                )
            out[i] = np.datetime64((item - offset).replace(tzinfo=None), "ns")
        elif isinstance(item, np.datetime64):
            out[i] = item.astype("datetime64[ns]")
        else:
            raise CLVInputError(f"{field}[{i}] is {type(item).__name__}, not a datetime", field=field)
    return out


def _end_to_datetime64(value: datetime | np.datetime64, field: str) -> np.datetime64:
    if isinstance(value, datetime):
        return _to_datetime64_ns([value], field)[0]
    if isinstance(value, np.datetime64):
        return value.astype("datetime64[ns]")
    raise CLVInputError(f"{field} must be a timezone-aware datetime, got {type(value).__name__}", field=field)


def rfm_summary(
    customer_ids: ArrayLike,
    timestamps: ArrayLike | Sequence[datetime],
    amounts: ArrayLike | None = None,
    *,
    observation_end: datetime | np.datetime64,
    period_days: float = 1.0,
    bucket: Literal["day", "none"] = "day",
    utc_offset_hours: float = 0.0,
) -> RFMSummary:
    """Compute per-customer frequency, recency, T and mean repeat spend up to ``observation_end``.

    Time is measured in units of ``period_days`` days (7.0 gives weeks).  With
    ``bucket="day"`` all purchases of a customer on the same calendar day (UTC shifted by
    ``utc_offset_hours``, e.g. 8 for Asia/Shanghai) count as one purchase whose amount is
    their sum, and ages are whole days: the convention of Fader & Hardie's CDNOW analyses.
    ``observation_end`` is inclusive (its calendar day is the last observed day).
    Transactions after it are ignored; customers whose first purchase is after it are left out.
    """
    if not (isinstance(period_days, (int, float)) and np.isfinite(period_days) and period_days > 0):
        raise CLVInputError(
            f"period_days must be a positive number, got {period_days!r}", field="period_days"
        )
    if bucket not in ("day", "none"):
        raise CLVInputError(f"bucket must be 'day' or 'none', got {bucket!r}", field="bucket")
    ids = np.asarray(customer_ids)
    if ids.ndim != 1:
        raise CLVInputError("customer_ids must be one-dimensional", field="customer_ids")
    ts = _to_datetime64_ns(timestamps, "timestamps")
    if ts.shape != ids.shape:
        raise CLVInputError(
            f"timestamps has {ts.shape[0]} entries but customer_ids has {ids.shape[0]}", field="timestamps"
        )
    if np.isnat(ts).any():
        raise CLVInputError(f"timestamps[{int(np.argmax(np.isnat(ts)))}] is NaT", field="timestamps")
    if amounts is None:
        amt = np.zeros(ids.shape[0], dtype=np.float64)
    else:
        amt = np.asarray(amounts, dtype=np.float64)
        if amt.shape != ids.shape:
            raise CLVInputError(
                f"amounts has {amt.shape[0]} entries but customer_ids has {ids.shape[0]}", field="amounts"
            )
        bad = ~np.isfinite(amt) | (amt < 0)
        if bad.any():
            i = int(np.argmax(bad))
            raise CLVInputError(
                f"amounts[{i}] = {amt[i]!r} is not a finite non-negative amount", field="amounts"
            )
    end = _end_to_datetime64(observation_end, "observation_end")

    shift = np.int64(round(utc_offset_hours * 3_600 * 1_000_000_000))
    ns = ts.astype(np.int64) + shift
    end_ns = np.int64(end.astype(np.int64)) + shift
    keep = ns <= end_ns if bucket == "none" else (ns // _NS_PER_DAY) <= (end_ns // _NS_PER_DAY)
    ids, ns, amt = ids[keep], ns[keep], amt[keep]

    if bucket == "day":
        # Integer day numbers make same-day purchases identical keys, so they merge below.
        tick = ns // _NS_PER_DAY
        end_tick = end_ns // _NS_PER_DAY
        ticks_per_period = float(period_days)
    else:
        tick = ns
        end_tick = end_ns
        ticks_per_period = float(period_days) * _NS_PER_DAY

    uniq_ids, cust = np.unique(ids, return_inverse=True)
    n_cust = uniq_ids.shape[0]
    if n_cust == 0:
        empty_f = np.zeros(0, dtype=np.float64)
        return RFMSummary(
            uniq_ids, np.zeros(0, dtype=np.int64), empty_f, empty_f.copy(), empty_f.copy(), period_days
        )

    t_min = int(tick.min())
    span = int(tick.max()) - t_min + 1
    if n_cust * span < 2**62:
        # One int64 sort key (customer, tick) sorts several times faster than a two-key lexsort.
        order = np.argsort(cust.astype(np.int64) * span + (tick - t_min))
    else:
        order = np.lexsort((tick, cust))
    cust, tick, amt = cust[order], tick[order], amt[order]
    # One row per (customer, tick): the first row of each run of equal keys.
    new_key = np.empty(cust.shape[0], dtype=bool)
    new_key[0] = True
    np.not_equal(cust[1:], cust[:-1], out=new_key[1:])
    new_key[1:] |= tick[1:] != tick[:-1]
    starts = np.flatnonzero(new_key)
    p_cust = cust[starts]
    p_tick = tick[starts]
    p_amt = np.add.reduceat(amt, starts)

    counts = np.bincount(p_cust, minlength=n_cust)
    first_idx = np.concatenate(([0], np.cumsum(counts)[:-1]))
    last_idx = first_idx + counts - 1
    first_tick = p_tick[first_idx]
    last_tick = p_tick[last_idx]
    frequency = (counts - 1).astype(np.int64)
    total = np.bincount(p_cust, weights=p_amt, minlength=n_cust)
    repeat_total = total - p_amt[first_idx]
    monetary = np.divide(repeat_total, frequency, out=np.zeros(n_cust), where=frequency > 0)

    recency = (last_tick - first_tick).astype(np.float64) / ticks_per_period
    T = (end_tick - first_tick).astype(np.float64) / ticks_per_period
    return RFMSummary(uniq_ids, frequency, recency, T, monetary, float(period_days))


def rfm_summary_from_records(
    records: Iterable[tuple[Any, datetime, int | float]],
    *,
    observation_end: datetime,
    period_days: float = 1.0,
    bucket: Literal["day", "none"] = "day",
    utc_offset_hours: float = 0.0,
) -> RFMSummary:
    """Same as :func:`rfm_summary` for a list of ``(customer_id, aware datetime, amount_fen)`` tuples."""
    rows = list(records)
    for i, row in enumerate(rows):
        if len(row) != 3:
            raise CLVInputError(
                f"records[{i}] has {len(row)} fields, expected (customer_id, time, amount)", field="records"
            )
    ids = np.array([r[0] for r in rows])
    times = [r[1] for r in rows]
    amounts = np.array([r[2] for r in rows], dtype=np.float64) if rows else np.zeros(0)
    return rfm_summary(
        ids,
        times,
        amounts,
        observation_end=observation_end,
        period_days=period_days,
        bucket=bucket,
        utc_offset_hours=utc_offset_hours,
    )
