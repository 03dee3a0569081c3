"""Market data: load, validate, resample, bundled sample datasets and a synthetic generator.

Every function here produces or consumes one representation, the *bars frame*: a pandas DataFrame
with a tz-aware UTC DatetimeIndex named "timestamp" (bar open time), float64 columns exactly
open/high/low/close/volume, strictly increasing; ``attrs["symbol"]`` and ``attrs["source"]``.
See docs/data.md.
"""

from n1v1.data.datasets import DatasetInfo, list_datasets, load_dataset
from n1v1.data.errors import DataError
from n1v1.data.loaders import from_ccxt, load_bars, load_csv, load_parquet
from n1v1.data.market import load_market
from n1v1.data.problems import DataProblem
from n1v1.data.resample import COLUMNS, infer_timeframe, parse_timeframe, resample_bars
from n1v1.data.synthetic import SyntheticModel, generate_bars, generate_ohlcv_arrays
from n1v1.data.validate import apply_gap_policy, find_gaps, validate_bars

__all__ = [
    "COLUMNS",
    "DataError",
    "DataProblem",
    "DatasetInfo",
    "SyntheticModel",
    "apply_gap_policy",
    "find_gaps",
    "from_ccxt",
    "generate_bars",
    "generate_ohlcv_arrays",
    "infer_timeframe",
    "list_datasets",
    "load_bars",
    "load_csv",
    "load_dataset",
    "load_market",
    "load_parquet",
    "parse_timeframe",
    "resample_bars",
    "validate_bars",
]
