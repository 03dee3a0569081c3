"""`ml_signal`: a registry model's probabilities turned into target positions.

The strategy is a thin adapter so that backtests, sweeps, walk-forward evaluation and (later) live
trading use a model exactly like a rule strategy: features from the card's `FeatureSpec` (the same
`build_features` training used), one batched `predict_proba` over all bars, then a threshold.

- Where models live is configuration (`ml.model_root`: config file or `N1V1_ML__MODEL_ROOT`), never
  a strategy parameter: a parameter can come from a request, and a caller must not be able to point
  the process at a directory of its choosing.
- The model is loaded on first use and kept for the life of the instance; "promoted" and "latest"
  are resolved at that moment, so one backtest never mixes two versions.
- The card records the hash of the feature definitions the model was trained on. If this code
  computes a different hash for the same spec (a formula changed since), the model would be fed
  features it has never seen; that is an error, not a warning.
- Causal: features are causal and the MLP reads one row (a sequence model the last `window` rows),
  so target t depends on bars[: t + 1] only. Rows whose features are not ready are 0, and so are
  the first `warmup` bars after a session break (a hole of months in the data), as in training
  (`n1v1.ml.dataset`): their look-back would reach across the break.
- No trading on the training window: the card records the first training row and the last
  validation row. Bars that overlap that window (extended by the label horizon) measure what the
  model remembers, not what it can do, so they are refused with a StrategyError naming both ranges
  unless `allow_in_sample=true`; then the result carries a note saying so (`notes`, which
  `run_backtest` copies into BacktestResult.notes).

torch is imported only when a model is loaded (`n1v1.ml.inference`), so listing strategies or
running rule strategies never pays for it.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pydantic

from n1v1.ml.dataset import last_bar_in_session_warmup, session_warmup_mask
from n1v1.ml.features import (
    FeatureSpec,
    build_features,
    feature_hash,
    feature_matrix,
    feature_names,
)
from n1v1.strategies.base import Strategy, StrategyError, StrategyParams

if TYPE_CHECKING:
    from n1v1.config import Settings
    from n1v1.ml.card import ModelCard
    from n1v1.ml.inference import LoadedModel

VERSION_ALIASES = ("promoted", "latest")


class MLSignalParams(StrategyParams):
    model: str = pydantic.Field(description="registry model name")
    version: str = pydantic.Field("promoted", description="'promoted', 'latest' or 'vNNNN'")
    threshold: float | None = pydantic.Field(
        None, ge=0.0, le=1.0, description="long when P(long) > threshold (1 = never); None: card"
    )
    short_threshold: float | None = pydantic.Field(
        None, ge=0.0, le=1.0, description="ternary: short when P(short) > this; None = threshold"
    )
    shadow: str | None = pydantic.Field(
        None,
        description="live only: a candidate version ('latest' or 'vNNNN') scored on the same "
        "rows beside the traded one, logged, never traded",
    )
    allow_in_sample: bool = pydantic.Field(
        False, description="trade bars the model was trained or validated on (result is noted)"
    )

    @pydantic.field_validator("model")
    @classmethod
    def _model_name(cls, value: str) -> str:
        from n1v1.ml.registry import validate_name  # no torch: the registry imports it lazily

        return validate_name(value)  # RegistryError is a ValueError: pydantic reports it

    @pydantic.field_validator("shadow")
    @classmethod
    def _shadow(cls, value: str | None) -> str | None:
        from n1v1.ml.registry import validate_version

        return value if value in (None, "latest") else validate_version(value)

    @pydantic.field_validator("version")
    @classmethod
    def _version(cls, value: str) -> str:
        from n1v1.ml.registry import validate_version

        return value if value in VERSION_ALIASES else validate_version(value)


class MLSignal(Strategy):
    """Trade a registry model's predicted probabilities.

    binary model: +1 where P(long) > threshold, else 0. ternary model: +1 where P(long) >
    threshold; -1 where shorts are allowed and P(short) > short_threshold (default: threshold);
    0 where neither or both hold. 0 while the features (or a sequence model's window) are not
    ready. `threshold` None uses the decision threshold chosen on validation (the card's).
    The model root is `ml.model_root` from the settings, never a parameter.
    """

    name = "ml_signal"
    Params = MLSignalParams
    params: MLSignalParams

    def __init__(
        self,
        params: MLSignalParams | dict[str, Any] | None = None,
        *,
        settings: Settings | None = None,
    ) -> None:
        super().__init__(params)
        self._settings = settings
        self._loaded: LoadedModel | None = None
        self._feature_spec: FeatureSpec | None = None
        self._in_memory = False  # built by from_loaded: no registry behind it
        self.notes: list[str] = []  # for the result: e.g. "traded in-sample bars"
        self._window: tuple[pd.Timestamp, pd.Timestamp] | None = None
        self._window_of: LoadedModel | ModelCard | None = None
        self._card_only = False  # live: the replicas run the model, this reads its card

    def bind_settings(self, settings: Settings) -> None:
        """Use the run's settings (ml.model_root); a different root drops the cached model.
        A model handed over in memory (`from_loaded`) has no registry behind it and is kept."""
        root_changed = (
            self._settings is None or self._settings.ml.model_root != settings.ml.model_root
        )
        if root_changed and not self._in_memory:
            self._loaded = None
        self._settings = settings

    @classmethod
    def from_loaded(
        cls,
        loaded: LoadedModel,
        *,
        threshold: float | None = None,
        short_threshold: float | None = None,
    ) -> MLSignal:
        """A strategy around a model already in memory (walk-forward evaluation trains one per
        fold); the same checks and the same code path as a model loaded from the registry."""
        strategy = cls(
            {
                "model": loaded.name,
                "version": loaded.version,
                "threshold": threshold,
                "short_threshold": short_threshold,
            }
        )
        strategy._feature_spec = _checked_feature_spec(loaded)
        strategy._loaded = loaded
        strategy._in_memory = True
        return strategy

    # -- the model -------------------------------------------------------------------------------
    def loaded_model(self) -> LoadedModel:
        """The model, loaded (and checked) on first use, then cached for this instance."""
        if self._loaded is None:
            self._load(self.params.version)
        assert self._loaded is not None
        return self._loaded  # type: ignore[return-value]  # a ModelCard when card-only

    def use_card_only(self) -> None:
        """Read the card instead of loading the weights (a live session: the Model deployment's
        replicas run the forward pass; this computes the features and applies the threshold)."""
        if not self._card_only:
            self._card_only, self._loaded = True, None

    def model_card(self) -> ModelCard:
        """The card of the version in use (card-only mode)."""
        assert self._card_only, "model_card() is for a card-only (live) ml_signal"
        return self.loaded_model()  # type: ignore[return-value]

    def switch_version(self, version: str) -> None:
        """Use this concrete version from now on (the replicas answered with it: a promotion)."""
        self._load(version)

    def _load(self, version: str) -> None:
        from n1v1.config import load_settings
        from n1v1.ml.registry import ModelRegistry, RegistryError

        settings = self._settings or load_settings()
        root = settings.ml.model_root
        try:
            if self._card_only:
                from n1v1.ml.card import ModelCard

                loaded: Any = ModelCard.read(ModelRegistry(root), self.params.model, version)
            else:
                from n1v1.ml.inference import load_model

                loaded = load_model(ModelRegistry(root), self.params.model, version)
        except RegistryError as err:
            raise StrategyError(
                f"ml_signal: cannot load model {self.params.model!r} version "
                f"{version!r} from the registry at {root} (ml.model_root): {err}"
            ) from None
        self._feature_spec = _checked_feature_spec(loaded)
        self._loaded = loaded
        self._note_gate(ModelRegistry(root), settings)

    def _note_gate(self, registry: Any, settings: Settings) -> None:
        """A note when the loaded version did not pass the promotion gate (it can still be
        traded by naming it: research needs that, but the result must say so)."""
        assert self._loaded is not None
        ml, loaded = settings.ml, self._loaded
        status, checks = registry.gate_status(
            loaded.name, loaded.version, margin=ml.promotion_margin, alpha=ml.promotion_alpha
        )
        failed = "; ".join(f"{c.name}: {c.detail}" for c in checks if not c.passed)
        if failed:
            note = (
                f"UNVALIDATED MODEL: {loaded.name}/{loaded.version} did not pass the promotion "
                f"gate ({status}): {failed}"
            )
            if note not in self.notes:
                self.notes.append(note)

    @property
    def warmup(self) -> int:
        """Bars before every feature is finite, plus window - 1 for a sequence model."""
        from n1v1.ml.features import feature_warmup

        loaded = self.loaded_model()
        assert self._feature_spec is not None
        return feature_warmup(self._feature_spec) + loaded.window - 1

    @property
    def threshold(self) -> float:
        p = self.params
        return p.threshold if p.threshold is not None else self.loaded_model().threshold

    @property
    def short_threshold(self) -> float:
        p = self.params
        return p.short_threshold if p.short_threshold is not None else self.threshold

    # -- the rule --------------------------------------------------------------------------------
    def probabilities(self, bars: pd.DataFrame) -> np.ndarray:
        """Class probabilities [len(bars), n_classes] (NaN rows where not ready), causal."""
        loaded = self.loaded_model()
        assert self._feature_spec is not None
        if not isinstance(bars, pd.DataFrame):
            raise StrategyError(f"ml_signal: bars must be a pandas DataFrame, got {type(bars)}")
        try:
            features = build_features(bars, self._feature_spec)
        except ValueError as err:
            raise StrategyError(f"ml_signal: cannot build features: {err}") from None
        values = features.to_numpy(dtype=np.float64)
        self._check_bar_size(bars)
        self._check_training_overlap(bars)
        proba = loaded.predict_proba(values)
        if isinstance(bars.index, pd.DatetimeIndex) and len(bars) > 1:
            proba[session_warmup_mask(bars.index, self.warmup)] = np.nan
        return proba

    def live_rows(self, bars: pd.DataFrame) -> np.ndarray | None:
        """The rows the model needs for a decision at the last bar ([window, n_features]: one row
        for an MLP), or None while that decision is "not ready" (features still warming up, or
        within `warmup` bars of a session break): the same rows and the same readiness as
        `probabilities` gives the last bar, without running the model."""
        loaded = self.loaded_model()
        assert self._feature_spec is not None
        self._check_bar_size(bars)
        self._check_training_overlap(bars)
        window = loaded.window
        if len(bars) <= self.warmup or len(bars) < window:  # `finish` zeroes those bars
            return None
        dated = isinstance(bars.index, pd.DatetimeIndex) and len(bars) > 1
        if dated and last_bar_in_session_warmup(bars.index, self.warmup):
            return None
        try:
            columns = self.columns(bars, "high", "low", "close", "volume")
            rows = feature_matrix(bars, self._feature_spec, columns)[-window:]
        except ValueError as err:
            raise StrategyError(f"ml_signal: cannot build features: {err}") from None
        return rows if np.isfinite(rows).all() else None

    def decide(
        self,
        proba: np.ndarray,
        allow_short: bool,
        threshold: float | None = None,
        short_threshold: float | None = None,
    ) -> np.ndarray:
        """The rule: target positions from class probabilities [n, n_classes] (NaN rows: 0, a
        short only where allowed); thresholds default to this strategy's (its parameters, else
        the card's). No warm-up zeroing: `target_positions` adds it, `live_rows` refuses it."""
        long_at = self.threshold if threshold is None else threshold
        short_at = self.short_threshold if short_threshold is None else short_threshold
        n_classes = proba.shape[1]
        with np.errstate(invalid="ignore"):  # NaN rows compare False: flat while not ready
            long = proba[:, n_classes - 1] > long_at
            if n_classes == 3 and allow_short:
                short = proba[:, 0] > short_at
            else:
                short = np.zeros(len(proba), dtype=np.bool_)
        return np.where(long & ~short, 1, np.where(short & ~long, -1, 0)).astype(np.int8)

    def _check_bar_size(self, bars: pd.DataFrame) -> None:
        """StrategyError if the bars are not the size the model was trained on: its features
        count bars (returns over 1, 5, 15, 60 bars, ...), so a model trained on 5-minute bars
        reads 1-minute bars as something it has never seen. A card without data.timeframe
        (a model built in memory) is not checked."""
        from n1v1.data import DataError, infer_timeframe
        from n1v1.data.resample import parse_timeframe

        loaded = self.loaded_model()
        trained = (loaded.card.get("data") or {}).get("timeframe")
        if not isinstance(trained, str) or len(bars) < 2:
            return
        try:
            expected, given = parse_timeframe(trained), infer_timeframe(bars)
        except DataError:
            return
        if given != expected:
            raise StrategyError(
                f"ml_signal: model {loaded.name}/{loaded.version} was trained on {trained} bars, "
                f"these bars are {_duration(given)} apart (median): its features count bars, so "
                f"it would read them as something it has never seen. Resample to {trained} "
                "(--timeframe) or train a model on this bar size."
            )

    def _check_training_overlap(self, bars: pd.DataFrame) -> None:
        """StrategyError if `bars` overlap the model's training window, unless allow_in_sample
        (then a note). A card without the window (a model built in memory) is not checked."""
        loaded = self.loaded_model()
        if self._window_of is not loaded:  # parsed once per loaded model, not once per bar
            self._window, self._window_of = training_window(loaded.card), loaded
        window = self._window
        if window is None or len(bars) == 0 or not isinstance(bars.index, pd.DatetimeIndex):
            return
        first, last = (
            t if t.tzinfo else t.tz_localize("UTC") for t in (bars.index[0], bars.index[-1])
        )
        start, end = window
        if first > end or last < start:
            return
        label = f"{loaded.name}/{loaded.version}"
        ranges = (
            f"the bars {first.isoformat()} .. {last.isoformat()} overlap the window {label} was "
            f"trained and validated on ({start.isoformat()} .. {end.isoformat()}, the last "
            "validation label included)"
        )
        if not self.params.allow_in_sample:
            raise StrategyError(
                f"ml_signal: {ranges}: a backtest there measures what the model remembers, not "
                f"what it can do. Use bars after {end.isoformat()} (e.g. --start), or pass "
                "--param allow_in_sample=true to run it anyway (the result is then marked "
                "in-sample)."
            )
        note = f"IN-SAMPLE: ml_signal was run although {ranges}; this measures memory, not skill"
        if note not in self.notes:
            self.notes.append(note)

    def target_positions(self, bars: pd.DataFrame, allow_short: bool = False) -> np.ndarray:
        return self.finish(self.decide(self.probabilities(bars), allow_short), allow_short)


def _duration(delta: pd.Timedelta) -> str:
    from n1v1.cli.common import format_duration

    return format_duration(delta.total_seconds())


def training_window(card: dict[str, Any]) -> tuple[pd.Timestamp, pd.Timestamp] | None:
    """(first training row, last bar any training or validation label used) from a card's
    `split` (and `label_spec.horizon` x `data.timeframe`), or None when the card lacks them."""
    split = card.get("split")
    if not isinstance(split, dict):
        return None
    try:
        start = pd.Timestamp(split["train"][0])
        end = pd.Timestamp(split["val"][1])
    except (KeyError, IndexError, TypeError, ValueError):
        return None
    horizon = (card.get("label_spec") or {}).get("horizon")
    timeframe = (card.get("data") or {}).get("timeframe")
    if isinstance(horizon, int) and isinstance(timeframe, str):
        from n1v1.data.resample import parse_timeframe

        with contextlib.suppress(ValueError):
            end = end + horizon * parse_timeframe(timeframe)
    return start, end


def _checked_feature_spec(loaded: LoadedModel) -> FeatureSpec:
    """The card's FeatureSpec, if this code computes the features the model was trained on."""
    label = f"ml_signal: model {loaded.name}/{loaded.version}"
    try:
        spec = FeatureSpec.model_validate(loaded.feature_spec_dict)
    except pydantic.ValidationError as err:
        raise StrategyError(f"{label}: the card's feature_spec is not valid here: {err}") from None
    card_hash = loaded.card.get("feature_hash")
    ours = feature_hash(spec)
    if card_hash != ours:
        raise StrategyError(
            f"{label} was trained on features with hash {card_hash!r}, but this code computes "
            f"{ours!r} for the same feature_spec: the feature formulas (or their order) changed "
            "since training, so the model would see inputs it was never trained on. Retrain it "
            "(n1v1 train) or use the code version that trained it."
        )
    names = feature_names(spec)
    card_names = loaded.card.get("feature_names")
    if card_names is not None and list(card_names) != names:
        raise StrategyError(f"{label}: the card's feature_names {card_names} differ from {names}")
    if len(names) != loaded.n_features:
        raise StrategyError(
            f"{label}: the model takes {loaded.n_features} features, the spec makes {len(names)}"
        )
    if loaded.n_classes not in (2, 3):
        raise StrategyError(f"{label}: expected 2 or 3 classes, the model has {loaded.n_classes}")
    return spec
