"""Parameter sweeps on Ray (n1v1/research/distributed.py, sweep.py, cli/sweep.py).

One local Ray cluster for the module (started by the first test that needs it). What is checked:
RayEvaluator returns exactly local_evaluator's rows; each symbol's frame is put into the object
store once per call and tasks receive its ObjectRef; an interrupted checkpointed run resumes
computing only the missing chunks; a different sweep in the same directory is refused naming the
difference; Bayesian search stays in bounds, resumes its study, and beats the median random set;
the best sets re-run through the event-driven engine reproduce their sweep rows; and the
`n1v1 sweep` command end to end, in-process and on Ray.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from n1v1.cli import main
from n1v1.config import Settings
from n1v1.data.synthetic import generate_bars
from n1v1.research import distributed
from n1v1.research.distributed import CheckpointMismatch, RayEvaluator
from n1v1.research.evaluate import local_evaluator
from n1v1.research.space import SweepError, grid_sets
from n1v1.research.sweep import SweepSpec, rank_sets, run_parameter_sweep
from n1v1.strategies.oscillators import Rsi
from n1v1.strategies.trend import SmaCross

ray = pytest.importorskip("ray")

# A configuration of tests/test_fast_parity.py: there the fast path and the engine agree to 1e-9.
SETTINGS = Settings.model_validate(
    {"execution": {"taker_fee": 0.001}, "risk": {"stop_loss_pct": 0.02}}
)
GRID = {"fast": "5:30:5", "slow": "20:60:10"}  # 26 valid sets, 4 dropped (fast >= slow)
RAY_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}


@pytest.fixture(scope="module")
def cluster() -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in RAY_ENV}
    os.environ.update(RAY_ENV)
    ray.init(address="local", num_cpus=4, include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="module")
def frames() -> dict[str, pd.DataFrame]:
    return generate_bars(1500, symbols=["AAA", "BB/B"], timeframe="1h", seed=5)


@pytest.fixture(scope="module")
def sma_sets() -> list[dict]:
    sets = grid_sets(SmaCross, GRID)
    assert len(sets) == 26 and sets.dropped == 4
    return sets.sets


@pytest.fixture(scope="module")
def local_rows(frames, sma_sets) -> pd.DataFrame:
    return local_evaluator(frames, SmaCross, sma_sets, SETTINGS)


# -- RayEvaluator ----------------------------------------------------------------------------------
@pytest.mark.parametrize("chunk_size", [4, 7])
def test_ray_rows_equal_local_rows(cluster, frames, sma_sets, local_rows, chunk_size):
    evaluator = RayEvaluator(chunk_size=chunk_size)
    rows = evaluator(frames, SmaCross, sma_sets, SETTINGS)
    pd.testing.assert_frame_equal(rows, local_rows, check_exact=True)
    assert evaluator.stats.total_chunks == 2 * math.ceil(26 / chunk_size)


def test_ray_rows_equal_local_rows_with_undefined_metrics(cluster, frames):
    # rsi with oversold=0 never enters: its rows hold None (win rate, profit factor, ...). With
    # one set per chunk those chunks are all-None object columns while the others are floats;
    # the result must still be typed as one frame of all the sets is
    sets = grid_sets(Rsi, {"period": "7,14,21", "oversold": "0,30", "overbought": "70"}).sets
    local = local_evaluator(frames, Rsi, sets, SETTINGS)
    assert local["win_rate"].isna().any() and local["win_rate"].notna().any()
    rows = RayEvaluator(chunk_size=1)(frames, Rsi, sets, SETTINGS)
    pd.testing.assert_frame_equal(rows, local, check_exact=True)


def test_each_frame_goes_into_the_object_store_once(cluster, frames, sma_sets, monkeypatch):
    """Spies (the real calls still happen): ray.put sees each symbol's DataFrame exactly once,
    and every submitted task gets an ObjectRef in the frame's place, never the DataFrame."""
    real_put = ray.put
    put_frames: list[pd.DataFrame] = []

    def put(value, **kwargs):
        if isinstance(value, pd.DataFrame):
            put_frames.append(value)
        return real_put(value, **kwargs)

    remote = distributed._remote_chunk()
    frame_args: list[object] = []

    class Spy:
        def remote(self, *args):
            frame_args.append(args[1])
            return remote.remote(*args)

    monkeypatch.setattr(ray, "put", put)
    monkeypatch.setitem(distributed._REMOTE, "chunk", Spy())
    evaluator = RayEvaluator(chunk_size=3)
    evaluator(frames, SmaCross, sma_sets, SETTINGS)
    assert len(frame_args) == evaluator.stats.submitted_chunks == 2 * 9
    assert len(put_frames) == 2 and all(
        p is f for p, f in zip(put_frames, frames.values(), strict=True)
    )
    assert all(isinstance(arg, ray.ObjectRef) for arg in frame_args)
    assert len({arg.hex() for arg in frame_args}) == 2  # one shared reference per symbol

    # A second call on the same bars (a Bayesian batch, another window) reuses the objects.
    evaluator(frames, SmaCross, sma_sets[:4], SETTINGS)
    assert len(put_frames) == 2 and evaluator.stats.frames_put == 0
    assert {arg.hex() for arg in frame_args[18:]} == {arg.hex() for arg in frame_args[:18]}


