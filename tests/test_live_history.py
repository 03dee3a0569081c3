"""Live strategy targets on a trailing window equal the backtest's full-history targets for
strategies without recursive state, and a paper session on replayed bars trades exactly like the
event-driven backtest of the same bars: one engine for both."""

from __future__ import annotations

import numpy as np
import pytest

from n1v1.backtest.runner import run_backtest
from n1v1.config import Settings
from n1v1.data.market import load_market
from n1v1.domain import Bar
from n1v1.live.config import StrategySlot
from n1v1.live.history import BarHistory, RollingTargets
from n1v1.live.replay import PacedReplay
from n1v1.live.session import TradingSession
from n1v1.store import SqlJournal, create_store
from n1v1.strategies.registry import create_strategy

BARS = load_market("coinbase_LTC-USD_1m").iloc[:600]


def feed_history(history: BarHistory, symbol: str, upto: int) -> None:
    for ts, row in BARS.iloc[:upto].iterrows():
        history.append(symbol, Bar(ts, row.open, row.high, row.low, row.close, row.volume))


@pytest.mark.parametrize(
    ("name", "params"), [("sma_cross", {"fast": 5, "slow": 30}), ("donchian_breakout", {})]
)
def test_rolling_targets_equal_full_history_targets(name: str, params: dict) -> None:
    strategy = create_strategy(name, params)
    full = strategy.target_positions(BARS)
    assert np.count_nonzero(np.diff(full)) >= 4  # it trades: the comparison is not vacuous
    history = BarHistory(window=4 * strategy.warmup + 1)
    source = RollingTargets(strategy, history, allow_short=False)
    live = []
    for i, (ts, row) in enumerate(BARS.iterrows()):
        history.append("LTC", Bar(ts, row.open, row.high, row.low, row.close, row.volume))
        live.append(source.target("LTC", i))
    assert live == full.tolist()


def test_only_the_newest_bar_can_be_asked_for() -> None:
    history = BarHistory(window=50)
    feed_history(history, "LTC", 10)
    source = RollingTargets(create_strategy("sma_cross"), history, allow_short=False)
    with pytest.raises(ValueError, match="only the newest bar"):
        source.target("LTC", 3)


def test_bars_must_move_forward_in_time() -> None:
    history = BarHistory(window=50)
    feed_history(history, "LTC", 3)
    first = BARS.iloc[0]
    with pytest.raises(ValueError, match="not after the previous one"):
        history.append(
            "LTC", Bar(BARS.index[0], first.open, first.high, first.low, first.close, first.volume)
        )


def test_a_paper_session_trades_exactly_like_the_backtest(tmp_path) -> None:
    settings = Settings.model_validate(
        {
            "backtest": {"cash": 10_000.0, "run_id": "same"},
            "execution": {"taker_fee": 0.001, "maker_fee": 0.001, "slippage_bps": 1.0},
            "risk": {"fraction": 0.5, "stop_loss_pct": 0.01},
        }
    )
    params = {"fast": 5, "slow": 30}
    backtest = run_backtest(
        {"LTC/USD": BARS}, create_strategy("sma_cross", params), settings, engine="event"
    )
    store = create_store(f"sqlite:///{tmp_path}/s.db")
    session = TradingSession(
        settings,
        [StrategySlot(name="sma_cross", params=params)],
        PacedReplay({"LTC/USD": BARS}, 0),
        store,
        window=200,
    )
    session.start()
    try:
        for _ in range(600):
            if session.snapshot.get("feed_exhausted") or not session.alive:
                break
            session._stop.wait(0.1)
        assert session.snapshot["feed_exhausted"], session.failure
    finally:
        session.stop()
    stored = SqlJournal(store, -1).fills()
    expected = backtest.journal.fills
    assert len(expected) >= 10
    assert [(f.client_order_id, f.qty, f.price, f.fee) for f in stored] == [
        (f.client_order_id, f.qty, f.price, f.fee) for f in expected
    ]
    assert session.snapshot["equity"] == pytest.approx(float(backtest.equity.iloc[-1]), abs=1e-9)
    # the trades the API shows are the engine's: the same rows as the backtest's closed trades,
    # bars held included (newest first in the page)
    page = session.trades_page(None, 1000, 0)
    closed = [t for t in reversed(page["trades"]) if t["exit_time"] is not None]
    expected_closed = [t.to_dict() for t in backtest.trades if t.exit_time is not None]
    assert closed == expected_closed
    assert all(t["bars_held"] > 0 for t in closed)
