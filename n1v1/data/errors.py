"""The one exception type of the data layer.

Bad market data must stop a run at the boundary with a message a user can act on: which file, which
row, which field. `DataError` subclasses `ValueError` so callers that already catch `ValueError`
keep working, and it carries the location as attributes so tools (the CLI, the API) can show it
without parsing the message.
"""

from __future__ import annotations


class DataError(ValueError):
    """Invalid or unreadable market data.

    Attributes are ``None`` when they do not apply (e.g. a missing file has no row).
    ``row`` is the 1-based data row: the N-th row after the header, i.e. CSV line ``row + 1``.
    ``count`` is how many rows fail the same check, so one message tells the size of the problem.
    """

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        row: int | None = None,
        field: str | None = None,
        count: int | None = None,
    ) -> None:
        super().__init__(message)
        self.source = source
        self.row = row
        self.field = field
        self.count = count