# -- checkpoint and resume -------------------------------------------------------------------------
class Interrupt(Exception):
    pass


def stop_after(n: int):
    def progress(done: int, total: int) -> None:
        if done >= n:
            raise Interrupt(f"stopped after {done} of {total} chunks")

    return progress


def test_interrupted_run_resumes_only_the_missing_chunks(
    cluster, frames, sma_sets, local_rows, tmp_path
):
    checkpoint = tmp_path / "ckpt"
    first = RayEvaluator(
        chunk_size=5, max_in_flight=2, progress=stop_after(2), checkpoint=checkpoint
    )
    with pytest.raises(Interrupt):
        first(frames, SmaCross, sma_sets, SETTINGS)
    written = sorted((checkpoint / "chunks").glob("*.parquet"))
    assert len(written) == 2
    inodes = {p.name: p.stat().st_ino for p in written}
    assert all(p.name.startswith(("AAA_", "BB_B_")) for p in written)  # '/' made file-safe

    calls: list[tuple[int, int]] = []
    second = RayEvaluator(
        chunk_size=5, progress=lambda d, t: calls.append((d, t)), checkpoint=checkpoint
    )
    rows = second(frames, SmaCross, sma_sets, SETTINGS)
    total = 2 * 6
    assert second.stats.total_chunks == total
    assert second.stats.loaded_chunks == 2
    assert second.stats.submitted_chunks == total - 2
    assert calls[0] == (2, total) and calls[-1] == (total, total)
    # the finished chunks were read, not rewritten (a rewrite renames a new file into place)
    assert {p.name: p.stat().st_ino for p in written} == inodes
    assert len(list((checkpoint / "chunks").glob("*.parquet"))) == total
    pd.testing.assert_frame_equal(rows, local_rows, check_exact=True)

    third = RayEvaluator(chunk_size=5, checkpoint=checkpoint)  # complete: nothing to run
    pd.testing.assert_frame_equal(third(frames, SmaCross, sma_sets, SETTINGS), local_rows)
    assert third.stats.submitted_chunks == 0 and third.stats.loaded_chunks == total


def test_a_different_sweep_in_the_checkpoint_is_refused(cluster, frames, sma_sets, tmp_path):
    checkpoint = tmp_path / "ckpt"
    RayEvaluator(chunk_size=10, checkpoint=checkpoint)(frames, SmaCross, sma_sets, SETTINGS)
    other_sets = grid_sets(SmaCross, {"fast": "5:35:5", "slow": "20:60:10"}).sets
    with pytest.raises(CheckpointMismatch, match=r"param sets: 26 sets .* \(now 29 sets"):
        RayEvaluator(chunk_size=10, checkpoint=checkpoint)(frames, SmaCross, other_sets, SETTINGS)
    cheaper = Settings.model_validate(
        {"execution": {"taker_fee": 0.0005}, "risk": {"stop_loss_pct": 0.02}}
    )
    with pytest.raises(
        CheckpointMismatch, match=r"setting execution.taker_fee: 0.001 \(now 0.0005\)"
    ):
        RayEvaluator(chunk_size=10, checkpoint=checkpoint)(frames, SmaCross, sma_sets, cheaper)
    with pytest.raises(CheckpointMismatch, match=r"chunk_size 10 \(now 4\)"):
        RayEvaluator(chunk_size=4, checkpoint=checkpoint)(frames, SmaCross, sma_sets, SETTINGS)
    # automatic chunk size adopts the checkpoint's
    auto = RayEvaluator(checkpoint=checkpoint)
    auto(frames, SmaCross, sma_sets, SETTINGS)
    assert auto.stats.chunk_size == 10 and auto.stats.submitted_chunks == 0


