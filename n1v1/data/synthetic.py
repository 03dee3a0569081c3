"""Seeded synthetic OHLCV bars for tests, benchmarks and scale runs.

The bundled real datasets are small; benchmarks need millions of bars that still look like a market.
The model, per bar ``i`` of length ``dt`` (all vectorised, no Python loop over bars):

* volatility regimes: a Markov chain whose states have geometric durations (``regime_mean_bars``)
  and volatility multipliers (``regime_vol``); the regimes are market-wide (shared by all symbols);
* log return ``r_i = (mu - s_i^2/2) dt + s_i z_i + J_i`` with ``s_i`` the regime- and
  time-of-day-scaled volatility, ``z_i = sqrt(rho) f_i + sqrt(1 - rho) e_i`` (``f`` a common market
  factor, ``e`` the symbol's own noise, so symbols are correlated with coefficient ``rho``) and rare
  Gaussian jumps ``J_i``;
* open = previous close (optionally times a small overnight-style gap);
* high/low drawn from the exact law of the maximum/minimum of a Brownian bridge from open to close
  in log space (``max = mid + sqrt(d^2 + E s^2 / 2)``, ``E`` ~ Exp(1), ``d`` half the log move), so
  ``high >= max(open, close)`` and ``low <= min(open, close)`` hold by construction;
* volume = base x intraday seasonality (peak at ``intraday_peak_hour`` UTC) x
  ``(1 + beta |r_i| / s_ref)`` x lognormal noise: busier hours, busier volatile regimes, and volume
  that moves with the size of the return.

Randomness: ``np.random.default_rng(seed).spawn(...)`` gives independent streams for the regimes
(stream 0), the common factor (1) and each symbol (2 + j), so the first symbol's path does not
depend on how many symbols are requested and `regime_path` reproduces the regimes of a run.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from n1v1.data.errors import DataError
from n1v1.data.resample import COLUMNS, TIME_UNIT, parse_timeframe

_YEAR_SECONDS = 365.0 * 86400.0
_DAY_SECONDS = 86400
_CHUNK = 1 << 18  # bars per chunk; part of the definition of the streams, do not change lightly

OHLCVArrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


@dataclass(frozen=True, slots=True)
class SyntheticModel:
    """Parameters of the generator; the defaults look roughly like a liquid crypto pair."""

    start_price: float = 100.0
    annual_vol: float = 0.6  # annualised volatility before regime and time-of-day scaling
    drift: float = 0.0  # annualised drift of the price (mu)
    regime_vol: tuple[float, ...] = (0.7, 2.0)  # volatility multiplier per regime
    regime_mean_bars: tuple[float, ...] = (3000.0, 600.0)  # mean regime duration in bars
    jump_prob: float = 2e-4  # chance of a jump in a bar
    jump_scale: float = 8.0  # jump standard deviation, in units of the bar's volatility
    correlation: float = 0.6  # rho: weight of the common factor in every symbol's shocks
    gap_prob: float = 0.0  # chance that a bar opens away from the previous close
    gap_scale: float = 0.5  # gap standard deviation, in units of the bar's volatility
    base_volume: float = 10.0
    volume_noise: float = 0.5  # sigma of the lognormal volume noise
    volume_return_beta: float = 1.0  # how strongly volume follows |return|
    intraday_amplitude: float = 0.5  # volume multiplier 1 + a*cos(...), volatility its sqrt
    intraday_peak_hour: float = 15.0  # UTC hour of the busiest time of day

    def __post_init__(self) -> None:
        positive = ("start_price", "annual_vol", "base_volume")
        for name in positive:
            if not getattr(self, name) > 0:
                raise DataError(f"SyntheticModel.{name} must be > 0", field=name)
        for name in ("jump_prob", "gap_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise DataError(f"SyntheticModel.{name} must be in [0, 1]", field=name)
        if not 0.0 <= self.correlation <= 1.0:
            raise DataError("SyntheticModel.correlation must be in [0, 1]", field="correlation")
        if not 0.0 <= self.intraday_amplitude < 1.0:
            raise DataError(
                "SyntheticModel.intraday_amplitude must be in [0, 1)", field="intraday_amplitude"
            )
        for name in ("jump_scale", "gap_scale", "volume_noise", "volume_return_beta"):
            if getattr(self, name) < 0:
                raise DataError(f"SyntheticModel.{name} must be >= 0", field=name)
        if len(self.regime_vol) == 0 or len(self.regime_vol) != len(self.regime_mean_bars):
            raise DataError(
                "SyntheticModel.regime_vol and regime_mean_bars need the same, non-zero length",
                field="regime_vol",
            )
        if min(self.regime_vol) <= 0 or min(self.regime_mean_bars) < 1:
            raise DataError(
                "SyntheticModel: regime_vol must be > 0 and regime_mean_bars >= 1",
                field="regime_vol",
            )


def generate_bars(
    n_bars: int,
    symbols: Sequence[str] | str | int = ("SYN",),
    timeframe: str | pd.Timedelta = "1m",
    start: str | pd.Timestamp = "2024-01-01",
    seed: int = 0,
    model: SyntheticModel | None = None,
) -> pd.DataFrame | dict[str, pd.DataFrame]:
    """``n_bars`` bars per symbol as bars frames (see the module docstring for the model).

    ``symbols``: a name, a sequence of names, or a count ``k`` (names "SYN0".."SYN<k-1>").
    Returns a DataFrame when one symbol is requested, else a dict symbol -> DataFrame.
    ``start`` is the first bar's open time (naive = UTC).
    """
    names = _symbol_names(symbols)
    step = parse_timeframe(timeframe)
    first = _utc(start)
    arrays = _simulate(n_bars, len(names), seed, step, first, model or SyntheticModel())
    index = pd.date_range(first, periods=n_bars, freq=step, name="timestamp").as_unit(TIME_UNIT)
    frames = {}
    for name, block in zip(names, arrays, strict=True):
        # (5, n) C-ordered transposed is pandas' own block layout: no copy of the data.
        frame = pd.DataFrame(block.T, index=index, columns=list(COLUMNS), copy=False)
        frame.attrs = {"symbol": name, "source": f"synthetic(seed={seed})"}
        frames[name] = frame
    return frames[names[0]] if len(names) == 1 else frames


def generate_ohlcv_arrays(
    n: int,
    seed: int = 0,
    timeframe: str | pd.Timedelta = "1m",
    start: str | pd.Timestamp = "2024-01-01",
    model: SyntheticModel | None = None,
) -> OHLCVArrays:
    """(open, high, low, close, volume) float64 arrays of one symbol, without any pandas objects.

    The numbers equal those of ``generate_bars(n, ("SYN",), timeframe, start, seed, model)``.
    """
    step = parse_timeframe(timeframe)
    block = _simulate(n, 1, seed, step, _utc(start), model or SyntheticModel())[0]
    return block[0], block[1], block[2], block[3], block[4]


def regime_path(n: int, seed: int = 0, model: SyntheticModel | None = None) -> np.ndarray:
    """The regime index (int8, into ``model.regime_vol``) of every bar of a run with this seed."""
    _check_count(n)
    return _regimes(n, _streams(seed, 0)[0], model or SyntheticModel())


def _simulate(
    n: int,
    n_symbols: int,
    seed: int,
    step: pd.Timedelta,
    start: pd.Timestamp,
    model: SyntheticModel,
) -> list[np.ndarray]:
    """One (5, n) array [open, high, low, close, volume] per symbol.

    Works in chunks of `_CHUNK` bars so that temporaries stay small (memory ~ the outputs)
    and hot in cache; each chunk draws from the streams in a fixed order, so results depend
    on the seed only.
    """
    _check_count(n)
    regime_rng, factor_rng, *symbol_rngs = _streams(seed, n_symbols)
    regimes = _regimes(n, regime_rng, model)
    regime_vol = np.asarray(model.regime_vol, dtype=np.float64)
    dt_seconds = step.total_seconds()
    walk = _Walk(
        sigma_ref=model.annual_vol * math.sqrt(dt_seconds / _YEAR_SECONDS),
        mean_step=model.drift * dt_seconds / _YEAR_SECONDS,
        own_weight=math.sqrt(1.0 - model.correlation),
        model=model,
    )
    profile = _intraday_profile(step, start, model)
    outputs = [np.empty((5, n)) for _ in symbol_rngs]
    last_close = [model.start_price] * n_symbols
    for lo in range(0, n, _CHUNK):
        hi = min(n, lo + _CHUNK)
        sigma = regime_vol[regimes[lo:hi]]
        sigma *= walk.sigma_ref
        season = None
        if profile is not None:
            season = profile[np.arange(lo, hi) % len(profile)]
            sigma *= np.sqrt(season)
        factor = factor_rng.standard_normal(hi - lo)
        factor *= math.sqrt(model.correlation)
        for j, rng in enumerate(symbol_rngs):
            last_close[j] = walk.fill(
                outputs[j][:, lo:hi], rng, factor, sigma, season, last_close[j], first=lo == 0
            )
    return outputs


@dataclass(frozen=True, slots=True)
class _Walk:
    """The per-chunk arithmetic of one symbol; constants computed once per run."""

    sigma_ref: float
    mean_step: float
    own_weight: float
    model: SyntheticModel

    def fill(
        self,
        out: np.ndarray,
        rng: np.random.Generator,
        factor: np.ndarray,
        sigma: np.ndarray,
        season: np.ndarray | None,
        prev_close: float,
        first: bool,
    ) -> float:
        """Write open/high/low/close/volume rows of ``out`` for one chunk; return its last close."""
        model = self.model
        m = out.shape[1]
        open_, high, low, close, volume = out
        move = rng.standard_normal(m)  # log move from open to close
        move *= self.own_weight
        move += factor
        move *= sigma
        move += self.mean_step - 0.5 * sigma * sigma
        jumps = _events(rng, m, model.jump_prob)
        move[jumps] += rng.standard_normal(len(jumps)) * (model.jump_scale * sigma[jumps])
        gaps = _events(rng, m, model.gap_prob)
        gaps = gaps[gaps > 0] if first else gaps  # the very first bar opens at start_price
        gap_size = rng.standard_normal(len(gaps)) * (model.gap_scale * sigma[gaps])

        np.abs(move, out=volume)
        volume *= model.volume_return_beta / self.sigma_ref
        volume += 1.0
        noise = rng.standard_normal(m)
        noise *= model.volume_noise
        noise -= 0.5 * model.volume_noise**2  # mean-one lognormal
        volume *= np.exp(noise, out=noise)
        volume *= model.base_volume
        if season is not None:
            volume *= season

        # log close = log previous close + gap + move, accumulated from the previous chunk's close.
        np.copyto(close, move)
        close[gaps] += gap_size
        np.cumsum(close, out=close)
        close += math.log(prev_close)
        log_close = close.copy()
        np.exp(close, out=close)
        open_[0] = prev_close
        open_[1:] = close[:-1]
        open_[gaps] *= np.exp(gap_size)

        _bridge_extremes(log_close, move, sigma, rng, high, low)
        np.maximum(high, open_, out=high)  # exact in real numbers; guards rounding by an ulp
        np.maximum(high, close, out=high)
        np.minimum(low, open_, out=low)
        np.minimum(low, close, out=low)
        return float(close[-1])


def _events(rng: np.random.Generator, m: int, prob: float) -> np.ndarray:
    """Indices in [0, m) where a Bernoulli(prob) event happens, from geometric waiting times.

    Same law as ``rng.random(m) < prob`` but draws ~m*prob numbers instead of m: jumps are rare.
    """
    if prob <= 0.0:
        return np.empty(0, dtype=np.intp)
    if prob >= 1.0:
        return np.arange(m)
    found = []
    position = -1
    while True:
        steps = rng.geometric(prob, size=int(m * prob * 1.2) + 16)
        events = position + np.cumsum(steps)
        if events[-1] >= m:
            found.append(events[events < m])
            return np.concatenate(found).astype(np.intp)
        found.append(events)
        position = int(events[-1])


def _bridge_extremes(
    log_close: np.ndarray,
    move: np.ndarray,
    sigma: np.ndarray,
    rng: np.random.Generator,
    high: np.ndarray,
    low: np.ndarray,
) -> None:
    """High and low of a Brownian bridge (variance sigma^2 over the bar) from log open to log close.

    With a = log open, b = log close: P(max > x) = exp(-2 (x - a)(x - b) / sigma^2) for
    x >= max(a, b). Solving for a uniform draw gives
    x = (a + b)/2 + sqrt(((b - a)/2)^2 + E sigma^2/2) with E ~ Exp(1); the minimum mirrors it
    with an independent E.
    """
    half = 0.5 * move  # (b - a) / 2
    mid = log_close - half
    half *= half
    half_var = 0.5 * sigma * sigma
    for out, sign in ((high, 1.0), (low, -1.0)):
        rng.standard_exponential(len(move), out=out)
        out *= half_var
        out += half
        np.sqrt(out, out=out)
        out *= sign
        out += mid
        np.exp(out, out=out)


def _regimes(n: int, rng: np.random.Generator, model: SyntheticModel) -> np.ndarray:
    """Markov regime path: geometric durations, the next state uniform among the other states."""
    k = len(model.regime_vol)
    states = np.zeros(n, dtype=np.int8)
    if k == 1:
        return states
    means = np.asarray(model.regime_mean_bars, dtype=np.float64)
    # Start from the stationary law (time share proportional to the mean duration).
    state = int(rng.choice(k, p=means / means.sum()))
    filled = 0
    while filled < n:
        batch = int(1.2 * (n - filled) / means.mean()) + 16  # runs expected, with slack
        moves = rng.integers(1, k, size=batch)
        sequence = (state + np.concatenate(([0], np.cumsum(moves[:-1])))) % k
        durations = rng.geometric(1.0 / means[sequence])
        run = np.repeat(sequence.astype(np.int8), durations)[: n - filled]
        states[filled : filled + len(run)] = run
        filled += len(run)
        state = int((sequence[-1] + moves[-1]) % k)
    return states


def _intraday_profile(
    step: pd.Timedelta, start: pd.Timestamp, model: SyntheticModel
) -> np.ndarray | None:
    """Mean-one time-of-day multiplier for one repeat of the daily pattern, from the first bar on.

    The pattern repeats every day / gcd(day, step) bars. None when bars are a day or longer.
    """
    step_s = int(step.total_seconds())
    if step_s >= _DAY_SECONDS or step_s <= 0 or model.intraday_amplitude == 0.0:
        return None
    period = _DAY_SECONDS // math.gcd(_DAY_SECONDS, step_s)
    start_s = start.value / 1e9
    tod = (start_s + np.arange(period) * step_s) % _DAY_SECONDS / _DAY_SECONDS
    return 1.0 + model.intraday_amplitude * np.cos(
        2.0 * np.pi * (tod - model.intraday_peak_hour / 24.0)
    )


def _streams(seed: int, n_symbols: int) -> list[np.random.Generator]:
    return np.random.default_rng(seed).spawn(2 + n_symbols)


def _symbol_names(symbols: Sequence[str] | str | int) -> list[str]:
    if isinstance(symbols, bool):
        raise DataError(f"symbols must be names or a count, got {symbols!r}", field="symbols")
    if isinstance(symbols, int):
        if symbols < 1:
            raise DataError(f"symbols count must be >= 1, got {symbols}", field="symbols")
        return [f"SYN{i}" for i in range(symbols)]
    names = [symbols] if isinstance(symbols, str) else list(symbols)
    if not names or not all(isinstance(s, str) and s for s in names):
        raise DataError(f"symbols must be non-empty names, got {symbols!r}", field="symbols")
    if len(set(names)) != len(names):
        raise DataError(f"symbols must be unique, got {names}", field="symbols")
    return names


def _check_count(n: int) -> None:
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise DataError(f"number of bars must be an integer >= 1, got {n!r}", field="n_bars")


def _utc(start: str | pd.Timestamp) -> pd.Timestamp:
    try:
        stamp = pd.Timestamp(start)
    except (ValueError, TypeError) as exc:
        raise DataError(f"bad start time {start!r}: {exc}", field="start") from exc
    stamp = stamp.tz_localize("UTC") if stamp.tz is None else stamp.tz_convert("UTC")
    return stamp.as_unit("ns")
