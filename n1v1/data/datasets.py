"""The bundled sample datasets: real crypto bars shipped inside the package.

The files live in ``n1v1/data/samples/`` (LEAN sample data, Apache-2.0, see the NOTICE there) and
are found with ``importlib.resources``, so they load the same from a source checkout and from an
installed wheel. A dataset's name is its file stem, ``<venue>_<BASE>-<QUOTE>_<timeframe>``, from
which the venue, symbol and timeframe are read; rows and first/last times come from the data.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

import pandas as pd

from n1v1.data.errors import DataError
from n1v1.data.loaders import read_csv_handle

_SAMPLES = "samples"
_STEM_RE = re.compile(
    r"^(?P<venue>[a-z0-9]+)_(?P<base>[A-Z0-9]+)-(?P<quote>[A-Z0-9]+)_(?P<timeframe>\d+[smhd])$"
)


@dataclass(frozen=True, slots=True)
class DatasetInfo:
    """What a bundled dataset holds. ``path`` is where the CSV lies in the installed package."""

    name: str
    venue: str
    symbol: str
    timeframe: str
    rows: int
    first: pd.Timestamp
    last: pd.Timestamp
    path: Path


def dataset_names() -> list[str]:
    """Names of the bundled datasets, sorted."""
    return sorted(_files())


def list_datasets() -> list[DatasetInfo]:
    """One `DatasetInfo` per bundled dataset, sorted by name (each file is loaded and validated)."""
    infos = []
    for name in dataset_names():
        bars = _load_cached(name)
        match = _STEM_RE.match(name)
        assert match is not None  # _files() only keeps names that match
        infos.append(
            DatasetInfo(
                name=name,
                venue=match["venue"],
                symbol=f"{match['base']}/{match['quote']}",
                timeframe=match["timeframe"],
                rows=len(bars),
                first=bars.index[0],
                last=bars.index[-1],
                path=Path(str(_files()[name])),
            )
        )
    return infos


def load_dataset(name: str) -> pd.DataFrame:
    """Load a bundled dataset by name, e.g. "coinbase_BTC-USD_1m"; a fresh copy on every call."""
    if name not in _files():
        raise DataError(
            f"unknown dataset {name!r}; known datasets: {', '.join(dataset_names())}",
            source=str(name),
        )
    cached = _load_cached(name)
    bars = cached.copy()
    bars.attrs = dict(cached.attrs)
    return bars


@functools.cache
def _files() -> dict[str, Traversable]:
    folder = resources.files("n1v1.data").joinpath(_SAMPLES)
    found = {}
    for entry in folder.iterdir():
        stem = entry.name.removesuffix(".csv")
        if entry.name.endswith(".csv") and _STEM_RE.match(stem):
            found[stem] = entry
    return found


@functools.cache
def _load_cached(name: str) -> pd.DataFrame:
    match = _STEM_RE.match(name)
    assert match is not None
    with _files()[name].open("rb") as handle:
        return read_csv_handle(handle, source=name, symbol=f"{match['base']}/{match['quote']}")