def test_changed_grid_in_the_same_out_dir_is_refused(frames, tmp_path):
    spec = SweepSpec(strategy="sma_cross", params=GRID, top_k=0)
    run_parameter_sweep(frames, spec, SETTINGS, out_dir=tmp_path)
    changed = SweepSpec(strategy="sma_cross", params={**GRID, "fast": "5:35:5"}, top_k=0)
    with pytest.raises(SweepError, match=r"params.fast: '5:30:5' \(now '5:35:5'\)"):
        run_parameter_sweep(frames, changed, SETTINGS, out_dir=tmp_path)
    # ranking options do not change what was computed: allowed
    run_parameter_sweep(
        frames, spec.model_copy(update={"metric": "cagr"}), SETTINGS, out_dir=tmp_path
    )


# -- ranking and the best sets ---------------------------------------------------------------------
def test_ranking_direction_and_min_trades():
    rows = pd.DataFrame(
        {
            "set_id": [0, 0, 1, 1, 2, 2],
            "symbol": ["A", "B"] * 3,
            "fast": [5, 5, 10, 10, 15, 15],
            **{m: [0.0] * 6 for m in ("total_return", "cagr", "volatility", "sortino")},
            "sharpe": [1.0, 3.0, 0.5, 0.5, 4.0, None],
            "max_drawdown": [0.30, 0.10, 0.05, 0.05, 0.50, 0.50],
            "n_trades": [10, 10, 10, 10, 10, 1],
            **{
                m: [0.0] * 6
                for m in (
                    "win_rate",
                    "profit_factor",
                    "expectancy",
                    "exposure",
                    "fees_paid",
                    "final_equity",
                    "turnover",
                )
            },
        }
    )
    by_sharpe = rank_sets(rows, "sharpe")
    assert by_sharpe["set_id"].tolist() == [2, 0, 1]  # set 2: mean of the defined value, 4.0
    by_dd = rank_sets(rows, "max_drawdown")  # a positive fraction: closest to 0 first
    assert by_dd["set_id"].tolist() == [1, 0, 2]
    strict = rank_sets(rows, "sharpe", min_trades=5)
    assert strict["set_id"].tolist() == [0, 1, 2]
    assert strict["rank"].tolist()[:2] == [1, 2] and pd.isna(strict["rank"].iloc[2])
    assert not strict["eligible"].iloc[2]


def test_best_sets_rerun_through_the_engine_match_their_sweep_rows(cluster, frames, tmp_path):
    spec = SweepSpec(strategy="sma_cross", params=GRID, metric="sharpe", top_k=2)
    result = run_parameter_sweep(frames, spec, SETTINGS, RayEvaluator(chunk_size=8), tmp_path)
    assert result.n_sets == 26 and result.dropped == 4
    assert len(result.rows) == 52 and set(result.rows["symbol"]) == set(frames)
    assert [b.rank for b in result.best] == [1, 2]
    for best in result.best:
        for symbol, backtest in best.backtests.items():
            assert backtest.engine == "event"
            row = result.rows[
                (result.rows["set_id"] == best.set_id) & (result.rows["symbol"] == symbol)
            ]
            assert backtest.metrics["total_return"] == pytest.approx(
                float(row["total_return"].iloc[0]), rel=1e-9, abs=1e-12
            )
            assert backtest.metrics["n_trades"] == int(row["n_trades"].iloc[0])
            assert len(backtest.trades) > 0
    assert result.best[0].score >= result.best[1].score
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / "results.parquet"), result.rows.reset_index(drop=True)
    )
    assert (
        pd.read_parquet(tmp_path / "summary.parquet")["set_id"].tolist()
        == result.summary["set_id"].tolist()
    )
    doc = json.loads((tmp_path / "best.json").read_text())
    top = doc["best"][0]
    assert top["params"] == result.best[0].params and top["metric"] == "sharpe"
    assert set(top["engine"]) == set(frames) and top["engine"]["AAA"]["trades"]
    assert {"entry_time", "exit_price", "pnl"} <= set(top["engine"]["AAA"]["trades"][0])


# -- Bayesian search -------------------------------------------------------------------------------
BAYES_PARAMS = {"fast": "2:40", "slow": "10:150"}


