"""Gamma-Gamma spend model (Fader, Hardie & Lee 2005 "RFM and CLV"; Colombo & Jiang 1999).

Each transaction's value is Gamma(p, nu) around a customer-level rate nu ~ Gamma(q, gamma),
independent of the purchase process.  The mean zbar of a customer's x repeat transactions
is then Gamma(p*x, nu*x), and integrating nu out gives the likelihood fitted here on the
customers with x > 0.  ``gamma`` carries the money unit of the data (fen in siyu).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import optimize, special

from siyu.analytics.clv_rfm import CLVInputError

FloatArray = NDArray[np.float64]

_LOG_BOUND = 25.0


@dataclass(frozen=True, slots=True)
class GammaGammaParams:
    """Fitted Gamma-Gamma parameters; ``gamma`` is in the money unit of the data."""

    p: float
    q: float
    gamma: float


@dataclass(frozen=True, slots=True)
class GammaGammaFit:
    """A fitted spend model with its diagnostics."""

    params: GammaGammaParams
    log_likelihood: float
    n_customers: int
    iterations: int
    converged: bool
    message: str


def _check_spend(frequency: ArrayLike, monetary_value: ArrayLike) -> tuple[FloatArray, FloatArray]:
    x = np.asarray(frequency, dtype=np.float64)
    m = np.asarray(monetary_value, dtype=np.float64)
    x, m = np.broadcast_arrays(x, m)
    for name, arr in (("frequency", x), ("monetary_value", m)):
        bad = ~np.isfinite(arr) | (arr < 0)
        if bad.any():
            i = int(np.argmax(bad.ravel()))
            raise CLVInputError(f"{name}[{i}] = {arr.ravel()[i]!r} must be finite and >= 0", field=name)
    return x, m


def _ll_terms(
    theta: FloatArray,
    x: FloatArray,
    log_x: FloatArray,
    z: FloatArray,
    log_z: FloatArray,
    want_grad: bool,
    x_levels: tuple[FloatArray, NDArray[np.intp]] | None = None,
) -> tuple[FloatArray, FloatArray | None]:
    """Per-customer log density of zbar and its gradient w.r.t. (log p, log q, log gamma).

    ``x_levels`` is ``np.unique(x, return_inverse=True)``; pass it when calling repeatedly.
    """
    p, q, g = np.exp(theta)
    ux, inv = np.unique(x, return_inverse=True) if x_levels is None else x_levels
    # The gamma functions depend on x alone: evaluate them once per distinct x and gather.
    upx = p * ux
    u_gam = special.gammaln(upx + q) - special.gammaln(upx) - special.gammaln(q) + q * np.log(g)
    px = p * x
    gxz = g + x * z
    log_gxz = np.log(gxz)
    ll = u_gam[inv] + (px - 1.0) * log_z + px * log_x - (px + q) * log_gxz
    if not want_grad:
        return ll, None
    u_psi_pxq = special.digamma(upx + q)
    u_dp = u_psi_pxq - special.digamma(upx)
    u_dq = u_psi_pxq - special.digamma(q) + np.log(g)
    d_p = x * (u_dp[inv] + log_z + log_x - log_gxz)
    d_q = u_dq[inv] - log_gxz
    d_g = q / g - (px + q) / gxz
    return ll, np.stack([d_p * p, d_q * q, d_g * g])


def _prepare(frequency: ArrayLike, monetary_value: ArrayLike) -> tuple[FloatArray, FloatArray]:
    x, m = (v.ravel() for v in _check_spend(frequency, monetary_value))
    keep = x > 0
    x, m = x[keep], m[keep]
    if (m <= 0).any():
        i = int(np.flatnonzero(m <= 0)[0])
        raise CLVInputError(
            f"{int((m <= 0).sum())} customers with repeat purchases have a mean repeat spend of 0 "
            f"(first at position {i} among frequency > 0); the Gamma-Gamma model needs positive spend, "
            "leave them out of the fit",
            field="monetary_value",
        )
    return x, m


def log_likelihood(params: GammaGammaParams, frequency: ArrayLike, monetary_value: ArrayLike) -> float:
    """Total Gamma-Gamma log-likelihood over customers with frequency > 0."""
    x, m = _prepare(frequency, monetary_value)
    theta = np.log([params.p, params.q, params.gamma])
    ll, _ = _ll_terms(theta, x, np.log(x), m, np.log(m), want_grad=False)
    return float(ll.sum())


def negative_log_likelihood_and_grad(
    theta: FloatArray,
    x: FloatArray,
    log_x: FloatArray,
    z: FloatArray,
    log_z: FloatArray,
    x_levels: tuple[FloatArray, NDArray[np.intp]] | None = None,
) -> tuple[float, FloatArray]:
    """Mean negative log-likelihood and its gradient in log-parameter space."""
    ll, grad = _ll_terms(np.asarray(theta, dtype=np.float64), x, log_x, z, log_z, True, x_levels)
    assert grad is not None
    n = x.shape[0]
    return float(-ll.sum() / n), -grad.sum(axis=1) / n


def fit_gamma_gamma(
    frequency: ArrayLike,
    monetary_value: ArrayLike,
    *,
    use_gradient: bool = True,
    initial: GammaGammaParams | None = None,
) -> GammaGammaFit:
    """Fit Gamma-Gamma by maximum likelihood on customers with frequency > 0 (others are skipped)."""
    x, m = _prepare(frequency, monetary_value)
    n = int(x.shape[0])
    if n < 2:
        raise CLVInputError(
            "the Gamma-Gamma fit needs at least 2 customers with repeat purchases", field="frequency"
        )
    log_x, log_m = np.log(x), np.log(m)
    x_levels = np.unique(x, return_inverse=True)
    if initial is None:
        # Method of moments on zbar with p = 1: E[zbar] = p*gamma/(q-1); start q at 2 (finite mean).
        theta0 = np.log([1.0, 2.0, float(np.mean(m))])
    else:
        theta0 = np.log([initial.p, initial.q, initial.gamma])
    bounds = [(-_LOG_BOUND, _LOG_BOUND)] * 3
    opts = {"maxiter": 1000, "ftol": 1e-13, "gtol": 1e-9}
    if use_gradient:
        res = optimize.minimize(
            negative_log_likelihood_and_grad,
            theta0,
            args=(x, log_x, m, log_m, x_levels),
            jac=True,
            method="L-BFGS-B",
            bounds=bounds,
            options=opts,
        )
    else:
        res = optimize.minimize(
            lambda th: float(-_ll_terms(th, x, log_x, m, log_m, False, x_levels)[0].sum() / n),
            theta0,
            method="L-BFGS-B",
            bounds=bounds,
            options=opts,
        )
    p, q, g = (float(v) for v in np.exp(res.x))
    return GammaGammaFit(
        params=GammaGammaParams(p=p, q=q, gamma=g),
        log_likelihood=float(-res.fun * n),
        n_customers=n,
        iterations=int(res.nit),
        converged=bool(res.success),
        message=str(res.message),
    )


def conditional_expected_average_value(
    params: GammaGammaParams, frequency: ArrayLike, monetary_value: ArrayLike
) -> FloatArray:
    """E[value of a future transaction | x, zbar] = p(gamma + x zbar) / (p x + q - 1); the population mean at x = 0."""
    x, m = _check_spend(frequency, monetary_value)
    p, q, g = params.p, params.q, params.gamma
    if q <= 1.0:
        raise CLVInputError(f"q = {q} <= 1: the fitted spend distribution has no finite mean", field="q")
    # Customers without repeat purchases have no zbar; x = 0 makes the formula the prior mean.
    m = np.where(x > 0, m, 0.0)
    return p * (g + x * m) / (p * x + q - 1.0)
