"""A versioned model registry on a plain directory tree (a local disk or a shared volume):

    <root>/<name>/v0001/{model.pt, scaler.json, card.json, COMPLETE}
    <root>/<name>/PROMOTED            the serving version ("v0002\\n"), replaced atomically
    <root>/<name>/promotions.jsonl    every promotion and rollback, append-only

Why it is built this way (details in docs/ml/registry.md):
- A version is written into a hidden staging directory and renamed into place only when complete,
  and `COMPLETE` (the sha256 of card.json, whose "files" hold the sha256 of every other file) is
  written last. A version without a valid `COMPLETE` or with a checksum mismatch cannot be
  resolved, loaded or promoted, so a crash or a torn copy never reaches serving.
- Version numbers are claimed with `os.mkdir` of the final directory (atomic: exactly one writer
  wins), so concurrent registrations never share a number.
- Names and versions are validated by pattern, and every path is checked to stay inside the root
  after symlinks are resolved: a request can never make the registry read or write elsewhere.

torch is imported lazily (register only): listing and promoting must stay fast for the CLI.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import secrets
import shutil
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from n1v1.ml.promotion import PromotionMixin
from n1v1.ml.registry_io import (  # noqa: F401  (the registry's public names live here too)
    _ALIASES,
    _FILENAME,
    _NAME,
    _SHA256,
    _VERSION,
    CARD_FILE,
    COMPLETE_FILE,
    HISTORY_FILE,
    MODEL_FILE,
    POINTER_FILE,
    SCALER_FILE,
    PromotionRejected,
    RegistryError,
    _fsync_dir,
    _now,
    _sha256,
    _version_number,
    _write_bytes,
    read_json,
    validate_name,
    validate_version,
)

__all__ = [
    "CARD_FILE",
    "COMPLETE_FILE",
    "MODEL_FILE",
    "SCALER_FILE",
    "ModelRegistry",
    "PromotionRejected",
    "RegistryError",
    "read_json",
    "validate_name",
    "validate_version",
]


class ModelRegistry(PromotionMixin):
    """Register, list, resolve, promote and roll back model versions under one root directory."""

    def __init__(self, root: str | Path):
        if not str(root):
            raise RegistryError("registry root: empty path")
        self.root = Path(root).expanduser()

    # ---- paths -----------------------------------------------------------------------------

    def _inside(self, path: Path, base: Path, what: str) -> Path:
        """`path` with symlinks resolved, or a RegistryError if it leaves `base`."""
        real = Path(os.path.realpath(path))
        real_base = Path(os.path.realpath(base))
        if real == real_base or real_base not in real.parents:
            raise RegistryError(f"{what} resolves to {real}, outside the registry root {self.root}")
        return real

    def _model_dir(self, name: object, *, create: bool = False) -> Path:
        name = validate_name(name)
        path = self.root / name
        if create:
            path.mkdir(parents=True, exist_ok=True)
        elif not path.is_dir():
            raise RegistryError(f"unknown model {name!r}: no directory {path}")
        self._inside(path, self.root, f"model {name!r}")
        return path

    def _version_dirs(self, model_dir: Path) -> list[str]:
        """Every directory named like a version (complete or not), oldest first."""
        found = [p.name for p in model_dir.iterdir() if _VERSION.fullmatch(p.name) and p.is_dir()]
        return sorted(found, key=_version_number)

    # ---- reading ---------------------------------------------------------------------------

    def _verify(self, name: str, version: str) -> tuple[Path, dict[str, Any]]:
        """Directory and card of a complete, intact version; RegistryError naming what is wrong."""
        model_dir = self._model_dir(name)
        validate_version(version)
        label = f"{name}/{version}"
        path = model_dir / version
        if not path.is_dir():
            raise RegistryError(f"model {name!r} has no version {version!r} ({path})")
        self._inside(path, model_dir, f"version {label}")
        complete = path / COMPLETE_FILE
        if not complete.is_file():
            raise RegistryError(
                f"{label} is incomplete (no {COMPLETE_FILE} in {path}): a half-written version "
                "cannot be used"
            )
        card_path = self._inside(path / CARD_FILE, path, f"{label}/{CARD_FILE}")
        if not card_path.is_file():
            raise RegistryError(f"{path / CARD_FILE}: file is missing")
        if complete.read_text(errors="replace").strip() != _sha256(card_path):
            raise RegistryError(f"{path / CARD_FILE}: checksum does not match {complete}")
        card = read_json(path / CARD_FILE)
        files = card.get("files")
        if card.get("version") != version:
            raise RegistryError(
                f"{path / CARD_FILE}: 'version' is {card.get('version')!r}, expected {version!r}"
            )
        if not isinstance(files, dict) or not {MODEL_FILE, SCALER_FILE} <= set(files):
            raise RegistryError(
                f"{path / CARD_FILE}: 'files' must map {MODEL_FILE} and {SCALER_FILE} to sha256"
            )
        for filename, expected in files.items():
            if not _FILENAME.fullmatch(filename) or not (
                isinstance(expected, str) and _SHA256.fullmatch(expected)
            ):
                raise RegistryError(
                    f"{path / CARD_FILE}: 'files' entry {filename!r}: {expected!r} is not a "
                    "plain file name with a sha256"
                )
            target = self._inside(path / filename, path, f"{label}/{filename}")
            if not target.is_file():
                raise RegistryError(f"{path / filename}: file is missing")
            if _sha256(target) != expected:
                raise RegistryError(f"{path / filename}: checksum does not match {CARD_FILE}")
        return path, card

    def locate(self, name: str, version: str = "promoted") -> tuple[str, Path, dict[str, Any]]:
        """(concrete version, directory, card) of a verified version in one pass: what a loader
        needs without hashing the files twice."""
        name = validate_name(name)
        if version == "promoted":
            concrete = self.promoted_version(name)
            if concrete is None:
                raise RegistryError(
                    f"model {name!r} has no promoted version: promote one, or ask for 'latest' "
                    "or a version"
                )
        elif version == "latest":
            model_dir = self._model_dir(name)
            complete = [
                v for v in self._version_dirs(model_dir) if (model_dir / v / COMPLETE_FILE).exists()
            ]
            if not complete:
                raise RegistryError(f"model {name!r} has no complete version")
            concrete = complete[-1]
        else:
            concrete = validate_version(version)
        path, card = self._verify(name, concrete)
        return concrete, path, card

    def list_models(self) -> list[str]:
        """Names of the models under the root (an absent root is an empty registry)."""
        if not self.root.is_dir():
            return []
        names = []
        for path in self.root.iterdir():
            if not (_NAME.fullmatch(path.name) and path.is_dir()):
                continue
            with contextlib.suppress(RegistryError):
                names.append(self._model_dir(path.name).name)
        return sorted(names)

    def list_versions(self, name: str) -> list[dict[str, Any]]:
        """A summary of every complete version, oldest first. Half-written directories are not
        versions and are left out; a complete but damaged one is listed with an "error"."""
        model_dir = self._model_dir(name)
        promoted = self.promoted_version(name)
        rows: list[dict[str, Any]] = []
        for version in self._version_dirs(model_dir):
            if not (model_dir / version / COMPLETE_FILE).exists():
                continue
            row: dict[str, Any] = {"version": version, "promoted": version == promoted}
            try:
                _, card = self._verify(name, version)
            except RegistryError as exc:
                rows.append({**row, "error": str(exc)})
                continue
            spec = card.get("model_spec")
            rows.append(
                {
                    **row,
                    "created_at": card.get("created_at"),
                    "kind": spec.get("kind") if isinstance(spec, dict) else None,
                    "feature_hash": card.get("feature_hash"),
                    "n_features": card.get("n_features"),
                    "n_classes": card.get("n_classes"),
                    "threshold": card.get("threshold"),
                    "metrics": card.get("metrics"),
                }
            )
        return rows

    def resolve(self, name: str, version: str = "promoted") -> str:
        """The concrete version for "promoted", "latest" or "vNNNN", verified intact."""
        return self.locate(name, version)[0]

    def card(self, name: str, version: str = "promoted") -> dict[str, Any]:
        """The model card of a verified version."""
        return self.locate(name, version)[2]

    def files(self, name: str, version: str) -> Path:
        """The directory of a verified version (every checksum checked just now)."""
        return self.locate(name, version)[1]

    def promoted_version(self, name: str) -> str | None:
        """What the PROMOTED pointer says, or None if nothing was ever promoted."""
        model_dir = self._model_dir(name)
        pointer = model_dir / POINTER_FILE
        if not pointer.exists():
            return None
        self._inside(pointer, model_dir, f"{name}/{POINTER_FILE}")
        value = pointer.read_text(errors="replace").strip()
        if not _VERSION.fullmatch(value):
            raise RegistryError(f"{pointer}: invalid version {value!r}")
        return value

    def stats(self, name: str) -> dict[str, float | None]:
        """What the Model deployment exports per model (n1v1/serve/metrics.py): complete versions,
        promotions in the history, and the promoted version's number and training time (its
        card's created_at; both None while none is promoted). Cheap enough for every health
        check: it counts directories and reads one card, without computing a checksum."""
        model_dir = self._model_dir(name)
        versions = [
            v for v in self._version_dirs(model_dir) if (model_dir / v / COMPLETE_FILE).exists()
        ]
        promoted = self.promoted_version(name)
        trained_at = None
        if promoted is not None:
            created = read_json(model_dir / promoted / CARD_FILE).get("created_at")
            try:
                trained_at = datetime.fromisoformat(str(created)).timestamp()
            except ValueError:
                raise RegistryError(
                    f"{name}/{promoted}/{CARD_FILE}: created_at {created!r} is not an ISO time"
                ) from None
        return {
            "versions": float(len(versions)),
            "promotions": float(sum(1 for r in self.history(name) if r["action"] == "promote")),
            "promoted_version": None if promoted is None else float(_version_number(promoted)),
            "promoted_trained_at": trained_at,
        }

    # ---- writing ---------------------------------------------------------------------------

    def register(
        self,
        name: str,
        *,
        state_dict: Mapping[str, Any],
        scaler: Mapping[str, Any],
        card: Mapping[str, Any],
    ) -> str:
        """Store a new version and return it ("v0001", ...). Nothing is visible until the final
        rename; on any error the staging directory and the claimed number are removed."""
        import torch  # lazy: listing and promoting must not pay for importing torch

        from n1v1.ml.scaling import Standardizer

        name = validate_name(name)
        if not isinstance(state_dict, Mapping) or not state_dict:
            raise RegistryError(f"register {name!r}: state_dict must be a non-empty mapping")
        for key, value in state_dict.items():
            if not isinstance(key, str) or not isinstance(value, torch.Tensor):
                raise RegistryError(
                    f"register {name!r}: state_dict[{key!r}] is {type(value).__name__}, "
                    "expected a tensor (weights only, nothing else is stored)"
                )
        if not isinstance(scaler, Mapping):
            raise RegistryError(
                f"register {name!r}: scaler must be a mapping (Standardizer.to_dict)"
            )
        try:
            Standardizer.from_dict(dict(scaler))
        except ValueError as exc:
            raise RegistryError(f"register {name!r}: scaler: {exc}") from None
        if not isinstance(card, Mapping):
            raise RegistryError(f"register {name!r}: card must be a mapping")
        if card.get("name", name) != name:
            raise RegistryError(f"register {name!r}: card name is {card.get('name')!r}")
        if "metrics" in card and not isinstance(card["metrics"], Mapping):
            raise RegistryError(f"register {name!r}: card 'metrics' must be a mapping")
        try:
            scaler_bytes = json.dumps(dict(scaler), indent=2, sort_keys=True).encode()
            json.dumps(dict(card))
        except (TypeError, ValueError) as exc:
            raise RegistryError(f"register {name!r}: scaler or card is not JSON: {exc}") from None

        model_dir = self._model_dir(name, create=True)
        staging = model_dir / f".staging-{secrets.token_hex(8)}"
        staging.mkdir()
        claimed: Path | None = None
        try:
            buffer = io.BytesIO()
            torch.save({k: v.detach().cpu() for k, v in state_dict.items()}, buffer)
            _write_bytes(staging / MODEL_FILE, buffer.getvalue())
            _write_bytes(staging / SCALER_FILE, scaler_bytes)
            files = {f: _sha256(staging / f) for f in (MODEL_FILE, SCALER_FILE)}
            claimed = self._claim_version(model_dir)
            full_card = {
                **card,
                "name": name,
                "version": claimed.name,
                "created_at": card.get("created_at") or _now(),
                "registered_at": _now(),
                "files": files,
            }
            card_bytes = json.dumps(full_card, indent=2, sort_keys=True).encode()
            _write_bytes(staging / CARD_FILE, card_bytes)
            _write_bytes(
                staging / COMPLETE_FILE, (hashlib.sha256(card_bytes).hexdigest() + "\n").encode()
            )
            _fsync_dir(staging)
            # POSIX rename onto an EMPTY directory replaces it atomically.
            os.rename(staging, claimed)
            _fsync_dir(model_dir)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            if claimed is not None and not (claimed / COMPLETE_FILE).exists():
                shutil.rmtree(claimed, ignore_errors=True)
            raise
        return claimed.name

    def _claim_version(self, model_dir: Path) -> Path:
        """Create the next version directory; `os.mkdir` is atomic, so of two concurrent writers
        exactly one gets each number and the other retries with the next."""
        for _ in range(1000):
            existing = self._version_dirs(model_dir)
            number = _version_number(existing[-1]) + 1 if existing else 1
            path = model_dir / f"v{number:04d}"
            try:
                path.mkdir()
            except FileExistsError:
                continue
            return path
        raise RegistryError(f"{model_dir}: could not claim a version number (1000 collisions)")
