"""The promoted version of a registry model, kept current while it serves.

A serving replica holds one `PromotedModel` per model name. `current()` returns the loaded model
and, at most every `refresh_s` seconds, checks the registry's PROMOTED pointer; when it moved, the
new version is loaded *before* the reference is swapped, so a request either runs on the old
version or the new one, never on a half-loaded model, and none is dropped during the swap. A
model asked for by its version (`version="v0003"`, or "latest" resolved once) is pinned: it never
swaps.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from n1v1.ml.inference import LoadedModel, load_model
from n1v1.ml.registry import ModelRegistry, validate_name, validate_version


class PromotedModel:
    def __init__(
        self,
        registry: ModelRegistry,
        name: str,
        refresh_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        version: str = "promoted",
    ) -> None:
        self.registry, self.name, self.refresh_s, self._clock = registry, name, refresh_s, clock
        self.pinned = version != "promoted"
        self._lock = threading.Lock()
        self.model: LoadedModel = load_model(registry, name, version)
        self._checked = clock()
        self.swaps = 0

    def current(self) -> LoadedModel:
        now = self._clock()
        if self.pinned or now - self._checked < self.refresh_s:
            return self.model
        with self._lock:
            if now - self._checked >= self.refresh_s:
                self._checked = now
                promoted = self.registry.promoted_version(self.name)
                if promoted is not None and promoted != self.model.version:
                    self.model = load_model(self.registry, self.name, promoted)
                    self.swaps += 1
        return self.model


def split_model_id(model_id: str) -> tuple[str, str]:
    """(name, version) of a multiplexed model id: "name" (its promoted version), "name@vNNNN" or
    "name@latest" (the newest complete version when first loaded); a ValueError names what is
    wrong."""
    name, sep, version = model_id.partition("@")
    validate_name(name)
    if not sep:
        return name, "promoted"
    return name, version if version == "latest" else validate_version(version)
