"""A power-law fit of a spectrum's tail with Clauset's xmin, a bootstrap interval and a p-value.

Clauset, Shalizi & Newman (2009), "Power-law distributions in empirical data":

- for a candidate x_min the maximum-likelihood exponent of p(x) ∝ x^(−α), x ≥ x_min, is
  α̂ = 1 + m / Σᵢ ln(xᵢ/x_min) over the m values xᵢ ≥ x_min (their eq. 3.1);
- x_min is the candidate whose fitted law is closest to the tail in Kolmogorov–Smirnov
  distance D = max_x |S(x) − P(x)| (§3.3);
- the goodness-of-fit p-value is the share of synthetic data sets (power law above x_min,
  the empirical values below it, in the observed proportion) whose own fit, x_min
  selection included, is at least as far from them as the data are from theirs (§4.1).
  p ≤ 0.1 rules the power law out.

Martin & Mahoney (2021) fit this α to the ESD of each layer's WᵀW and read 2 ≲ α ≲ 6 as
heavy-tailed (well trained). weightwatcher's users report the fit is fragile: a large α
where the "tail" is the hard edge of a Marchenko–Pastur bulk, and an upper end x_max the
infinite power law ignores. `fit_power_law` therefore returns the reasons a fit is not
credible beside the fit itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from losslab.errors import UserError, check_float, check_int
from losslab.store import register_result

__all__ = ["PowerLawFit", "fit_power_law", "power_law_sample"]

GOF_REJECT = 0.1  # Clauset et al.'s threshold: p ≤ 0.1 rules the power law out
ALPHA_CREDIBLE = 6.0  # above this weightwatcher's α is not heavy-tailed, and often a failed fit


@register_result
@dataclass
class PowerLawFit:
    """α of p(λ) ∝ λ^(−α) on λ ≥ xmin (``tail`` values), its bootstrap interval at ``level``,
    the KS distance, the goodness-of-fit p-value (``gof_samples`` synthetic sets; NaN if 0),
    and ``reasons`` the fit is not credible (empty: credible)."""

    alpha: float
    xmin: float
    xmax: float
    tail: int
    n: int
    ks: float
    alpha_low: float
    alpha_high: float
    level: float
    p_value: float
    gof_samples: int
    bootstrap: int
    reasons: list[str] = field(default_factory=list)

    @property
    def credible(self) -> bool:
        return not self.reasons

    def summary(self) -> dict[str, object]:
        return {
            "alpha": self.alpha,
            "alpha_interval": [self.alpha_low, self.alpha_high],
            "level": self.level,
            "xmin": self.xmin,
            "xmax": self.xmax,
            "tail": self.tail,
            "ks": self.ks,
            "p_value": self.p_value,
            "credible": self.credible,
            "reasons": list(self.reasons),
        }


def _select(x: np.ndarray, min_tail: int, block: int = 256) -> tuple[float, float, float, int]:
    """(α, xmin, D, m) of the KS-best candidate xmin over sorted positive ``x`` (ascending).

    Every candidate at once, in blocks of ``block`` candidates: a [block, n] table of the
    fitted CDF at every tail value, masked below each candidate.
    """
    n = len(x)
    logs = np.log(x)
    # Σ_{j ≥ i} ln x_j for every i, so α̂ for every candidate costs O(n) in total.
    tail_log = np.cumsum(logs[::-1])[::-1]
    first = np.ones(n, dtype=bool)
    first[1:] = x[1:] != x[:-1]  # ties: one candidate per distinct value, at its first index
    first[n - min_tail + 1 :] = False
    idx = np.flatnonzero(first)
    m = n - idx
    denom = tail_log[idx] - m * logs[idx]
    keep = denom > 0
    idx, m, denom = idx[keep], m[keep], denom[keep]
    if len(idx) == 0:
        return np.nan, np.nan, np.inf, 0
    alpha = 1.0 + m / denom
    j = np.arange(n)
    D = np.empty(len(idx))
    for s in range(0, len(idx), block):
        i, a, mm = idx[s : s + block, None], alpha[s : s + block, None], m[s : s + block, None]
        inside = j[None, :] >= i
        ratio = np.where(inside, x[None, :] / x[i], 1.0)
        model = 1.0 - ratio ** (1.0 - a)
        upper = (j[None, :] - i + 1) / mm
        gap = np.maximum(np.abs(upper - model), np.abs(upper - 1.0 / mm - model))
        D[s : s + block] = np.where(inside, gap, 0.0).max(axis=1)
    best = int(np.argmin(D))
    return float(alpha[best]), float(x[idx[best]]), float(D[best]), int(m[best])


def power_law_sample(rng: np.random.Generator, size: int, alpha: float, xmin: float) -> np.ndarray:
    """``size`` draws from p(x) = (α−1)/x_min · (x/x_min)^(−α), x ≥ x_min (inverse CDF)."""
    return xmin * (1.0 - rng.random(size)) ** (-1.0 / (alpha - 1.0))


def fit_power_law(
    values: np.ndarray,
    *,
    min_tail: int = 10,
    bootstrap: int = 100,
    gof: int = 50,
    level: float = 0.9,
    seed: int = 0,
    bulk_edge: float | None = None,
) -> PowerLawFit:
    """Fit p(λ) ∝ λ^(−α) to the tail of ``values`` (Clauset et al. 2009; see the module docstring).

    ``min_tail``: the fewest values a candidate tail may hold. ``bootstrap``: resamples of all
    values, each refitted with its own x_min, for the percentile interval at ``level``.
    ``gof``: synthetic sets of the semi-parametric p-value (its standard error is
    √(p(1−p)/gof): 50 resolves p = 0.1 to ±0.04). ``bulk_edge``: the Marchenko–Pastur λ₊ of
    a random matrix of the same shape and scale; a tail that does not leave the bulk is the
    bulk's hard edge, not a power law.
    """
    x = np.sort(np.asarray(values, dtype=np.float64).ravel())
    x = x[x > 0]  # zero eigenvalues (rank deficiency) carry no tail information
    check_int(min_tail, "min_tail", "fit_power_law", low=3)
    check_int(bootstrap, "bootstrap", "fit_power_law", low=0)
    check_int(gof, "gof", "fit_power_law", low=0)
    check_float(level, "level", "fit_power_law", low=0.0, high=0.999, low_open=True)
    if len(x) < min_tail:
        raise UserError(
            f"A power-law fit needs at least min_tail={min_tail} positive values. Got {len(x)}: "
            "use a larger layer or a smaller min_tail."
        )
    alpha, xmin, D, m = _select(x, min_tail)
    rng = np.random.default_rng(seed)
    boot = []
    for _ in range(bootstrap):
        a, *_ = _select(np.sort(rng.choice(x, size=len(x))), min_tail)
        boot.append(a)
    boot_arr = np.asarray(boot)
    boot_arr = boot_arr[np.isfinite(boot_arr)]
    tails = (1 - level) / 2
    low, high = (
        (float(np.quantile(boot_arr, tails)), float(np.quantile(boot_arr, 1 - tails)))
        if len(boot_arr)
        else (np.nan, np.nan)
    )
    p_value = np.nan
    if gof and np.isfinite(alpha):
        below = x[x < xmin]
        hits = 0
        for _ in range(gof):
            k = rng.binomial(len(x), m / len(x)) if len(below) else len(x)
            synthetic = np.concatenate([power_law_sample(rng, k, alpha, xmin), rng.choice(below, len(x) - k)])
            if len(below) == 0:
                synthetic = synthetic[:k]
            _, _, d, _ = _select(np.sort(synthetic), min_tail)
            hits += d >= D
        p_value = hits / gof
    reasons = []
    if not np.isfinite(alpha):
        reasons.append("no candidate x_min gave a finite exponent")
    if np.isfinite(p_value) and p_value <= GOF_REJECT:
        reasons.append(f"goodness of fit p = {p_value:.2f} ≤ {GOF_REJECT}: the power law is ruled out")
    if alpha > ALPHA_CREDIBLE:
        reasons.append(
            f"alpha = {alpha:.3g} > {ALPHA_CREDIBLE:g}: a steep 'tail' is usually a bulk edge, not a heavy tail"
        )
    if bulk_edge is not None and x[-1] <= 1.1 * bulk_edge:  # 10 %: finite-size spread of λmax at N ~ 100
        reasons.append(
            f"the largest eigenvalue {x[-1]:.3g} is inside the Marchenko–Pastur bulk (edge {bulk_edge:.3g}): "
            "the spectrum is consistent with a random matrix"
        )
    if np.isfinite(low) and np.isfinite(high) and high - low > max(1.0, 0.5 * alpha):
        reasons.append(f"the bootstrap interval [{low:.3g}, {high:.3g}] is too wide to read alpha")
    return PowerLawFit(
        alpha=float(alpha),
        xmin=float(xmin),
        xmax=float(x[-1]),
        tail=int(m),
        n=len(x),
        ks=float(D),
        alpha_low=low,
        alpha_high=high,
        level=level,
        p_value=float(p_value),
        gof_samples=gof,
        bootstrap=bootstrap,
        reasons=reasons,
    )
