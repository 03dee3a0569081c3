"""Backtests requested over HTTP run as Ray tasks, off the gateway, with their result in the store.

The request was validated by the gateway (a bundled dataset or a file of the upload directory,
built-in strategy, parameters); the task resolves a file's name again the same way
(n1v1/data/uploads.py), so it reads bundled data or that directory only. A failure is stored with
its message rather than lost in a log.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import ray

from n1v1.store import create_store
from n1v1.store.backtests import update_backtest

MAX_EQUITY_POINTS = 500


def execute_backtest_job(
    store_url: str, job_id: str, request: dict[str, Any], upload_dir: str | None = None
) -> str:
    """Run one requested backtest and store its result (or its failure); "done" or "failed".
    A Ray task in the Serve app (`run_backtest_job`); in-process where there is no Ray.
    `upload_dir` must be the same directory for the task as for the gateway (on a cluster: the
    shared volume)."""
    from n1v1.backtest.report import write_result_report
    from n1v1.backtest.runner import run_backtest
    from n1v1.cli.common import cost_line
    from n1v1.config import Settings
    from n1v1.data.market import load_market
    from n1v1.data.uploads import uploaded_file
    from n1v1.serve.api import downsample
    from n1v1.strategies.registry import create_strategy

    store = create_store(store_url)
    try:
        update_backtest(store, job_id, "running")
        file = request.get("file")
        source = str(uploaded_file(upload_dir, file)) if file else request["dataset"]
        bars = load_market(
            source,
            timeframe=request.get("timeframe"),
            start=request.get("start"),
            end=request.get("end"),
        )
        settings = Settings.model_validate(
            {
                "backtest": {"cash": request["cash"]},
                "execution": {
                    "maker_fee": request["fee"],
                    "taker_fee": request["fee"],
                    "slippage_bps": request["slippage_bps"],
                },
                "risk": {"stop_loss_pct": request.get("stop_loss_pct")},
            }
        )
        result = run_backtest(
            bars, create_strategy(request["strategy"], request["params"]), settings
        )
        with tempfile.TemporaryDirectory(prefix="n1v1-report-") as folder:
            title = f"{request['strategy']} on {file or request['dataset']} (backtest {job_id})"
            page = write_result_report(
                Path(folder) / "report.html",
                result,
                bars,
                title=title,
                cost_note=cost_line(settings),
            ).read_text(encoding="utf-8")
        points = list(zip(result.equity.index, result.equity.to_numpy(), strict=True))
        summary = {
            "metrics": result.metrics,
            "engine": result.engine,
            "notes": result.notes,
            "trades": [t.to_dict() for t in result.trades],
            "equity": [
                [ts.isoformat(), float(v)] for ts, v in downsample(points, MAX_EQUITY_POINTS)
            ],
        }
        update_backtest(store, job_id, "done", result=summary, report=page)
        return "done"
    except Exception as exc:
        update_backtest(store, job_id, "failed", error=f"{type(exc).__name__}: {exc}")
        return "failed"
    finally:
        store.dispose()


run_backtest_job = ray.remote(num_cpus=1, max_retries=0)(execute_backtest_job)
