"""Write a backtest result as JSON at the engine's speed.

The equity curve is one `[timestamp, equity]` pair per bar, so a million-bar backtest writes a
million pairs. Building a million Python lists, a million `Timestamp.isoformat()` strings and
encoding them with the standard `json` module took about ten times as long as the backtest itself.
Here the timestamps are formatted with array arithmetic, the numbers by orjson (shortest
round-trip representation, like `repr`), and the two are interleaved into the output bytes with
NumPy scatter operations, 65 536 rows at a time. The content is exactly that of
``json.dumps(result.to_dict())``: tests/test_result_json.py reads both back and compares them.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import orjson
import pandas as pd

from n1v1.domain import Trade

__all__ = ["equity_json_chunks", "iso_strings", "iso_timestamps", "iso_utc_bytes", "trade_records"]

_ISO_WIDTH = 25  # "2024-01-01T00:00:00+00:00"
_WORD3 = np.frombuffer(b':00",],\n', dtype=np.uint64)[0]  # bytes 24..31 of every row
_TWO_DIGITS = np.array([[48 + k // 10, 48 + k % 10] for k in range(100)], dtype=np.uint8)
_NS = 1_000_000_000
_CHUNK_ROWS = 65_536  # rows per piece: a few MB of output, cache-sized


def iso_utc_bytes(index: pd.DatetimeIndex) -> np.ndarray | None:
    """`Timestamp.isoformat()` of every UTC timestamp as an (n, 25) uint8 array of ASCII, or None
    when the fast form does not apply (not UTC, a fraction of a second, a year outside 0..9999):
    the caller then asks pandas."""
    rows = _row_heads(index)
    return None if rows is None else rows.view(np.uint8)[:, 2 : 2 + _ISO_WIDTH]


def _row_heads(index: pd.DatetimeIndex) -> np.ndarray | None:
    """The fixed 32 bytes of each equity row, '["YYYY-MM-DDTHH:MM:SS+00:00",],\n', as an (n, 4)
    uint64 array (None: see `iso_utc_bytes`).

    Bars come in runs of the same day, so the date is formatted once per run, and the time of day
    comes from a table of the 86 400 seconds of a day. Each 8-byte word of a row is then one gather:
    word 0 holds '["' and the start of the date, word 1 the end of the date and the hour (two tables
    OR-ed, their bytes do not overlap), word 2 minutes, seconds and '+00', word 3 is constant.
    """
    if not isinstance(index, pd.DatetimeIndex) or str(index.tz) != "UTC":
        return None
    ns = index.as_unit("ns").asi8
    seconds = ns // _NS
    if not np.array_equal(seconds * _NS, ns):
        return None  # a fraction of a second: pandas prints it, so let pandas format
    days = seconds // 86_400
    second_of_day = seconds - days * 86_400
    run_starts = np.concatenate(([0], np.flatnonzero(np.diff(days)) + 1)) if len(days) else days
    dates = _date_words(days[run_starts])
    if dates is None:
        return None
    run_of_bar = np.zeros(len(ns), dtype=np.int64)
    run_of_bar[run_starts[1:]] = 1
    np.cumsum(run_of_bar, out=run_of_bar)
    time_word1, time_word2 = _time_words()
    out = np.empty((len(ns), 4), dtype=np.uint64)
    out[:, 0] = dates[0].take(run_of_bar)
    out[:, 1] = dates[1].take(run_of_bar) | time_word1.take(second_of_day)
    out[:, 2] = time_word2.take(second_of_day)
    out[:, 3] = _WORD3
    return out


def _date_words(days: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Words 0 and 1 of a row (date bytes only) for days since 1970-01-01; None outside years
    0..9999. civil_from_days (H. Hinnant, "chrono-compatible low-level date algorithms")."""
    z = days + 719_468
    era = np.floor_divide(z, 146_097)
    doe = z - era * 146_097
    yoe = (doe - doe // 1_460 + doe // 36_524 - doe // 146_096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = np.where(mp < 10, mp + 3, mp - 9)
    year = yoe + era * 400 + (month <= 2)
    if len(days) and (year.min() < 0 or year.max() > 9_999):
        return None
    row = np.zeros((len(days), 16), dtype=np.uint8)  # bytes 0..15 of a row
    row[:, 0], row[:, 1] = ord("["), ord('"')
    century, year_of_century = np.divmod(year, 100)
    row[:, 2:4], row[:, 4:6] = _TWO_DIGITS[century], _TWO_DIGITS[year_of_century]
    row[:, 7:9], row[:, 10:12] = _TWO_DIGITS[month], _TWO_DIGITS[day]
    row[:, 6] = row[:, 9] = ord("-")
    words = row.view(np.uint64)
    return np.ascontiguousarray(words[:, 0]), np.ascontiguousarray(words[:, 1])


@functools.cache
def _time_words() -> tuple[np.ndarray, np.ndarray]:
    """Word 1 (time bytes only: 'T', the hour, ':') and word 2 ('MM:SS+00') of a row, for every
    second of a day: two tables of 86 400 uint64."""
    hour, rest = np.divmod(np.arange(86_400), 3_600)
    minute, second = np.divmod(rest, 60)
    row = np.zeros((86_400, 16), dtype=np.uint8)  # bytes 8..23 of a row
    row[:, 4] = ord("T")
    row[:, 5:7], row[:, 8:10], row[:, 11:13] = (
        _TWO_DIGITS[hour],
        _TWO_DIGITS[minute],
        _TWO_DIGITS[second],
    )
    row[:, 7] = row[:, 10] = ord(":")
    row[:, 13:16] = np.frombuffer(b"+00", dtype=np.uint8)
    words = row.view(np.uint64)
    return np.ascontiguousarray(words[:, 0]), np.ascontiguousarray(words[:, 1])


def iso_strings(index: pd.DatetimeIndex) -> list[str]:
    """`[ts.isoformat() for ts in index]`, vectorised when the timestamps allow it."""
    fast = iso_utc_bytes(index)
    if fast is None:
        return [ts.isoformat() for ts in index]
    return fast.view(f"S{_ISO_WIDTH}").ravel().astype(f"U{_ISO_WIDTH}").tolist()


def iso_timestamps(stamps: Sequence[pd.Timestamp]) -> list[str]:
    """`[t.isoformat() for t in stamps]`, vectorised when they all share the UTC zone."""
    zone = stamps[0].tzinfo if stamps else None
    if zone is None or str(zone) != "UTC" or any(t.tzinfo is not zone for t in stamps):
        return [t.isoformat() for t in stamps]
    ns = np.fromiter((t.value for t in stamps), dtype=np.int64, count=len(stamps))
    return iso_strings(pd.DatetimeIndex(ns, tz="UTC"))


def trade_records(
    trades: Sequence[Trade], durations: Sequence[float | None], spans: Sequence[bool]
) -> list[dict[str, Any]]:
    """`Trade.to_dict()` of each trade (the same keys and values, the times formatted in one
    vectorised pass) plus its `duration_seconds` and `spans_gap` (n1v1.backtest.gaps)."""
    entries = iso_timestamps([t.entry_time for t in trades])
    exits = iter(iso_timestamps([t.exit_time for t in trades if t.exit_time is not None]))
    return [
        {
            **t.to_dict(entry, next(exits) if t.exit_time is not None else None),
            "duration_seconds": duration,
            "spans_gap": span,
        }
        for t, entry, duration, span in zip(trades, entries, durations, spans, strict=True)
    ]


def equity_json_chunks(index: pd.DatetimeIndex, values: np.ndarray) -> Iterator[bytes]:
    """The JSON array ``[["<isoformat>", equity], ...]`` (one pair per line) in pieces.

    Numbers are orjson's shortest round-trip form of each float64; timestamps are the
    isoformat of each index entry.
    """
    values = np.ascontiguousarray(values, dtype=np.float64)
    if len(values) != len(index):
        raise ValueError(f"equity: {len(values)} values for {len(index)} timestamps")
    if not np.isfinite(values).all():
        raise ValueError("equity: non-finite values cannot be written as strict JSON")
    yield b"[\n"
    for start in range(0, len(values), _CHUNK_ROWS):
        stop = min(start + _CHUNK_ROWS, len(values))
        if start:
            yield b",\n"
        yield _rows(index[start:stop], values[start:stop])
    yield b"\n]"


def _rows(index: pd.DatetimeIndex, values: np.ndarray) -> bytes:
    """Rows '["<timestamp>",<number>]' joined by ',\n'.

    The output alternates fixed bytes and number bytes: '["ts0",' n0 '],\n["ts1",' n1 ... ']'.
    A mask of which output bytes are number bytes (np.repeat over the run lengths) lets two
    boolean assignments place both kinds, with no per-row Python work.
    """
    heads = _row_heads(index)
    if heads is None:  # the general case: pandas formats, orjson encodes
        pairs = list(zip(iso_strings(index), values.tolist(), strict=True))
        return b",\n".join(orjson.dumps(pair) for pair in pairs)
    numbers = np.frombuffer(orjson.dumps(values, option=orjson.OPT_SERIALIZE_NUMPY), np.uint8)
    body = numbers[1:-1]  # "v0,v1,...": a float never contains a comma
    is_comma = body == ord(",")
    commas = np.flatnonzero(is_comma)
    lengths = np.diff(np.concatenate(([-1], commas, [len(body)]))) - 1
    rows = len(values)
    runs = np.empty(2 * rows + 1, dtype=np.int64)
    runs[0::2] = _ISO_WIDTH + 7  # between two numbers: "],\n" then "[\"<ts>\","
    runs[0], runs[-1] = _ISO_WIDTH + 4, 1
    runs[1::2] = lengths
    is_number = np.repeat(np.tile(np.array([False, True]), rows + 1)[: 2 * rows + 1], runs)
    out = np.empty(len(is_number), dtype=np.uint8)
    out[is_number] = body[~is_comma]
    out[~is_number] = heads.view(np.uint8).ravel()[:-2]  # in output order; the last ",\n" cut
    return out.tobytes()
