"""The evaluator contract on Ray: chunks of parameter sets as tasks, bars held once per symbol.

`RayEvaluator` is a drop-in for `local_evaluator` (same arguments, the same rows in the same order,
same dtypes; tests/test_research_sweep.py compares them with `assert_frame_equal`):

- each symbol's bars are `ray.put` once per evaluator (later calls on the same bars, such as
  Bayesian batches, reuse the object); every task gets the ObjectRef as an argument,
  so Ray hands the worker a read-only view of the shared-memory copy instead of pickling the frame
  into each task (on another node the object is pulled once per node, not once per task);
- a task runs `evaluate_on_symbol` (the compiled fast path) on one symbol and a contiguous chunk of
  sets, so a task's fixed cost (a few ms) is spread over many backtests;
- at most `max_in_flight` tasks are queued (default: two per CPU of the cluster), so a million sets
  do not create a million pending tasks and their results at once.

Resume: with `checkpoint=DIR`, each finished chunk is written to
`DIR/chunks/<symbol>_<first_set_id>.parquet` (to a temporary name, then renamed: a chunk file is
either complete or absent) and `DIR/manifest.json` records what the chunks belong to (strategy,
the parameter sets' hash, each symbol's bar hash, the settings the fast path reads, the chunk
size). A rerun with the same manifest loads finished chunks and submits only the missing ones; a
rerun whose manifest differs is refused with the differences named, never silently mixed.

Ray is imported inside the functions that use it, so importing this module (the CLI does, lazily)
does not start or load Ray.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from n1v1.cluster import ensure_ray
from n1v1.config import Settings
from n1v1.research.evaluate import check_sweepable, evaluate_on_symbol
from n1v1.research.space import SweepError
from n1v1.strategies.base import BAR_COLUMNS, Strategy

__all__ = ["CheckpointMismatch", "EvaluatorStats", "RayEvaluator", "ensure_ray"]

MANIFEST_VERSION = 1
# The settings sections the fast path reads (fast_config, risk_free_rate); data.* is already
# reflected in the bars' hash, ml.* and log_level do not change a backtest.
SETTINGS_SECTIONS = ("execution", "risk", "backtest")
TASKS_PER_CPU = 4  # automatic chunk size: about this many tasks per CPU over the whole call
MAX_AUTO_CHUNK = 512

Progress = Callable[[int, int], None]


class CheckpointMismatch(SweepError):
    """The checkpoint directory holds chunks of a different sweep."""


@dataclass
class EvaluatorStats:
    """What the last call did, in chunks (a chunk = one symbol x a block of sets)."""

    total_chunks: int = 0
    loaded_chunks: int = 0  # read back from the checkpoint
    submitted_chunks: int = 0  # sent to Ray as tasks
    chunk_size: int = 0
    frames_put: int = 0  # DataFrames put into the object store by this call (0: all reused)


def _evaluate_chunk(
    symbol: str,
    frame: pd.DataFrame,
    strategy_cls: type[Strategy],
    sets: list[dict[str, Any]],
    settings: Settings,
    first_set_id: int,
) -> pd.DataFrame:
    """The task body: Ray resolves the frame and settings ObjectRefs before calling it."""
    return evaluate_on_symbol(symbol, frame, strategy_cls, sets, settings, first_set_id)


@dataclass(frozen=True)
class _Job:
    frames: Mapping[str, pd.DataFrame]
    strategy_cls: type[Strategy]
    sets: list[dict[str, Any]]
    settings: Settings
    chunk_size: int


_REMOTE: dict[str, Any] = {}


def _remote_chunk() -> Any:
    """The Ray remote version of `_evaluate_chunk`, created once per process on first use."""
    if "chunk" not in _REMOTE:
        import ray

        _REMOTE["chunk"] = ray.remote(num_cpus=1)(_evaluate_chunk)
    return _REMOTE["chunk"]


class RayEvaluator:
    """Evaluator (n1v1.research.evaluate.Evaluator) that runs chunks of sets as Ray tasks.

    chunk_size: sets per task (None: about TASKS_PER_CPU tasks per cluster CPU, at most
        MAX_AUTO_CHUNK sets; with a checkpoint, the chunk size it was written with).
    max_in_flight: tasks queued at once (None: two per cluster CPU).
    progress: callback(done_chunks, total_chunks) after each chunk (loaded chunks count as done),
        or True for a tqdm bar on stderr.
    checkpoint: directory for resumable results (see the module docstring).
    """

    def __init__(
        self,
        chunk_size: int | None = None,
        max_in_flight: int | None = None,
        progress: Progress | bool | None = None,
        checkpoint: str | Path | None = None,
    ) -> None:
        for name, value in (("chunk_size", chunk_size), ("max_in_flight", max_in_flight)):
            if value is not None and (not isinstance(value, int) or value < 1):
                raise SweepError(f"{name}: must be an integer >= 1, got {value!r}")
        self.chunk_size = chunk_size
        self.max_in_flight = max_in_flight
        self.progress = progress
        self.checkpoint = Path(checkpoint) if checkpoint is not None else None
        self.stats = EvaluatorStats()
        # symbol -> (bars hash, ObjectRef): repeated calls on the same bars (Bayesian batches,
        # walk-forward windows of one frame) reuse the object instead of putting it again. The
        # refs keep those objects alive for the evaluator's lifetime.
        self._puts: dict[str, tuple[str, Any]] = {}

    def _frame_ref(self, symbol: str, frame: pd.DataFrame) -> Any:
        import ray

        digest = bars_hash(frame)
        cached = self._puts.get(symbol)
        if cached is not None and cached[0] == digest:
            return cached[1]
        ref = ray.put(frame)
        self._puts[symbol] = (digest, ref)
        self.stats.frames_put += 1
        return ref

    def __call__(
        self,
        frames: Mapping[str, pd.DataFrame],
        strategy_cls: type[Strategy],
        param_sets: Sequence[Mapping[str, Any]],
        settings: Settings,
    ) -> pd.DataFrame:
        import ray

        if not ray.is_initialized():
            raise SweepError(
                "RayEvaluator: Ray is not initialised; call ensure_ray(address) or ray.init first"
            )
        check_sweepable(frames, settings)
        sets = [dict(p) for p in param_sets]
        if not sets:
            raise SweepError("param_sets: empty; give at least one parameter set")
        symbols = list(frames)
        cpus = max(int(ray.cluster_resources().get("CPU", 1)), 1)
        chunk_size = self.chunk_size or _auto_chunk(len(sets), len(symbols), cpus)
        done: dict[tuple[str, int], pd.DataFrame] = {}
        store: _ChunkStore | None = None
        if self.checkpoint is not None:
            manifest = build_manifest(frames, strategy_cls, sets, settings, chunk_size)
            store = _ChunkStore(self.checkpoint, symbols)
            chunk_size = store.open(manifest, explicit_chunk_size=self.chunk_size is not None)
        chunks = [(s, i) for s in symbols for i in range(0, len(sets), chunk_size)]
        if store is not None:
            done = store.load(chunks, chunk_size, len(sets))
        self.stats = EvaluatorStats(len(chunks), len(done), 0, chunk_size, 0)
        todo = [c for c in chunks if c not in done]
        report = _progress_reporter(self.progress, len(chunks))
        try:
            report(len(done))
            if todo:
                job = _Job(frames, strategy_cls, sets, settings, chunk_size)
                self._run(job, todo, done, store, self.max_in_flight or 2 * cpus, report)
        finally:
            report(None)
        return _assemble(frames, sets, chunk_size, done)

    @property
    def parallelism(self) -> int:
        """Sets worth evaluating per call to keep the cluster busy (two per CPU); Bayesian
        search asks this many trials per batch."""
        import ray

        cpus = int(ray.cluster_resources().get("CPU", 1)) if ray.is_initialized() else 1
        return 2 * max(cpus, 1)

    def _run(
        self,
        job: _Job,
        todo: list[tuple[str, int]],
        done: dict[tuple[str, int], pd.DataFrame],
        store: _ChunkStore | None,
        limit: int,
        report: Callable[[int | None], None],
    ) -> None:
        import ray

        needed = dict.fromkeys(symbol for symbol, _ in todo)
        frame_refs = {symbol: self._frame_ref(symbol, job.frames[symbol]) for symbol in needed}
        settings_ref = ray.put(job.settings)
        remote = _remote_chunk()
        queue = iter(todo)
        pending: dict[Any, tuple[str, int]] = {}
        try:
            while True:
                while len(pending) < limit:
                    key = next(queue, None)
                    if key is None:
                        break
                    symbol, first = key
                    ref = remote.remote(
                        symbol,
                        frame_refs[symbol],
                        job.strategy_cls,
                        job.sets[first : first + job.chunk_size],
                        settings_ref,
                        first,
                    )
                    pending[ref] = key
                    self.stats.submitted_chunks += 1
                if not pending:
                    break
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    key = pending.pop(ref)
                    rows = ray.get(ref)
                    if store is not None:
                        store.write(key, rows)
                    done[key] = rows
                    report(len(done))
        finally:
            for ref in pending:  # interrupted: do not leave the cluster busy with orphans
                ray.cancel(ref)


def _auto_chunk(n_sets: int, n_symbols: int, cpus: int) -> int:
    per_symbol_tasks = max(1, math.ceil(TASKS_PER_CPU * cpus / n_symbols))
    return max(1, min(MAX_AUTO_CHUNK, math.ceil(n_sets / per_symbol_tasks)))


def _progress_reporter(
    progress: Progress | bool | None, total: int
) -> Callable[[int | None], None]:
    """A function called with the number of done chunks (None: finished/closed)."""
    if progress is True:
        from tqdm import tqdm

        bar = tqdm(total=total, unit="chunk", desc="sweep", leave=False)

        def to_bar(done: int | None) -> None:
            if done is None:
                bar.close()
            else:
                bar.update(done - bar.n)

        return to_bar
    if callable(progress):

        def to_callback(done: int | None) -> None:
            if done is not None:
                progress(done, total)

        return to_callback
    return lambda done: None


def _assemble(
    frames: Mapping[str, pd.DataFrame],
    sets: list[dict[str, Any]],
    chunk_size: int,
    done: Mapping[tuple[str, int], pd.DataFrame],
) -> pd.DataFrame:
    """Rows exactly as local_evaluator returns them.

    Each symbol's frame is rebuilt from its chunks' records, the way run_sweep builds it from all
    the sets at once: a metric that is None in one chunk and a number in another then becomes a
    float column with NaN, as it would have in one piece (concatenating the chunk frames would
    give an object column instead).
    """
    parts = []
    for symbol in frames:
        records: list[dict[str, Any]] = []
        for first in range(0, len(sets), chunk_size):
            chunk = done[(symbol, first)].drop(columns=["set_id", "symbol"])
            records.extend(_records(chunk))
        part = pd.DataFrame(records)
        part.insert(0, "symbol", symbol)
        part.insert(0, "set_id", range(len(part)))
        parts.append(part)
    return pd.concat(parts, ignore_index=True).sort_values(["set_id", "symbol"], kind="stable")


def _records(chunk: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as dicts with NaN read back as None (how run_sweep reports an undefined metric)."""
    rows = chunk.astype(object).where(chunk.notna(), None)
    return rows.to_dict("records")


