"""Parameter sweeps: grid, random and Bayesian search over a strategy's declared space.

`run_parameter_sweep(frames, spec, settings, evaluator, out_dir)` turns a `SweepSpec` into
parameter sets (`n1v1.research.space`), has an evaluator backtest every set on every symbol through
the compiled fast path (in-process with `local_evaluator`, or on Ray with `RayEvaluator`), ranks
the sets by one metric averaged over symbols, and re-runs the best `top_k` through the full
event-driven engine for their trade lists. Files in `out_dir`:

- `results.parquet`: every metric per (set_id, symbol), with the parameters;
- `summary.parquet`: one row per set, every metric averaged over symbols, ranked;
- `best.json`: the top sets with their sweep metrics and full-engine metrics and trades;
- `sweep.json`: what the directory belongs to (a rerun with a different sweep is refused);
- `optuna.db` (Bayesian search): the Optuna study; rerunning resumes with its finished trials.

Ranking: higher is better for every metric except `max_drawdown`, which the metrics report as a
positive fraction (0 = never below the peak), so there the smallest, i.e. closest to 0, wins. A
set is ranked only when it made at least `min_trades` closed trades on every symbol and its metric
is defined (not None/NaN) on at least one symbol.

Bayesian search uses Optuna's TPE sampler (seeded) in ask-and-tell batches: ask `batch_size`
trials, evaluate them in one evaluator call (so a Ray cluster runs them in parallel), tell the
results. Suggestions come from the same Dimensions as random search. A combination the strategy's
Params model rejects is told as FAIL (attribute `outcome=invalid`), as is an evaluated set that is
not eligible for ranking (`outcome=ineligible`); both count towards `n_trials`.
"""

from __future__ import annotations

import difflib
import json
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pydantic

from n1v1.backtest.gaps import gap_summary
from n1v1.backtest.metrics import ANNUALISED
from n1v1.backtest.runner import BacktestResult, run_backtest
from n1v1.backtest.sweep import METRIC_COLUMNS
from n1v1.config import Settings
from n1v1.data.gaps import long_gaps
from n1v1.research.distributed import SETTINGS_SECTIONS, bars_hash
from n1v1.research.evaluate import Evaluator, check_sweepable, local_evaluator
from n1v1.research.space import (
    Dimension,
    ParamSets,
    SweepError,
    dimensions,
    grid_sets,
    random_sets,
    validate_sets,
)
from n1v1.strategies.base import Strategy
from n1v1.strategies.registry import create_strategy, get_strategy

__all__ = [
    "BestSet",
    "SweepError",
    "SweepResult",
    "SweepSpec",
    "check_out_dir",
    "metric_direction",
    "parse_sweep_spec",
    "rank_sets",
    "run_parameter_sweep",
]

ParamValue = str | int | float | bool
STUDY_NAME = "n1v1-sweep"
# Fields of the spec a rerun in the same out_dir must keep (others only change the ranking).
_IDENTITY = {
    "grid": ("strategy", "method", "params"),
    "random": ("strategy", "method", "params", "n_trials", "seed"),
    "bayes": ("strategy", "method", "params", "seed", "metric", "min_trades"),
}

Progress = Callable[[int, int], None]


