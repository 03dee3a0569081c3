"""`n1v1 data download`: closed bars from an exchange's public API into CSV/Parquet bars files.

Every option is checked before the first request, and before any file is touched, so a mistake
costs nothing: it ends with an error naming the option (exit code 2). The files written are the
ones every other command reads (`n1v1 data validate FILE`, `n1v1 backtest --data FILE`), named
like the bundled datasets so the symbol comes from the name. The work itself is
`n1v1.live.download`; this module only turns options into its arguments and prints the outcome.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from n1v1.cli.common import EXIT_OK, format_duration, ts_label

if TYPE_CHECKING:
    import ccxt
    import pandas as pd

    from n1v1.data.bar_file import BarFile
    from n1v1.live.download import DownloadResult

DEFAULT_RETRIES = 5
DEFAULT_RETRY_WAIT = 1.0
DEFAULT_TIMEOUT = 10.0
# What each argument of `make_exchange` / `check_symbols` is called on the command line.
_OPTIONS = {
    "exchange_id": "--exchange",
    "base_url": "--base-url",
    "sandbox": "--sandbox",
    "timeout_ms": "--timeout",
    "symbol": "--symbols",
}


def add_download_command(dsub: Any) -> None:
    p = dsub.add_parser(
        "download",
        help="fetch closed bars from an exchange into CSV/Parquet files (resumable)",
        description="Fetch closed OHLCV bars from an exchange's public market data (no API keys) "
        "into one bars file per symbol. Run it again to append only the bars that are missing "
        "after each file's last bar.",
    )
    p.add_argument("--exchange", required=True, help="ccxt exchange id, e.g. binance")
    p.add_argument(
        "--symbols", required=True, help="comma-separated, as ccxt writes them: BTC/USDT,ETH/USDT"
    )
    p.add_argument("--timeframe", required=True, help="bar length, e.g. 1m, 15m, 1h, 1d")
    p.add_argument("--since", required=True, help="first bar's open time, UTC (e.g. 2024-01-01)")
    p.add_argument(
        "--until", help="stop before bars opening at this UTC time (exclusive; default: now)"
    )
    p.add_argument(
        "--output",
        required=True,
        type=Path,
        help="an existing directory (one <exchange>_<BASE>-<QUOTE>_<timeframe> file per symbol) "
        "or a .csv/.parquet file path (one symbol)",
    )
    p.add_argument(
        "--format",
        choices=("csv", "parquet"),
        help="file format in a directory (default csv); a file path's suffix decides otherwise",
    )
    p.add_argument(
        "--base-url",
        help="send every API request to this scheme://host[:port] instead of the exchange's "
        "(a testnet, a proxy, a local exchange)",
    )
    p.add_argument("--sandbox", action="store_true", help="use ccxt's testnet for the exchange")
    p.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"HTTP timeout per request (default {DEFAULT_TIMEOUT:g})",
    )
    p.add_argument(
        "--retries",
        type=int,
        default=DEFAULT_RETRIES,
        help=f"retries of a failing request before giving up (default {DEFAULT_RETRIES})",
    )
    p.add_argument(
        "--retry-wait",
        type=float,
        default=DEFAULT_RETRY_WAIT,
        metavar="SECONDS",
        help=f"wait before the first retry, doubled for each next one (default "
        f"{DEFAULT_RETRY_WAIT:g}; a 429's Retry-After is honoured)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=cmd_data_download)


def cmd_data_download(args: argparse.Namespace) -> int:
    from n1v1.live.download import Retry, download_bars, load_markets
    from n1v1.live.exchange import ExchangeSetupError

    symbols = _symbols(args.symbols)
    since, until = _window(args.since, args.until)
    _check_numbers(args)
    exchange = _exchange(args)
    timeframe = _timeframe(exchange, args.timeframe)
    files = _output_files(args, exchange.id, symbols, timeframe)
    retry = Retry(args.retries, args.retry_wait)
    try:
        load_markets(exchange, symbols, retry)
    except ExchangeSetupError as exc:
        raise _option_error(exc) from None
    for symbol, file in zip(symbols, files, strict=True):
        with _ProgressBar(symbol, enabled=not args.no_progress and sys.stderr.isatty()) as bar:
            result = download_bars(
                exchange,
                symbol,
                timeframe,
                file,
                since=since,
                until=until,
                retry=retry,
                progress=bar.update,
            )
        print(_summary(result, exchange.id, since, until), flush=True)
    return EXIT_OK


# -- options -> arguments, each mistake named by its option ----------------------------------------
def _error(option: str, message: str) -> Exception:
    from n1v1.data.errors import DownloadError

    return DownloadError(f"{option}{message}", option=option)


def _option_error(exc: Any) -> Exception:
    """An `ExchangeSetupError` reworded with the command-line option for its argument."""
    return _error(_OPTIONS.get(exc.argument, exc.argument), exc.detail)


def _symbols(text: str) -> list[str]:
    symbols = [s.strip() for s in text.split(",")]
    if not all(symbols):
        raise _error("--symbols", f" {text!r}: an empty name; separate symbols with single commas")
    repeated = sorted({s for s in symbols if symbols.count(s) > 1})
    if repeated:
        raise _error("--symbols", f": {repeated[0]!r} is listed more than once")
    return symbols


def _window(since_text: str, until_text: str | None) -> tuple[pd.Timestamp, pd.Timestamp | None]:
    import pandas as pd

    since = _utc_time("--since", since_text)
    until = None if until_text is None else _utc_time("--until", until_text)
    now = pd.Timestamp.now(tz="UTC")
    if since >= now:
        raise _error("--since", f" {since_text!r}: {since.isoformat()} is not in the past")
    if until is not None and since >= until:
        raise _error(
            "--since",
            f" {since_text!r} is not before --until {until_text!r}: no bar can open in "
            f"[{since.isoformat()}, {until.isoformat()})",
        )
    return since, until


def _utc_time(option: str, text: str) -> pd.Timestamp:
    import pandas as pd

    try:
        stamp = pd.Timestamp(text)
    except (ValueError, TypeError, OverflowError):
        stamp = pd.NaT
    if pd.isna(stamp):
        raise _error(
            option,
            f" {text!r}: not a time; use ISO-8601 such as 2024-01-01 or 2024-01-01T12:00 "
            "(UTC unless an offset is given)",
        )
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _check_numbers(args: argparse.Namespace) -> None:
    if args.retries < 0:
        raise _error("--retries", f" {args.retries}: must be 0 or more")
    if not (math.isfinite(args.retry_wait) and args.retry_wait >= 0):
        raise _error("--retry-wait", f" {args.retry_wait}: must be a number of seconds >= 0")
    if not (math.isfinite(args.timeout) and args.timeout > 0):
        raise _error("--timeout", f" {args.timeout}: must be a number of seconds > 0")


def _exchange(args: argparse.Namespace) -> ccxt.Exchange:
    from n1v1.live.exchange import ExchangeSetupError, make_exchange

    try:
        exchange = make_exchange(
            args.exchange,
            sandbox=args.sandbox,
            base_url=args.base_url,
            timeout_ms=max(1, round(args.timeout * 1000)),
        )
    except ExchangeSetupError as exc:
        raise _option_error(exc) from None
    if not exchange.has.get("fetchOHLCV"):
        raise _error("--exchange", f" {args.exchange!r}: ccxt cannot fetch OHLCV bars from it")
    return exchange


def _timeframe(exchange: ccxt.Exchange, timeframe: str) -> str:
    from n1v1.data.errors import DataError
    from n1v1.data.resample import parse_timeframe

    offered = list(exchange.timeframes or {})
    if offered and timeframe not in offered:
        raise _error("--timeframe", f" {timeframe!r}: {exchange.id} offers {', '.join(offered)}")
    try:
        parse_timeframe(timeframe)  # the bars files must be readable by the package's rules
    except DataError as exc:
        raise _error("--timeframe", f": {exc}") from None
    return timeframe


def _output_files(
    args: argparse.Namespace, exchange_id: str, symbols: list[str], timeframe: str
) -> list[BarFile]:
    """One `BarFile` per symbol, each existing one loaded (strictly) before any request."""
    from n1v1.data.bar_file import FORMATS, BarFile, file_name

    out: Path = args.output
    if out.is_dir():
        fmt = args.format or "csv"
        files = [BarFile(out / file_name(exchange_id, s, timeframe, fmt), fmt) for s in symbols]
    else:
        fmt = FORMATS.get(out.suffix.lower(), "")
        if not fmt:
            raise _error(
                "--output",
                f" {str(out)!r}: no such directory, and not a .csv/.parquet file name; "
                "give an existing directory, or a file for one symbol",
            )
        if not out.parent.is_dir():
            raise _error("--output", f" {str(out)!r}: directory {str(out.parent)!r} does not exist")
        if len(symbols) > 1:
            raise _error(
                "--output",
                f" {str(out)!r}: a file holds one symbol, not {len(symbols)}; give a directory",
            )
        if args.format and args.format != fmt:
            raise _error("--format", f" {args.format}: --output {str(out)!r} is a {fmt} file")
        files = [BarFile(out, fmt)]
    for symbol, file in zip(symbols, files, strict=True):
        _check_stored(file, symbol, timeframe)
    return files


def _check_stored(file: BarFile, symbol: str, timeframe: str) -> None:
    """Load what ``file`` holds; it must be valid bars of this symbol and timeframe to extend."""
    from n1v1.data.errors import DataError
    from n1v1.data.resample import infer_timeframe, parse_timeframe

    name = str(file.path)
    if file.path.exists() and not file.path.is_file():
        raise _error("--output", f": {name!r} exists and is not a file")
    try:
        stored = file.load()
    except DataError as exc:
        raise _error(
            "--output",
            f": {name!r} exists but is not a valid bars file, so it cannot be extended "
            f"(it was left as it is):\n{exc}",
        ) from None
    if stored is None:
        return
    known = stored.attrs.get("symbol")
    if known and known != symbol:
        raise _error("--output", f": {name!r} holds {known} bars (by its name), not {symbol}")
    if len(stored) > 1 and infer_timeframe(stored) != parse_timeframe(timeframe):
        spacing = format_duration(infer_timeframe(stored).total_seconds())
        raise _error(
            "--output",
            f": {name!r} holds bars {spacing} apart, not --timeframe {timeframe}; "
            "give another --output",
        )


# -- output ----------------------------------------------------------------------------------------
class _ProgressBar:
    """A tqdm bar on a terminal's stderr; nothing at all when stderr is a file or a pipe."""

    def __init__(self, symbol: str, *, enabled: bool) -> None:
        self.symbol = symbol
        self.enabled = enabled
        self._bar: Any = None

    def __enter__(self) -> _ProgressBar:
        return self

    def update(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        if self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(total=total, unit="bar", desc=self.symbol, leave=False)
        self._bar.n = done
        self._bar.refresh()

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.close()


def _summary(
    result: DownloadResult, exchange_id: str, since: pd.Timestamp, until: pd.Timestamp | None
) -> str:
    if result.bars == 0:
        end = f"before {ts_label(until)}" if until is not None else "until now"
        return (
            f"{result.symbol}: {exchange_id} has no closed bars from {ts_label(since)} {end} "
            "UTC; no file written"
        )
    gaps = "none"
    if result.gaps:
        gaps = (
            f"{result.gaps:,} hole{'s' * (result.gaps != 1)}, {result.missing_bars:,} missing "
            f"bar{'s' * (result.missing_bars != 1)}"
        )
    return (
        f"{result.symbol}: {result.written:,} bar{'s' * (result.written != 1)} written; "
        f"{result.path} holds {result.bars:,}, {ts_label(result.first)} to "
        f"{ts_label(result.last)} UTC; gaps: {gaps}"
    )
