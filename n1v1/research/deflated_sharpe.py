"""The probabilistic and deflated Sharpe ratios of Bailey & López de Prado (2014).

Trying many parameter sets and keeping the best inflates its Sharpe ratio: among N strategies
with no edge at all, the best one still shows a positive Sharpe ratio by luck. The deflated
Sharpe ratio (DSR) asks how likely the observed Sharpe ratio is to exceed the one expected from
the best of N luck-only trials, given the sample length and the returns' skew and fat tails.

All Sharpe ratios here are per period (per bar, not annualised), as in the paper:

    SR0 = sqrt(V) * ((1 - γ) Φ⁻¹(1 - 1/N) + γ Φ⁻¹(1 - 1/(N e)))         expected max of N trials
    PSR(SR*) = Φ((SR - SR*) sqrt(T - 1) / sqrt(1 - γ3 SR + (γ4 - 1) / 4 SR²))
    DSR = PSR(SR0)

with V the variance of the trials' Sharpe ratios, γ the Euler–Mascheroni constant, T the number
of returns, γ3 their skewness and γ4 their (non-excess) kurtosis, 3 for normal returns.
Φ and Φ⁻¹ come from the standard library's `statistics.NormalDist` (exact to double precision),
so the module needs nothing beyond NumPy. docs/research.md works through the paper's example.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from statistics import NormalDist

import numpy as np

__all__ = [
    "EULER_GAMMA",
    "DeflatedSharpe",
    "deflated_sharpe_ratio",
    "expected_max_sharpe",
    "probabilistic_sharpe_ratio",
    "return_moments",
]

EULER_GAMMA = 0.5772156649015329
_NORMAL = NormalDist()


@dataclass(frozen=True, slots=True)
class DeflatedSharpe:
    """Inputs and result of one DSR computation (all Sharpe ratios per period)."""

    sharpe: float  # SR of the returns judged
    sharpe_benchmark: float  # SR0, the expected maximum Sharpe ratio of n_trials luck-only trials
    n_trials: int  # N
    trials_variance: float  # V
    n_obs: int  # T
    skew: float  # γ3
    kurtosis: float  # γ4 (non-excess)
    dsr: float  # PSR(SR0): probability that the true SR exceeds SR0

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def expected_max_sharpe(n_trials: int, trials_variance: float) -> float:
    """SR0: the expected maximum Sharpe ratio of `n_trials` independent trials with true SR 0.

    One trial is not a selection, so N = 1 gives 0 (the formula's Φ⁻¹(0) term would be -inf).
    """
    if isinstance(n_trials, bool) or not isinstance(n_trials, int | np.integer) or n_trials < 1:
        raise ValueError(f"n_trials: must be an integer >= 1, got {n_trials!r}")
    _check("trials_variance", trials_variance, minimum=0.0)
    if n_trials == 1:
        return 0.0
    n = float(n_trials)
    z1 = _NORMAL.inv_cdf(1.0 - 1.0 / n)
    z2 = _NORMAL.inv_cdf(1.0 - 1.0 / (n * math.e))
    return math.sqrt(trials_variance) * ((1.0 - EULER_GAMMA) * z1 + EULER_GAMMA * z2)


def probabilistic_sharpe_ratio(
    sharpe: float, benchmark: float, n_obs: int, skew: float, kurtosis: float
) -> float:
    """PSR: the probability that the true per-period Sharpe ratio exceeds `benchmark`, given the
    observed `sharpe` over `n_obs` returns with that skewness and (non-excess) kurtosis."""
    for name, value in (("sharpe", sharpe), ("benchmark", benchmark), ("skew", skew)):
        _check(name, value)
    _check("kurtosis", kurtosis, minimum=1.0)  # any distribution has kurtosis >= 1
    if isinstance(n_obs, bool) or not isinstance(n_obs, int | np.integer) or n_obs < 2:
        raise ValueError(f"n_obs: need an integer >= 2 returns, got {n_obs!r}")
    variance = 1.0 - skew * sharpe + (kurtosis - 1.0) / 4.0 * sharpe**2
    if not variance > 0.0:
        # kurtosis >= 1 + skew² for every distribution makes this > 0; a violation means the
        # moments were not measured on one sample
        raise ValueError(
            f"skew={skew}, kurtosis={kurtosis}: inconsistent moments (1 - γ3·SR + (γ4-1)/4·SR² "
            f"= {variance} <= 0 at SR={sharpe})"
        )
    z = (sharpe - benchmark) * math.sqrt(n_obs - 1) / math.sqrt(variance)
    return _NORMAL.cdf(z)


def deflated_sharpe_ratio(
    sharpe: float,
    *,
    n_trials: int,
    trials_variance: float,
    n_obs: int,
    skew: float,
    kurtosis: float,
) -> DeflatedSharpe:
    """DSR = PSR(SR0): `sharpe` judged against the best of `n_trials` luck-only trials whose
    Sharpe ratios vary with `trials_variance` (all per period)."""
    benchmark = expected_max_sharpe(n_trials, trials_variance)
    dsr = probabilistic_sharpe_ratio(sharpe, benchmark, n_obs, skew, kurtosis)
    return DeflatedSharpe(
        sharpe=float(sharpe),
        sharpe_benchmark=benchmark,
        n_trials=int(n_trials),
        trials_variance=float(trials_variance),
        n_obs=int(n_obs),
        skew=float(skew),
        kurtosis=float(kurtosis),
        dsr=dsr,
    )


def return_moments(returns: np.ndarray) -> tuple[float, float, float, int]:
    """(per-period Sharpe ratio, skewness, kurtosis, T) of a return series.

    SR = mean / std (ddof = 1), as `compute_metrics` computes it before annualising; skewness and
    kurtosis are the moment ratios m3 / m2^1.5 and m4 / m2² (population moments, non-excess
    kurtosis), as in the paper. Constant returns have no Sharpe ratio: a ValueError says so.
    """
    r = np.asarray(returns, dtype=np.float64)
    if r.ndim != 1 or r.shape[0] < 2:
        raise ValueError(f"returns: need a 1-D series of >= 2 values, got shape {r.shape}")
    if not np.isfinite(r).all():
        i = int(np.argmax(~np.isfinite(r)))
        raise ValueError(f"returns: non-finite value {r[i]} at position {i}")
    centred = r - r.mean()
    m2 = float(np.mean(centred**2))
    if m2 == 0.0 or r.max() == r.min():
        raise ValueError("returns: constant series; its Sharpe ratio is undefined")
    std = math.sqrt(float(np.sum(centred**2)) / (r.shape[0] - 1))
    skew = float(np.mean(centred**3)) / m2**1.5
    kurtosis = float(np.mean(centred**4)) / m2**2
    return float(r.mean()) / std, skew, kurtosis, int(r.shape[0])


def _check(name: str, value: float, minimum: float | None = None) -> None:
    ok = isinstance(value, int | float | np.floating) and math.isfinite(value)
    if not ok or (minimum is not None and value < minimum):
        bound = f" and >= {minimum}" if minimum is not None else ""
        raise ValueError(f"{name}: must be a finite number{bound}, got {value!r}")
