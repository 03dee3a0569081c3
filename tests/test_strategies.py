"""Properties every built-in strategy must have: causal (no lookahead), values in the allowed set,
long-only when shorts are not allowed, warm-up lengths that match the indicators, and fast."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from n1v1 import indicators as ind
from n1v1.strategies import (
    Strategy,
    create_strategy,
    get_strategy,
    hold_position,
    list_strategies,
)
from n1v1.strategies.base import StrategyError, needs_parameters

CUTS = (1, 2, 25, 60, 97, 150, 233, 301, 399)


def random_walk_bars(n: int = 400, seed: int = 4) -> pd.DataFrame:
    """Seeded OHLCV random walk: fat-tailed (Student t, 3 dof) log steps like crypto returns, so
    range-expansion rules fire too; a range around open/close; volume with occasional spikes."""
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(0.01 * rng.standard_t(3, n)))
    open_ = np.r_[close[0], close[:-1]] * (1.0 + rng.normal(0.0, 0.002, n))
    high = np.maximum(open_, close) * (1.0 + rng.uniform(0.0, 0.01, n))
    low = np.minimum(open_, close) * (1.0 - rng.uniform(0.0, 0.01, n))
    volume = rng.lognormal(5.0, 0.6, n) * np.where(rng.random(n) < 0.1, 4.0, 1.0)
    index = pd.date_range("2024-01-01", periods=n, freq="h", tz="UTC")
    return pd.DataFrame(
        {"open": open_, "high": high, "low": low, "close": close, "volume": volume}, index=index
    )


BARS = random_walk_bars()

# Every built-in with defaults, plus the volume-filtered variants and a few non-default settings so
# the lookahead check also covers the filter and the separate exit channel.
# ml_signal needs a registered model: tests/test_ml_signal.py checks its lookahead and values.
CASES: list[tuple[str, dict]] = [
    (name, {}) for name in list_strategies() if not needs_parameters(get_strategy(name))
] + [
    ("bollinger_reversion", {"volume_factor": 1.2, "volume_period": 10}),
    ("donchian_breakout", {"period": 20, "exit_period": 10, "volume_factor": 1.0}),
    ("atr_breakout", {"multiple": 1.0, "volume_factor": 0.8, "volume_period": 30}),
    ("keltner", {"multiple": 1.0, "volume_factor": 1.0}),
    ("vwap_pullback", {"band": 0.01, "exit_band": 0.02, "volume_factor": 0.5}),
    ("rsi", {"period": 7, "oversold": 35, "overbought": 65}),
    ("stochastic", {"oversold": 30, "overbought": 70}),
    ("regime_switch", {"width_lookback": 50, "range": "rsi", "volatile": "donchian_breakout"}),
]
IDS = [f"{n}-{'-'.join(f'{k}={v}' for k, v in p.items()) or 'defaults'}" for n, p in CASES]


@pytest.mark.parametrize(("name", "params"), CASES, ids=IDS)
@pytest.mark.parametrize("allow_short", [False, True])
def test_no_lookahead_truncation_leaves_earlier_targets_unchanged(name, params, allow_short):
    strategy = create_strategy(name, params)
    full = strategy.target_positions(BARS, allow_short=allow_short)
    # A strategy that never trades would pass trivially; every case must change position.
    if name != "buy_and_hold":
        assert np.count_nonzero(np.diff(full)) >= 2, f"{name} does not trade on the test data"
    for k in CUTS:
        part = strategy.target_positions(BARS.iloc[:k], allow_short=allow_short)
        np.testing.assert_array_equal(part, full[:k], err_msg=f"{name}: differs when cut at {k}")


@pytest.mark.parametrize(("name", "params"), CASES, ids=IDS)
def test_targets_are_int8_in_the_allowed_set_and_zero_in_warmup(name, params):
    strategy = create_strategy(name, params)
    long_only = strategy.target_positions(BARS, allow_short=False)
    both = strategy.target_positions(BARS, allow_short=True)
    for out in (long_only, both):
        assert out.dtype == np.int8 and out.shape == (len(BARS),)
        assert not out[: strategy.warmup].any()
    assert set(np.unique(long_only)) <= {0, 1}
    assert set(np.unique(both)) <= {-1, 0, 1}
    if name not in ("buy_and_hold",):
        assert (both == -1).any(), f"{name} never goes short when allowed"


def test_buy_and_hold_is_long_on_every_bar():
    out = create_strategy("buy_and_hold").target_positions(BARS, allow_short=True)
    assert (out == 1).all()


class _PeeksAhead(Strategy):
    """A deliberately broken strategy: its target at t uses close[t + 1]."""

    name = "peeks_ahead"

    def target_positions(self, bars, allow_short=False):
        close = bars["close"].to_numpy()
        out = np.zeros(len(close), dtype=np.int8)
        out[:-1] = close[1:] > close[:-1]
        return out


def test_the_lookahead_check_catches_a_strategy_that_peeks():
    """The truncation check above is only worth something if it fails on a cheating strategy."""
    strategy = _PeeksAhead()
    full = strategy.target_positions(BARS)
    assert any(
        not np.array_equal(strategy.target_positions(BARS.iloc[:k]), full[:k]) for k in CUTS[2:]
    )


# --- warm-up lengths agree with the indicators' NaN warm-up (n1v1.indicators) ---------------


def _first_finite(x: np.ndarray) -> int:
    return int(np.flatnonzero(np.isfinite(x))[0])


def test_warmups_match_the_indicator_warmups():
    c, h, lo = (BARS[col].to_numpy() for col in ("close", "high", "low"))
    # sma_cross / ema_cross: the first bar where the slow average exists.
    assert create_strategy("sma_cross").warmup == _first_finite(ind.sma(c, 30)) == 29
    assert create_strategy("ema_cross").warmup == _first_finite(ind.ema(c, 21)) == 20
    # macd: the first bar where the signal line exists (26 + 9 - 2).
    assert create_strategy("macd").warmup == _first_finite(ind.macd(c, 12, 26, 9)[1]) == 33
    # Crossing rules need the indicator on the bar before too: first valid index + 1.
    assert create_strategy("rsi").warmup == _first_finite(ind.rsi(c, 14)) + 1 == 15
    assert create_strategy("stochastic").warmup == _first_finite(ind.stochastic(h, lo, c)[1]) + 1
    assert create_strategy("obv_trend").warmup == _first_finite(ind.sma(c, 20)) + 1 == 20
    # Breakouts on the previous bar's level: first valid index + 1.
    assert create_strategy("donchian_breakout").warmup == _first_finite(ind.donchian(h, lo)[0]) + 1
    assert create_strategy("atr_breakout").warmup == _first_finite(ind.atr(h, lo, c, 14)) + 1
    # Band strategies compare the current bar to its own band.
    assert create_strategy("keltner").warmup == _first_finite(ind.keltner(h, lo, c)[1]) == 19
    assert create_strategy("bollinger_reversion").warmup == _first_finite(ind.bollinger(c)[2])
    vw = ind.rolling_vwap(h, lo, c, BARS["volume"].to_numpy(), 20)
    assert create_strategy("vwap_pullback").warmup == max(_first_finite(vw), 49)
    # The volume filter adds its own warm-up when it is on: SMA(volume, 40) starts at 39.
    assert create_strategy("keltner", {"volume_factor": 1.0, "volume_period": 40}).warmup == 39


# --- hold_position: the event -> position state machine ---------------------------------------


def _hold(el, xl, es, xs, allow_short):
    return hold_position(*(np.array(a, dtype=bool) for a in (el, xl, es, xs)), allow_short)


def test_hold_position_enters_holds_and_exits():
    el = [0, 1, 0, 0, 0, 1, 0]
    xl = [0, 0, 0, 1, 0, 0, 0]
    zero = [0] * 7
    # Enter at 1, held through 2 (no event), exit at 3, flat at 4, enter again at 5, held at 6.
    np.testing.assert_array_equal(_hold(el, xl, zero, zero, False), [0, 1, 1, 0, 0, 1, 1])


def test_hold_position_reversal_beats_exit_and_shorts_ignored_when_not_allowed():
    el = [1, 0, 0, 0, 1]
    xl = [0, 0, 1, 0, 0]
    es = [0, 0, 1, 0, 0]
    xs = [0, 0, 0, 1, 0]
    # allowed: long at 0-1; bar 2 has exit_long AND enter_short -> reversal to short; bar 3
    # exit_short -> flat; bar 4 enter_long -> long.
    np.testing.assert_array_equal(_hold(el, xl, es, xs, True), [1, 1, -1, 0, 1])
    # not allowed: the short events are ignored, exit_long at 2 -> flat.
    np.testing.assert_array_equal(_hold(el, xl, es, xs, False), [1, 1, 0, 0, 1])


def test_hold_position_conflicting_entries_stay_put():
    both = [1, 0, 0]
    none = [0, 0, 0]
    # Flat with enter_long and enter_short on the same bar: ambiguous, stay flat.
    np.testing.assert_array_equal(_hold(both, none, both, none, True), [0, 0, 0])
    # Already short, both entries fire: no reversal, stay short.
    np.testing.assert_array_equal(_hold([0, 1, 0], none, [1, 1, 0], none, True), [-1, -1, -1])


def test_hold_position_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="exit_long has shape"):
        hold_position(
            np.zeros(3, bool), np.zeros(2, bool), np.zeros(3, bool), np.zeros(3, bool), False
        )


def test_missing_column_is_named():
    with pytest.raises(
        StrategyError, match=r"donchian_breakout: bars are missing column\(s\) \['high'"
    ):
        create_strategy("donchian_breakout").target_positions(BARS.drop(columns=["high"]))
