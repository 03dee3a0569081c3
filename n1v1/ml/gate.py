"""The baseline half of the promotion gate: what every version must beat, the first one included.

The other half (`n1v1.ml.promotion`) compares a candidate with the promoted version. That alone let
a first version worse than chance be promoted and traded, because it had nothing to beat. So every
version must also clear two baselines, read from its model card (docs/ml/registry.md has the long
form and a worked example):

1. **Chance.** The validation AUC must be at least `0.5 + margin` and significantly above 0.5: the
   one-sided p-value of the Mann-Whitney test of "no discrimination" must be at most `alpha`. Under
   that null hypothesis the AUC has mean 1/2 and variance (m1 + m0 + 1) / (12 m1 m0) for m1 events
   and m0 non-events. Consecutive labels share h - 1 of their h bars (h = label horizon), so only
   about one row in h is independent: the counts are divided by h (m = n / h) before the variance
   is computed. Ternary models (macro AUC over one-vs-rest) use the largest of the per-class
   variances, an upper bound on the variance of their mean.
2. **Buy-and-hold, net of fees.** `ml_signal` with the version's threshold, backtested on the
   validation bars (`n1v1.ml.economics.validation_backtest`, the engine's fees and fills), must
   return more than buy-and-hold on the same bars and more than nothing (cash). The threshold and
   the epoch were chosen on those bars, so this is a necessary condition, not proof of an edge.

Pure Python: listing and promoting must not import torch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

CHANCE_AUC = 0.5


@dataclass(frozen=True, slots=True)
class Check:
    """One baseline test: its name, whether it passed and a sentence with the numbers."""

    name: str
    passed: bool
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def auc_null_z(auc: float, class_counts: Sequence[int], horizon: int) -> float | None:
    """z = (auc - 1/2) / sd under "no discrimination", counts deflated by the label horizon (see
    the module docstring); None when no class pair has rows on both sides."""
    total = float(sum(class_counts))
    binary = len(class_counts) == 2
    variances = []
    for count in class_counts[1:] if binary else class_counts:  # binary: the event is class 1
        m1, m0 = count / horizon, (total - count) / horizon
        if m1 > 0 and m0 > 0:
            variances.append((m1 + m0 + 1.0) / (12.0 * m1 * m0))
    if not variances:
        return None
    return (auc - CHANCE_AUC) / math.sqrt(max(variances))


def one_sided_p(z: float) -> float:
    """P(Z >= z) for a standard normal Z."""
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def baseline_checks(card: Mapping[str, Any], *, margin: float, alpha: float) -> list[Check]:
    """The chance and buy-and-hold checks of a model card (see the module docstring). A card
    without the numbers a check needs fails that check, naming what is missing."""
    return [_chance(card, margin, alpha), _buy_and_hold(card)]


def failures(checks: Sequence[Check]) -> list[str]:
    """The details of the checks that failed."""
    return [f"{c.name}: {c.detail}" for c in checks if not c.passed]


def _number(value: Any) -> float | None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else None


def _chance(card: Mapping[str, Any], margin: float, alpha: float) -> Check:
    metrics = card.get("metrics") if isinstance(card.get("metrics"), Mapping) else {}
    auc = _number(metrics.get("val_auc"))
    split = card.get("split") if isinstance(card.get("split"), Mapping) else {}
    counts = split.get("val_class_counts")
    horizon = (card.get("label_spec") or {}).get("horizon")
    if auc is None:
        return Check("chance", False, "the card has no finite metrics['val_auc']")
    if not (isinstance(counts, list) and all(isinstance(c, int) for c in counts)) or not (
        isinstance(horizon, int) and horizon >= 1
    ):
        return Check(
            "chance",
            False,
            f"val_auc {auc:.4f}, but the card lacks split.val_class_counts or label_spec.horizon "
            "for the significance test (trained before the baseline gate: retrain it)",
        )
    z = auc_null_z(auc, counts, horizon)
    if z is None:
        return Check("chance", False, f"validation rows hold one class only ({counts})")
    p = one_sided_p(z)
    needed = CHANCE_AUC + margin
    passed = auc >= needed and p <= alpha
    verdict = "above" if passed else "not above"
    n_val = sum(counts)
    return Check(
        "chance",
        passed,
        f"val_auc {auc:.4f} {verdict} chance (needs >= {needed:.4f} and one-sided p <= "
        f"{alpha:g}; p = {p:.3g}, z = {z:.2f} on {n_val} validation rows / horizon {horizon} = "
        f"{n_val / horizon:.0f} independent)",
    )


def _buy_and_hold(card: Mapping[str, Any]) -> Check:
    metrics = card.get("metrics") if isinstance(card.get("metrics"), Mapping) else {}
    model = _number(metrics.get("val_return"))
    hold = _number(metrics.get("val_buy_and_hold_return"))
    if model is None or hold is None:
        return Check(
            "buy_and_hold",
            False,
            "the card lacks metrics val_return / val_buy_and_hold_return (trained before the "
            "baseline gate: retrain it)",
        )
    backtest = card.get("validation_backtest") or {}
    fee = backtest.get("fee") if isinstance(backtest, Mapping) else None
    costs = f" net of {fee:.2%} fees per fill" if _number(fee) is not None else " net of fees"
    passed = model > max(hold, 0.0)
    relation = "beats" if passed else "does not beat"
    return Check(
        "buy_and_hold",
        passed,
        f"ml_signal {model:+.2%} {relation} buy-and-hold {hold:+.2%} and cash (0 %) on the "
        f"validation bars,{costs}",
    )


def gate_summary(checks: Sequence[Check]) -> str:
    """ "passed" or "failed: <reasons>" in one line."""
    failed = failures(checks)
    return "passed" if not failed else "failed: " + "; ".join(failed)
