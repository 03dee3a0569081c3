"""The `n1v1` command line: output files, flag -> settings mapping, and every user error -> exit 2.

Most tests call `main([...])` in-process (fast, and capsys sees the output); one runs
`python -m n1v1` in a subprocess to prove the module entry point and the exit code work end to end.
The small bundled dataset "binance_BTC-USDT_1h" (120 hourly bars) keeps every run quick.
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import os
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from n1v1.cli import main
from n1v1.data import load_bars

DATASET = "binance_BTC-USDT_1h"
# fast=3/slow=8 trades several times on this dataset and is flat at the end (checked in the test)
SMA_FAST = ["--strategy", "sma_cross", "--param", "fast=3", "--param", "slow=8"]
ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "n1v1" / "data" / "samples"
EXAMPLE_CONFIG = ROOT / "examples" / "config.yaml"

METRIC_KEYS = {
    "total_return", "cagr", "volatility", "sharpe", "sortino", "calmar", "max_drawdown",
    "max_drawdown_duration", "profit_factor", "win_rate", "expectancy", "n_trades", "exposure",
    "turnover", "fees_paid", "final_equity",
}  # fmt: skip
TRADE_KEYS = {
    "symbol", "side", "qty", "entry_time", "entry_price", "exit_time", "exit_price", "pnl", "fees",
}  # fmt: skip


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def backtest_json(capsys: pytest.CaptureFixture[str], tmp_path: Path, *extra: str) -> dict:
    path = tmp_path / "result.json"
    code, _, err = run(
        capsys, "backtest", "--data", DATASET, *SMA_FAST, "--json", str(path), *extra
    )
    assert code == 0, err
    return json.loads(path.read_text())


def assert_user_error(code: int, err: str, *fragments: str) -> None:
    assert code == 2
    assert err.startswith("n1v1: error: "), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, f"{fragment!r} not in {err!r}"


def write_csv(path: Path, rows: list[str]) -> Path:
    path.write_text("timestamp,open,high,low,close,volume\n" + "\n".join(rows) + "\n")
    return path


# -- backtest outputs ------------------------------------------------------------------------------
def test_backtest_json_has_the_required_keys_and_consistent_values(capsys, tmp_path):
    result = backtest_json(capsys, tmp_path)
    assert set(result["metrics"]) >= METRIC_KEYS
    assert result["trades"], "the fixture parameters are meant to trade"
    for trade in result["trades"]:
        assert set(trade) >= TRADE_KEYS
    assert all(len(pair) == 2 for pair in result["equity"])

    metrics, trades = result["metrics"], result["trades"]
    closed = [t for t in trades if t["exit_time"] is not None]
    assert len(closed) == len(trades), "no trade may be open at the end for the fee identity"
    assert metrics["final_equity"] == result["equity"][-1][1]
    assert metrics["n_trades"] == len(closed)
    assert metrics["fees_paid"] == pytest.approx(sum(t["fees"] for t in trades), abs=1e-9)
    # one equity point per bar, stamped with the bar's time
    bars = load_bars(DATASET)
    assert len(result["equity"]) == len(bars)
    assert result["equity"][0][0] == bars.index[0].isoformat()


def test_backtest_prints_a_metrics_table_trades_engine_and_paths(capsys, tmp_path):
    path = tmp_path / "r.json"
    code, out, _ = run(capsys, "backtest", "--data", DATASET, *SMA_FAST, "--json", str(path))
    assert code == 0
    result = json.loads(path.read_text())
    # percentages for returns, currency to the cent, from the same numbers as the JSON
    assert f"{result['metrics']['total_return'] * 100:,.2f}%" in out
    assert f"{result['metrics']['final_equity']:,.2f}" in out
    assert f"{result['metrics']['n_trades']} closed trades" in out
    assert f"engine: {result['meta']['engine']}" in out
    assert f"Wrote {path}" in out


def test_a_backtest_by_twap_prints_and_reports_what_slicing_cost(capsys, tmp_path):
    path, report = tmp_path / "r.json", tmp_path / "r.html"
    algo = "execution.algo={name: twap, duration: 3h, interval: 1h}"
    argv = ["--json", str(path), "--report", str(report), "--set", algo]
    code, out, _ = run(capsys, "backtest", "--data", DATASET, *SMA_FAST, *argv)
    assert code == 0
    execution = json.loads(path.read_text())["meta"]["execution"]
    n = execution["parents"]
    assert n >= 2 and execution["by_status"].get("done", 0) >= 1
    statuses = ", ".join(f"{v} {k}" for k, v in sorted(execution["by_status"].items()))
    assert "engine: event" in out and "event-driven engine used: execution.algo" in out
    assert f"parent orders: {n} TWAP over 3h, a child every 1h ({statuses})" in out
    assert f"implementation shortfall: {execution['total_bps']:,.2f} bps" in out
    assert f"as one market order at the next open: {execution['single_order_bps']:,.2f} bps" in out
    html = report.read_text()
    assert "<h2>Execution (parent orders)</h2>" in html
    assert f"{execution['total_bps']:,.2f} bps" in html


def test_report_flag_writes_an_html_file(capsys, tmp_path):
    report = tmp_path / "sub" / "report.html"
    code, out, _ = run(capsys, "backtest", "--data", DATASET, *SMA_FAST, "--report", str(report))
    assert code == 0
    text = report.read_text()
    assert "<html" in text.lower() and "sma_cross" in text
    assert str(report) in out


def test_fill_close_and_next_open_fill_at_the_documented_prices(capsys, tmp_path):
    bars = load_bars(DATASET)
    at_close = backtest_json(capsys, tmp_path, "--fill", "close")["trades"]
    at_open = backtest_json(capsys, tmp_path, "--fill", "next_open")["trades"]
    assert at_close != at_open
    # docs/execution.md: `close` fills at the signal bar's close; `next_open` at the next bar's
    # open, one bar later (no slippage by default, so the prices are the raw bar prices).
    first_close, first_open = at_close[0], at_open[0]
    t_close = bars.index.get_loc(_ts(first_close["entry_time"]))
    t_open = bars.index.get_loc(_ts(first_open["entry_time"]))
    assert t_open == t_close + 1
    assert first_close["entry_price"] == bars["close"].iloc[t_close]
    assert first_open["entry_price"] == bars["open"].iloc[t_open]


def _ts(text: str):
    import pandas as pd

    return pd.Timestamp(text)


def test_fee_flag_sets_maker_and_taker_fee(capsys, tmp_path):
    result = backtest_json(capsys, tmp_path, "--fee", "0.002")
    assert result["meta"]["maker_fee"] == result["meta"]["taker_fee"] == 0.002
    trade = result["trades"][0]
    assert trade["exit_reason"] == "signal"  # both legs are market orders: taker fee
    # fee = rate x notional of each leg: 0.002 x qty x (entry price + exit price)
    expected = 0.002 * trade["qty"] * (trade["entry_price"] + trade["exit_price"])
    assert trade["fees"] == pytest.approx(expected, rel=1e-12)


def test_qty_flag_means_fixed_sizing(capsys, tmp_path):
    trades = backtest_json(capsys, tmp_path, "--qty", "0.05")["trades"]
    assert trades and all(t["qty"] == 0.05 for t in trades)


def test_fraction_flag_sizes_from_equity(capsys, tmp_path):
    bars = load_bars(DATASET)
    first = backtest_json(capsys, tmp_path, "--fraction", "0.5", "--fee", "0.001")["trades"][0]
    # docs/execution.md, sizing `fraction`: qty = f x E_t / (c_t x (1 + taker_fee)), decided at the
    # close c_t of the bar before the next_open entry; E_t is still the initial 10,000 then. The
    # quantity is then rounded down to BTC/USDT's bundled lot size of 0.00001 BTC.
    signal_close = bars["close"].iloc[bars.index.get_loc(_ts(first["entry_time"])) - 1]
    sized = 0.5 * 10_000 / (signal_close * 1.001)
    assert first["qty"] == pytest.approx(math.floor(sized / 1e-5) * 1e-5, rel=1e-12)
    assert sized - 1e-5 < first["qty"] <= sized


def test_start_and_end_cut_the_bars_inclusively(capsys, tmp_path):
    result = backtest_json(capsys, tmp_path, "--start", "2018-05-02", "--end", "2018-05-03")
    assert result["equity"][0][0] == "2018-05-02T00:00:00+00:00"
    assert result["equity"][-1][0] == "2018-05-03T23:00:00+00:00"
    assert len(result["equity"]) == 48  # two whole days of hourly bars


def test_timeframe_flag_resamples(capsys, tmp_path):
    result = backtest_json(capsys, tmp_path, "--timeframe", "4h")
    assert len(result["equity"]) == 120 // 4  # 120 hourly bars starting at midnight
    assert result["equity"][1][0] == "2018-05-01T04:00:00+00:00"


def test_strategy_from_an_import_path_in_the_working_directory(capsys, tmp_path, monkeypatch):
    (tmp_path / "cli_test_user_strategies.py").write_text(
        textwrap.dedent(
            """
            import numpy as np
            from n1v1.strategies import Strategy

            class AlwaysLong(Strategy):
                name = "always_long"

                def target_positions(self, bars, allow_short=False):
                    return np.ones(len(bars), dtype=np.int8)
            """
        )
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))  # the CLI adds the cwd; undo afterwards
    code, out, err = run(
        capsys, "backtest", "--data", DATASET, "--strategy", "cli_test_user_strategies:AlwaysLong"
    )
    assert code == 0, err
    assert "always_long" in out and "1 still open at the end" in out


# -- user errors: one line on stderr, exit code 2 --------------------------------------------------
def test_missing_data_file(capsys, tmp_path):
    missing = tmp_path / "nope.csv"
    code, _, err = run(capsys, "backtest", "--data", str(missing), *SMA_FAST)
    assert_user_error(code, err, str(missing), "does not exist")


def test_malformed_row_names_the_file_and_row(capsys, tmp_path):
    bad = write_csv(
        tmp_path / "bad.csv",
        ["2024-01-01T00:00:00Z,1,2,0.5,1.5,10", "2024-01-01T01:00:00Z,1.5,2,1,oops,10"],
    )
    code, _, err = run(capsys, "backtest", "--data", str(bad), *SMA_FAST)
    assert_user_error(code, err, f"{bad}:3: field 'close': cannot parse 'oops' as a number")


def test_unknown_strategy_lists_the_known_ones(capsys):
    from n1v1.strategies import list_strategies

    code, _, err = run(capsys, "backtest", "--data", DATASET, "--strategy", "sma_crosss")
    assert_user_error(code, err, "unknown strategy 'sma_crosss'", *list_strategies())


def test_parameter_out_of_bounds_names_it_and_its_bounds(capsys):
    code, _, err = run(
        capsys, "backtest", "--data", DATASET, "--strategy", "sma_cross", "--param", "fast=1"
    )
    assert_user_error(code, err, "fast=1", "[2, 500]")


def test_unknown_config_key_suggests_the_right_one(capsys, tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("risk:\n  stop_los_pct: 0.05\n")
    code, _, err = run(capsys, "backtest", "--data", DATASET, *SMA_FAST, "--config", str(config))
    assert_user_error(code, err, "risk.stop_los_pct", "did you mean stop_loss_pct")
    code, _, err = run(capsys, "backtest", "--data", DATASET, *SMA_FAST, "--set", "risk.sizng=x")
    assert_user_error(code, err, "risk.sizng", "did you mean sizing")


def test_missing_config_file(capsys, tmp_path):
    code, _, err = run(capsys, "config", "show", "--config", str(tmp_path / "none.yaml"))
    assert_user_error(code, err, "none.yaml", "not found")


def test_invalid_flag_value_is_checked_by_the_settings_model(capsys):
    code, _, err = run(capsys, "backtest", "--data", DATASET, *SMA_FAST, "--fee", "0.5")
    assert_user_error(code, err, "execution.taker_fee")
    assert all(line.startswith("n1v1: error: ") for line in err.splitlines())


def test_window_without_bars_is_an_error(capsys):
    code, _, err = run(capsys, "backtest", "--data", DATASET, *SMA_FAST, "--start", "2030-01-01")
    assert_user_error(code, err, "no bars between 2030-01-01", "2018-05-01 00:00")


def test_qty_and_fraction_together_is_a_usage_error(capsys):
    code, _, err = run(
        capsys, "backtest", "--data", DATASET, *SMA_FAST, "--qty", "1", "--fraction", "0.5"
    )
    assert code == 2
    assert "not allowed with argument" in err


# -- data, strategies, config ----------------------------------------------------------------------
def test_data_list_shows_every_bundled_dataset(capsys):
    names = sorted(p.stem for p in SAMPLES.glob("*.csv"))
    assert len(names) == 7
    code, out, _ = run(capsys, "data", "list")
    assert code == 0
    rows = [line.split() for line in out.splitlines()[2 : 2 + len(names)]]
    assert [row[0] for row in rows] == names
    for row in rows:  # rows, first and last straight from the CSV text, not from the loader
        lines = (SAMPLES / f"{row[0]}.csv").read_text().strip().splitlines()[1:]
        assert row[4] == f"{len(lines):,}"
        first, last = lines[0].split(",")[0], lines[-1].split(",")[0]
        assert " ".join(row[5:7]) == first[:16].replace("T", " ")
        assert " ".join(row[7:9]) == last[:16].replace("T", " ")


def test_data_show_reports_head_tail_and_gaps(capsys, tmp_path):
    # 5 minute bars 00:00..00:06 without 00:02 and 00:03: one hole of two bars
    minutes = [0, 1, 4, 5, 6]
    csv = write_csv(tmp_path / "x.csv", [f"2024-01-01T00:0{m}:00Z,1,2,0.5,1.5,10" for m in minutes])
    code, out, _ = run(capsys, "data", "show", str(csv), "--rows", "2")
    assert code == 0
    assert "5 bars of 1m" in out
    assert "Gaps: 1 hole, 2 missing bars" in out
    assert "2024-01-01 00:02" in out and "2024-01-01 00:03" in out  # the hole's first and last bar
    assert "..." in out  # head and tail, not all 5 rows


def test_data_validate(capsys, tmp_path):
    good = write_csv(tmp_path / "good.csv", ["2024-01-01T00:00:00Z,1,2,0.5,1.5,10"])
    code, out, _ = run(capsys, "data", "validate", str(good))
    assert code == 0 and f"{good}: valid" in out
    bad = write_csv(tmp_path / "bad.csv", ["2024-01-01T00:00:00Z,1,0.5,0.9,1,10"])  # high < open
    code, _, err = run(capsys, "data", "validate", str(bad))
    assert_user_error(code, err, f"{bad}:2: field 'high': high 0.5 is below max(open, close) = 1.0")


def test_data_validate_of_a_header_only_file(capsys, tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("timestamp,open,high,low,close,volume\n")
    code, out, err = run(capsys, "data", "validate", str(empty))
    assert (code, err) == (0, "")
    assert out == f"{empty}: valid, but it holds no bars (only a header)\n"


def test_data_validate_lists_every_problem_one_per_line(capsys, tmp_path):
    bad = write_csv(
        tmp_path / "bad.csv",
        [
            "2024-01-01T00:00:00Z,1,2,0.5,1.5,10",  # line 2: fine
            "2024-01-01T00:01:00Z,1,2,0.5,x,10",  # line 3: close is not a number
            "2024-01-01T00:00:30Z,1,2,0.5,1.5,-1",  # line 4: earlier than line 3, negative volume
        ],
    )
    code, out, err = run(capsys, "data", "validate", str(bad))
    assert (code, out) == (2, "")
    assert err.splitlines() == [
        f"n1v1: error: {bad}:3: field 'close': cannot parse 'x' as a number",
        f"n1v1: error: {bad}:4: field 'timestamp': 2024-01-01T00:00:30+00:00 is earlier than "
        "line 3's 2024-01-01T00:01:00+00:00 (timestamps must be strictly increasing)",
        f"n1v1: error: {bad}:4: field 'volume': volume -1.0 is negative",
        f"n1v1: error: {bad}: 3 problems",
    ]
    # loading for a run is just as strict, and says the same
    with pytest.raises(ValueError) as info:
        load_bars(bad)
    assert [f"n1v1: error: {line}" for line in str(info.value).splitlines()] == err.splitlines()


def test_strategies_lists_parameters_defaults_and_bounds(capsys):
    from n1v1.strategies import get_strategy, list_strategies, param_space

    code, out, _ = run(capsys, "strategies")
    assert code == 0
    for name in list_strategies():
        assert f"{name}: " in out
    fast = param_space(get_strategy("sma_cross"))["fast"]
    sma_block = out.split("sma_cross: ")[1]
    assert f"[{fast.low}, {fast.high}]" in sma_block and repr(fast.default) in sma_block


def test_config_show_applies_file_then_env_then_flags(capsys, tmp_path, monkeypatch):
    import yaml

    config = tmp_path / "c.yaml"
    config.write_text("execution:\n  taker_fee: 0.003\n  maker_fee: 0.003\n")
    monkeypatch.setenv("N1V1_EXECUTION__TAKER_FEE", "0.004")

    code, out, _ = run(capsys, "config", "show", "--config", str(config))
    shown = yaml.safe_load(out)["execution"]
    assert code == 0 and shown["maker_fee"] == 0.003 and shown["taker_fee"] == 0.004
    code, out, _ = run(
        capsys, "config", "show", "--config", str(config), "--set", "execution.taker_fee=0.005"
    )
    assert yaml.safe_load(out)["execution"]["taker_fee"] == 0.005


def test_example_config_documents_every_setting_at_its_default():
    import yaml

    from n1v1.config import Settings

    example = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    defaults = Settings().model_dump(mode="json")
    assert example == defaults  # same keys and values: the example cannot drift from the model


def test_config_check(capsys, tmp_path):
    example = EXAMPLE_CONFIG
    code, out, err = run(capsys, "config", "check", str(example))
    assert code == 0, err
    assert "valid" in out
    bad = tmp_path / "bad.yaml"
    bad.write_text("risk:\n  sizing: fixed\n")  # fixed sizing needs risk.qty
    code, _, err = run(capsys, "config", "check", str(bad))
    assert_user_error(code, err, "risk.qty")


def test_yaml_syntax_errors_name_file_line_and_column_in_every_command(capsys, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("risk:\n  max_drawdown: 0.2\n  stop_loss_pct: 0.05: x\n")
    expected = f"n1v1: error: {bad}:3:22: invalid YAML: mapping values are not allowed here\n"
    for argv in (
        ["config", "check", str(bad)],
        ["config", "show", "--config", str(bad)],
        ["backtest", "--data", DATASET, *SMA_FAST, "--config", str(bad)],
        ["train", "--spec", str(bad)],
        ["paper", "--config", str(bad)],  # fails on reading the file, before any Ray starts
    ):
        code, _, err = run(capsys, *argv)
        assert (code, err) == (2, expected), argv


# -- demo, entry points ----------------------------------------------------------------------------
def test_demo_writes_its_outputs_and_its_printed_command_reproduces_them(capsys, tmp_path):
    code, out, _ = run(capsys, "demo", "--out", str(tmp_path), "--no-progress")
    assert code == 0
    demo = json.loads((tmp_path / "demo.json").read_text())
    assert (tmp_path / "demo_report.html").is_file()
    assert str((tmp_path / "demo_report.html").resolve()) in out
    assert demo["metrics"]["n_trades"] >= 5, "the demo should show a meaningful number of trades"

    command = next(line for line in out.splitlines() if "n1v1 backtest" in line)
    argv = shlex.split(command.split("n1v1 ", 1)[1])
    argv[argv.index("--json") + 1] = str(tmp_path / "again.json")
    code, _, err = run(capsys, *argv)
    assert code == 0, err
    assert json.loads((tmp_path / "again.json").read_text())["metrics"] == demo["metrics"]


def test_help_exits_zero(capsys):
    code, out, _ = run(capsys, "--help")
    assert code == 0 and "backtest" in out


def test_console_script_entry_point():
    (entry,) = importlib.metadata.entry_points(group="console_scripts", name="n1v1")
    assert entry.value == "n1v1.cli:main"
    assert entry.load() is main


def test_python_dash_m_runs_a_backtest_and_reports_errors(tmp_path, capsys):
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    out = tmp_path / "sub.json"
    args = ["backtest", "--data", DATASET, *SMA_FAST, "--engine", "event", "--no-progress"]
    proc = subprocess.run(
        [sys.executable, "-m", "n1v1", *args, "--json", str(out)],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    in_process = tmp_path / "in.json"
    assert main([*args, "--json", str(in_process)]) == 0
    capsys.readouterr()
    assert json.loads(out.read_text()) == json.loads(in_process.read_text())

    proc = subprocess.run(
        [sys.executable, "-m", "n1v1", "backtest", "--data", DATASET, "--strategy", "nope"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.startswith("n1v1: error: unknown strategy 'nope'")


# -- gaps (docs/metrics.md, "Gaps") ----------------------------------------------------------------
GAPPY = ["--data", "coinbase_BTC-USD_1m", "--timeframe", "5m", "--strategy", "sma_cross"]
GAPPY += ["--param", "fast=5", "--param", "slow=20", "--fee", "0.001", "--stop-loss", "0.02"]


def test_backtest_across_gaps_withholds_annualised_metrics_and_says_why(capsys, tmp_path):
    path = tmp_path / "run.json"
    code, out, _ = run(capsys, "backtest", *GAPPY, "--json", str(path), "--no-progress")
    assert code == 0
    result = json.loads(path.read_text())
    metrics, meta = result["metrics"], result["meta"]
    for key in ("cagr", "volatility", "sharpe", "sortino", "calmar"):
        assert metrics[key] is None, key
    # 2016-10-07 00:00 to 2018-04-06 23:55 UTC, one 5-minute bar more: 547 days
    assert metrics["elapsed_seconds"] == 547 * 86_400.0
    assert metrics["n_gaps"] == 4 and len(meta["gaps"]) == 4
    assert meta["gap_policy"] == "refuse" and meta["gap_multiple"] == 10.0
    assert meta["gaps"][0] == {
        "start": "2016-10-10T00:00:00+00:00",
        "end": "2017-09-02T23:55:00+00:00",
        "missing_bars": 94_464,  # 328 days of 288 bars
        "seconds": 328 * 86_400.0,
        "last_bar_before": "2016-10-09T23:55:00+00:00",
        "first_bar_after": "2017-09-03T00:00:00+00:00",
    }
    # the best trade was held across the 328-day gap: 35 bars, but 328.1 days
    best = max(result["trades"], key=lambda t: t["pnl"])
    assert best["spans_gap"] and best["bars_held"] == 35
    assert best["duration_seconds"] == pytest.approx(328.12 * 86_400, rel=1e-4)
    assert sum(t["spans_gap"] for t in result["trades"]) == 1
    assert any(note.startswith("annualised metrics (CAGR") for note in meta["notes"])
    # the printed table and notes (wrapped at 100 columns) say the same
    assert "CAGR                            n/a" in out
    words = " ".join(out.split())
    assert "note: the bars have 4 gaps longer than 10x the median bar spacing" in words
    assert "2016-10-10 00:00 to 2017-09-02 23:55 UTC (94,464 missing bars, 328d)" in words
    assert "note: 1 trade open across a gap" in words
    assert "long BTC/USD 2016-10-09 23:20 to 2017-09-03 02:15 (328.1 days), 35 bars" in words


def test_segment_policy_prints_one_row_per_gap_free_segment(capsys, tmp_path):
    path = tmp_path / "run.json"
    extra = ["--set", "backtest.gaps=segment", "--json", str(path), "--no-progress"]
    code, out, _ = run(capsys, "backtest", *GAPPY, *extra)
    assert code == 0
    segments = json.loads(path.read_text())["meta"]["segments"]
    assert [s["start"][:10] for s in segments] == [
        "2016-10-07",
        "2017-09-03",
        "2017-12-17",
        "2018-04-04",
        "2018-04-05",
    ]
    assert sum(s["n_bars"] for s in segments) == 2_506
    assert all(s["cagr"] is not None and s["sharpe"] is not None for s in segments)
    assert "gap-free segments (backtest.gaps=segment)" in out
    assert "2016-10-07 00:00  2016-10-09 23:55   864" in out
    # every segment is a few days: their CAGRs (about -100 %) are extrapolations, and it says so
    assert "note: segments 0, 1, 2, 3, 4 cover less than 30 days" in " ".join(out.split())


def test_allow_policy_annualises_in_calendar_time_with_a_warning(capsys, tmp_path):
    path = tmp_path / "run.json"
    extra = ["--set", "backtest.gaps=allow", "--json", str(path), "--no-progress"]
    assert run(capsys, "backtest", *GAPPY, *extra)[0] == 0
    result = json.loads(path.read_text())
    metrics = result["metrics"]
    growth = metrics["final_equity"] / 10_000.0  # 5.7990 over 547 calendar days
    assert metrics["cagr"] == pytest.approx(growth ** (365 / 547) - 1, rel=1e-9)
    assert 1.0 < metrics["cagr"] < 3.0  # 223 %, not the 1e34 % of counting bars
    assert any(n.startswith("WARNING: annualised across 4 gaps") for n in result["meta"]["notes"])


def test_readme_first_example_is_gap_free_with_sane_figures(capsys, tmp_path):
    path = tmp_path / "run.json"
    argv = ["backtest", "--data", "coinbase_BTC-USD_1d", "--start", "2015-01-08"]
    argv += ["--strategy", "sma_cross", "--param", "fast=10", "--param", "slow=50"]
    argv += ["--fee", "0.001", "--stop-loss", "0.05", "--json", str(path), "--no-progress"]
    assert run(capsys, *argv)[0] == 0
    metrics = json.loads(path.read_text())["metrics"]
    assert metrics["n_gaps"] == 0
    assert -1.0 < metrics["cagr"] < 5.0 and 0.0 < metrics["volatility"] < 2.0