def test_bayes_beats_the_median_random_set_and_stays_in_bounds(frames, tmp_path):
    spec = SweepSpec(
        strategy="sma_cross",
        method="bayes",
        params=BAYES_PARAMS,
        n_trials=40,
        batch_size=8,
        seed=3,
        top_k=1,
    )
    bayes = run_parameter_sweep(frames, spec, SETTINGS, out_dir=tmp_path / "bayes")
    random = run_parameter_sweep(
        frames,
        spec.model_copy(update={"method": "random"}),
        SETTINGS,
        out_dir=tmp_path / "random",
    )
    assert bayes.n_sets + bayes.dropped == 40
    for s in bayes.rows[["fast", "slow"]].itertuples():
        assert 2 <= s.fast <= 40 and 10 <= s.slow <= 150 and s.fast < s.slow
    best = bayes.summary["sharpe"].iloc[0]
    assert best >= random.summary["sharpe"].median()
    assert (tmp_path / "bayes" / "optuna.db").is_file()
    assert (tmp_path / "bayes" / "results.parquet").is_file()


def test_bayes_study_resumes_after_an_interrupt(cluster, frames, tmp_path):
    spec = SweepSpec(
        strategy="sma_cross",
        method="bayes",
        params=BAYES_PARAMS,
        n_trials=12,
        batch_size=4,
        seed=1,
        top_k=0,
    )
    calls = 0

    def flaky(*args):
        """The real RayEvaluator, interrupted on its third call (mid-batch: trials asked and
        never told, as when a driver is killed)."""
        nonlocal calls
        calls += 1
        if calls == 3:
            raise Interrupt("driver stopped")
        return RayEvaluator()(*args)

    with pytest.raises(Interrupt):
        run_parameter_sweep(frames, spec, SETTINGS, flaky, tmp_path)
    import optuna

    study = optuna.load_study(
        study_name="n1v1-sweep", storage=f"sqlite:///{tmp_path / 'optuna.db'}"
    )
    told = [t for t in study.get_trials() if "outcome" in t.user_attrs]
    assert len(told) == 8
    first_params = {t.number: t.user_attrs.get("params") for t in told}

    progress: list[tuple[int, int]] = []
    resumed = run_parameter_sweep(
        frames,
        spec,
        SETTINGS,
        RayEvaluator(),
        tmp_path,
        progress=lambda d, t: progress.append((d, t)),
    )
    assert progress[0] == (8, 12) and progress[-1] == (12, 12)
    assert resumed.n_sets + resumed.dropped == 12
    for number, params in first_params.items():  # the finished trials were kept, not redone
        if params is not None:
            own = resumed.rows[resumed.rows["set_id"] == number]
            assert own[["fast", "slow"]].iloc[0].to_dict() == params
    more = run_parameter_sweep(
        frames, spec.model_copy(update={"n_trials": 16}), SETTINGS, RayEvaluator(), tmp_path
    )
    assert more.n_sets + more.dropped == 16
    study = optuna.load_study(
        study_name="n1v1-sweep", storage=f"sqlite:///{tmp_path / 'optuna.db'}"
    )
    abandoned = [t for t in study.get_trials() if "outcome" not in t.user_attrs]
    assert len(abandoned) == 4 and all(t.state.name == "FAIL" for t in abandoned)


def test_bayes_refuses_a_checkpointed_evaluator(frames, tmp_path):
    spec = SweepSpec(strategy="sma_cross", method="bayes", params=BAYES_PARAMS, n_trials=4)
    with pytest.raises(SweepError, match=r"the Optuna study in out_dir is the checkpoint"):
        run_parameter_sweep(frames, spec, SETTINGS, RayEvaluator(checkpoint=tmp_path), tmp_path)


# -- the command -----------------------------------------------------------------------------------
def sweep_args(fast: str = "3:12:3", start: str | None = "2018-04-05") -> list[str]:
    """Two bundled datasets at 15m, sma_cross on a 4 x 3 grid (fast=12, slow=10 is invalid).

    From 2018-04-05: both files have a 7-hour hole on 2018-04-04 (a gap at 15m bars), and the
    ranking metric (sharpe) is annualised, which backtest.gaps=refuse withholds across gaps."""
    return [
        "sweep",
        "--data",
        "coinbase_LTC-USD_1m",
        "--data",
        "coinbase_BTC-EUR_1m",
        *(["--start", start] if start else []),
        "--timeframe",
        "15m",
        "--strategy",
        "sma_cross",
        "--grid",
        f"fast={fast}",
        "--grid",
        "slow=10,20,30",
        "--fee",
        "0.001",
        "--top-k",
        "2",
    ]


