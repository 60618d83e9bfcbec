"""Benchmark: fit BG/NBD + Gamma-Gamma on 1,000,000 synthetic customers.

Data: drawn (fixed seed) from the models' own generative process with CDNOW-like
parameters; customers were acquired on whole days over two years, times in weeks, money
in fen.  Timed: both maximum-likelihood fits as siyu runs them (BG/NBD on aggregated
(x, t_x, T) rows with the analytic gradient; Gamma-Gamma with the analytic gradient).
Baseline, measured in the same run on the same data: ``unaggregated_numgrad``, the same
likelihoods fitted row by row with L-BFGS-B's finite-difference gradient (what a direct port
of the formulas does).  ``--quick`` uses 100,000 customers.

    python bench/clv_fit.py [--quick]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from siyu.analytics.clv import (
    BGNBDParams,
    GammaGammaParams,
    RFMSummary,
    customer_value_arrays,
    fit_bgnbd,
    fit_gamma_gamma,
)
from siyu.analytics.clv_simulate import simulate_customers

SEED = 20_050_401
TRUE_BG = BGNBDParams(r=0.243, alpha=4.414, a=0.793, b=2.426)
TRUE_GG = GammaGammaParams(p=6.25, q=3.74, gamma=1544.0)


def main() -> None:
    """Run the benchmark and print figures, the headline last."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100,000 customers instead of 1,000,000")
    args = parser.parse_args()
    n = 100_000 if args.quick else 1_000_000
    label = "100k" if args.quick else "1m"

    rng = np.random.default_rng(SEED)
    t0 = time.perf_counter()
    big_t = rng.integers(1, 731, size=n) / 7.0
    sim = simulate_customers(TRUE_BG, big_t, rng, TRUE_GG, time_resolution=1 / 7)
    gen_s = time.perf_counter() - t0
    buyers = int((sim.frequency > 0).sum())
    print(
        f"customers={n} repeat_buyers={buyers} max_frequency={int(sim.frequency.max())} generate_s={gen_s:.2f}"
    )

    t0 = time.perf_counter()
    bg = fit_bgnbd(sim.frequency, sim.recency, sim.T)
    bg_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    gg = fit_gamma_gamma(sim.frequency, sim.monetary_value)
    gg_s = time.perf_counter() - t0
    fit_s = bg_s + gg_s

    print(
        f"bgnbd unique_rows={bg.n_unique_rows} iterations={bg.iterations} converged={bg.converged} s={bg_s:.2f}"
    )
    for name in ("r", "alpha", "a", "b"):
        print(f"  {name:6s} true={getattr(TRUE_BG, name):9.4f} fitted={getattr(bg.params, name):9.4f}")
    print(
        f"gamma_gamma customers={gg.n_customers} iterations={gg.iterations} converged={gg.converged} s={gg_s:.2f}"
    )
    for name in ("p", "q", "gamma"):
        print(f"  {name:6s} true={getattr(TRUE_GG, name):9.4f} fitted={getattr(gg.params, name):9.4f}")

    summary = RFMSummary(
        customer_ids=np.arange(n),
        frequency=sim.frequency,
        recency=sim.recency,
        T=sim.T,
        monetary_value=sim.monetary_value,
        period_days=7.0,
    )
    t0 = time.perf_counter()
    values = customer_value_arrays(
        summary, bg.params, gg.params, horizon_months=12, monthly_discount_rate=0.01
    )
    clv_s = time.perf_counter() - t0
    print(
        f"clv_12m customers={n} mean_clv_fen={values.clv_fen.mean():.0f} "
        f"mean_expected_purchases={values.expected_purchases.mean():.3f} s={clv_s:.2f}"
    )

    t0 = time.perf_counter()
    base_bg = fit_bgnbd(sim.frequency, sim.recency, sim.T, aggregate=False, use_gradient=False)
    base_gg = fit_gamma_gamma(sim.frequency, sim.monetary_value, use_gradient=False)
    base_s = time.perf_counter() - t0
    print(
        f"baseline unaggregated_numgrad s={base_s:.2f} "
        f"(bgnbd ll diff={bg.log_likelihood - base_bg.log_likelihood:+.3f}, "
        f"gamma_gamma ll diff={gg.log_likelihood - base_gg.log_likelihood:+.3f})"
    )
    print(f"ratio_vs_unaggregated_numgrad={base_s / fit_s:.1f}")
    print(f"fit_{label}_s={fit_s:.2f}")


if __name__ == "__main__":
    main()
