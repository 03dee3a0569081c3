"""`n1v1 retrain`: scheduled retraining, what the RayCronJob runs (through jobs/retrain.py).

KubeRay's RayCronJob starts a RayJob at every tick of its schedule and has no concurrency policy:
a slow run overlaps the next one, and a retried RayJob runs the same tick again. So this command
keeps its own books in the store (`retrain_runs`, n1v1/store/retrain_runs.py):

1. its **scheduled time** is the latest tick of `--schedule` at or before now (or `--at`, to
   catch up a failed tick) (n1v1/ml/schedule.py); a tick whose run is `done` exits 0 without
   training;
2. it takes the **lease** `retrain:<model>` (n1v1/store/lease.py, renewed every third of
   `--lease-ttl` while it trains); while another run holds it, it exits 0 naming the holder. A
   crashed run stops renewing, so its lease expires and never blocks a later tick for longer
   than the TTL;
3. it trains with `n1v1 train`'s code (`train_model`) under the Ray run name `<name>-<tick>`
   (`--run-name` replaces `<name>`), on the bars that opened before the tick unless `--end` says
   otherwise: a retry of the tick resumes from that run's checkpoints, a new tick starts afresh;
4. the new version goes through the **promotion gate** (`promote_trained`: the baselines, and
   beating the promoted version) only if the lease is still this run's. The Serve app's Model
   deployment serves the PROMOTED version (it re-reads the pointer every `model.refresh_s`), and
   an `ml_signal` slot trades the version it pins or, unpinned, the one promoted when it loads
   its model: a version the gate refused reaches neither;
5. it records the outcome (version, promoted or not and why) and releases the lease.

Exit codes: 0 when the tick is done (trained, whether promoted or not) or nothing was to be done
(already done, another run holds the lock); 2 on an error (training failed, lease lost), with
`n1v1: error: ...`. Nothing here imports Ray: training does, inside `train_model`.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import threading
import uuid
from typing import TYPE_CHECKING, Any

import pandas as pd

from n1v1.cli.common import EXIT_ERROR, EXIT_OK
from n1v1.cli.ml import (
    add_train_arguments,
    load_train_spec,
    print_training_error,
    promote_trained,
    train_model,
    train_settings,
    write_result_json,
)

if TYPE_CHECKING:
    from n1v1.config import Settings
    from n1v1.store import Lease, Store
    from n1v1.store.retrain_runs import RetrainRun

DEFAULT_LEASE_TTL_S = 120.0


def add_retrain_command(sub: Any) -> None:
    p = sub.add_parser(
        "retrain",
        help="scheduled retraining: once per tick of a cron schedule, locked in the store",
        description="Train a new version for the latest tick of --schedule, unless that tick "
        "is done or another run holds the lock (both exit 0), and promote it only through the "
        "promotion gate. The RayCronJob's entry point (jobs/retrain.py). Takes every option of "
        "`n1v1 train`; --run-name is the prefix of the per-tick Ray run name.",
    )
    p.add_argument(
        "--schedule",
        required=True,
        metavar="CRON",
        help='the RayCronJob\'s schedule, e.g. "0 2 * * *" (five fields or @daily ...)',
    )
    p.add_argument(
        "--time-zone",
        metavar="ZONE",
        help="IANA time zone of the schedule, the RayCronJob's timeZone (default UTC)",
    )
    p.add_argument(
        "--at",
        metavar="TIME",
        help="run for the latest tick at or before TIME instead of now (ISO-8601, UTC unless it "
        "says otherwise; not in the future): to catch up a tick whose run failed after the next "
        "tick passed",
    )
    p.add_argument(
        "--store-url",
        help="the store holding the lock and the run log, e.g. sqlite:///var/n1v1.db; "
        "N1V1_STORE_URL_FILE or N1V1_STORE_URL override it (a URL with a password is refused "
        "here: it would be visible in the job's command line)",
    )
    p.add_argument(
        "--lease-ttl",
        type=float,
        default=DEFAULT_LEASE_TTL_S,
        metavar="SECONDS",
        help="lock time-to-live, renewed every third of it while training; a crashed run "
        f"blocks the next one for at most this long (default {DEFAULT_LEASE_TTL_S:g})",
    )
    add_train_arguments(p)
    p.set_defaults(handler=cmd_retrain)


def tick_run_name(prefix: str, tick: pd.Timestamp) -> str:
    """The Ray run name of one tick's training: stable across retries of that tick."""
    from n1v1.config import ConfigError

    name = f"{prefix}-{tick.tz_convert('UTC'):%Y%m%d-%H%M}"
    if len(name) > 64:
        raise ConfigError(
            f"run name {name!r} is longer than 64 characters; give a shorter --run-name"
        )
    return name


