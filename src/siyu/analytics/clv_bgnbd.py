"""BG/NBD repeat-purchase model (Fader, Hardie & Lee 2005, "Counting your customers the easy way").

While alive, a customer buys as a Poisson process with rate lambda ~ Gamma(r, alpha) (alpha is
a rate); after each repeat purchase they drop out for good with probability p ~ Beta(a, b).
Fitted by maximum likelihood on log-parameters with an analytic gradient; identical
(frequency, recency, T) rows are collapsed into weights first, which is what makes a
million customers cheap when times are whole days.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import optimize, special

from siyu.analytics.clv_rfm import CLVInputError

FloatArray = NDArray[np.float64]

# Log-parameter box: wide enough for any real data set, narrow enough that exp() stays finite.
_LOG_BOUND = 18.0


@dataclass(frozen=True, slots=True)
class BGNBDParams:
    """Fitted BG/NBD parameters; ``alpha`` is in the summary's time unit."""

    r: float
    alpha: float
    a: float
    b: float


@dataclass(frozen=True, slots=True)
class BGNBDFit:
    """A fitted model with the diagnostics a caller needs to trust it."""

    params: BGNBDParams
    log_likelihood: float
    n_customers: int
    n_unique_rows: int
    iterations: int
    converged: bool
    message: str


def _check_rfm(
    frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
) -> tuple[FloatArray, FloatArray, FloatArray]:
    x = np.asarray(frequency, dtype=np.float64)
    t_x = np.asarray(recency, dtype=np.float64)
    big_t = np.asarray(T, dtype=np.float64)
    x, t_x, big_t = np.broadcast_arrays(x, t_x, big_t)
    for name, arr in (("frequency", x), ("recency", t_x), ("T", big_t)):
        bad = ~np.isfinite(arr) | (arr < 0)
        if bad.any():
            i = int(np.argmax(bad.ravel()))
            raise CLVInputError(f"{name}[{i}] = {arr.ravel()[i]!r} must be finite and >= 0", field=name)
    if (x != np.floor(x)).any():
        raise CLVInputError("frequency must hold whole numbers of repeat purchases", field="frequency")
    if (t_x > big_t).any():
        i = int(np.argmax((t_x > big_t).ravel()))
        raise CLVInputError(
            f"recency[{i}] exceeds T[{i}]: a purchase after the end of observation", field="recency"
        )
    if ((x == 0) & (t_x != 0)).any():
        raise CLVInputError("recency must be 0 where frequency is 0", field="recency")
    return x, t_x, big_t


def aggregate_rows(
    frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray, NDArray[np.int64]]:
    """Collapse identical (frequency, recency, T) rows: unique rows, their counts, and each input row's index."""
    x, t_x, big_t = (
        np.ascontiguousarray(np.asarray(v, dtype=np.float64).ravel()) for v in (frequency, recency, T)
    )
    n = x.shape[0]
    if n == 0:
        return x, t_x, big_t, np.zeros(0), np.zeros(0, dtype=np.int64)
    order = np.lexsort((big_t, t_x, x))
    xs, ts, bs = x[order], t_x[order], big_t[order]
    new = np.empty(n, dtype=bool)
    new[0] = True
    new[1:] = (xs[1:] != xs[:-1]) | (ts[1:] != ts[:-1]) | (bs[1:] != bs[:-1])
    starts = np.flatnonzero(new)
    weights = np.diff(np.append(starts, n)).astype(np.float64)
    inverse = np.empty(n, dtype=np.int64)
    inverse[order] = np.cumsum(new) - 1
    return xs[starts], ts[starts], bs[starts], weights, inverse


