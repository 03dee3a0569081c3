"""The values behind two groups of metrics, computed without Ray: the registry's per-model
numbers (`ModelRegistry.stats`, exported by the Model deployment) and the feed interval the
stalled-feed alert compares with (`feed_interval_s`)."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
from test_ml_signal import register_tiny

from n1v1.ml.registry import ModelRegistry, RegistryError
from n1v1.ml.registry_io import CARD_FILE, read_json
from n1v1.serve.args import AppArgs
from n1v1.serve.engine import feed_interval_s


def test_registry_stats_count_versions_and_promotions_and_date_the_promoted_one(
    tmp_path: Path,
) -> None:
    first = register_tiny(tmp_path, created_at="2026-01-01T00:00:00+00:00")  # promoted (forced)
    second = register_tiny(tmp_path, created_at="2026-01-03T12:00:00+00:00")  # promoted too
    registry = ModelRegistry(tmp_path)
    registry.rollback("tiny")  # back to v0001: a rollback is not a promotion
    assert (first, second) == ("v0001", "v0002")
    (tmp_path / "tiny" / "v0003").mkdir()  # half-written: no COMPLETE, not a version
    stats = registry.stats("tiny")
    # 2026-01-01T00:00:00Z is 1767225600 s after the epoch (20454 days x 86400 s)
    assert stats == {
        "versions": 2.0,
        "promotions": 2.0,
        "promoted_version": 1.0,
        "promoted_trained_at": 1767225600.0,
    }
    assert datetime.fromtimestamp(1767225600, UTC) == datetime(2026, 1, 1, tzinfo=UTC)


def test_a_model_never_promoted_has_no_promoted_version_or_age(tmp_path: Path) -> None:
    register_tiny(tmp_path)
    # the same version under another name, never promoted (no pointer, no history)
    shutil.copytree(tmp_path / "tiny" / "v0001", tmp_path / "other" / "v0001")
    stats = ModelRegistry(tmp_path).stats("other")
    assert stats == {
        "versions": 1.0,
        "promotions": 0.0,
        "promoted_version": None,
        "promoted_trained_at": None,
    }


def test_a_promoted_card_without_an_iso_time_is_named(tmp_path: Path) -> None:
    register_tiny(tmp_path)
    card_path = tmp_path / "tiny" / "v0001" / CARD_FILE
    card = read_json(card_path)
    card_path.write_text(card_path.read_text().replace(card["created_at"], "yesterday"))
    with pytest.raises(RegistryError, match=r"tiny/v0001/card.json: created_at 'yesterday'"):
        ModelRegistry(tmp_path).stats("tiny")


@pytest.mark.parametrize(
    ("feed", "seconds"),
    [
        ({"kind": "ccxt", "exchange": "coinbase", "symbols": ["BTC/USD"], "timeframe": "1m"}, 60),
        (
            {"kind": "ccxt", "exchange": "coinbase", "symbols": ["BTC/USD"], "timeframe": "4h"},
            14400,
        ),
        ({"kind": "replay", "datasets": ["coinbase_BTC-USD_1m"], "bars_per_second": 20}, 0.05),
        ({"kind": "replay", "datasets": ["coinbase_BTC-USD_1m"], "bars_per_second": 0}, 0.0),
    ],
)
def test_the_feed_interval_is_the_timeframe_or_the_replay_pace(
    feed: dict[str, object], seconds: float
) -> None:
    assert feed_interval_s(AppArgs.model_validate({"feed": feed})) == seconds