def make_holder() -> str:
    """Who holds the lock: host (the pod), process and a random suffix, as engines name theirs."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def cmd_retrain(args: argparse.Namespace) -> int:
    from n1v1.config import ConfigError
    from n1v1.ml.schedule import parse_schedule
    from n1v1.store import create_store
    from n1v1.store.location import check_store_url

    if not args.lease_ttl > 0:
        raise ConfigError(f"--lease-ttl: must be > 0 seconds, got {args.lease_ttl}")
    if args.store_url is not None:  # refused even when a Secret overrides it: it is visible
        check_store_url(args.store_url, where="--store-url")
    schedule = parse_schedule(args.schedule, args.time_zone)
    spec = load_train_spec(args)
    settings = train_settings(args)
    clock = _clock(args.at)
    tick = schedule.latest_tick(clock)
    run_name = tick_run_name(args.run_name or spec.name, tick)
    if spec.end is None:  # the bars that opened before the tick: the same bars on every retry
        spec = spec.model_copy(update={"end": (tick - pd.Timedelta(microseconds=1)).isoformat()})
    store = create_store(_persistent_store_url(args.store_url))
    try:
        run = _Retrain(args, settings, store, spec.name, tick, schedule.expression, run_name)
        return run.execute(spec, clock)
    finally:
        store.dispose()


def _persistent_store_url(configured: str | None) -> str:
    """The store URL (n1v1.store.location); a SQLite file must be persistent like every location
    a job writes (n1v1.locations): the lock and the run log must outlive the job."""
    from sqlalchemy.engine import make_url

    from n1v1.locations import persistent_locations
    from n1v1.store.location import STORE_URL_ENV, STORE_URL_FILE_ENV, resolve_store_url

    url = resolve_store_url(configured)
    database = make_url(url).database if url.startswith("sqlite") else None
    if database and database != ":memory:":
        sources = (name for name in (STORE_URL_FILE_ENV, STORE_URL_ENV) if os.environ.get(name))
        key = next(sources, "--store-url")  # where the URL came from, as resolve_store_url
        persistent_locations({key: database}, spelled={key: "sqlite:///{}"})
    return url


def _clock(at: str | None) -> pd.Timestamp:
    """Now, or --at (which may not be in the future: that tick has not come yet)."""
    from n1v1.config import ConfigError

    now = pd.Timestamp.now(tz="UTC").floor("us")
    if at is None:
        return now
    try:
        when = pd.Timestamp(at)
    except ValueError:
        when = pd.NaT
    if when is pd.NaT:
        raise ConfigError(f"--at: cannot read {at!r} as a time; use ISO-8601")
    when = when.tz_localize("UTC") if when.tzinfo is None else when.tz_convert("UTC")
    if when > now:
        raise ConfigError(f"--at {when.isoformat()} is in the future")
    return when


class _Retrain:
    """One invocation: the lock, the claim, training, the gate and the record, in that order."""

    def __init__(
        self,
        args: argparse.Namespace,
        settings: Settings,
        store: Store,
        name: str,
        tick: pd.Timestamp,
        schedule: str,
        run_name: str,
    ) -> None:
        self.args, self.settings, self.store = args, settings, store
        self.name, self.tick, self.schedule, self.run_name = name, tick, schedule, run_name
        self.holder = make_holder()

    def say(self, message: str, *, error: bool = False) -> None:
        prefix = "n1v1: error: " if error else ""
        print(
            f"{prefix}retrain {self.name} @ {self.tick:%Y-%m-%d %H:%M} UTC: {message}",
            file=sys.stderr if error else sys.stdout,
            flush=True,
        )

    def execute(self, spec: Any, clock: pd.Timestamp) -> int:
        from n1v1.store import LeaseHeldError, LeaseLostError, acquire
        from n1v1.store.retrain_runs import claim_run, get_run, lease_resource

        self.say(
            f'the latest tick of "{self.schedule}" at or before {clock:%Y-%m-%d %H:%M:%S} UTC '
            f"(Ray run {self.run_name})"
        )
        done = get_run(self.store, self.name, self.tick)
        if done is not None and done.state == "done":
            self.say(f"already done, not training: {_summary(done)}")
            return EXIT_OK
        resource = lease_resource(self.name)
        try:
            held = acquire(self.store, resource, self.holder, self.args.lease_ttl)
        except LeaseHeldError as exc:
            self.say(f"another run holds the lock, not training: {self._holder_of(resource, exc)}")
            return EXIT_OK
        keeper = LeaseKeeper(self.store, held, self.args.lease_ttl)
        try:
            run, claimed = claim_run(
                self.store,
                held,
                model=self.name,
                scheduled_at=self.tick,
                schedule=self.schedule,
                run_name=self.run_name,
            )
            if not claimed:
                self.say(f"already done, not training: {_summary(run)}")
                return EXIT_OK
            self.say(f"attempt {run.attempt}, holding the lock as {self.holder!r}")
            keeper.start()
            return self._train_and_promote(run, spec, keeper)
        except LeaseLostError as exc:
            self.say(f"lost the lock, nothing promoted or recorded: {exc}", error=True)
            return EXIT_ERROR
        finally:
            keeper.stop()
            self._release(keeper.lease)

    def _release(self, held: Lease) -> None:
        """Free the lock now, so the next run need not wait out the TTL (a no-op when it is no
        longer ours; when the store is unreachable the lease simply expires)."""
        from n1v1.store import release

        try:
            release(self.store, held)
        except Exception as exc:
            self.say(f"could not release the lock, it expires by itself: {exc}", error=True)

    def _holder_of(self, resource: str, exc: Exception) -> str:
        from n1v1.store import current_lease

        held = current_lease(self.store, resource)
        if held is None:
            return str(exc)
        return (
            f"lease {resource!r} is held by {held.holder!r} until "
            f"{held.expires_at.isoformat()} (token {held.token})"
        )

    def _train_and_promote(self, run: RetrainRun, spec: Any, keeper: LeaseKeeper) -> int:
        from n1v1.ml.train import TrainingError
        from n1v1.store import LeaseLostError, renew
        from n1v1.store.retrain_runs import finish_run, record_version

        try:
            if run.version is None:
                result = train_model(self.args, spec, self.settings, run_name=self.run_name)
                if result["version"] is not None:
                    run = record_version(self.store, run, result["version"])
            else:
                self.say(
                    f"{self.name}/{run.version} was registered by an earlier attempt of this "
                    "tick: not training again, on to the gate"
                )
                result = self._registered(run.version)
            keeper.stop()  # from here this thread renews: one last fence before promoting
            keeper.lease = renew(self.store, keeper.lease, self.args.lease_ttl)
            promotion = promote_trained(self.args, self.settings, result)
        except LeaseLostError:
            raise  # not ours to record: execute() says so
        except TrainingError as exc:
            print_training_error(exc)
            self._fail(run, f"training failed: {_first_line(exc)}")
            return EXIT_ERROR
        except BaseException as exc:
            self._fail(run, f"{type(exc).__name__}: {_first_line(exc)}")
            raise
        outcome = _outcome(self.name, result["version"], promotion, self.args)
        finished = finish_run(
            self.store,
            run,
            state="done",
            outcome=outcome,
            version=result["version"],
            promoted=promotion["promoted"],
        )
        if not finished:
            self.say("lost the lock before recording the outcome: " + outcome, error=True)
            return EXIT_ERROR
        self.say(f"done: {outcome}")
        write_result_json(self.args, {**result, "promotion": promotion})
        return EXIT_OK

    def _registered(self, version: str) -> dict[str, Any]:
        from n1v1.ml.registry import ModelRegistry

        card = ModelRegistry(self.settings.ml.model_root).card(self.name, version)
        return {"name": self.name, "version": version, "card": card}

    def _fail(self, run: RetrainRun, outcome: str) -> None:
        from n1v1.store.retrain_runs import finish_run

        try:
            finish_run(self.store, run, state="failed", outcome=outcome)
        except Exception as exc:  # the store itself may be what failed; say so, keep the cause
            self.say(f"could not record the failure ({exc})", error=True)


class LeaseKeeper:
    """Renews the lock every third of its TTL in a daemon thread while the run trains.

    A renewal that fails on a store error is retried at the next period (the lease outlives two
    misses); one that finds the lease taken (LeaseLostError) stops, and the run's last fence
    before promoting fails on it too."""

    def __init__(self, store: Store, held: Lease, ttl: float) -> None:
        self.store, self.lease, self.ttl = store, held, ttl
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="n1v1-retrain-lease", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        from n1v1.store import LeaseLostError, renew

        while not self._stop.wait(self.ttl / 3):
            try:
                self.lease = renew(self.store, self.lease, self.ttl)
            except LeaseLostError as exc:
                print(f"n1v1: warning: {exc}", file=sys.stderr, flush=True)
                return
            except Exception as exc:  # a store hiccup: the next period tries again
                print(f"n1v1: warning: could not renew the lock: {exc}", file=sys.stderr)


def _summary(run: RetrainRun) -> str:
    finished = "" if run.finished_at is None else f" at {run.finished_at:%Y-%m-%d %H:%M:%S} UTC"
    return f"finished{finished} by {run.holder!r} (attempt {run.attempt}): {run.outcome}"


def _outcome(
    name: str, version: str | None, promotion: dict[str, Any], args: argparse.Namespace
) -> str:
    """One line for the run log: what the run produced and whether it reaches the Serve app."""
    if version is None:
        return "trained, not registered (--no-register)"
    if promotion["promoted"]:
        previous = promotion.get("previous")
        return f"{name}/{version} promoted (was {previous or 'none'})"
    if args.no_promote:
        return f"{name}/{version} registered, not promoted (--no-promote)"
    lines = [line.strip() for line in str(promotion.get("rejected", "")).splitlines()]
    rejected = " ".join([lines[0], "; ".join(lines[1:])]) if len(lines) > 1 else "".join(lines)
    serving = promotion.get("serving")
    still = f"{name}/{serving} stays promoted" if serving else f"{name} has no promoted version"
    return f"{name}/{version} not promoted: {rejected}; {still}"


def _first_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__
