"""The probabilistic and deflated Sharpe ratios against numbers worked out by hand.

Quantiles below were computed to 30 digits (mpmath, erfinv) and are written out, so the tests do
not use the code under test to produce their expectations.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from n1v1.research.deflated_sharpe import (
    EULER_GAMMA,
    deflated_sharpe_ratio,
    expected_max_sharpe,
    probabilistic_sharpe_ratio,
    return_moments,
)


def test_a_case_worked_step_by_step():
    # N = 10 trials, V = 0.0025 (trial Sharpe ratios spread with std 0.05 per period)
    #   Φ⁻¹(1 - 1/10)        = Φ⁻¹(0.9)                  = 1.281551565544600466965
    #   Φ⁻¹(1 - 1/(10 e))    = Φ⁻¹(0.963212055882855768) = 1.789241764581628274091
    #   SR0 = sqrt(0.0025) * ((1 - γ) * 1.2815515655446 + γ * 1.7892417645816)
    #       = 0.05 * (0.4227843350984671 * 1.2815515655446 + 0.5772156649015329 * 1.7892417645816)
    #       = 0.05 * (0.541819943 + 1.032779258) = 0.078729915067287502
    z1, z2 = 1.281551565544600466965, 1.789241764581628274091
    sr0 = 0.05 * ((1 - 0.5772156649015329) * z1 + 0.5772156649015329 * z2)
    assert sr0 == pytest.approx(0.078729915067287502, abs=1e-15)
    assert expected_max_sharpe(10, 0.0025) == pytest.approx(sr0, abs=1e-14)
    # SR = 0.1 per period over T = 500 returns with skew -0.5 and kurtosis 5:
    #   denominator = sqrt(1 - (-0.5)(0.1) + (5 - 1)/4 * 0.1²) = sqrt(1.06) = 1.029563014098700
    #   z = (0.1 - 0.0787299150672875) * sqrt(499) / 1.0295630140987 = 0.461494536864735812
    #   PSR = Φ(0.461494536864736) = 0.677778079987337697
    out = deflated_sharpe_ratio(
        0.1, n_trials=10, trials_variance=0.0025, n_obs=500, skew=-0.5, kurtosis=5.0
    )
    assert out.sharpe_benchmark == pytest.approx(0.078729915067287502, abs=1e-14)
    assert out.dsr == pytest.approx(0.677778079987337697, abs=1e-12)
    assert probabilistic_sharpe_ratio(0.1, sr0, 500, -0.5, 5.0) == pytest.approx(out.dsr, 1e-14)
    assert (out.n_trials, out.n_obs, out.skew, out.kurtosis) == (10, 500, -0.5, 5.0)


def test_the_numerical_example_of_bailey_and_lopez_de_prado_2014():
    # The paper: 100 trials, annualised SR 2.5 over 1250 daily returns (250 a year), variance of
    # the trials' annualised SRs 0.5, skew -3, kurtosis 10 -> SR0 = 0.1132 per day, DSR = 0.9004.
    out = deflated_sharpe_ratio(
        2.5 / math.sqrt(250),
        n_trials=100,
        trials_variance=0.5 / 250,
        n_obs=1250,
        skew=-3.0,
        kurtosis=10.0,
    )
    assert out.sharpe_benchmark == pytest.approx(0.1132, abs=5e-5)
    assert out.dsr == pytest.approx(0.9004, abs=5e-5)


def test_one_trial_is_no_selection_and_normal_returns_need_no_correction():
    assert expected_max_sharpe(1, 0.04) == 0.0
    # skew 0, kurtosis 3: the denominator is sqrt(1 + SR²/2); SR = 0.1, T = 101, benchmark 0:
    #   z = 0.1 * 10 / sqrt(1.005) = 0.997509336107632, Φ(z) = 0.840741328
    psr = probabilistic_sharpe_ratio(0.1, 0.0, 101, 0.0, 3.0)
    assert psr == pytest.approx(0.840741328, abs=1e-9)
    out = deflated_sharpe_ratio(
        0.1, n_trials=1, trials_variance=0.04, n_obs=101, skew=0, kurtosis=3
    )
    assert out.dsr == pytest.approx(psr, abs=1e-15)
    # a Sharpe ratio equal to its benchmark is a coin flip
    assert probabilistic_sharpe_ratio(0.05, 0.05, 250, -1.0, 6.0) == pytest.approx(0.5, abs=1e-15)


def test_more_trials_or_more_spread_raise_the_bar():
    bars = [expected_max_sharpe(n, 0.01) for n in (2, 10, 100, 1000)]
    assert bars == sorted(bars) and bars[0] > 0.0
    assert expected_max_sharpe(10, 0.04) == pytest.approx(2 * expected_max_sharpe(10, 0.01))
    assert expected_max_sharpe(10, 0.0) == 0.0
    assert abs(EULER_GAMMA - 0.57721566490153286) < 1e-16


def test_return_moments_by_hand():
    # r = [0.01, -0.02, 0.03, 0.00]: mean 0.005; deviations 0.005, -0.025, 0.025, -0.005
    #   Σd² = 0.000025 + 0.000625 + 0.000625 + 0.000025 = 0.0013
    #   std (ddof 1) = sqrt(0.0013 / 3) = 0.0208166599946613; SR = 0.005 / that = 0.240192230
    #   m2 = 0.0013 / 4 = 0.000325; m3 = (1.25e-7 - 1.5625e-5 + 1.5625e-5 - 1.25e-7) / 4 = 0
    #   m4 = (6.25e-10 + 3.90625e-7 + 3.90625e-7 + 6.25e-10) / 4 = 1.95625e-7
    #   kurtosis = 1.95625e-7 / 0.000325² = 1.95625e-7 / 1.05625e-7 = 1.852071005917160
    sr, skew, kurt, n = return_moments(np.array([0.01, -0.02, 0.03, 0.00]))
    assert sr == pytest.approx(0.005 / math.sqrt(0.0013 / 3), rel=1e-12)
    assert skew == pytest.approx(0.0, abs=1e-12)
    assert kurt == pytest.approx(1.852071005917160, rel=1e-12)
    assert n == 4


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="n_trials"):
        expected_max_sharpe(0, 0.01)
    with pytest.raises(ValueError, match="trials_variance"):
        expected_max_sharpe(5, -1.0)
    with pytest.raises(ValueError, match="n_obs"):
        probabilistic_sharpe_ratio(0.1, 0.0, 1, 0.0, 3.0)
    with pytest.raises(ValueError, match="kurtosis"):
        probabilistic_sharpe_ratio(0.1, 0.0, 100, 0.0, 0.5)
    with pytest.raises(ValueError, match="inconsistent moments"):
        probabilistic_sharpe_ratio(1.0, 0.0, 100, 3.0, 1.0)  # kurtosis < 1 + skew² is impossible
    with pytest.raises(ValueError, match="constant"):
        return_moments(np.full(10, 0.001))
    with pytest.raises(ValueError, match="position 2"):
        return_moments(np.array([0.1, 0.2, np.nan]))
