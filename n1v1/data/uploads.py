"""Files of bars an operator put on the server for backtests requested over HTTP.

The operator sets one directory aside (the Serve app's `upload_dir`: var/uploads under `make run`,
the shared volume's /mnt/n1v1/uploads on Kubernetes) and copies CSV or Parquet files into it. A
caller names a file; it never gives a path: the name must be a plain file name (letters, digits,
dot, dash, underscore; no directory, no leading dot) with a bar-file suffix, of a regular file
directly in that directory, which a symbolic link may not leave. The listing shows what each file
holds (rows, span, timeframe) or why it cannot be read, checked by the same loader as
`n1v1 data validate`, and remembered while the file keeps its size and modification time.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

import pandas as pd

from n1v1.data.errors import DataError
from n1v1.data.loaders import FILE_SUFFIXES

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
MAX_LISTED = 500  # files listed, in name order: a directory of thousands is not a menu


def uploaded_file(upload_dir: str | Path | None, name: str) -> Path:
    """The file `name` in `upload_dir`, or a DataError (field "file") saying why not."""
    if upload_dir is None:
        raise DataError("no upload directory is configured on this server", field="file")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise DataError(
            f"{name!r} is not a file name: letters, digits, '.', '-' and '_' only, starting with "
            "a letter or digit, at most 128 characters, no directory",
            field="file",
        )
    if Path(name).suffix.lower() not in FILE_SUFFIXES:
        raise DataError(f"{name!r}: a bar file ends in one of {list(FILE_SUFFIXES)}", field="file")
    folder = Path(upload_dir).resolve()
    path = folder / name
    if not path.is_file():
        raise DataError(f"no uploaded file {name!r} on this server", field="file")
    if path.resolve().parent != folder:
        raise DataError(f"{name!r} links outside the upload directory", field="file")
    return path


def list_uploads(upload_dir: str | Path | None) -> list[dict[str, Any]]:
    """Each bar file in `upload_dir` (name order, at most MAX_LISTED): its name and size, and
    either what it holds (symbol, timeframe, rows, first and last bar) or `error`."""
    if upload_dir is None:
        return []
    folder = Path(upload_dir)
    if not folder.is_dir():
        return []
    out = []
    for entry in sorted(folder.iterdir(), key=lambda p: p.name)[:MAX_LISTED]:
        try:
            path = uploaded_file(folder, entry.name)
        except DataError:
            continue  # not a bar file, or not one a caller could name: not offered
        stat = path.stat()
        row = {"name": entry.name, "bytes": stat.st_size}
        row.update(_summary(str(path), stat.st_mtime_ns, stat.st_size))
        out.append(row)
    return out


@functools.lru_cache(maxsize=256)
def _summary(path: str, mtime_ns: int, size: int) -> dict[str, Any]:
    """What the file holds, read once per version of it (`mtime_ns`, `size` are the key)."""
    from n1v1.data.loaders import load_bars
    from n1v1.data.resample import infer_timeframe, timeframe_label

    del mtime_ns, size  # the cache key only
    try:
        bars = load_bars(path)
    except DataError as exc:
        return {"error": str(exc).splitlines()[0]}
    first, last = bars.index[0], bars.index[-1]
    return {
        "symbol": bars.attrs.get("symbol"),
        "timeframe": timeframe_label(infer_timeframe(bars)) if len(bars) > 1 else None,
        "rows": len(bars),
        "first": pd.Timestamp(first).isoformat(),
        "last": pd.Timestamp(last).isoformat(),
    }