def _ll_terms(
    theta: FloatArray,
    x: FloatArray,
    t_x: FloatArray,
    big_t: FloatArray,
    want_grad: bool,
    x_levels: tuple[FloatArray, NDArray[np.intp]] | None = None,
) -> tuple[FloatArray, FloatArray | None]:
    """Per-row log-likelihood and, optionally, its gradient w.r.t. (log r, log alpha, log a, log b).

    ``x_levels`` is ``np.unique(x, return_inverse=True)``; pass it when calling repeatedly.
    """
    r, alpha, a, b = np.exp(theta)
    ux, inv = np.unique(x, return_inverse=True) if x_levels is None else x_levels
    # Every gammaln/betaln/digamma here depends on x alone, so it is evaluated once per distinct
    # x (a few hundred at most) and gathered; only the time terms are computed per row.
    rep = ux > 0
    # betaln(a+1, b+x-1) needs b+x-1 > 0; x == 0 gets a dummy argument and a -inf term.
    uxm1 = np.where(rep, ux - 1.0, 0.0)
    lb_ab = special.betaln(a, b)
    u_common = special.gammaln(r + ux) - special.gammaln(r) + r * np.log(alpha)
    u_alive = special.betaln(a, b + ux) - lb_ab
    u_dead = np.where(rep, special.betaln(a + 1.0, b + uxm1) - lb_ab, -np.inf)
    rx = r + x
    log_a_t = np.log(alpha + big_t)
    log_a_tx = np.log(alpha + t_x)
    term1 = u_alive[inv] - rx * log_a_t
    term2 = u_dead[inv] - rx * log_a_tx
    # Stable log-sum-exp of the "alive at T" and "dropped after the last purchase" terms.
    ll = u_common[inv] + np.logaddexp(term1, term2)
    if not want_grad:
        return ll, None
    w2 = special.expit(term2 - term1)  # 0 where x == 0 (term2 = -inf)
    w1 = 1.0 - w2
    u_dr = special.digamma(r + ux) - special.digamma(r) + np.log(alpha)
    # d/da [betaln(a, b+x) - betaln(a, b)] = psi(a+b) - psi(a+b+x); the a+1 term adds 1/a.
    u_psi = special.digamma(a + b) - special.digamma(a + b + ux)
    psi_b = special.digamma(b)
    u_db1 = special.digamma(b + ux) - psi_b
    u_db2 = np.where(rep, special.digamma(b + uxm1) - psi_b, 0.0)
    psi_x = u_psi[inv]
    d_r = u_dr[inv] - w1 * log_a_t - w2 * log_a_tx
    d_alpha = r / alpha - rx * (w1 / (alpha + big_t) + w2 / (alpha + t_x))
    d_a = psi_x + w2 / a
    d_b = w1 * u_db1[inv] + w2 * u_db2[inv] + psi_x
    grad = np.stack([d_r * r, d_alpha * alpha, d_a * a, d_b * b])
    return ll, grad


def log_likelihood(
    params: BGNBDParams,
    frequency: ArrayLike,
    recency: ArrayLike,
    T: ArrayLike,
    weights: ArrayLike | None = None,
) -> float:
    """Total (weighted) BG/NBD log-likelihood of the data under ``params``."""
    x, t_x, big_t = _check_rfm(frequency, recency, T)
    theta = np.log([params.r, params.alpha, params.a, params.b])
    ll, _ = _ll_terms(theta, x.ravel(), t_x.ravel(), big_t.ravel(), want_grad=False)
    w = np.ones_like(ll) if weights is None else np.asarray(weights, dtype=np.float64).ravel()
    return float(np.dot(w, ll))


def negative_log_likelihood_and_grad(
    theta: FloatArray,
    x: FloatArray,
    t_x: FloatArray,
    big_t: FloatArray,
    weights: FloatArray,
    x_levels: tuple[FloatArray, NDArray[np.intp]] | None = None,
) -> tuple[float, FloatArray]:
    """Mean negative log-likelihood per customer and its gradient in log-parameter space."""
    ll, grad = _ll_terms(np.asarray(theta, dtype=np.float64), x, t_x, big_t, True, x_levels)
    assert grad is not None
    total = weights.sum()
    # Dividing by the customer count keeps the objective O(1) so tolerances mean the same at any size.
    return float(-np.dot(weights, ll) / total), -(grad @ weights) / total


def _initial_theta(x: FloatArray, t_x: FloatArray, big_t: FloatArray, w: FloatArray) -> FloatArray:
    rate = max(float(np.dot(w, x)) / max(float(np.dot(w, big_t)), 1e-12), 1e-6)
    # r = 1 with alpha = r / mean rate puts the Gamma mean on the observed purchase rate.
    return np.log(np.array([1.0, 1.0 / rate, 1.0, 1.0]))


