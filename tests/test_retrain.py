"""Scheduled retraining (`n1v1 retrain`, jobs/retrain.py, the RayCronJob's entry point): the cron
tick, the run log and lock in the store, idempotency per scheduled time, and promotion only
through the gate.

The cron ticks are worked out by hand against a calendar (June 2025: Sunday the 1st, Wednesday
the 11th). The run log is tested on SQLite and, where TEST_POSTGRES_URL is set, PostgreSQL.

The entry point itself runs as processes, `python jobs/retrain.py ...` without RAY_ADDRESS, as
RayJobs run it: each one that trains starts a private local Ray. Its data is an AR(1) return
series (each one-minute return is half the previous one plus noise), so the last bars' returns
predict the next ones and the tiny MLP passes the promotion gate: it beats chance and
buy-and-hold on validation (`first_tick` checks that, it is not assumed). Two Ray Train runs in
all (~30 s each on 2 CPUs): the two overlapping runs of one tick (one trains), and a tick after a
crashed holder.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from builders import momentum_bars
from test_ml_signal import register_tiny
from test_store import _postgres_url

from n1v1.cli import main
from n1v1.cli.local_ray import processes_in_session
from n1v1.config import ConfigError
from n1v1.ml.models import read_state_dict
from n1v1.ml.registry import MODEL_FILE, SCALER_FILE, ModelRegistry, read_json
from n1v1.ml.schedule import parse_schedule
from n1v1.store import (
    SCHEMA_VERSION,
    LeaseLostError,
    Store,
    acquire,
    create_store,
    current_lease,
    release,
)
from n1v1.store.retrain_runs import (
    claim_run,
    finish_run,
    get_run,
    lease_resource,
    list_runs,
    record_version,
)

ROOT = Path(__file__).resolve().parents[1]
JOB = ROOT / "jobs" / "retrain.py"
UTC = "UTC"
WED = pd.Timestamp("2025-06-11 10:07:30", tz=UTC)  # a Wednesday; June 2025 starts on a Sunday


# -- the cron tick -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("expression", "tick"),
    [
        ("*/15 * * * *", "2025-06-11 10:00"),  # minutes 0, 15, 30, 45: 10:07 -> 10:00
        ("5/20 * * * *", "2025-06-11 10:05"),  # 5/20 is 5-59/20: 5, 25, 45
        ("7 10 * * *", "2025-06-11 10:07"),  # at or before 10:07:30: this very minute
        ("8 10 * * *", "2025-06-10 10:08"),  # 10:08 today is still ahead: yesterday's
        ("0 3 * * 1", "2025-06-09 03:00"),  # Mondays: the 9th is the Monday before the 11th
        ("0 3 * * MON", "2025-06-09 03:00"),  # the same by name
        ("0 12 * JAN-MAR MON-FRI", "2025-03-31 12:00"),  # a weekday in Q1: Monday 31 March
        # both day fields restricted: either matches. The 1st (a Sunday) or any Friday: Friday
        # the 6th is the later one
        ("0 0 1,15 * 5", "2025-06-06 00:00"),
        # a step > 1 on `*` makes the field restricted: the 13th OR Sun/Tue/Thu/Sat -> Tue 10th
        ("0 0 13 * */2", "2025-06-10 00:00"),
        # day of week `*` (or */1): both must match, i.e. the 13th only -> 13 May
        ("0 0 13 * *", "2025-05-13 00:00"),
        ("0 0 13 * */1", "2025-05-13 00:00"),
        ("0 0 29 2 *", "2024-02-29 00:00"),  # the last 29 February
        ("@hourly", "2025-06-11 10:00"),
        ("@daily", "2025-06-11 00:00"),
        ("@weekly", "2025-06-08 00:00"),  # Sundays: the 8th
        ("@monthly", "2025-06-01 00:00"),
        ("@yearly", "2025-01-01 00:00"),
    ],
)
def test_the_tick_is_the_latest_at_or_before_now(expression: str, tick: str) -> None:
    assert parse_schedule(expression).latest_tick(WED) == pd.Timestamp(tick, tz=UTC)


def test_a_tick_exactly_now_is_now() -> None:
    now = pd.Timestamp("2025-06-11 10:00", tz=UTC)
    assert parse_schedule("0 * * * *").latest_tick(now) == now


def test_the_schedule_is_read_in_its_time_zone() -> None:
    # 02:00 in New York is 06:00 UTC in June (EDT, UTC-4) and 07:00 UTC in January (EST, UTC-5)
    daily = parse_schedule("0 2 * * *", "America/New_York")
    assert daily.latest_tick(WED) == pd.Timestamp("2025-06-11 06:00", tz=UTC)
    winter = pd.Timestamp("2025-01-15 10:07", tz=UTC)
    assert daily.latest_tick(winter) == pd.Timestamp("2025-01-15 07:00", tz=UTC)
    # the RayCronJob's timeZone becomes a TZ= prefix; the same schedule
    prefixed = parse_schedule("TZ=America/New_York 0 2 * * *")
    assert prefixed.latest_tick(winter) == daily.latest_tick(winter)
    # 9 March 2025: New York's clocks jump from 02:00 to 03:00, so 02:30 does not exist that
    # day; the latest tick is 8 March 02:30 EST = 07:30 UTC
    skipped = parse_schedule("30 2 * * *", "America/New_York")
    after = pd.Timestamp("2025-03-09 12:00", tz=UTC)
    assert skipped.latest_tick(after) == pd.Timestamp("2025-03-08 07:30", tz=UTC)


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("0 0 * *", "expected 5 fields"),
        ("60 * * * *", "minute '60': 60 is outside 0-59"),
        ("0 0 * * 7", "day of week '7': 7 is outside 0-6 (0 is Sunday"),
        ("0 0 * FOO *", "month 'FOO': 'FOO' is not a number or a name (jan, feb"),
        ("*/0 * * * *", "the step must be a positive whole number"),
        ("5-1 * * * *", "the range starts after it ends"),
        ("@every 1h", "@every counts from when the controller started"),
        ("@fortnightly", "unknown descriptor"),
        ("0 0 30 2 *", "no tick in the 29 years before"),
    ],
)
def test_a_bad_schedule_names_the_field(expression: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_schedule(expression).latest_tick(WED)


def test_an_unknown_time_zone_is_refused() -> None:
    with pytest.raises(ConfigError, match="'Mars/Olympus': not an IANA time zone"):
        parse_schedule("0 0 * * *", "Mars/Olympus")


# -- the run log in the store (SQLite and PostgreSQL) -------------------------------------------
T1 = pd.Timestamp("2025-01-01", tz=UTC)
T2 = pd.Timestamp("2025-01-02", tz=UTC)
CLOCK = pd.Timestamp("2025-01-02 12:00", tz=UTC)


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        s = create_store(f"sqlite:///{tmp_path / 'runs.db'}")
        yield s
        s.dispose()
    else:
        for url in _postgres_url():
            s = create_store(url)
            yield s
            s.dispose()


def _claim(store: Store, holder: str, tick: pd.Timestamp, now: pd.Timestamp = CLOCK):
    held = acquire(store, lease_resource("m"), holder, ttl_seconds=60, now=now)
    run, claimed = claim_run(
        store, held, model="m", scheduled_at=tick, schedule="0 0 * * *", run_name="r", now=now
    )
    return held, run, claimed


def test_a_done_tick_is_not_claimed_again(store: Store) -> None:
    _, run, claimed = _claim(store, "a", T1)
    assert claimed and (run.state, run.attempt, run.holder, run.version) == (
        "running",
        1,
        "a",
        None,
    )
    assert finish_run(store, run, state="done", outcome="m/v0001 promoted", version="v0001")
    _, again, claimed = _claim(store, "a", T1)
    assert not claimed
    assert (again.state, again.version, again.outcome) == ("done", "v0001", "m/v0001 promoted")


def test_a_failed_tick_is_claimed_again_and_keeps_its_registered_version(store: Store) -> None:
    held, run, _ = _claim(store, "a", T1)
    run = record_version(store, run, "v0003")
    assert finish_run(store, run, state="failed", outcome="promotion raised")
    release(store, held, now=CLOCK)  # as the command does on its way out
    _, retry, claimed = _claim(store, "b", T1)
    assert claimed
    assert (retry.state, retry.attempt, retry.holder, retry.version) == ("running", 2, "b", "v0003")


def test_a_holder_that_lost_the_lease_has_its_run_abandoned_and_cannot_write(store: Store) -> None:
    # "a" claims T1 and crashes: its 60 s lease expires; "b" takes the lease 2 minutes later
    _, crashed, _ = _claim(store, "a", T1, now=CLOCK)
    later = CLOCK + pd.Timedelta(minutes=2)
    held_b, _, claimed = _claim(store, "b", T2, now=later)
    assert claimed and held_b.token == 2  # a new acquisition: the token rises
    old = get_run(store, "m", T1)
    assert old is not None and old.state == "abandoned" and "'b' took it over" in old.outcome
    # the stale holder's writes are refused: its row is no longer `running` under its token
    assert not finish_run(store, crashed, state="done", outcome="late")
    with pytest.raises(LeaseLostError):
        record_version(store, crashed, "v0009")
    stale = acquire(
        store, lease_resource("m"), "c", ttl_seconds=60, now=later + pd.Timedelta(1, "h")
    )
    with pytest.raises(LeaseLostError, match="'b' no longer holds token 2"):
        claim_run(store, held_b, model="m", scheduled_at=T1, schedule="x", run_name="r", now=later)
    assert stale.token == 3
    assert [r.state for r in list_runs(store, "m")] == ["abandoned", "running"]


# -- the command, without training ----------------------------------------------------------------
def _retrain_argv(store_url: str, tmp: Path, *extra: str) -> list[str]:
    return [
        "retrain",
        "--name",
        "m",
        "--data",
        "coinbase_BTC-USD_1d",
        "--schedule",
        "0 0 * * *",
        "--at",
        "2025-01-01T12:00",
        "--store-url",
        store_url,
        "--model-root",
        str(tmp / "models"),
        "--storage-path",
        str(tmp / "ray"),
        *extra,
    ]


def test_while_another_run_holds_the_lock_it_exits_0_naming_the_holder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    store = create_store(url)
    held = acquire(store, lease_resource("m"), "pod-a:41:0badcafe", ttl_seconds=600)
    assert main(_retrain_argv(url, tmp_path)) == 0
    out = capsys.readouterr().out
    expected = (
        "retrain m @ 2025-01-01 00:00 UTC: another run holds the lock, not training: lease "
        f"'retrain:m' is held by 'pod-a:41:0badcafe' until {held.expires_at.isoformat()} (token 1)"
    )
    assert expected in out.splitlines()
    assert list_runs(store, "m") == [] and not (tmp_path / "models").exists()  # nothing trained


def test_a_tick_already_done_exits_0_without_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    store = create_store(url)
    _, run, _ = _claim(store, "pod-a:41:0badcafe", T1, now=pd.Timestamp("2025-01-01 00:01", tz=UTC))
    assert finish_run(store, run, state="done", outcome="m/v0001 promoted (was none)")
    assert main(_retrain_argv(url, tmp_path)) == 0
    out = capsys.readouterr().out
    assert "retrain m @ 2025-01-01 00:00 UTC: already done, not training: finished at " in out
    assert "by 'pod-a:41:0badcafe' (attempt 1): m/v0001 promoted (was none)" in out
    assert current_lease(store, lease_resource("m")).holder == "pod-a:41:0badcafe"  # not taken
    assert not (tmp_path / "models").exists()


def test_a_retry_after_a_crash_between_registering_and_promoting_goes_straight_to_the_gate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Attempt 1 registered tiny/v0002 and died before the gate; attempt 2 must not train and
    register the same tick again, only run the gate on v0002 (which fails it: the tiny model's
    card has no validation class counts, so the chance check cannot pass)."""
    root = tmp_path / "models"
    first = register_tiny(root)  # v0001, promoted (forced) long ago
    registry = ModelRegistry(root)
    weights = read_state_dict(registry.files("tiny", first) / MODEL_FILE)
    scaler = read_json(registry.files("tiny", first) / SCALER_FILE)
    second = registry.register(
        "tiny", state_dict=weights, scaler=scaler, card=registry.card("tiny", first)
    )
    url = f"sqlite:///{tmp_path / 's.db'}"
    store = create_store(url)
    died = pd.Timestamp.now(tz=UTC) - pd.Timedelta(minutes=10)
    held = acquire(store, lease_resource("tiny"), "pod-a:7:0dead0ff", ttl_seconds=60, now=died)
    crashed, _ = claim_run(
        store, held, model="tiny", scheduled_at=T1, schedule="0 0 * * *", run_name="r", now=died
    )
    record_version(store, crashed, second)

    argv = _retrain_argv(url, tmp_path)
    argv[argv.index("--name") + 1] = "tiny"
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert (
        f"tiny/{second} was registered by an earlier attempt of this tick: not training again, "
        "on to the gate"
    ) in out
    assert "gate chance: FAIL" in out
    assert not any(line.startswith(("training ", "epoch ")) for line in out.splitlines())
    run = get_run(store, "tiny", T1)
    assert run is not None
    assert (run.state, run.attempt, run.version, run.promoted) == ("done", 2, second, False)
    assert [v["version"] for v in registry.list_versions("tiny")] == [first, second]
    assert registry.promoted_version("tiny") == first


