"""Customer lifetime value: BG/NBD purchases x Gamma-Gamma spend, discounted monthly.

Pipeline: :func:`rfm_summary` on raw orders (amounts in fen) -> :func:`fit_clv` ->
:func:`customer_values` (one :class:`CustomerValue` per customer, money in integer fen)
for writing back to customer profiles.  The models live in ``clv_bgnbd`` and
``clv_gamma_gamma``; they use numpy/scipy only (``lifetimes`` is archived, pymc is heavy).

CLV formula (the one ``lifetimes.customer_lifetime_value`` uses), for a horizon of M months,
a monthly discount rate d and L = the length of a month in the model's time unit::

    CLV_i = sum_{m=1..M} aov_i * (E[Y_i(m L)] - E[Y_i((m-1) L)]) / (1 + d)^m

where E[Y_i(t)] is the BG/NBD expected number of purchases of customer i in (T_i, T_i + t]
given their history, and aov_i the Gamma-Gamma expected value of one of their future
orders.  A month is 365.25/12 = 30.4375 days.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from siyu.analytics.clv_bgnbd import (
    BGNBDFit,
    BGNBDParams,
    aggregate_rows,
    conditional_expected_purchases,
    expected_purchases,
    fit_bgnbd,
    probability_alive,
)
from siyu.analytics.clv_gamma_gamma import (
    GammaGammaFit,
    GammaGammaParams,
    conditional_expected_average_value,
    fit_gamma_gamma,
)
from siyu.analytics.clv_rfm import CLVInputError, RFMSummary, rfm_summary, rfm_summary_from_records

__all__ = [
    "DAYS_PER_MONTH",
    "BGNBDFit",
    "BGNBDParams",
    "CLVArrays",
    "CLVInputError",
    "CustomerValue",
    "GammaGammaFit",
    "GammaGammaParams",
    "RFMSummary",
    "aggregate_rows",
    "conditional_expected_average_value",
    "conditional_expected_purchases",
    "customer_value_arrays",
    "customer_values",
    "expected_purchases",
    "fit_bgnbd",
    "fit_clv",
    "fit_gamma_gamma",
    "probability_alive",
    "rfm_summary",
    "rfm_summary_from_records",
]

DAYS_PER_MONTH = 365.25 / 12


@dataclass(frozen=True, slots=True)
class CustomerValue:
    """Model outputs for one customer, ready to store on their profile."""

    customer_id: Any
    expected_purchases: float  # over the horizon
    p_alive: float
    expected_aov_fen: int
    clv_fen: int


@dataclass(frozen=True, slots=True)
class CLVArrays:
    """Column form of :class:`CustomerValue` for bulk writes; money already rounded to fen."""

    customer_ids: NDArray[Any]
    expected_purchases: NDArray[np.float64]
    p_alive: NDArray[np.float64]
    expected_aov_fen: NDArray[np.int64]
    clv_fen: NDArray[np.int64]


def fit_clv(summary: RFMSummary) -> tuple[BGNBDFit, GammaGammaFit]:
    """Fit BG/NBD on every customer and Gamma-Gamma on those with repeat purchases of positive value.

    Repeat buyers whose repeat orders were all free (mean 0 fen) carry no spend information
    the Gamma-Gamma model can use, so they are left out of that fit only.
    """
    bg = fit_bgnbd(summary.frequency, summary.recency, summary.T)
    spend = (summary.frequency > 0) & (summary.monetary_value > 0)
    gg = fit_gamma_gamma(summary.frequency[spend], summary.monetary_value[spend])
    return bg, gg


def customer_value_arrays(
    summary: RFMSummary,
    bgnbd: BGNBDParams,
    gamma_gamma: GammaGammaParams,
    *,
    horizon_months: int = 12,
    monthly_discount_rate: float = 0.01,
) -> CLVArrays:
    """Expected purchases, P(alive), expected order value and discounted CLV for every customer."""
    if not isinstance(horizon_months, int) or horizon_months < 1:
        raise CLVInputError(
            f"horizon_months must be a positive integer, got {horizon_months!r}", field="horizon_months"
        )
    if not (np.isfinite(monthly_discount_rate) and monthly_discount_rate > -1.0):
        raise CLVInputError(
            f"monthly_discount_rate must be > -1, got {monthly_discount_rate!r}",
            field="monthly_discount_rate",
        )
    x, t_x, big_t = summary.frequency, summary.recency, summary.T
    month = DAYS_PER_MONTH / summary.period_days
    aov = conditional_expected_average_value(gamma_gamma, x, summary.monetary_value)
    # Customers that a month never changes share one curve, so evaluate each unique row once.
    ux, ut, uT, _, inverse = aggregate_rows(x, t_x, big_t)

    discounted_purchases = np.zeros(ux.shape[0])
    previous = np.zeros(ux.shape[0])
    for m in range(1, horizon_months + 1):
        cumulative = conditional_expected_purchases(bgnbd, m * month, ux, ut, uT)
        discounted_purchases += (cumulative - previous) / (1.0 + monthly_discount_rate) ** m
        previous = cumulative
    p_alive = probability_alive(bgnbd, ux, ut, uT)
    clv = aov * discounted_purchases[inverse]
    return CLVArrays(
        customer_ids=summary.customer_ids,
        expected_purchases=previous[inverse],
        p_alive=p_alive[inverse],
        expected_aov_fen=np.rint(aov).astype(np.int64),
        clv_fen=np.rint(clv).astype(np.int64),
    )


def customer_values(
    summary: RFMSummary,
    bgnbd: BGNBDParams,
    gamma_gamma: GammaGammaParams,
    *,
    horizon_months: int = 12,
    monthly_discount_rate: float = 0.01,
) -> list[CustomerValue]:
    """One :class:`CustomerValue` per customer of ``summary`` (see the module docstring for the formula)."""
    arr = customer_value_arrays(
        summary,
        bgnbd,
        gamma_gamma,
        horizon_months=horizon_months,
        monthly_discount_rate=monthly_discount_rate,
    )
    return [
        CustomerValue(
            customer_id=cid.item() if isinstance(cid, np.generic) else cid,
            expected_purchases=float(e),
            p_alive=float(p),
            expected_aov_fen=int(a),
            clv_fen=int(c),
        )
        for cid, e, p, a, c in zip(
            arr.customer_ids,
            arr.expected_purchases,
            arr.p_alive,
            arr.expected_aov_fen,
            arr.clv_fen,
            strict=True,
        )
    ]