def fit_bgnbd(
    frequency: ArrayLike,
    recency: ArrayLike,
    T: ArrayLike,
    *,
    aggregate: bool = True,
    use_gradient: bool = True,
    initial: BGNBDParams | None = None,
) -> BGNBDFit:
    """Fit BG/NBD by maximum likelihood (L-BFGS-B on log-parameters).

    ``aggregate=False`` and ``use_gradient=False`` exist for benchmarking the naive approach.
    """
    x, t_x, big_t = (v.ravel() for v in _check_rfm(frequency, recency, T))
    if x.shape[0] == 0:
        raise CLVInputError("cannot fit BG/NBD on zero customers", field="frequency")
    if aggregate:
        x, t_x, big_t, w, _ = aggregate_rows(x, t_x, big_t)
    else:
        w = np.ones_like(x)
    n_customers = int(w.sum())
    theta0 = (
        _initial_theta(x, t_x, big_t, w)
        if initial is None
        else np.log([initial.r, initial.alpha, initial.a, initial.b])
    )
    bounds = [(-_LOG_BOUND, _LOG_BOUND)] * 4
    x_levels = np.unique(x, return_inverse=True)
    if use_gradient:
        res = optimize.minimize(
            negative_log_likelihood_and_grad,
            theta0,
            args=(x, t_x, big_t, w, x_levels),
            jac=True,
            method="L-BFGS-B",
            bounds=bounds,
            options={"maxiter": 1000, "ftol": 1e-13, "gtol": 1e-9},
        )
    else:
        res = optimize.minimize(
            lambda th: float(-np.dot(w, _ll_terms(th, x, t_x, big_t, False, x_levels)[0]) / n_customers),
            theta0,
            method="L-BFGS-B",
            bounds=bounds,
            options={"maxiter": 1000, "ftol": 1e-13, "gtol": 1e-9},
        )
    r, alpha, a, b = (float(v) for v in np.exp(res.x))
    params = BGNBDParams(r=r, alpha=alpha, a=a, b=b)
    return BGNBDFit(
        params=params,
        log_likelihood=float(-res.fun * n_customers),
        n_customers=n_customers,
        n_unique_rows=int(x.shape[0]),
        iterations=int(res.nit),
        converged=bool(res.success),
        message=str(res.message),
    )


def _log_odds_dead(params: BGNBDParams, x: FloatArray, t_x: FloatArray, big_t: FloatArray) -> FloatArray:
    """log of a/(b+x-1) * ((alpha+T)/(alpha+t_x))^(r+x); -inf where x == 0 (nobody dies before a repeat buy)."""
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    has_rep = x > 0
    xm1 = np.where(has_rep, x - 1.0, 0.0)
    val = np.log(a) - np.log(b + xm1) + (r + x) * (np.log(alpha + big_t) - np.log(alpha + t_x))
    return np.where(has_rep, val, -np.inf)


def probability_alive(
    params: BGNBDParams, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
) -> FloatArray:
    """P(customer still alive at T | x, t_x, T); exactly 1 when frequency is 0."""
    x, t_x, big_t = _check_rfm(frequency, recency, T)
    return special.expit(-_log_odds_dead(params, x, t_x, big_t))