def test_a_store_url_with_a_password_on_the_command_line_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = _retrain_argv("postgresql+psycopg://n1v1:hunter2@db:5432/n1v1", tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("n1v1: error: --store-url: the URL holds a password")
    assert "hunter2" not in err


def test_a_time_in_the_future_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    argv = _retrain_argv(f"sqlite:///{tmp_path / 's.db'}", tmp_path)
    argv[argv.index("--at") + 1] = "2999-01-01"
    assert main(argv) == 2
    assert "--at 2999-01-01T00:00:00+00:00 is in the future" in capsys.readouterr().err


# -- the entry point as processes (Ray Train) -----------------------------------------------------
@dataclass
class Job:
    process: subprocess.Popen[str]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait(self, timeout: float = 300) -> int:
        return self.process.wait(timeout)


@dataclass
class Site:
    """What a cluster shares: the store, the model registry, the checkpoints, the data."""

    tmp: Path
    url: str
    data: Path
    env: dict[str, str]
    jobs: list[Job]

    def store(self) -> Store:
        return create_store(self.url)

    def start(self, tick_at: str, *extra: str, label: str) -> Job:
        argv = [
            sys.executable,
            str(JOB),
            "--name",
            "mom",
            "--data",
            str(self.data),
            "--schedule",
            "0 0 * * *",
            "--at",
            tick_at,
            "--store-url",
            self.url,
            "--model-root",
            str(self.tmp / "models"),
            "--storage-path",
            str(self.tmp / "ray_results"),
            "--epochs",
            "4",
            "--hidden",
            "16",
            "--horizon",
            "5",
            "--fee",
            "0.001",
            "--margin",
            "0",
            "--batch-size",
            "256",
            "--seed",
            "3",
            *extra,
        ]
        log = self.tmp / f"{label}.log"
        with log.open("w") as out:
            process = subprocess.Popen(
                argv,
                env=self.env,
                cwd=self.tmp,
                stdout=out,
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True,  # its private Ray's processes share the session
            )
        job = Job(process, log)
        self.jobs.append(job)
        return job


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    tmp = tmp_path_factory.mktemp("retrain")
    data = tmp / "momentum_1m.csv"
    momentum_bars().to_csv(data)
    ray_tmp = Path(tempfile.mkdtemp(prefix="n1v1-rt-", dir="/tmp"))  # short: Ray's socket paths
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS" and not k.startswith("N1V1_")}
    env.update(
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
        RAY_TMPDIR=str(ray_tmp),
        RAY_AUTH_MODE="disabled",
        RAY_USAGE_STATS_ENABLED="0",
        RAY_TRAIN_HEALTH_CHECK_INTERVAL_S="0.2",  # collect each epoch's report every 0.2 s
    )
    here = Site(tmp, f"sqlite:///{tmp / 'n1v1.db'}", data, env, [])
    create_store(here.url).dispose()  # before the jobs start, so that none races to create it
    try:
        yield here
    finally:
        for job in here.jobs:  # only after a failure is anything of ours still running
            for pid in [job.process.pid, *processes_in_session(job.process.pid)]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                job.process.wait(10)
        shutil.rmtree(ray_tmp, ignore_errors=True)


def _wait(condition: Callable[[], object], what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)


TICK_1 = pd.Timestamp("2025-01-01", tz=UTC)
LEASE_TTL = 4.0


@dataclass
class FirstTick:
    winner: Job
    loser: Job
    late: Job  # started more than two lease TTLs into the winner's training
    late_started_after_s: float
    winner_holder: str


@pytest.fixture(scope="module")
def first_tick(site: Site) -> FirstTick:
    """Two runs for the tick 2025-01-01 00:00 started together; a third while the winner trains,
    more than two lease TTLs after the winner took the lock."""
    ttl = ("--lease-ttl", str(LEASE_TTL))
    jobs = [site.start("2025-01-01T12:00", *ttl, label=f"first-{i}") for i in (1, 2)]
    store = site.store()
    _wait(lambda: get_run(store, "mom", TICK_1) is not None, "a run to claim the tick")
    claimed = get_run(store, "mom", TICK_1)
    assert claimed is not None
    time.sleep(2.5 * LEASE_TTL)
    still = get_run(store, "mom", TICK_1)
    assert still is not None and still.state == "running", "precondition: still training"
    late_after = (pd.Timestamp.now(tz=UTC) - claimed.started_at).total_seconds()
    late = site.start("2025-01-01T18:00", *ttl, label="first-late")
    codes = [job.wait() for job in (*jobs, late)]
    assert codes == [0, 0, 0], "\n\n".join(job.output()[-3000:] for job in (*jobs, late))
    trained = [job for job in jobs if "training mom (run mom-20250101-0000" in job.output()]
    assert len(trained) == 1, [job.output()[-2000:] for job in jobs]
    (winner,) = trained
    (loser,) = [job for job in jobs if job is not winner]
    return FirstTick(winner, loser, late, late_after, claimed.holder)


@pytest.mark.slow
def test_two_overlapping_runs_of_one_tick_train_once(site: Site, first_tick: FirstTick) -> None:
    store = site.store()
    (run,) = list_runs(store, "mom")
    assert (run.scheduled_at, run.state, run.attempt) == (TICK_1, "done", 1)
    assert run.holder == first_tick.winner_holder and run.run_name == "mom-20250101-0000"
    # the loser exited 0 at once, naming the winner; it never started training
    lines = first_tick.loser.output().splitlines()
    held = [line for line in lines if "another run holds the lock, not training" in line]
    assert len(held) == 1 and f"is held by {run.holder!r} until " in held[0], lines
    assert not any(line.startswith(("training ", "epoch ")) for line in lines)
    # exactly one version, and it went through the gate: this data passes it
    registry = ModelRegistry(site.tmp / "models")
    assert [v["version"] for v in registry.list_versions("mom")] == ["v0001"]
    out = first_tick.winner.output()
    assert "gate chance: PASS" in out and "gate buy_and_hold: PASS" in out
    assert registry.promoted_version("mom") == "v0001"
    assert (run.version, run.promoted, run.outcome) == (
        "v0001",
        True,
        "mom/v0001 promoted (was none)",
    )
    assert "retrain mom @ 2025-01-01 00:00 UTC: done: mom/v0001 promoted (was none)" in out
    # the lock was released as soon as the run was recorded, not left to run out (a lease left
    # to expire would end 4/3 to 4 s after the last renewal, i.e. after finishing)
    lease = current_lease(store, lease_resource("mom"))
    assert lease is not None and lease.holder == run.holder and run.finished_at is not None
    assert pd.Timedelta(0) <= lease.expires_at - run.finished_at < pd.Timedelta(seconds=1)


@pytest.mark.slow
def test_the_lock_is_renewed_while_training(first_tick: FirstTick) -> None:
    # started 2.5 TTLs after the claim: without renewals the lease would have expired by then
    assert first_tick.late_started_after_s > 2 * LEASE_TTL
    out = first_tick.late.output()
    holder = first_tick.winner_holder
    assert (
        f"another run holds the lock, not training: lease 'retrain:mom' is held by {holder!r}"
        in out
    )


@pytest.mark.slow
def test_a_second_run_for_a_done_tick_exits_0_without_training(
    site: Site, first_tick: FirstTick
) -> None:
    job = site.start("2025-01-01T23:59", label="same-tick")
    assert job.wait() == 0, job.output()
    out = job.output()
    assert "retrain mom @ 2025-01-01 00:00 UTC: already done, not training: finished at" in out
    assert "epoch " not in out
    assert [v["version"] for v in ModelRegistry(site.tmp / "models").list_versions("mom")] == [
        "v0001"
    ]


@pytest.mark.slow
def test_after_a_crashed_holder_the_next_run_proceeds_and_the_gate_keeps_the_promoted_version(
    site: Site, first_tick: FirstTick
) -> None:
    """A run for 2025-01-02 claimed the tick and died (no renewal: its lease expired); the next
    run takes the lock over and trains. Its version has the same recipe and data as v0001
    (deterministic training), so the same val_auc: it does not beat v0001 by the margin, the gate
    rejects it and v0001 stays promoted."""
    store = site.store()
    tick = pd.Timestamp("2025-01-02", tz=UTC)
    crashed_at = pd.Timestamp.now(tz=UTC)
    crashed = acquire(store, lease_resource("mom"), "pod-dead:9:deadbeef", 1.0, now=crashed_at)
    claim_run(
        store,
        crashed,
        model="mom",
        scheduled_at=tick,
        schedule="0 0 * * *",
        run_name="mom-20250102-0000",
        now=crashed_at,
    )
    registry = ModelRegistry(site.tmp / "models")
    assert registry.promoted_version("mom") == "v0001"
    time.sleep(1.1)  # the dead holder's 1 s lease runs out: nobody renews it

    job = site.start("2025-01-02T06:00", label="after-crash")
    assert job.wait() == 0, job.output()[-3000:]
    out = job.output()
    run = get_run(store, "mom", tick)
    assert run is not None
    assert (run.state, run.attempt, run.version, run.promoted) == ("done", 2, "v0002", False)
    assert run.holder != "pod-dead:9:deadbeef" and run.lease_token == crashed.token + 1
    assert "attempt 2, holding the lock as" in out and "epoch   1/4" in out

    first, second = (registry.card("mom", v)["metrics"]["val_auc"] for v in ("v0001", "v0002"))
    assert second == first  # the same recipe on the same bars
    assert "does not beat the promoted v0001" in run.outcome
    assert run.outcome.endswith("; mom/v0001 stays promoted")
    assert registry.promoted_version("mom") == "v0001"
    assert [r["version"] for r in registry.history("mom")] == ["v0001"]  # no promotion recorded


def test_a_v3_store_is_refused(tmp_path: Path) -> None:
    """Schema version 4 added retrain_runs; no migration starts before version 4 (docs/store.md)."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    create_store(url).dispose()
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE schema_version SET version = 3")
    engine.dispose()
    needs = f"database is at schema version 3, this code needs version {SCHEMA_VERSION}"
    with pytest.raises(RuntimeError, match=needs):
        create_store(url)