class SweepSpec(pydantic.BaseModel):
    """What to search: a strategy, a method, the region per parameter, and how to rank."""

    model_config = pydantic.ConfigDict(extra="forbid", strict=True, frozen=True)

    strategy: str = pydantic.Field(description="built-in name or package.module:Class")
    method: Literal["grid", "random", "bayes"] = "grid"
    params: dict[str, ParamValue | list[ParamValue] | tuple[ParamValue, ...]] = pydantic.Field(
        default_factory=dict,
        description="per parameter: 'lo:hi:step', 'a,b,c', a list of values or one value",
    )
    n_trials: int | None = pydantic.Field(
        None, ge=1, description="random: sets drawn; bayes: trials in the study (total)"
    )
    seed: int = 0
    metric: str = "sharpe"
    min_trades: int = pydantic.Field(0, ge=0, description="closed trades needed on every symbol")
    top_k: int = pydantic.Field(3, ge=0, description="best sets re-run through the event engine")
    batch_size: int | None = pydantic.Field(
        None, ge=1, description="bayes: trials per evaluator call (default: 2 per CPU)"
    )

    @pydantic.field_validator("metric")
    @classmethod
    def _known_metric(cls, value: str) -> str:
        if value not in METRIC_COLUMNS:
            close = difflib.get_close_matches(value, METRIC_COLUMNS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(
                f"unknown metric {value!r}{hint}; choose from {', '.join(METRIC_COLUMNS)}"
            )
        return value

    @pydantic.model_validator(mode="after")
    def _trials_match_method(self) -> SweepSpec:
        if self.method == "grid" and self.n_trials is not None:
            raise ValueError(
                "n_trials: a grid runs every combination; n_trials is for random/bayes"
            )
        if self.method != "grid" and self.n_trials is None:
            raise ValueError(f"n_trials: required for method={self.method}")
        return self


def metric_direction(metric: str) -> Literal["maximize", "minimize"]:
    """max_drawdown is a positive fraction (0 best): minimised; every other metric maximised."""
    return "minimize" if metric == "max_drawdown" else "maximize"


@dataclass
class BestSet:
    """One of the top sets: its sweep rows and its full event-engine backtest per symbol."""

    rank: int
    set_id: int
    params: dict[str, Any]
    metric: str
    score: float
    sweep: dict[str, dict[str, Any]]  # symbol -> the sweep's metrics
    backtests: dict[str, BacktestResult]  # symbol -> run_backtest(..., engine="event")

    def to_dict(self) -> dict[str, Any]:
        return {
            "rank": self.rank,
            "set_id": self.set_id,
            "params": self.params,
            "metric": self.metric,
            "score": _json_number(self.score),
            "sweep": self.sweep,
            "engine": {
                symbol: {
                    "metrics": result.metrics,
                    "trades": [t.to_dict() for t in result.trades],
                }
                for symbol, result in self.backtests.items()
            },
        }


@dataclass
class SweepResult:
    """rows: every metric per (set_id, symbol); summary: one ranked row per set; best: top_k."""

    spec: SweepSpec
    rows: pd.DataFrame
    summary: pd.DataFrame
    best: list[BestSet]
    n_sets: int  # parameter sets evaluated
    dropped: int  # combinations the strategy's Params model rejected
    drop_reasons: tuple[str, ...] = ()
    files: dict[str, Path] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # gaps in the bars and what they withheld


def run_parameter_sweep(
    frames: Mapping[str, pd.DataFrame] | pd.DataFrame,
    spec: SweepSpec,
    settings: Settings,
    evaluator: Evaluator | None = None,
    out_dir: str | Path | None = None,
    *,
    progress: Progress | None = None,
) -> SweepResult:
    """Run the sweep `spec` on `frames` (symbol -> bars, or one DataFrame) and write `out_dir`.

    evaluator: local_evaluator (default) or a RayEvaluator; Bayesian search calls it once per
    batch, so give it no checkpoint there (the Optuna study in out_dir is the checkpoint).
    progress: Bayesian search only, callback(finished_trials, n_trials) after each batch (grid and
    random report through the evaluator's own progress).
    """
    frames = _as_frames(frames)
    evaluator = evaluator or local_evaluator
    strategy_cls = get_strategy(spec.strategy)
    try:
        check_sweepable(frames, settings)
    except ValueError as err:
        raise SweepError(str(err)) from None
    notes = sweep_gap_notes(frames, spec.metric, settings)
    if spec.method == "bayes":
        if getattr(evaluator, "checkpoint", None) is not None:
            raise SweepError(
                "method=bayes: the Optuna study in out_dir is the checkpoint; give an evaluator "
                "without checkpoint="
            )
        dimensions(strategy_cls, spec.params)  # a bad spec fails before out_dir is claimed
    else:
        sets = _param_sets(strategy_cls, spec)
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        _write_identity(out, check_out_dir(out, spec, frames, settings))
    if spec.method == "bayes":
        rows, sets_by_id, dropped, reasons = _bayes(
            frames, strategy_cls, spec, settings, evaluator, out, progress
        )
    else:
        rows = evaluator(frames, strategy_cls, sets.sets, settings)
        sets_by_id = dict(enumerate(sets.sets))
        dropped, reasons = sets.dropped, sets.drop_reasons
    summary = rank_sets(rows, spec.metric, spec.min_trades)
    best = _best_sets(frames, spec, settings, rows, summary, sets_by_id)
    result = SweepResult(spec, rows, summary, best, len(sets_by_id), dropped, tuple(reasons))
    result.notes = notes
    if out is not None:
        result.files = _write_outputs(out, result)
    return result


def sweep_gap_notes(
    frames: Mapping[str, pd.DataFrame], metric: str, settings: Settings
) -> list[str]:
    """Notes on the gaps of every symbol's bars; a SweepError when the ranking metric is an
    annualised one that backtest.gaps withholds across those gaps (every set would be unranked).

    A sweep has no per-segment figures: backtest.gaps=segment withholds like "refuse" here.
    """
    backtest = settings.backtest
    notes: list[str] = []
    gappy: list[str] = []
    for symbol, frame in frames.items():
        gaps = long_gaps(frame.index, backtest.gap_multiple)
        if gaps:
            gappy.append(symbol)
            notes.append(gap_summary(gaps, backtest.gap_multiple, subject=f"{symbol}'s bars"))
    if not gappy:
        return notes
    withheld = ", ".join(k for k in ANNUALISED if k in METRIC_COLUMNS)
    if backtest.gaps == "allow":
        notes.append(
            f"WARNING: {withheld} annualised across the gaps of {', '.join(gappy)} "
            "(backtest.gaps=allow): each return across a gap counts as one bar's return"
        )
        return notes
    if metric in ANNUALISED:
        raise SweepError(
            "\n".join(notes) + f"\nthe ranking metric {metric} is annualised, and "
            f"backtest.gaps={backtest.gaps} withholds it across gaps, so no set could be "
            "ranked: use a gap-free window (--start/--end), rank by a metric that is not "
            "annualised (total_return, max_drawdown, profit_factor, ...), or --set "
            "backtest.gaps=allow to annualise across the gaps"
        )
    notes.append(
        f"{withheld} are null on {', '.join(gappy)}: backtest.gaps={backtest.gaps} withholds "
        "annualised metrics across gaps (a sweep has no per-segment figures)"
    )
    return notes


def _as_frames(frames: Mapping[str, pd.DataFrame] | pd.DataFrame) -> dict[str, pd.DataFrame]:
    if isinstance(frames, pd.DataFrame):
        return {str(frames.attrs.get("symbol") or "ASSET"): frames}
    out = {str(symbol): frame for symbol, frame in frames.items()}
    if not out:
        raise SweepError("frames: no symbols given")
    return out


def _param_sets(strategy_cls: type[Strategy], spec: SweepSpec) -> ParamSets:
    if spec.method == "grid":
        return grid_sets(strategy_cls, spec.params)
    assert spec.n_trials is not None
    return random_sets(strategy_cls, spec.n_trials, spec.params, seed=spec.seed)


# -- ranking ---------------------------------------------------------------------------------------
def rank_sets(rows: pd.DataFrame, metric: str, min_trades: int = 0) -> pd.DataFrame:
    """One row per set: parameters, every metric averaged over symbols (undefined values skipped),
    `symbols`, `n_trades_min` (fewest closed trades on a symbol), `eligible` and `rank` (1 = best
    eligible set; missing for the others, which follow the ranked ones)."""
    if metric not in METRIC_COLUMNS:
        raise SweepError(f"metric {metric!r}: choose from {', '.join(METRIC_COLUMNS)}")
    params = [c for c in rows.columns if c not in ("set_id", "symbol", *METRIC_COLUMNS)]
    numeric = rows[list(METRIC_COLUMNS)].apply(pd.to_numeric, errors="coerce").astype(float)
    by_set = numeric.groupby(rows["set_id"], sort=True)
    summary = rows.groupby("set_id", sort=True)[params].first() if params else None
    means = by_set.mean()
    if summary is None:
        summary = pd.DataFrame(index=means.index)
    summary = summary.join(means)
    summary["symbols"] = by_set.size()
    summary["n_trades_min"] = by_set["n_trades"].min().astype("int64")
    summary["eligible"] = (summary["n_trades_min"] >= min_trades) & summary[metric].notna()
    ascending = metric_direction(metric) == "minimize"
    summary = summary.reset_index().sort_values(
        ["eligible", metric, "set_id"],
        ascending=[False, ascending, True],
        na_position="last",
        kind="stable",
    )
    ranks = np.where(summary["eligible"], np.cumsum(summary["eligible"]), 0)
    summary["rank"] = pd.array(np.where(ranks > 0, ranks, None), dtype="Int64")
    return summary.reset_index(drop=True)


def _best_sets(
    frames: Mapping[str, pd.DataFrame],
    spec: SweepSpec,
    settings: Settings,
    rows: pd.DataFrame,
    summary: pd.DataFrame,
    sets_by_id: Mapping[int, dict[str, Any]],
) -> list[BestSet]:
    """The top_k eligible sets, each re-run through the event-driven engine on every symbol."""
    top = summary[summary["eligible"]].head(spec.top_k)
    best = []
    for row in top.itertuples(index=False):
        set_id = int(row.set_id)
        params = dict(sets_by_id[set_id])
        own = rows[rows["set_id"] == set_id]
        sweep = {
            str(r["symbol"]): {m: _json_number(r[m]) for m in METRIC_COLUMNS}
            for r in own.to_dict("records")
        }
        backtests = {
            symbol: run_backtest(
                frame, create_strategy(spec.strategy, params), settings, engine="event"
            )
            for symbol, frame in frames.items()
        }
        score = float(getattr(row, spec.metric))
        best.append(BestSet(int(row.rank), set_id, params, spec.metric, score, sweep, backtests))
    return best


def _json_number(value: Any) -> Any:
    """NaN/inf/None -> None, numpy scalars -> Python numbers (strict JSON)."""
    if value is None:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# -- out_dir ---------------------------------------------------------------------------------------
def _identity(
    spec: SweepSpec, frames: Mapping[str, pd.DataFrame], settings: Settings
) -> dict[str, Any]:
    dumped = spec.model_dump(mode="json")
    settings_dump = settings.model_dump(mode="json")
    return {
        "spec": {key: dumped[key] for key in _IDENTITY[spec.method]},
        "symbols": {symbol: bars_hash(frame) for symbol, frame in frames.items()},
        "settings": {section: settings_dump[section] for section in SETTINGS_SECTIONS},
    }


def check_out_dir(
    out: Path, spec: SweepSpec, frames: Mapping[str, pd.DataFrame], settings: Settings
) -> dict[str, Any]:
    """This sweep's identity, after checking that `out/sweep.json` (if any) describes the same
    sweep; a different one is a SweepError naming every difference. run_parameter_sweep calls it
    (and then records the identity); a CLI calls it first to refuse before starting a cluster."""
    from n1v1.research.distributed import _dotted_diff

    path = Path(out) / "sweep.json"
    current = _identity(spec, frames, settings)
    if not path.is_file():
        return current
    try:
        before = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise SweepError(f"{path}: unreadable ({err}); delete it or use another --out") from None
    diffs = [
        f"{key}: {a!r} (now {b!r})"
        for key, a, b in _dotted_diff(before.get("spec", {}), current["spec"])
    ]
    old_symbols = before.get("symbols", {})
    if set(old_symbols) != set(current["symbols"]):
        diffs.append(f"symbols: {sorted(old_symbols)} (now {sorted(current['symbols'])})")
    else:
        diffs += [
            f"bars of {s}: the data changed"
            for s, h in current["symbols"].items()
            if old_symbols[s] != h
        ]
    diffs += [
        f"setting {key}: {a!r} (now {b!r})"
        for key, a, b in _dotted_diff(before.get("settings", {}), current["settings"])
    ]
    if diffs:
        raise SweepError(
            f"{out} holds a different sweep: "
            + "; ".join(diffs)
            + ". Use another output directory, or delete this one to start over."
        )
    return current


def _write_identity(out: Path, identity: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    path = out / "sweep.json"
    tmp = path.with_name(f".sweep.json.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(identity, indent=1))
    os.replace(tmp, path)


def _write_outputs(out: Path, result: SweepResult) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "results": out / "results.parquet",
        "summary": out / "summary.parquet",
        "best": out / "best.json",
    }
    result.rows.to_parquet(files["results"], index=False)
    result.summary.to_parquet(files["summary"], index=False)
    doc = {
        "strategy": result.spec.strategy,
        "method": result.spec.method,
        "metric": result.spec.metric,
        "direction": metric_direction(result.spec.metric),
        "n_sets": result.n_sets,
        "dropped": result.dropped,
        "notes": result.notes,
        "best": [b.to_dict() for b in result.best],
    }
    files["best"].write_text(json.dumps(doc, indent=1, allow_nan=False, default=str))
    if result.spec.method == "bayes":
        files["study"] = out / "optuna.db"
    return files


# -- Bayesian search -------------------------------------------------------------------------------
def default_batch_size(evaluator: Any) -> int:
    """Trials per evaluator call: the evaluator's `parallelism` if it has one (RayEvaluator: two
    per cluster CPU), else two per local CPU."""
    parallel = getattr(evaluator, "parallelism", None)
    if parallel:
        return int(parallel)
    return 2 * (os.cpu_count() or 1)


def _suggest(trial: Any, dim: Dimension) -> Any:
    if dim.kind == "fixed":
        return dim.value
    if dim.kind == "choice":
        return trial.suggest_categorical(dim.name, list(dim.choices))
    if dim.kind == "int":
        return trial.suggest_int(dim.name, int(dim.low), int(dim.high), step=int(dim.step or 1))  # type: ignore[arg-type]
    return trial.suggest_float(dim.name, float(dim.low), float(dim.high), step=dim.step)  # type: ignore[arg-type]


def _bayes(
    frames: Mapping[str, pd.DataFrame],
    strategy_cls: type[Strategy],
    spec: SweepSpec,
    settings: Settings,
    evaluator: Evaluator,
    out: Path | None,
    progress: Progress | None,
) -> tuple[pd.DataFrame, dict[int, dict[str, Any]], int, list[str]]:
    import optuna
    from optuna.trial import TrialState

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    dims = dimensions(strategy_cls, spec.params)
    storage = f"sqlite:///{(out / 'optuna.db').resolve()}" if out is not None else None
    study = optuna.create_study(
        study_name=STUDY_NAME,
        storage=storage,
        sampler=optuna.samplers.TPESampler(seed=spec.seed),
        direction=metric_direction(spec.metric),
        load_if_exists=True,
    )
    for stale in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study.tell(stale.number, state=TrialState.FAIL)  # asked by an interrupted run, never told
    assert spec.n_trials is not None
    batch = spec.batch_size or default_batch_size(evaluator)
    finished = _counted(study)
    if progress is not None:
        progress(min(finished, spec.n_trials), spec.n_trials)
    while finished < spec.n_trials:
        trials = [study.ask() for _ in range(min(batch, spec.n_trials - finished))]
        candidates = [{name: _suggest(t, d) for name, d in dims.items()} for t in trials]
        valid, rejected, _ = validate_sets(strategy_cls, candidates)
        for i in rejected:
            trials[i].set_user_attr("outcome", "invalid")
            trials[i].set_user_attr("reason", _reason(strategy_cls, candidates[i]))
            study.tell(trials[i], state=TrialState.FAIL)
        skipped = set(rejected)
        kept = [t for i, t in enumerate(trials) if i not in skipped]
        if kept:
            rows = evaluator(frames, strategy_cls, valid, settings)
            ranked = rank_sets(rows, spec.metric, spec.min_trades).set_index("set_id")
            for position, trial in enumerate(kept):
                own = rows[rows["set_id"] == position]
                trial.set_user_attr("params", valid[position])
                trial.set_user_attr("rows", _trial_rows(own))
                if bool(ranked.at[position, "eligible"]):
                    trial.set_user_attr("outcome", "ok")
                    study.tell(trial, float(ranked.at[position, spec.metric]))
                else:
                    trial.set_user_attr("outcome", "ineligible")
                    study.tell(trial, state=TrialState.FAIL)
        finished += len(trials)
        if progress is not None:
            progress(finished, spec.n_trials)
    return _study_rows(study, strategy_cls)


def _reason(strategy_cls: type[Strategy], candidate: Mapping[str, Any]) -> str:
    _, _, reasons = validate_sets(strategy_cls, [candidate])
    return reasons[0] if reasons else ""


def _counted(study: Any) -> int:
    """Trials that count towards n_trials: those this code told (evaluated or invalid)."""
    return sum(1 for t in study.get_trials(deepcopy=False) if "outcome" in t.user_attrs)


def _trial_rows(own: pd.DataFrame) -> dict[str, dict[str, Any]]:
    return {
        str(r["symbol"]): {m: _json_number(r[m]) for m in METRIC_COLUMNS}
        for r in own.to_dict("records")
    }


def _study_rows(
    study: Any, strategy_cls: type[Strategy]
) -> tuple[pd.DataFrame, dict[int, dict[str, Any]], int, list[str]]:
    """Rows of every evaluated trial (set_id = trial number), the sets, and the invalid count."""
    records: list[dict[str, Any]] = []
    sets_by_id: dict[int, dict[str, Any]] = {}
    dropped = 0
    reasons: dict[str, None] = {}
    for trial in study.get_trials(deepcopy=False):
        outcome = trial.user_attrs.get("outcome")
        if outcome == "invalid":
            dropped += 1
            if len(reasons) < 5:
                reasons[trial.user_attrs.get("reason", "")] = None
        if outcome not in ("ok", "ineligible"):
            continue
        params = trial.user_attrs["params"]
        sets_by_id[trial.number] = params
        for symbol, metrics in trial.user_attrs["rows"].items():
            records.append({"set_id": trial.number, "symbol": symbol, **params, **metrics})
    if not records:
        raise SweepError(
            f"{strategy_cls.name}: no trial produced a valid parameter set "
            f"({dropped} invalid combinations); narrow the ranges"
        )
    rows = pd.DataFrame(records).sort_values(["set_id", "symbol"], kind="stable")
    return rows.reset_index(drop=True), sets_by_id, dropped, list(reasons)


def parse_sweep_spec(data: Mapping[str, Any]) -> SweepSpec:
    """A SweepSpec from plain data (CLI flags, YAML, a notebook dict); errors name the field."""
    from n1v1.config import format_validation_error

    try:
        return SweepSpec.model_validate(dict(data))
    except pydantic.ValidationError as exc:
        raise SweepError(format_validation_error(exc, SweepSpec)) from None
