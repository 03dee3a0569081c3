"""Where each record of a CSV file sits: the line it starts on and how many cells it has.

pandas parses a CSV fast but forgets lines. An error must name the line an editor shows, so when a
file has a problem its text is read again with the `csv` module, which splits records exactly as
pandas does for these files: empty and whitespace-only lines are skipped, the first remaining
record is the header, a quoted cell may span lines (its record is named by its first line), and
``\\n``, ``\\r\\n`` and ``\\r`` all end a line. The happy path never pays for this second reading.
"""

from __future__ import annotations

import csv
import functools
import io

import numpy as np

from n1v1.data.problems import RowCheck, Rows


class CsvText:
    """The raw bytes of one CSV file, scanned for record positions on first use."""

    def __init__(self, source: str, data: bytes) -> None:
        self.source = source
        self.data = data

    @functools.cached_property
    def _records(self) -> tuple[int | None, int, np.ndarray, np.ndarray]:
        """(header line, header cell count, first line of each data record, its cell count)."""
        text = self.data.decode("utf-8-sig", errors="replace")
        reader = csv.reader(io.StringIO(text, newline=""))
        header_line, header_cells = None, 0
        starts: list[int] = []
        cells: list[int] = []
        previous_end = 0
        for record in reader:
            start, previous_end = previous_end + 1, reader.line_num
            if not record or (len(record) == 1 and not record[0].strip()):
                continue  # a blank line: pandas skips it too
            if header_line is None:
                header_line, header_cells = start, len(record)
            else:
                starts.append(start)
                cells.append(len(record))
        return header_line, header_cells, np.asarray(starts, np.int64), np.asarray(cells, np.int64)

    def rows(self, n_rows: int) -> Rows:
        """Rows named by line; by 0-based index should the record count ever differ from pandas'."""
        header_line, _, starts, _ = self._records
        lines = starts if len(starts) == n_rows else None
        return Rows(self.source, lines, header_line=header_line)

    def last_record_line(self) -> int | None:
        """The line the last record starts on (where an unclosed quote swallows the rest)."""
        header_line, _, starts, _ = self._records
        return int(starts[-1]) if len(starts) else header_line

    def cell_count_check(self) -> RowCheck:
        """Records with more or fewer cells than the header (one entry per data record)."""
        _, header_cells, _, cells = self._records

        def describe(i: int, rows: Rows) -> str:
            count = int(cells[i])
            return f"has {count} cell{'' if count == 1 else 's'} but the header has {header_cells}"

        return RowCheck(None, cells != header_cells, describe)
