"""Every problem in a bars file or frame, each located the way its reader looks for it.

Loading stops at the boundary on bad data, but a user fixing a file wants the whole list, not one
problem per run. So the checks (in the loaders and in `validate_bars`) produce boolean masks over
the rows; `raise_problems` counts them all, words the first `MAX_REPORTED` by position, and raises
one `DataError` with one line per problem:

    bars.csv:4: field 'close': cannot parse 'oops' as a number
    bars.csv:7: field 'timestamp': 2024-01-01T00:05:00+00:00 duplicates line 6's time
    bars.csv: 2 problems

A CSV problem names the line an editor shows (the header is line 1; blank lines and line breaks
inside quoted cells are counted). Parquet files and frames in memory have no lines, so a problem
there names the 0-based row index (``df.iloc[i]``) and the bar's time when it is known.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from n1v1.data.errors import DataError

MAX_REPORTED = 20


@dataclass(frozen=True, slots=True)
class DataProblem:
    """One problem: where (as printed), what, and the row/field it concerns.

    ``position`` is the 0-based data row (None for a problem with the whole file, such as a missing
    column); ``line`` is the CSV line an editor shows (None for other sources).
    """

    location: str
    message: str
    position: int | None = None
    line: int | None = None
    field: str | None = None

    def __str__(self) -> str:
        return f"{self.location}: {self.message}"


@dataclass(frozen=True, slots=True)
class RowCheck:
    """One rule over all rows: ``bad[i]`` marks row i; ``describe(i, rows)`` words its problem
    (``rows`` lets a message name another row, e.g. the one a timestamp duplicates)."""

    field: str | None
    bad: np.ndarray
    describe: Callable[[int, Rows], str]


class Rows:
    """How rows of one source are named: CSV lines, or 0-based row indices with the bar's time."""

    def __init__(
        self,
        source: str,
        lines: np.ndarray | None = None,
        times: pd.DatetimeIndex | None = None,
        header_line: int | None = None,
    ) -> None:
        self.source = source
        self.lines = lines
        self.times = times
        self.header_line = header_line

    def line(self, position: int) -> int | None:
        return None if self.lines is None else int(self.lines[position])

    def ref(self, position: int) -> str:
        """How a message mentions a row: "line 7" or "row index 5"."""
        line = self.line(position)
        return f"line {line}" if line is not None else f"row index {position}"

    def place(self, position: int | None) -> str:
        """The location prefix: "bars.csv:7", or "bars.parquet: row index 5 (0-based, <time>)"."""
        if position is None:
            header = "" if self.header_line is None else f":{self.header_line}"
            return f"{self.source}{header}"
        line = self.line(position)
        if line is not None:
            return f"{self.source}:{line}"
        when = ""
        if self.times is not None and not pd.isna(self.times[position]):
            when = f", {self.times[position].isoformat()}"
        return f"{self.source}: row index {position} (0-based{when})"


def raise_problems(
    source: str,
    checks: Sequence[RowCheck],
    rows: Callable[[], Rows],
    limit: int = MAX_REPORTED,
) -> None:
    """Raise one `DataError` listing the problems the checks found; return if there are none.

    ``rows`` is only called when there is something to report (for a CSV file it re-reads the
    text to map rows to lines, which the happy path never pays for). Problems are listed by row,
    then in the order of ``checks``; the total counts every bad (row, check) pair.
    """
    total = sum(int(np.count_nonzero(c.bad)) for c in checks)
    if total == 0:
        return
    naming = rows()
    bad_any = np.zeros(len(checks[0].bad), dtype=bool)
    for check in checks:
        bad_any |= check.bad
    problems: list[DataProblem] = []
    for position in np.flatnonzero(bad_any)[:limit]:
        i = int(position)
        for check in checks:
            if check.bad[i] and len(problems) < limit:
                message = check.describe(i, naming)
                if check.field is not None:
                    message = f"field '{check.field}': {message}"
                problems.append(
                    DataProblem(naming.place(i), message, i, naming.line(i), check.field)
                )
    raise problem_error(source, problems, total)


def problem_error(source: str, problems: Sequence[DataProblem], total: int) -> DataError:
    """The `DataError` for a list of problems (the first of them in its attributes)."""
    lines = [str(p) for p in problems]
    if total > len(problems):
        lines.append(f"{source}: ... and {total - len(problems)} more problems ({total} in all)")
    elif total > 1:
        lines.append(f"{source}: {total} problems")
    first = problems[0]
    return DataError(
        "\n".join(lines),
        source=source,
        row=None if first.position is None else first.position + 1,
        field=first.field,
        count=total,
        line=first.line,
        problems=tuple(problems),
    )
