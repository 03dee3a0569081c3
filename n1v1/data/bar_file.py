"""A bars file that grows at its end: what `n1v1 data download` writes, resumable and never broken.

A download may be stopped at any moment (Ctrl-C, a network failure, a full disk), and a re-run
must carry on where the file ends. So:

- **Each version is whole and valid.** New bars go to a temporary file beside the target (the old
  content plus the new rows), which is loaded with the strict loader (`load_csv`/`load_parquet`,
  the one every command uses), flushed to disk and only then renamed over the target. A reader,
  a crash or a second run sees the old file or the new one, never a half-written one.
- **Only ever extended.** Rows already stored are never rewritten (a CSV's bytes are copied as
  they are; a Parquet file, which cannot be appended to, is rewritten from its validated bars),
  and new bars must come after the last stored one: the strict loader rejects anything else.

File names follow the bundled datasets, ``<exchange>_<BASE>-<QUOTE>_<timeframe>.csv``, so the
loaders read the symbol from the name (`n1v1.data.loaders.symbol_from_name`).
"""

from __future__ import annotations

import io
import os
import re
import shutil
from pathlib import Path

import pandas as pd

from n1v1.data.errors import DataError
from n1v1.data.loaders import load_csv, load_parquet, symbol_from_name

FORMATS: dict[str, str] = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
CSV_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"  # as in the bundled files; bars open on whole seconds


def file_name(exchange_id: str, symbol: str, timeframe: str, fmt: str) -> str:
    """``binance``, ``BTC/USDT``, ``1h``, ``csv`` -> ``binance_BTC-USDT_1h.csv``.

    A symbol that is not plain ``BASE/QUOTE`` (``BTC/USDT:USDT``, options) has every other
    character replaced by ``-``; the loaders then do not guess its symbol from the name.
    """
    pair = re.sub(r"[^A-Za-z0-9]+", "-", symbol).strip("-") or "bars"
    return f"{exchange_id}_{pair}_{timeframe}.{fmt}"


class BarFile:
    """One CSV or Parquet bars file, read once and then extended by `append`."""

    def __init__(self, path: Path, fmt: str) -> None:
        if fmt not in ("csv", "parquet"):
            raise ValueError(f"format {fmt!r}: expected csv or parquet")
        self.path = Path(path)
        self.fmt = fmt
        self.stored: pd.DataFrame | None = None  # what the file holds, once loaded

    def load(self) -> pd.DataFrame | None:
        """The stored bars, strictly validated (a `DataError` names the file and row), or None
        when there is no file yet."""
        if not self.path.exists():
            return None
        self.stored = self._read(self.path)
        return self.stored

    def append(self, new: pd.DataFrame) -> pd.DataFrame:
        """Store the file with ``new`` (a bars frame after the last stored bar) at its end;
        returns every bar the file now holds, as the strict loader reads them."""
        if self.stored is None and self.path.exists():
            self.load()
        tmp = self.path.with_name(f".{self.path.stem}.tmp-{os.getpid()}{self.path.suffix}")
        try:
            with open(tmp, "wb") as out:
                if self.fmt == "csv":
                    self._write_csv(out, new)
                else:
                    old = self.stored
                    bars = new if old is None or old.empty else pd.concat([old, new])
                    bars.to_parquet(out)
                out.flush()
                os.fsync(out.fileno())
            try:
                stored = self._read(tmp)  # a DataError here leaves the target as it was
            except DataError as exc:
                named = str(exc).replace(str(tmp), f"{self.path} with the new bars")
                raise DataError(named, source=str(self.path), count=exc.count) from None
            os.replace(tmp, self.path)
        finally:
            tmp.unlink(missing_ok=True)
        self.stored = stored
        return stored

    def _write_csv(self, out: io.BufferedWriter, new: pd.DataFrame) -> None:
        if self.path.exists():
            with open(self.path, "rb") as old:
                shutil.copyfileobj(old, out)
                if old.tell() > 0:
                    old.seek(-1, os.SEEK_END)
                    if old.read(1) not in (b"\n", b"\r"):
                        out.write(b"\n")
            header = self.path.stat().st_size == 0
        else:
            header = True
        text = new.to_csv(header=header, date_format=CSV_TIME_FORMAT, lineterminator="\n")
        out.write(text.encode())

    def _read(self, path: Path) -> pd.DataFrame:
        loader = load_csv if self.fmt == "csv" else load_parquet
        bars = loader(path, symbol_from_name(self.path.stem))  # the name, not the temporary's
        bars.attrs["source"] = str(self.path)
        return bars
