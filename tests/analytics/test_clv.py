"""CLV models: CDNOW published estimates, gradients, closed forms, properties, recovery."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import special

from siyu.analytics import clv_bgnbd, clv_gamma_gamma
from siyu.analytics.clv import (
    DAYS_PER_MONTH,
    BGNBDParams,
    CLVInputError,
    CustomerValue,
    GammaGammaParams,
    RFMSummary,
    conditional_expected_average_value,
    conditional_expected_purchases,
    customer_value_arrays,
    customer_values,
    expected_purchases,
    fit_bgnbd,
    fit_clv,
    fit_gamma_gamma,
    probability_alive,
    rfm_summary,
    rfm_summary_from_records,
)
from siyu.analytics.clv_simulate import simulate_customers

DATA = Path(__file__).resolve().parents[1] / "data"
CAL_END = np.datetime64("1997-09-30")


def _sig3(value: float) -> float:
    return float(f"{value:.3g}")


@pytest.fixture(scope="module")
def cdnow_transactions() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    raw = np.loadtxt(DATA / "cdnow_sample.txt")
    ids = raw[:, 1].astype(np.int64)
    dates = raw[:, 2].astype(np.int64).astype(str)
    ts = np.array([f"{d[:4]}-{d[4:6]}-{d[6:]}" for d in dates], dtype="datetime64[ns]")
    cents = np.rint(raw[:, 4] * 100).astype(np.int64)
    return ids, ts, cents


@pytest.fixture(scope="module")
def cdnow(cdnow_transactions: tuple[np.ndarray, np.ndarray, np.ndarray]) -> RFMSummary:
    ids, ts, cents = cdnow_transactions
    return rfm_summary(ids, ts, cents, observation_end=CAL_END, period_days=7.0)


# --- CDNOW: data preparation and published estimates ------------------------------------------


def test_cdnow_summary_rebuilt_from_raw_transactions(cdnow: RFMSummary) -> None:
    ref = np.loadtxt(DATA / "cdnow_sample_summary.csv", delimiter=",", skiprows=1)
    assert len(cdnow) == 2357
    np.testing.assert_array_equal(cdnow.customer_ids, ref[:, 0].astype(np.int64))
    np.testing.assert_array_equal(cdnow.frequency, ref[:, 1])
    # The reference file is rounded to 2 decimals.
    np.testing.assert_allclose(cdnow.recency, ref[:, 2], atol=0.005 + 1e-9)
    np.testing.assert_allclose(cdnow.T, ref[:, 3], atol=0.005 + 1e-9)
    np.testing.assert_allclose(cdnow.monetary_value / 100, ref[:, 4], atol=0.005 + 1e-9)
    assert int((cdnow.frequency > 0).sum()) == 946
    # Customer 1: bought 1997-01-01, -01-18, -08-02 inside the calibration period.
    assert cdnow.T[0] == pytest.approx(272 / 7)
    assert cdnow.recency[0] == pytest.approx(213 / 7)
    assert cdnow.monetary_value[0] == pytest.approx((2973 + 1496) / 2)


def test_cdnow_bgnbd_matches_published_estimates(cdnow: RFMSummary) -> None:
    fit = fit_bgnbd(cdnow.frequency, cdnow.recency, cdnow.T)
    p = fit.params
    assert fit.converged, fit.message
    assert (_sig3(p.r), _sig3(p.alpha), _sig3(p.a), _sig3(p.b)) == (0.243, 4.41, 0.793, 2.43)
    # The paper prints 4 significant figures for alpha and b.
    assert round(p.alpha, 3) == 4.414 and round(p.b, 3) == 2.426
    assert round(fit.log_likelihood, 1) == -9582.4
    assert fit.n_customers == 2357 and fit.n_unique_rows < 2357


def test_cdnow_gamma_gamma_matches_published_estimates(cdnow: RFMSummary) -> None:
    fit = fit_gamma_gamma(cdnow.frequency, cdnow.monetary_value)
    p = fit.params
    assert fit.converged, fit.message
    assert fit.n_customers == 946
    assert (_sig3(p.p), _sig3(p.q)) == (6.25, 3.74)
    # Money went in as cents, so gamma comes out in cents: published 15.44 dollars.
    assert round(p.gamma / 100, 2) == 15.44


def test_cdnow_same_day_purchases_must_merge(
    cdnow_transactions: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> None:
    ids, ts, cents = cdnow_transactions
    # Spread same-day records one second apart so each counts on its own.
    order = np.lexsort((ts, ids))
    rank = np.zeros(ids.shape[0], dtype=np.int64)
    for prev, cur in itertools.pairwise(order):
        if ids[cur] == ids[prev] and ts[cur] == ts[prev]:
            rank[cur] = rank[prev] + 1
    spread = ts + rank.astype("timedelta64[s]")
    unmerged = rfm_summary(
        ids,
        spread,
        cents,
        observation_end=np.datetime64("1997-09-30T23:59:59"),
        period_days=7.0,
        bucket="none",
    )
    fit = fit_bgnbd(unmerged.frequency, unmerged.recency, unmerged.T)
    assert int((unmerged.frequency > 0).sum()) > 946
    assert fit.log_likelihood < -9700  # far from the published -9582.4


def test_cdnow_worked_example_conditional_expectation() -> None:
    # Fader & Hardie's BG/NBD Excel note: x=2, t_x=30.43, T=38.86 expects 1.226 purchases in 39 weeks.
    p = BGNBDParams(r=0.2426, alpha=4.4136, a=0.7929, b=2.4259)
    assert round(float(conditional_expected_purchases(p, 39, 2, 30.43, 38.86)), 3) == 1.226


# --- gradients and closed forms ---------------------------------------------------------------


def _central_diff(f, theta: np.ndarray, h: float = 1e-6) -> np.ndarray:
    out = np.empty_like(theta)
    for i in range(theta.shape[0]):
        e = np.zeros_like(theta)
        e[i] = h
        out[i] = (f(theta + e) - f(theta - e)) / (2 * h)
    return out


@pytest.mark.parametrize("theta", [[0.0, 0.0, 0.0, 0.0], [-1.4, 1.5, -0.2, 0.9], [1.2, -0.5, 2.0, -1.0]])
def test_bgnbd_gradient_matches_finite_differences(cdnow: RFMSummary, theta: list[float]) -> None:
    x, t_x, big_t, w, _ = clv_bgnbd.aggregate_rows(cdnow.frequency, cdnow.recency, cdnow.T)
    th = np.array(theta)
    _, grad = clv_bgnbd.negative_log_likelihood_and_grad(th, x, t_x, big_t, w)
    num = _central_diff(lambda v: clv_bgnbd.negative_log_likelihood_and_grad(v, x, t_x, big_t, w)[0], th)
    np.testing.assert_allclose(grad, num, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("theta", [[0.0, 0.7, 7.0], [1.8, 1.3, 7.3], [-0.5, 0.2, 5.0]])
def test_gamma_gamma_gradient_matches_finite_differences(cdnow: RFMSummary, theta: list[float]) -> None:
    keep = cdnow.frequency > 0
    x, z = cdnow.frequency[keep].astype(float), cdnow.monetary_value[keep]
    args = (x, np.log(x), z, np.log(z))
    th = np.array(theta)
    _, grad = clv_gamma_gamma.negative_log_likelihood_and_grad(th, *args)
    num = _central_diff(lambda v: clv_gamma_gamma.negative_log_likelihood_and_grad(v, *args)[0], th)
    np.testing.assert_allclose(grad, num, rtol=1e-5, atol=1e-7)


def test_aggregation_does_not_change_the_fit(cdnow: RFMSummary) -> None:
    agg = fit_bgnbd(cdnow.frequency, cdnow.recency, cdnow.T)
    raw = fit_bgnbd(cdnow.frequency, cdnow.recency, cdnow.T, aggregate=False)
    assert raw.n_unique_rows == 2357
    assert agg.log_likelihood == pytest.approx(raw.log_likelihood, abs=1e-6)
    for name in ("r", "alpha", "a", "b"):
        assert getattr(agg.params, name) == pytest.approx(getattr(raw.params, name), rel=1e-4)
    assert clv_bgnbd.log_likelihood(agg.params, cdnow.frequency, cdnow.recency, cdnow.T) == pytest.approx(
        agg.log_likelihood
    )


def test_p_alive_is_one_without_repeat_purchases_and_matches_likelihood_split() -> None:
    p = BGNBDParams(r=0.5, alpha=3.0, a=0.8, b=2.5)
    assert probability_alive(p, [0, 0], [0, 0], [1.0, 80.0]).tolist() == [1.0, 1.0]
    x, t_x, big_t = 3.0, 10.0, 30.0
    # P(alive) is the share of the "still alive at T" term in the two-term likelihood.
    alive = special.betaln(p.a, p.b + x) - (p.r + x) * np.log(p.alpha + big_t)
    dead = special.betaln(p.a + 1, p.b + x - 1) - (p.r + x) * np.log(p.alpha + t_x)
    expected = 1 / (1 + np.exp(dead - alive))
    assert float(probability_alive(p, x, t_x, big_t)) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("x", [0, 1, 4, 12])
def test_conditional_expectation_equals_untransformed_formula(x: int) -> None:
    p = BGNBDParams(r=0.24, alpha=4.4, a=0.79, b=2.43)
    t_x, big_t, t = (0.0 if x == 0 else 20.0), 38.0, 52.0
    z = t / (p.alpha + big_t + t)
    direct = (
        (p.a + p.b + x - 1)
        / (p.a - 1)
        * (
            1
            - ((p.alpha + big_t) / (p.alpha + big_t + t)) ** (p.r + x)
            * special.hyp2f1(p.r + x, p.b + x, p.a + p.b + x - 1, z)
        )
    )
    if x > 0:
        direct /= 1 + p.a / (p.b + x - 1) * ((p.alpha + big_t) / (p.alpha + t_x)) ** (p.r + x)
    assert float(conditional_expected_purchases(p, t, x, t_x, big_t)) == pytest.approx(direct, rel=1e-9)


def test_heavy_buyer_expectation_is_finite_and_close_to_their_rate() -> None:
    p = BGNBDParams(r=0.24, alpha=4.4, a=0.79, b=2.43)
    # 600 purchases in 100 weeks, the last one just now: P(alive) ~ 1, rate ~ 6 a week.
    e = float(conditional_expected_purchases(p, 10.0, 600, 100.0, 100.0))
    assert np.isfinite(e)
    assert 50 < e < 62


@pytest.mark.parametrize(
    ("params", "t", "reference"),
    [
        # c - a - b an integer (r + 1 - a = 0) with z = 0.9994: scipy's hyp2f1 alone is off by 40x here.
        (BGNBDParams(r=0.05, alpha=0.05, a=1.05, b=7.35), 79.0, 4.441115551739976),
        (BGNBDParams(r=0.25, alpha=0.4, a=0.25, b=2.4), 252.0, 54.06743236371539),
    ],
)
def test_unconditional_expectation_at_degenerate_points(
    params: BGNBDParams, t: float, reference: float
) -> None:
    # References: eq. 9 evaluated with mpmath at 40 digits.
    assert float(expected_purchases(params, t)) == pytest.approx(reference, rel=1e-7)


def test_unconditional_expectation_matches_simulation() -> None:
    params = BGNBDParams(r=0.5, alpha=6.0, a=1.6, b=3.0)
    rng = np.random.default_rng(11)
    sim = simulate_customers(params, np.full(200_000, 52.0), rng)
    mean = sim.frequency.mean()
    se = sim.frequency.std() / np.sqrt(sim.frequency.shape[0])
    assert abs(mean - float(expected_purchases(params, 52.0))) < 4 * se


# --- properties -------------------------------------------------------------------------------

positive = st.floats(min_value=0.05, max_value=20.0, allow_nan=False)


@settings(max_examples=60, deadline=None)
@given(
    r=positive,
    alpha=positive,
    a=positive.filter(lambda v: abs(v - 1) > 1e-3),
    b=positive,
    x=st.integers(min_value=0, max_value=60),
    big_t=st.floats(min_value=0.5, max_value=200.0),
    frac=st.floats(min_value=0.0, max_value=1.0),
    t=st.floats(min_value=0.1, max_value=100.0),
)
def test_predictions_are_sane(
    r: float, alpha: float, a: float, b: float, x: int, big_t: float, frac: float, t: float
) -> None:
    p = BGNBDParams(r=r, alpha=alpha, a=a, b=b)
    t_x = 0.0 if x == 0 else frac * big_t
    alive = float(probability_alive(p, x, t_x, big_t))
    assert 0.0 <= alive <= 1.0
    e1, e2 = conditional_expected_purchases(p, [t, 2 * t], x, t_x, big_t)
    assert np.isfinite(e1) and e1 >= -1e-9
    assert e2 >= e1 - 1e-9 * max(1.0, abs(e1))
    # Longer silence (larger T for the same history) can only lower P(alive).
    assert float(probability_alive(p, x, t_x, big_t + 5.0)) <= alive + 1e-12
    u = expected_purchases(p, [t, 2 * t])
    assert 0.0 <= u[0] <= u[1] + 1e-9


@settings(max_examples=40, deadline=None)
@given(
    p=positive,
    q=st.floats(min_value=1.05, max_value=20.0),
    gamma=st.floats(min_value=1.0, max_value=1e5),
    x=st.integers(min_value=0, max_value=50),
    zbar=st.floats(min_value=1.0, max_value=1e6),
)
def test_expected_order_value_between_prior_mean_and_own_mean(
    p: float, q: float, gamma: float, x: int, zbar: float
) -> None:
    params = GammaGammaParams(p=p, q=q, gamma=gamma)
    prior = p * gamma / (q - 1)
    value = float(conditional_expected_average_value(params, x, zbar))
    if x == 0:
        assert value == pytest.approx(prior)
    else:
        # The conditional mean is a weighted average of the population mean and the customer's own mean.
        lo, hi = min(prior, zbar), max(prior, zbar)
        assert lo * (1 - 1e-9) <= value <= hi * (1 + 1e-9)


# --- recovery on synthetic data ---------------------------------------------------------------


def test_synthetic_parameters_are_recovered() -> None:
    true_bg = BGNBDParams(r=0.4, alpha=5.0, a=0.9, b=3.0)
    true_gg = GammaGammaParams(p=5.0, q=4.0, gamma=1500.0)
    rng = np.random.default_rng(2024)
    big_t = rng.integers(28, 365, size=50_000) / 7.0
    sim = simulate_customers(true_bg, big_t, rng, true_gg)
    bg = fit_bgnbd(sim.frequency, sim.recency, sim.T)
    gg = fit_gamma_gamma(sim.frequency, sim.monetary_value)
    for name in ("r", "alpha", "a", "b"):
        assert getattr(bg.params, name) == pytest.approx(getattr(true_bg, name), rel=0.2), name
    for name in ("p", "q", "gamma"):
        assert getattr(gg.params, name) == pytest.approx(getattr(true_gg, name), rel=0.2), name
    # P(alive) should separate the simulated living from the dead among repeat buyers.
    buyers = sim.frequency > 0
    pa = probability_alive(bg.params, sim.frequency, sim.recency, sim.T)[buyers]
    assert pa[sim.alive[buyers]].mean() > pa[~sim.alive[buyers]].mean() + 0.2


# --- rfm_summary ------------------------------------------------------------------------------


def test_rfm_summary_from_records_hand_example() -> None:
    d = datetime(2024, 1, 1, 10, tzinfo=UTC)
    end = datetime(2024, 1, 31, 23, tzinfo=UTC)
    records = [
        ("a", d, 1000),
        ("a", d + timedelta(hours=3), 500),  # same day: merges into the first purchase
        ("a", d + timedelta(days=10), 2000),
        ("a", d + timedelta(days=20), 4000),
        ("a", d + timedelta(days=40), 9999),  # after the end: ignored
        ("b", d + timedelta(days=5), 700),
        ("c", d + timedelta(days=45), 100),  # first purchase after the end: left out
    ]
    s = rfm_summary_from_records(records, observation_end=end)
    assert s.customer_ids.tolist() == ["a", "b"]
    assert s.frequency.tolist() == [2, 0]
    assert s.recency.tolist() == [20.0, 0.0]
    assert s.T.tolist() == [30.0, 25.0]
    assert s.monetary_value.tolist() == [3000.0, 0.0]
    weekly = rfm_summary_from_records(records, observation_end=end, period_days=7.0)
    assert weekly.T.tolist() == pytest.approx([30 / 7, 25 / 7])


def test_rfm_summary_day_boundaries_follow_the_offset() -> None:
    # 15:30 and 16:30 UTC are the same UTC day but different Asia/Shanghai (UTC+8) days.
    t1 = datetime(2024, 3, 1, 15, 30, tzinfo=UTC)
    t2 = datetime(2024, 3, 1, 16, 30, tzinfo=UTC)
    end = datetime(2024, 3, 10, tzinfo=timezone(timedelta(hours=8)))
    utc = rfm_summary(["x", "x"], [t1, t2], [100, 200], observation_end=end)
    cst = rfm_summary(["x", "x"], [t1, t2], [100, 200], observation_end=end, utc_offset_hours=8)
    assert utc.frequency.tolist() == [0]
    assert cst.frequency.tolist() == [1] and cst.monetary_value.tolist() == [200.0]


def test_rfm_summary_is_vectorised_over_many_customers() -> None:
    rng = np.random.default_rng(5)
    n = 200_000
    ids = rng.integers(0, 50_000, size=n)
    ts = np.datetime64("2024-01-01") + rng.integers(0, 365, size=n).astype("timedelta64[D]")
    amounts = rng.integers(100, 10_000, size=n)
    s = rfm_summary(ids, ts, amounts, observation_end=np.datetime64("2024-12-31"))
    # Cross-check a few customers against a direct computation.
    for cid in s.customer_ids[:: max(1, len(s) // 7)]:
        mask = ids == cid
        days = np.unique(ts[mask])
        i = int(np.searchsorted(s.customer_ids, cid))
        assert s.frequency[i] == days.shape[0] - 1
        assert s.recency[i] == (days[-1] - days[0]).astype(int)
        if days.shape[0] > 1:
            first_day_total = amounts[mask & (ts == days[0])].sum()
            assert s.monetary_value[i] == pytest.approx(
                (amounts[mask].sum() - first_day_total) / (days.shape[0] - 1)
            )


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"timestamps": [datetime(2024, 1, 1)]}, "timestamps"),  # naive
        ({"timestamps": ["2024-01-01"]}, "timestamps"),
        ({"amounts": [-5]}, "amounts"),
        ({"amounts": [1, 2]}, "amounts"),
        ({"period_days": 0}, "period_days"),
    ],
)
def test_rfm_summary_rejects_bad_input(kwargs: dict[str, object], field: str) -> None:
    args: dict[str, object] = {
        "customer_ids": ["a"],
        "timestamps": [datetime(2024, 1, 1, tzinfo=UTC)],
        "amounts": [100],
        "observation_end": datetime(2024, 2, 1, tzinfo=UTC),
    }
    args.update(kwargs)
    with pytest.raises(CLVInputError) as err:
        rfm_summary(**args)  # type: ignore[arg-type]
    assert err.value.field == field


def test_fits_reject_bad_input() -> None:
    with pytest.raises(CLVInputError, match="recency"):
        fit_bgnbd([1], [5.0], [3.0])
    with pytest.raises(CLVInputError, match="frequency"):
        fit_bgnbd([-1], [0.0], [3.0])
    with pytest.raises(CLVInputError, match="zero customers"):
        fit_bgnbd([], [], [])
    with pytest.raises(CLVInputError, match="positive spend"):
        fit_gamma_gamma([1, 2, 3], [100.0, 0.0, 50.0])
    with pytest.raises(CLVInputError, match=r"q = 0\.9"):
        conditional_expected_average_value(GammaGammaParams(p=1, q=0.9, gamma=10), 1, 10.0)


# --- CLV --------------------------------------------------------------------------------------


def test_clv_follows_the_discounted_monthly_formula(cdnow: RFMSummary) -> None:
    bg, gg = fit_clv(cdnow)
    values = customer_values(cdnow, bg.params, gg.params, horizon_months=12, monthly_discount_rate=0.01)
    assert len(values) == 2357 and isinstance(values[0], CustomerValue)
    assert all(isinstance(v.clv_fen, int) and isinstance(v.expected_aov_fen, int) for v in values[:10])
    month = DAYS_PER_MONTH / 7.0
    for i in (0, 2, 100, 1500):
        x, t_x, big_t = cdnow.frequency[i], cdnow.recency[i], cdnow.T[i]
        aov = float(conditional_expected_average_value(gg.params, x, cdnow.monetary_value[i]))
        cum = [0.0] + [
            float(conditional_expected_purchases(bg.params, m * month, x, t_x, big_t)) for m in range(1, 13)
        ]
        clv = sum(aov * (cum[m] - cum[m - 1]) / 1.01**m for m in range(1, 13))
        v = values[i]
        assert v.customer_id == int(cdnow.customer_ids[i])
        assert v.clv_fen == round(clv)
        assert v.expected_aov_fen == round(aov)
        assert v.expected_purchases == pytest.approx(cum[12])
        assert v.p_alive == pytest.approx(float(probability_alive(bg.params, x, t_x, big_t)))


def test_clv_falls_with_the_discount_rate_and_grows_with_the_horizon(cdnow: RFMSummary) -> None:
    bg, gg = fit_clv(cdnow)
    base = customer_value_arrays(cdnow, bg.params, gg.params)
    steep = customer_value_arrays(cdnow, bg.params, gg.params, monthly_discount_rate=0.05)
    longer = customer_value_arrays(cdnow, bg.params, gg.params, horizon_months=24)
    assert (steep.clv_fen <= base.clv_fen).all() and steep.clv_fen.sum() < base.clv_fen.sum()
    assert (longer.clv_fen >= base.clv_fen).all() and longer.clv_fen.sum() > base.clv_fen.sum()
    with pytest.raises(CLVInputError):
        customer_value_arrays(cdnow, bg.params, gg.params, horizon_months=0)
