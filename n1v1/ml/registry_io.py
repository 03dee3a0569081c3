"""Files of the model registry: names, errors, validation and crash-safe writes.

Split from `registry.py` so the registry class reads as the life cycle of a version.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

MODEL_FILE = "model.pt"
SCALER_FILE = "scaler.json"
CARD_FILE = "card.json"
COMPLETE_FILE = "COMPLETE"
POINTER_FILE = "PROMOTED"
HISTORY_FILE = "promotions.jsonl"
_LOCK_FILE = ".lock"

_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
_VERSION = re.compile(r"v[0-9]{4,}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_FILENAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_ALIASES = ("promoted", "latest")


class RegistryError(ValueError):
    """Any registry problem; the message names the model, version, value or file at fault."""


class PromotionRejected(RegistryError):
    """The promotion gate said no: the candidate does not beat the promoted version."""


def validate_name(name: object) -> str:
    """A model name: lowercase letters, digits, '_' and '-', 1-64 chars, no leading '_'/'-'."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise RegistryError(
            f"invalid model name {name!r}: expected 1-64 chars of [a-z0-9_-] starting with a "
            "letter or digit"
        )
    return name


def validate_version(version: object) -> str:
    """A concrete version: 'v' followed by at least four digits (v0001, v0002, ..., v10000)."""
    if not isinstance(version, str) or not _VERSION.fullmatch(version):
        raise RegistryError(
            f"invalid version {version!r}: expected 'v' and 4+ digits (e.g. 'v0001'), "
            "'latest' or 'promoted'"
        )
    return version


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from `path`; a missing file, invalid JSON or a non-object is a RegistryError
    naming the file."""
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise RegistryError(f"{path}: file is missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RegistryError(f"{path}: invalid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise RegistryError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _write_bytes(path: Path, data: bytes) -> None:
    """Write and fsync, so a file that is renamed into place is on disk, not only in the cache."""
    with path.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _version_number(version: str) -> int:
    return int(version[1:])
