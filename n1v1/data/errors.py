"""The one exception type of the data layer.

Bad market data must stop a run at the boundary with a message a user can act on: which file, which
line (or row), which field, which value. `DataError` subclasses `ValueError` so callers that already
catch `ValueError` keep working, and it carries the location as attributes so tools (the CLI, the
API) can show it without parsing the message.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from n1v1.data.problems import DataProblem


class DataError(ValueError):
    """Invalid or unreadable market data.

    The message has one line per problem (see `n1v1.data.problems`). Attributes are ``None`` when
    they do not apply (e.g. a missing file has no row) and describe the first problem:
    ``row`` is its 1-based data row (the N-th row after the header), ``line`` its line in a CSV
    file as an editor shows it (the header is line 1), ``field`` its column. ``count`` is how many
    problems were found in all, ``problems`` those that are listed (at most
    `n1v1.data.problems.MAX_REPORTED`).
    """

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        row: int | None = None,
        field: str | None = None,
        count: int | None = None,
        line: int | None = None,
        problems: Sequence[DataProblem] = (),
    ) -> None:
        super().__init__(message)
        self.source = source
        self.row = row
        self.field = field
        self.count = count
        self.line = line
        self.problems = tuple(problems)


class DownloadError(DataError):
    """Market data could not be downloaded: a bad option (``option`` names it, e.g. "--since"),
    an exchange that refused the request, or one that kept failing after every retry. Like any
    `DataError` it stops the command with a message, never a traceback."""

    def __init__(self, message: str, *, option: str | None = None) -> None:
        super().__init__(message)
        self.option = option