def test_cli_local(tmp_path, capsys):
    assert main([*sweep_args(), "--local", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "11 parameter sets x 2 symbols = 22 backtests; 1 combination dropped as invalid" in out
    assert "Best sets re-run through the event-driven engine" in out
    assert set(pd.read_parquet(tmp_path / "results.parquet")["symbol"]) == {"LTC/USD", "BTC/EUR"}
    assert len(json.loads((tmp_path / "best.json").read_text())["best"]) == 2


def test_cli_refuses_an_annualised_ranking_across_gaps(tmp_path, capsys):
    # the whole files: a 7-hour hole on 2018-04-04, 28 missing 15-minute bars (> 10 x spacing)
    assert main([*sweep_args(start=None), "--local", "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("n1v1: error: LTC/USD's bars have 1 gap longer than 10x")
    assert "2018-04-04 17:00 to 2018-04-04 23:45 UTC (28 missing bars, 7h)" in err
    assert "the ranking metric sharpe is annualised" in err
    assert "--set backtest.gaps=allow" in err and "Traceback" not in err
    # ranked by a metric that does not annualise, the sweep runs and says what is null
    total = ["--metric", "total_return", "--local", "--out", str(tmp_path / "b")]
    assert main([*sweep_args(start=None), *total]) == 0
    out = capsys.readouterr().out
    assert "note: cagr, volatility, sharpe, sortino are null on LTC/USD, BTC/EUR" in out
    rows = pd.read_parquet(tmp_path / "b" / "results.parquet")
    assert rows["sharpe"].isna().all() and rows["total_return"].notna().all()
    assert json.loads((tmp_path / "b" / "best.json").read_text())["notes"][0].startswith(
        "LTC/USD's bars have 1 gap"
    )
    # opting in annualises across the gap, with a warning
    allow = ["--set", "backtest.gaps=allow", "--local", "--out", str(tmp_path / "c")]
    assert main([*sweep_args(start=None), *allow]) == 0
    out = capsys.readouterr().out
    assert "WARNING: cagr, volatility, sharpe, sortino annualised across the gaps" in out
    assert pd.read_parquet(tmp_path / "c" / "results.parquet")["sharpe"].notna().any()


def test_cli_on_ray_resumes_and_refuses_a_changed_grid(cluster, tmp_path, capsys):
    out = ["--out", str(tmp_path / "grid"), "--chunk-size", "5"]
    assert main([*sweep_args(), *out]) == 0
    assert "11 parameter sets x 2 symbols" in capsys.readouterr().out
    assert len(list((tmp_path / "grid" / "checkpoint" / "chunks").glob("*.parquet"))) == 6
    assert main([*sweep_args(), *out]) == 0
    assert "resumed: 6 of 6 chunks read" in capsys.readouterr().out
    assert main([*sweep_args(fast="3:15:3"), *out]) == 2
    assert "params.fast: '3:12:3' (now '3:15:3')" in capsys.readouterr().err
    bayes = ["--bayes", "6", "--batch-size", "3", "--out", str(tmp_path / "bayes")]
    assert main([*sweep_args(), *bayes]) == 0
    assert "parameter sets x 2 symbols" in capsys.readouterr().out
    best = json.loads((tmp_path / "bayes" / "best.json").read_text())
    rows = pd.read_parquet(tmp_path / "bayes" / "results.parquet")
    assert best["method"] == "bayes" and rows["set_id"].nunique() + best["dropped"] == 6
    assert (tmp_path / "bayes" / "optuna.db").is_file()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--metric", "sharp"], "unknown metric 'sharp' (did you mean 'sharpe'?)"),
        (["--grid", "fsat=3"], "unknown parameter 'fsat' (did you mean 'fast'?)"),
        (["--grid", "slow=2000"], "parameter slow=2000 out of bounds [3, 1000]"),
        (["--grid", "slow"], "--grid 'slow': expected NAME=SPEC"),
        (["--set", "risk.max_drawdown=0.2"], "sweeps use the fast path"),
    ],
)
def test_cli_errors_name_the_problem(tmp_path, capsys, extra, message):
    args = sweep_args()[:-6]  # without "--grid slow=10,20,30 --fee 0.001 --top-k 2"
    assert main([*args, *extra, "--local", "--out", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "sweep.json").exists()  # a refused sweep does not claim the directory


def test_jobs_sweep_runs_the_cli(tmp_path):
    script = Path(__file__).resolve().parents[1] / "jobs" / "sweep.py"
    done = subprocess.run(
        [sys.executable, str(script), *sweep_args()[1:], "--local", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "11 parameter sets x 2 symbols" in done.stdout
    assert (tmp_path / "best.json").is_file()
