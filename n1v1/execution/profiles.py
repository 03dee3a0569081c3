"""Where a VWAP's volume profile comes from: a bundled dataset, cut before the parent starts.

A profile learned from bars not lived through yet would be lookahead (the volume of the very
hours being traded), so a parent's profile is taken only from the dataset's bars strictly before
the bar it starts at, and a dataset with none is refused (the error names it and the time).
"""

from __future__ import annotations

import pandas as pd

from n1v1.config import AlgoSettings
from n1v1.data.datasets import load_dataset
from n1v1.execution.algo_plan import PlanError, volume_profile


def profile_bucket(interval: pd.Timedelta) -> pd.Timedelta:
    """The time-of-day bucket of a profile for slots `interval` apart: the interval itself
    when it divides a day, else an hour."""
    day = pd.Timedelta(days=1)
    return interval if interval <= day and day % interval == pd.Timedelta(0) else pd.Timedelta("1h")


def dataset_profile(name: str, before: pd.Timestamp | None, bucket: pd.Timedelta) -> pd.Series:
    """The volume profile of bundled dataset `name` from its bars before `before` (all: None)."""
    bars = load_dataset(name)
    if before is not None:
        bars = bars[bars.index < before]
        if bars.empty:
            raise PlanError(
                f"profile: dataset {name!r} has no bars before {before}, where this run starts; a "
                "VWAP profile must come from earlier history (no lookahead)"
            )
    return volume_profile(bars, bucket)


def check_profile(algo: AlgoSettings, start: pd.Timestamp) -> None:
    """A run starting at `start` with `algo`: a vwap's dataset must have bars before it
    (PlanError naming `profile` otherwise), so no parent of the run goes without a profile."""
    if algo.name == "vwap":
        assert algo.profile is not None  # AlgoSettings requires one for a vwap
        dataset_profile(algo.profile, start, profile_bucket(pd.Timedelta(algo.interval)))
