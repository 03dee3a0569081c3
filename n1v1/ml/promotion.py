"""Promotion of registry versions: the gate, the atomic pointer, the history and rollback.

A mixin of `ModelRegistry` (it uses the registry's path checks and checksum verification), kept in
its own module because serving depends on exactly these few rules.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import secrets
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from n1v1.ml.gate import Check, baseline_checks, failures
from n1v1.ml.registry_io import (
    _LOCK_FILE,
    _VERSION,
    HISTORY_FILE,
    POINTER_FILE,
    PromotionRejected,
    RegistryError,
    _fsync_dir,
    _now,
    _write_bytes,
)


class PromotionMixin:
    """promote / rollback / history for ModelRegistry."""

    @contextlib.contextmanager
    def _locked(self, model_dir: Path) -> Iterator[None]:
        """Serialise promotions/rollbacks of one model (pointer and history stay consistent)."""
        with (model_dir / _LOCK_FILE).open("a") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def _write_pointer(self, model_dir: Path, version: str) -> None:
        tmp = model_dir / f".{POINTER_FILE}.tmp-{secrets.token_hex(8)}"
        try:
            _write_bytes(tmp, f"{version}\n".encode())
            os.replace(tmp, model_dir / POINTER_FILE)
        finally:
            tmp.unlink(missing_ok=True)
        _fsync_dir(model_dir)

    def _append_history(self, model_dir: Path, record: dict[str, Any]) -> None:
        with (model_dir / HISTORY_FILE).open("a") as fh:
            fh.write(json.dumps(record, sort_keys=True) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def history(self, name: str) -> list[dict[str, Any]]:
        """Every promotion and rollback of `name`, oldest first."""
        path = self._model_dir(name) / HISTORY_FILE
        if not path.exists():
            return []
        records = []
        for lineno, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise RegistryError(f"{path}:{lineno}: invalid JSON: {exc}") from None
            if (
                not isinstance(record, dict)
                or record.get("action") not in ("promote", "rollback")
                or not isinstance(record.get("version"), str)
                or not _VERSION.fullmatch(record["version"])
            ):
                raise RegistryError(f"{path}:{lineno}: not a promotion record: {line[:200]!r}")
            records.append(record)
        return records

    def promotion_record(self, name: str, version: str) -> dict[str, Any] | None:
        """The latest "promote" record of `version` in the history, or None."""
        records = [
            r for r in self.history(name) if r["action"] == "promote" and r["version"] == version
        ]
        return records[-1] if records else None

    def gate_status(
        self, name: str, version: str, *, margin: float = 0.005, alpha: float = 0.05
    ) -> tuple[str, list[Check]]:
        """(status, baseline checks) of a verified version. status: "passed", "failed:
        chance, buy_and_hold" (the failed checks), or for a version promoted with force over a
        failed gate "forced, failed gate: ..." (as the promotion history recorded it)."""
        concrete, _, card = self.locate(name, version)
        checks = baseline_checks(card, margin=margin, alpha=alpha)
        failed = [c.name for c in checks if not c.passed]
        record = self.promotion_record(name, concrete)
        if record is not None and record.get("forced"):
            recorded = record.get("failed_gate")
            names = failed if recorded is None else [str(r).split(":", 1)[0] for r in recorded]
            return ("forced, failed gate: " + ", ".join(names) if names else "forced"), checks
        return ("passed" if not failed else "failed: " + ", ".join(failed)), checks

    def promote(
        self,
        name: str,
        version: str,
        *,
        metric: str = "val_auc",
        margin: float = 0.005,
        alpha: float = 0.05,
        force: bool = False,
    ) -> dict[str, Any]:
        """Point PROMOTED at `version` if it passes the baseline checks (`n1v1.ml.gate`: AUC
        above chance by `margin` at significance `alpha`, and ml_signal beating buy-and-hold on
        validation) and beats the promoted version's `metric` (higher is better) by `margin`, or
        if `force`. A forced promotion records the checks it skipped and which of them failed.
        Returns the history record. Only a complete version with matching checksums can be
        promoted; the gate is a PromotionRejected naming every failed check."""
        model_dir = self._model_dir(name)
        if not isinstance(metric, str) or not metric:
            raise RegistryError(f"promote: metric must be a non-empty string, got {metric!r}")
        for label, value, upper in (("margin", margin, math.inf), ("alpha", alpha, 1.0)):
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not (math.isfinite(value) and 0 <= value <= upper)
            ):
                bound = "a finite number >= 0" if upper == math.inf else f"in [0, {upper:g}]"
                raise RegistryError(f"promote: {label} must be {bound}, got {value!r}")
        with self._locked(model_dir):
            concrete, _, card = self.locate(name, version)
            current = self.promoted_version(name)
            if current == concrete:
                raise PromotionRejected(f"{name}/{concrete} is already the promoted version")
            value = _metric(card, metric)
            previous_value = None
            if current is not None:
                try:
                    previous_value = _metric(self.locate(name, current)[2], metric)
                except RegistryError as exc:
                    if not force:
                        raise RegistryError(
                            f"{name}: the promoted version {current} cannot be read ({exc}); "
                            "use force to replace it"
                        ) from None
            checks = baseline_checks(card, margin=margin, alpha=alpha)
            if not force:
                self._gate(name, concrete, current, metric, margin, value, previous_value, checks)
            record = {
                "time": _now(),
                "action": "promote",
                "version": concrete,
                "previous": current,
                "forced": bool(force),
                "metric": metric,
                "value": value,
                "previous_value": previous_value,
                "gate": [c.to_dict() for c in checks],
                "failed_gate": failures(checks),
            }
            self._append_history(model_dir, record)
            self._write_pointer(model_dir, concrete)
        return record

    @staticmethod
    def _gate(
        name: str,
        version: str,
        current: str | None,
        metric: str,
        margin: float,
        value: float | None,
        previous_value: float | None,
        checks: list[Check],
    ) -> None:
        failed = failures(checks)
        if failed:
            raise PromotionRejected(
                f"{name}/{version} fails the baseline gate:\n  " + "\n  ".join(failed)
            )
        if value is None:
            raise PromotionRejected(
                f"{name}/{version}: card has no finite metrics[{metric!r}] to compare (use force)"
            )
        if current is None:
            return
        if previous_value is None:
            raise PromotionRejected(
                f"{name}: the promoted version {current} has no finite metrics[{metric!r}], so "
                f"{version} ({metric}={value:.6f}) cannot be compared (use force)"
            )
        if value < previous_value + margin:
            raise PromotionRejected(
                f"{name}/{version}: {metric}={value:.6f} does not beat the promoted {current} "
                f"({metric}={previous_value:.6f}) by the margin {margin} "
                f"(needs >= {previous_value + margin:.6f})"
            )

    def rollback(self, name: str) -> str:
        """Re-point PROMOTED to the version promoted before the current one (by replaying the
        history: a promotion pushes, a rollback pops). Returns the version now promoted."""
        model_dir = self._model_dir(name)
        with self._locked(model_dir):
            stack: list[str] = []
            for record in self.history(name):
                if record["action"] == "promote":
                    stack.append(record["version"])
                elif stack:
                    stack.pop()
            current = self.promoted_version(name)
            if current is None:
                raise RegistryError(f"model {name!r} has no promoted version to roll back")
            if not stack or stack[-1] != current:
                raise RegistryError(
                    f"{model_dir / HISTORY_FILE} does not end at the promoted version {current} "
                    f"(it ends at {stack[-1] if stack else None}); promote with force to repair"
                )
            if len(stack) < 2:
                raise RegistryError(
                    f"model {name!r}: nothing to roll back to ({current} is the first promotion)"
                )
            target = stack[-2]
            self._verify(name, target)
            record = {
                "time": _now(),
                "action": "rollback",
                "version": target,
                "previous": current,
                "forced": False,
            }
            self._append_history(model_dir, record)
            self._write_pointer(model_dir, target)
        return target


def _metric(card: Mapping[str, Any], metric: str) -> float | None:
    """card["metrics"][metric] as a float, or None if absent, not a number or not finite."""
    metrics = card.get("metrics")
    value = metrics.get(metric) if isinstance(metrics, Mapping) else None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)