def _expected_if_alive(
    r: float, alpha: float, a: float, b: float, x: FloatArray, big_t: FloatArray, t: FloatArray
) -> FloatArray:
    """(a+b+x-1)/(a-1) * [1 - ((alpha+T)/(alpha+T+t))^(r+x) 2F1(r+x, b+x; a+b+x-1; z)], z = t/(alpha+T+t).

    Euler's transformation turns the bracketed product into (1-z)^(a-1) 2F1(a+b-1-r, a-1;
    a+b+x-1; z): the upper parameters no longer grow with x, so heavy buyers neither
    overflow nor lose precision.  scipy's hyp2f1 gives up (nan/inf) or goes wrong at a few
    degenerate points (c - a - b an integer with z near 1, or c = 0 when a + b = 1); there we
    nudge parameters or fall back to the untransformed form, the function being smooth.
    """
    degenerate = r + 1.0 - a
    if abs(degenerate - round(degenerate)) < 1e-7:
        # c - a - b = r + 1 - a + x is then an integer for every x, where scipy's hyp2f1 can be
        # silently wrong for z near 1.  The function is smooth in r, so average two nudged
        # evaluations: the first-order error of the nudge cancels.
        h = 1e-4 * r
        lo = _expected_if_alive(r - h, alpha, a, b, x, big_t, t)
        hi = _expected_if_alive(r + h, alpha, a, b, x, big_t, t)
        return 0.5 * (lo + hi)
    x, big_t, t = np.broadcast_arrays(x, big_t, t)
    shape = x.shape
    x, big_t, t = (np.atleast_1d(v).ravel() for v in (x, big_t, t))

    def euler(r_: float, b_: float, idx: NDArray[np.bool_] | slice) -> FloatArray:
        z = t[idx] / (alpha + big_t[idx] + t[idx])
        hyp = np.power(1.0 - z, a - 1.0) * special.hyp2f1(
            a + b_ - 1.0 - r_, a - 1.0, a + b_ + x[idx] - 1.0, z
        )
        return (a + b_ + x[idx] - 1.0) / (a - 1.0) * (1.0 - hyp)

    def direct(r_: float, b_: float, idx: NDArray[np.bool_]) -> FloatArray:
        z = t[idx] / (alpha + big_t[idx] + t[idx])
        xi = x[idx]
        hyp = np.power(1.0 - z, r_ + xi) * special.hyp2f1(r_ + xi, b_ + xi, a + b_ + xi - 1.0, z)
        return (a + b_ + xi - 1.0) / (a - 1.0) * (1.0 - hyp)

    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        out = np.array(euler(r, b, slice(None)), dtype=np.float64)
        for attempt in (
            lambda m: direct(r, b, m),
            lambda m: euler(r * (1 + 1e-7), b * (1 + 1e-7), m),
            lambda m: direct(r * (1 + 1e-7), b * (1 + 1e-7), m),
        ):
            bad = ~np.isfinite(out)
            if not bad.any():
                break
            out[bad] = attempt(bad)
    if not np.isfinite(out).all():
        raise CLVInputError("BG/NBD expectation could not be evaluated for these parameters", field="params")
    # Mathematically >= 0; tiny negatives are cancellation in 1 - hyp at very short horizons.
    return np.maximum(out, 0.0).reshape(shape)


def conditional_expected_purchases(
    params: BGNBDParams, t: ArrayLike, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
) -> FloatArray:
    """E[purchases in (T, T+t] | x, t_x, T] for each customer (FHL 2005 eq. 10)."""
    x, t_x, big_t = _check_rfm(frequency, recency, T)
    tt = _check_horizon(t)
    if abs(params.a - 1.0) < 1e-9:
        raise CLVInputError("BG/NBD expectations need a != 1 (the closed form divides by a-1)", field="a")
    numer = _expected_if_alive(params.r, params.alpha, params.a, params.b, x, big_t, tt)
    return numer * special.expit(-_log_odds_dead(params, x, t_x, big_t))


def expected_purchases(params: BGNBDParams, t: ArrayLike) -> FloatArray:
    """Unconditional E[X(t)]: expected repeat purchases of a new customer in (0, t] (FHL 2005 eq. 9)."""
    tt = _check_horizon(t)
    if abs(params.a - 1.0) < 1e-9:
        raise CLVInputError("BG/NBD expectations need a != 1 (the closed form divides by a-1)", field="a")
    # Eq. 9 is eq. 10's numerator for a customer with x = 0 observed for T = 0.
    return _expected_if_alive(params.r, params.alpha, params.a, params.b, np.zeros(()), np.zeros(()), tt)


def _check_horizon(t: ArrayLike) -> FloatArray:
    tt = np.asarray(t, dtype=np.float64)
    if (~np.isfinite(tt) | (tt < 0)).any():
        raise CLVInputError("horizon t must be finite and >= 0", field="t")
    return tt