# -- checkpoint ------------------------------------------------------------------------------------
def bars_hash(frame: pd.DataFrame) -> str:
    """A hash of the timestamps and OHLCV values (what a backtest reads)."""
    columns = [c for c in BAR_COLUMNS if c in frame.columns]
    hashed = pd.util.hash_pandas_object(frame[columns], index=True).to_numpy()
    return hashlib.sha256(hashed.tobytes()).hexdigest()[:16]


def sets_hash(sets: Sequence[Mapping[str, Any]]) -> str:
    text = json.dumps([dict(s) for s in sets], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def build_manifest(
    frames: Mapping[str, pd.DataFrame],
    strategy_cls: type[Strategy],
    sets: Sequence[Mapping[str, Any]],
    settings: Settings,
    chunk_size: int,
) -> dict[str, Any]:
    """What a checkpoint's chunks were computed from; equal manifests -> reusable chunks."""
    dumped = settings.model_dump(mode="json")
    return {
        "version": MANIFEST_VERSION,
        "strategy": f"{strategy_cls.__module__}:{strategy_cls.__qualname__}",
        "param_sets": {"count": len(sets), "hash": sets_hash(sets)},
        "symbols": {symbol: bars_hash(frame) for symbol, frame in frames.items()},
        "settings": {section: dumped[section] for section in SETTINGS_SECTIONS},
        "chunk_size": chunk_size,
    }


def manifest_differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Human-readable differences between two manifests ([] when the chunks are reusable)."""
    out: list[str] = []
    if old.get("version") != new.get("version"):
        out.append(f"manifest version {old.get('version')} (now {new.get('version')})")
    if old.get("strategy") != new.get("strategy"):
        out.append(f"strategy {old.get('strategy')} (now {new.get('strategy')})")
    before, after = old.get("param_sets") or {}, new.get("param_sets") or {}
    if before != after:
        out.append(
            f"param sets: {before.get('count')} sets hash {before.get('hash')} (now "
            f"{after.get('count')} sets hash {after.get('hash')})"
        )
    syms_old, syms_new = old.get("symbols") or {}, new.get("symbols") or {}
    if set(syms_old) != set(syms_new):  # their order does not change a chunk
        out.append(f"symbols {sorted(syms_old)} (now {sorted(syms_new)})")
    else:
        out += [f"bars of {s} (data hash changed)" for s in syms_new if syms_old[s] != syms_new[s]]
    out += [
        f"setting {key}: {a!r} (now {b!r})"
        for key, a, b in _dotted_diff(old.get("settings") or {}, new.get("settings") or {})
    ]
    if old.get("chunk_size") != new.get("chunk_size"):
        out.append(f"chunk_size {old.get('chunk_size')} (now {new.get('chunk_size')})")
    return out


def _dotted_diff(a: Any, b: Any, prefix: str = "") -> list[tuple[str, Any, Any]]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in dict.fromkeys([*a, *b]):
            out += _dotted_diff(a.get(key), b.get(key), f"{prefix}{key}.")
        return out
    return [] if a == b else [(prefix.rstrip("."), a, b)]


def _safe_names(symbols: Sequence[str]) -> dict[str, str]:
    """symbol -> a file-name-safe stem ('BTC/USD' -> 'BTC_USD'), unique within the sweep."""
    out: dict[str, str] = {}
    for symbol in symbols:
        stem = re.sub(r"[^A-Za-z0-9._-]", "_", symbol) or "_"
        if stem in out.values():
            stem += "-" + hashlib.sha256(symbol.encode()).hexdigest()[:8]
        out[symbol] = stem
    return out


def _write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    write(tmp)
    os.replace(tmp, path)


class _ChunkStore:
    """manifest.json + chunks/<symbol>_<first_set_id>.parquet under one directory."""

    def __init__(self, root: Path, symbols: Sequence[str]) -> None:
        self.root = root
        self.chunks = root / "chunks"
        self.names = _safe_names(symbols)

    def open(self, manifest: dict[str, Any], *, explicit_chunk_size: bool) -> int:
        """Check or write the manifest; returns the chunk size to use."""
        path = self.root / "manifest.json"
        if path.is_file():
            try:
                old = json.loads(path.read_text())
            except json.JSONDecodeError as err:
                raise CheckpointMismatch(f"{path}: unreadable manifest ({err})") from None
            if not explicit_chunk_size and "chunk_size" in old:
                manifest = {**manifest, "chunk_size": old["chunk_size"]}
            diffs = manifest_differences(old, manifest)
            if diffs:
                raise CheckpointMismatch(
                    f"checkpoint {self.root} holds a different sweep: "
                    + "; ".join(diffs)
                    + ". Use another directory, or delete this one to start over."
                )
            return int(manifest["chunk_size"])
        if self.chunks.is_dir() and any(self.chunks.iterdir()):
            raise CheckpointMismatch(
                f"checkpoint {self.root}: chunks without a manifest.json; delete the directory"
            )
        self.chunks.mkdir(parents=True, exist_ok=True)
        text = json.dumps(manifest, indent=1)
        _write_atomic(path, lambda tmp: tmp.write_text(text))
        return int(manifest["chunk_size"])

    def path(self, key: tuple[str, int]) -> Path:
        symbol, first = key
        return self.chunks / f"{self.names[symbol]}_{first}.parquet"

    def load(
        self, keys: Sequence[tuple[str, int]], chunk_size: int, n_sets: int
    ) -> dict[tuple[str, int], pd.DataFrame]:
        """Finished chunks on disk; a file that does not hold exactly its chunk is recomputed."""
        out = {}
        for key in keys:
            path = self.path(key)
            if not path.is_file():
                continue
            symbol, first = key
            try:
                rows = pd.read_parquet(path)
            except Exception:  # a damaged file is recomputed, not trusted
                continue
            expected = list(range(first, min(first + chunk_size, n_sets)))
            if rows["set_id"].tolist() == expected and set(rows["symbol"]) == {symbol}:
                out[key] = rows
        return out

    def write(self, key: tuple[str, int], rows: pd.DataFrame) -> None:
        self.chunks.mkdir(parents=True, exist_ok=True)
        _write_atomic(self.path(key), lambda tmp: rows.to_parquet(tmp, index=False))
