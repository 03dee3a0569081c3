"""Files of bars on the server (n1v1/data/uploads.py): only a plain name of a bar file directly in
the upload directory is ever read, and the listing says what each file holds or why not."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from n1v1.data import DataError
from n1v1.data.resample import timeframe_label
from n1v1.data.uploads import list_uploads, uploaded_file

SAMPLES = Path(__file__).resolve().parents[1] / "n1v1" / "data" / "samples"


@pytest.fixture
def uploads(tmp_path: Path) -> Path:
    folder = tmp_path / "uploads"
    folder.mkdir()
    shutil.copy(SAMPLES / "coinbase_BTC-USD_1d.csv", folder / "btc_daily.csv")
    (folder / "broken.csv").write_text("time,open\nyesterday,1\n")
    (folder / "notes.txt").write_text("not bars")
    shutil.copy(SAMPLES / "binance_BTC-USDT_1h.csv", folder / ".hidden.csv")
    shutil.copy(SAMPLES / "binance_BTC-USDT_1h.csv", tmp_path / "outside.csv")
    (folder / "link.csv").symlink_to(tmp_path / "outside.csv")
    (folder / "sub").mkdir()
    return folder


def test_a_plain_name_of_a_bar_file_in_the_directory_is_found(uploads: Path) -> None:
    assert uploaded_file(uploads, "btc_daily.csv") == uploads.resolve() / "btc_daily.csv"


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("../outside.csv", "is not a file name"),
        ("/etc/passwd", "is not a file name"),
        ("sub/x.csv", "is not a file name"),
        (".hidden.csv", "is not a file name"),
        ("", "is not a file name"),
        ("a" * 125 + ".csv", "is not a file name"),  # 129 characters
        ("notes.txt", "a bar file ends in one of"),
        ("missing.csv", "no uploaded file 'missing.csv'"),
        ("link.csv", "links outside the upload directory"),
    ],
)
def test_anything_else_is_refused_naming_the_file_field(uploads: Path, name: str, why: str) -> None:
    with pytest.raises(DataError, match=why) as caught:
        uploaded_file(uploads, name)
    assert caught.value.field == "file"


def test_no_upload_directory_means_no_file() -> None:
    with pytest.raises(DataError, match="no upload directory is configured"):
        uploaded_file(None, "btc_daily.csv")
    assert list_uploads(None) == [] and list_uploads("/nonexistent/n1v1-uploads") == []


def test_the_listing_says_what_each_file_holds_or_why_not(uploads: Path) -> None:
    listed = {row["name"]: row for row in list_uploads(uploads)}
    assert sorted(listed) == ["broken.csv", "btc_daily.csv"]  # the others cannot be named
    daily = listed["btc_daily.csv"]
    assert daily["bytes"] == (uploads / "btc_daily.csv").stat().st_size
    assert (daily["timeframe"], daily["rows"]) == ("1d", 1318)  # as `n1v1 data list` says
    assert daily["first"] == "2014-12-01T00:00:00+00:00"
    assert daily["last"] == "2018-08-13T00:00:00+00:00"
    assert "error" not in daily
    assert set(listed["broken.csv"]) == {"name", "bytes", "error"}
    assert listed["broken.csv"]["error"]


def test_a_changed_file_is_read_again(uploads: Path) -> None:
    path = uploads / "btc_daily.csv"
    assert {r["name"]: r for r in list_uploads(uploads)}["btc_daily.csv"]["rows"] == 1318
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:11]))  # the header and ten bars
    assert {r["name"]: r for r in list_uploads(uploads)}["btc_daily.csv"]["rows"] == 10


@pytest.mark.parametrize(
    ("spacing", "label"),
    [
        ("1min", "1m"),
        ("4h", "4h"),
        ("1D", "1d"),
        ("90s", "90s"),
        ("2D", "2d"),
        ("250ms", "250000000ns"),
    ],
)
def test_timeframe_labels_read_back_as_the_same_spacing(spacing: str, label: str) -> None:
    from n1v1.data.resample import parse_timeframe

    assert timeframe_label(pd.Timedelta(spacing)) == label
    if not label.endswith("ns"):
        assert parse_timeframe(label) == pd.Timedelta(spacing)
