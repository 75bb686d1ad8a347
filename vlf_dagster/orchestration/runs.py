"""Materializing the whole asset graph for a site's window through Dagster runs.

Used by ``vlf materialize`` and ``make demo``: hourly assets run in batches of hours (one run per
batch, as a backfill with ``multi_run`` would), then each month, then the window-level assets.
Runs go to the Dagster instance in ``$DAGSTER_HOME`` (``.dagster_home``), so the UI shows them.
"""

from __future__ import annotations

import fcntl
from contextlib import contextmanager
import json
import os
import re
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import yaml

from .. import progress
from .assets.archive import HOURLY_BATCH
from .assets.automation import AUTOMATION_RUN_TAG
from ..flows.storage import write_text

# No telemetry, no sign-up pop-up over the UI of a fresh instance, at most two runs at once (two
# cores; automation may queue a backfill of weeks of hours) and automation's runs one at a time
# (assets.automation.AUTOMATION_RUN_TAG).  Each block is added unless the file already sets one of
# its keys (run_queue is where older files limit runs).
INSTANCE_SETTINGS = {
    ("telemetry",): "telemetry:\n  enabled: false\n",
    ("nux",): "nux:\n  enabled: false\n",
    ("concurrency", "run_queue"): (f"concurrency:\n  runs:\n    max_concurrent_runs: 2\n    tag_concurrency_limits:\n"
                                   f"      - key: {AUTOMATION_RUN_TAG}\n        limit: 1\n"),
}

# A user's own storage (Postgres, MySQL, another SQLite layout) wins over ours: with any of these at
# the top of dagster.yaml we add no storage block (and take ours out: Dagster refuses `storage:`
# next to `event_log_storage:`).
STORAGE_KEYS = ("storage", "event_log_storage", "run_storage", "schedule_storage")
# (the mark names the module's first home; kept as it was so that instances written before the move are recognised and rewritten)
_OUR_STORAGE_MARK = "# vlf_dagster: faster SQLite event log (vlf_dagster/instance_storage.py), Dagster's default files\n"
# The one setting that puts the instance on PostgreSQL instead (dagster-postgres): a libpq URL,
# postgresql://user[:password]@host:port/database; unset (or empty) keeps the SQLite block above.
POSTGRES_URL_VARIABLE = "VLF_DAGSTER_POSTGRES_URL"
_OUR_POSTGRES_MARK = f"# vlf_dagster: instance storage on PostgreSQL (${POSTGRES_URL_VARIABLE})\n"
# Either of our blocks, whichever a previous start wrote, so that changing the setting replaces it.
_OUR_STORAGE_BLOCK = re.compile(
    rf"(?:{re.escape(_OUR_STORAGE_MARK)}event_log_storage|{re.escape(_OUR_POSTGRES_MARK)}storage)"
    r":[ \t]*\n(?:[ \t]+\S.*(?:\n|$))*")


def event_log_storage_block(home: str | Path) -> str:
    """Our event log storage over the files of Dagster's default SQLite layout under ``home``.

    Only ``event_log_storage`` is given: Dagster then builds run and schedule storage from its
    defaults, the same ``history/runs.db`` and ``schedules/schedules.db`` as ``storage: sqlite``,
    and the event log keeps ``history/runs/<run>.db`` and ``index.db``, so an existing home keeps
    its history.  The path is absolute (Dagster's config has no "relative to DAGSTER_HOME"); it
    is rewritten here if the home moves.
    """
    from .instance_storage import CLASS, MODULE

    base_dir = os.path.join(str(Path(home).resolve()), "history", "runs", "")
    return (f"{_OUR_STORAGE_MARK}event_log_storage:\n  module: {MODULE}\n  class: {CLASS}\n"
            f"  config:\n    base_dir: {json.dumps(base_dir)}\n")


def postgres_storage_block(url: str) -> str:
    """Dagster's ``storage: postgres:`` (runs, event log and schedules in one database) at ``url``.

    The URL is written as given, so every Dagster process reading this home (webserver, daemon,
    runs) finds the same database without the variable; a password is better left to libpq's
    ``~/.pgpass`` than put in the URL.  The database must exist; Dagster creates its tables.
    A plain ``postgresql://`` URL is given the psycopg2 driver, the one dagster-postgres requires
    and is written for: SQLAlchemy 2.1 would otherwise pick psycopg 3 (not installed, and its
    ``with connection:`` closes the connection that dagster-postgres's statement-timeout hook goes
    on using).
    """
    url = re.sub(r"^postgres(?:ql)?://", "postgresql+psycopg2://", url)
    return f"{_OUR_POSTGRES_MARK}storage:\n  postgres:\n    postgres_url: {json.dumps(url)}\n"


def storage_block(home: str | Path) -> str:
    """The storage block a start writes: PostgreSQL if ``$VLF_DAGSTER_POSTGRES_URL`` is set, else SQLite."""
    url = os.environ.get(POSTGRES_URL_VARIABLE, "").strip()
    return postgres_storage_block(url) if url else event_log_storage_block(home)


def _top_level_keys(text: str) -> set[str] | None:
    try:
        loaded = yaml.safe_load(text) if text.strip() else {}
    except yaml.YAMLError:
        return None
    if loaded is None:  # only comments
        return set()
    return set(loaded) if isinstance(loaded, dict) else None


def _with_storage(text: str, home: str | Path) -> str:
    ours = _OUR_STORAGE_BLOCK.search(text)
    block = storage_block(home)
    if ours:
        rest = text[: ours.start()] + text[ours.end():]
        keys = _top_level_keys(rest)
        if keys is not None and keys & set(STORAGE_KEYS):
            return rest  # the user has configured storage of their own since: theirs wins
        return text if ours.group(0).rstrip("\n") == block.rstrip("\n") else rest[: ours.start()] + block + rest[ours.start():]
    keys = _top_level_keys(text)
    if keys is None or keys & set(STORAGE_KEYS):
        return text  # unreadable (Dagster will say why) or the user's own storage: leave it alone
    separator = "\n" if text and not text.endswith("\n") else ""
    return text + separator + block


def write_instance_config(home: str | Path) -> Path:
    """Give ``home/dagster.yaml`` our settings, keeping whatever else it already says.

    Telemetry and the sign-up pop-up off, and, unless the file configures storage of its own, the
    faster event log storage of :mod:`vlf_dagster.orchestration.instance_storage` over Dagster's default
    files, or PostgreSQL when ``$VLF_DAGSTER_POSTGRES_URL`` is set (:func:`storage_block`).
    """
    config = Path(home) / "dagster.yaml"
    config.parent.mkdir(parents=True, exist_ok=True)
    text = config.read_text() if config.exists() else ""
    missing = [block for keys, block in INSTANCE_SETTINGS.items()
               if not any(re.search(rf"^{key}:", text, re.MULTILINE) for key in keys)]
    new = text
    if missing:
        separator = "\n" if text and not text.endswith("\n") else ""
        new = text + separator + "".join(missing)
    new = _with_storage(new, home)
    if new != text:
        write_text(new, config)  # atomic: a user's file is never left half-written
    return config


INSTANCE_LOCK = ".vlf-instance.lock"


def ensure_instance_home(home: str | Path | None = None) -> Path:
    """Point ``$DAGSTER_HOME`` at ``home`` (default ``.dagster_home``), configured as above."""
    path = Path(home or os.environ.get("DAGSTER_HOME") or ".dagster_home").resolve()
    path.mkdir(parents=True, exist_ok=True)
    with open(path / INSTANCE_LOCK, "a") as lock:
        # Two first starts at once would both create the instance's SQLite storages (two alembic
        # heads, "table runs already exists"): one creates them while the other waits, then finds them.
        fcntl.flock(lock, fcntl.LOCK_EX)
        write_instance_config(path)
        os.environ["DAGSTER_HOME"] = str(path)
        with dg.DagsterInstance.get():
            pass
    return path


@dataclass
class RunLog:
    runs: list[tuple[str, str, float]] = field(default_factory=list)  # job, partition(s), seconds
    run_ids: list[str] = field(default_factory=list)
    compute_seconds: float = 0.0  # in asset bodies (assets.clock), all processes together
    workers: int = 1  # processes that ran the hourly batches
    backfill_id: str = ""  # the backfill the UI shows them under (materialize_all)

    @property
    def seconds(self) -> float:
        return sum(r[2] for r in self.runs)


# The console shows warnings and errors only; every event is still in the instance for the UI.
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


# An in-process run names the process that runs it, so that a later start can tell a run whose
# process was killed (it stays STARTED forever) from one still running elsewhere.
PID_TAG, HOST_TAG = "vlf/pid", "vlf/host"


def _process_tags() -> dict[str, str]:
    return {PID_TAG: str(os.getpid()), HOST_TAG: socket.gethostname()}


def fail_orphaned_runs(instance: dg.DagsterInstance) -> list[str]:
    """Mark failed the runs left STARTED by a process of this host that no longer exists (a kill
    -9 of `vlf materialize`); runs of live processes and of other hosts are left alone."""
    failed = []
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])):
        pid, host = run.tags.get(PID_TAG), run.tags.get(HOST_TAG)
        if pid is None or host != socket.gethostname() or not pid.isdigit() or _alive(int(pid)):
            continue
        instance.report_run_failed(run, f"its process {pid} ended without finishing the run (killed)")
        failed.append(run.run_id)
    return failed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _run_in_process(job: dg.JobDefinition, instance: dg.DagsterInstance, tags: dict) -> tuple[str, bool, float, float, str]:
    """One run here, tagged with this process: (run id, success, seconds, compute seconds, first failure)."""
    from .assets.clock import compute_seconds

    started, clock = time.perf_counter(), compute_seconds()
    result = job.execute_in_process(instance=instance, tags={**tags, **_process_tags()}, raise_on_error=False,
                                    run_config=QUIET)
    return result.run_id, result.success, time.perf_counter() - started, compute_seconds() - clock, _first_failure(result)


def _execute(job: dg.JobDefinition, instance: dg.DagsterInstance, tags: dict, label: str, log: RunLog, echo) -> None:
    run_id, success, elapsed, compute, failure = _run_in_process(job, instance, tags)
    _record(log, job.name, label, run_id, success, elapsed, compute, echo, failure)


class RunFailed(ValueError):
    """A run of the pipeline failed: one line naming the run, its job, partitions and first error."""


def _first_failure(result) -> str:
    """The first failed step and its error's first line, e.g. "vlf_flows: IO Error: ..."."""
    for event in result.all_events:
        if event.is_step_failure:
            error = event.event_specific_data.error
            while error is not None and error.cause is not None:  # Dagster wraps the asset's own error
                error = error.cause
            message = (error.message if error is not None else "").strip().splitlines()
            return f"{event.step_key}: {message[0] if message else 'failed'}"
    return ""


def _record(log: RunLog, job: str, label: str, run_id: str, success: bool, elapsed: float, compute: float, echo,
            failure: str = "") -> None:
    log.runs.append((job, label, elapsed))
    log.run_ids.append(run_id)
    log.compute_seconds += compute
    progress.advance()
    if not success:
        why = f" at {failure}" if failure else ""
        raise RunFailed(f"run {run_id} of {job} [{label}] failed{why}; the run's events are in the Dagster UI")
    echo(f"  {job:<12} {label:<36} {elapsed:6.1f} s  run {run_id[:8]}")


# --- hourly batches on several processes ---------------------------------------------------------
# Each worker builds the definitions once and runs whole batches in process against the same
# instance (the event log storage takes writers from several processes; see instance_storage).

_WORKER: tuple | None = None


def _worker_start(data_dir: str, site_config: str, instance_ref) -> None:
    global _WORKER
    from .definitions import build_definitions

    defs = build_definitions(data_dir, site_config or None)
    _WORKER = (defs.resolve_job_def("hourly_job"), dg.DagsterInstance.from_ref(instance_ref))


def _worker_run(tags: dict) -> tuple[str, bool, float, float, str]:
    job, instance = _WORKER
    return _run_in_process(job, instance, tags)


def hourly_batches(defs: dg.Definitions, hours_per_run: int = HOURLY_BATCH) -> list[dict]:
    """The run tags of each batch of hours, as a backfill with ``BackfillPolicy.multi_run`` cuts them."""
    keys = defs.resolve_job_def("hourly_job").partitions_def.get_partition_keys()
    return [{"dagster/asset_partition_range_start": keys[i],
             "dagster/asset_partition_range_end": keys[min(i + hours_per_run, len(keys)) - 1]}
            for i in range(0, len(keys), hours_per_run)]


def default_workers(batches: int) -> int:
    """Two processes (both cores of this machine) once there are enough batches to pay their start."""
    return min(os.cpu_count() or 1, 2) if batches >= 4 else 1


def materialize_hourly(defs: dg.Definitions, instance: dg.DagsterInstance, *, hours_per_run: int = HOURLY_BATCH,
                       workers: int | None = None, echo=print, log: RunLog | None = None,
                       tags: dict | None = None) -> RunLog:
    """Every batch of hours of ``hourly_job``, on ``workers`` processes at once (default: see
    :func:`default_workers`; 1 runs them here, one after another)."""
    log = log or RunLog()
    batches = [{**batch, **(tags or {})} for batch in hourly_batches(defs, hours_per_run)]
    workers = default_workers(len(batches)) if workers is None else max(1, workers)
    label = lambda tags: f"{tags['dagster/asset_partition_range_start']} .. {tags['dagster/asset_partition_range_end']}"  # noqa: E731
    hourly = defs.resolve_job_def("hourly_job")
    if workers == 1 or not instance.is_persistent:
        log.workers = 1
        for tags in batches:
            _execute(hourly, instance, tags, label(tags), log, echo)
        return log
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    store = defs.resources["store"]
    log.workers = workers
    # Workers fork from a server process that imported dagster and the assets once (~3 s a process
    # otherwise, paid by each spawned worker); the server is a fresh process, so no thread or
    # connection of this one (DuckDB's, the instance's) is forked along.
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["vlf_dagster.orchestration.assets", "vlf_dagster.orchestration.runs"])
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_worker_start,
                             initargs=(str(store.data_dir), str(store.site_config), instance.get_ref())) as pool:
        for tags, (run_id, success, elapsed, compute, failure) in zip(batches, pool.map(_worker_run, batches)):
            _record(log, hourly.name, label(tags), run_id, success, elapsed, compute, echo, failure)
    return log


def materialize_all(defs: dg.Definitions, instance: dg.DagsterInstance, *, hours_per_run: int = HOURLY_BATCH,
                    workers: int | None = None, echo=print) -> RunLog:
    """Every asset of the window: the hourly batches, each month, then the window, as one backfill
    in the UI's Backfills tab (its runs carry its id, as a backfill the daemon ran would)."""
    months = defs.resolve_job_def("monthly_job").partitions_def.get_partition_keys()
    progress.start(len(hourly_batches(defs, hours_per_run)) + len(months) + 1, "runs", "materializing")
    with recorded_backfill(defs, instance) as tags:
        log = materialize_hourly(defs, instance, hours_per_run=hours_per_run, workers=workers, echo=echo, tags=tags)
        monthly = defs.resolve_job_def("monthly_job")
        for key in months:
            _execute(monthly, instance, {"dagster/partition": key, **tags}, key, log, echo)
        _execute(defs.resolve_job_def("window_job"), instance, tags, "window", log, echo)
    log.backfill_id = tags[BACKFILL_TAG]
    return log


BACKFILL_TAG = "dagster/backfill"


@contextmanager
def recorded_backfill(defs: dg.Definitions, instance: dg.DagsterInstance):
    """The tags that make runs part of a backfill over every materializable asset, recorded in the
    instance once they are done (completed, or failed if one failed), so the UI shows what ran as one
    backfill.  Recorded at the end, never as requested: the daemon would launch its runs again.
    Dagster has no public call for a backfill someone else ran: this uses its backfill records
    (``dagster._core``, pinned with dagster in pyproject; tests/test_recipe.py checks it)."""
    from dagster._core.definitions.assets.graph.asset_graph_subset import AssetGraphSubset
    from dagster._core.definitions.timestamp import TimestampWithTimezone
    from dagster._core.execution.asset_backfill import AssetBackfillData
    from dagster._core.execution.backfill import BulkActionStatus, PartitionBackfill
    from dagster._core.utils import make_new_backfill_id

    backfill_id, started = make_new_backfill_id(), time.time()
    graph = defs.resolve_asset_graph()
    keys = [key for key in graph.get_all_asset_keys() if graph.get(key).is_materializable]
    target = AssetGraphSubset.from_asset_keys(keys, graph)
    succeeded = False
    try:
        yield {BACKFILL_TAG: backfill_id}
        succeeded = True
    finally:
        backfill = PartitionBackfill.from_asset_graph_subset(
            backfill_id=backfill_id, backfill_timestamp=started, tags={"vlf/launched_by": "vlf materialize"},
            dynamic_partitions_store=instance, asset_graph_subset=target, title="vlf materialize",
            description="Every asset of the site's window, materialized by `vlf materialize` (make demo).",
            run_config=None)
        empty = AssetGraphSubset.create_empty_subset()
        data = AssetBackfillData(target_subset=target, requested_runs_for_target_roots=True, latest_storage_id=None,
                                 materialized_subset=target if succeeded else empty, requested_subset=target,
                                 failed_and_downstream_subset=empty if succeeded else target,
                                 backfill_start_time=TimestampWithTimezone(started, "UTC"))
        status = BulkActionStatus.COMPLETED_SUCCESS if succeeded else BulkActionStatus.COMPLETED_FAILED
        instance.add_backfill(backfill.with_asset_backfill_data(data, instance, graph).with_status(status)
                              .with_end_timestamp(time.time()))


# --- automation without a daemon ----------------------------------------------------------------


class AutomationTicks:
    """The daemon's two sensors evaluated here, one tick at a time, and the runs automation requests
    executed in this process: what `make ui`'s daemon does, for tests and benchmarks that must
    see each step (``clock`` stands in for the daemon's evaluation time, so cron ticks can pass)."""

    def __init__(self, defs: dg.Definitions, instance: dg.DagsterInstance, clock=None):
        from datetime import datetime, timezone

        self.defs = defs
        self.instance = instance
        self.cursor = None
        self.landing_cursor = None
        self.clock = clock or datetime.now(timezone.utc)
        self.log: list[tuple[str, str | None, list[str], float]] = []  # what ran: stage, partition, assets, seconds

    def land(self) -> list[str]:
        """One tick of the landing sensor: the hours it reported."""
        sensor = self.defs.resolve_sensor_def("landing_sensor")
        context = dg.build_sensor_context(instance=self.instance, cursor=self.landing_cursor, definitions=self.defs)
        result = sensor.evaluate_tick(context)
        for event in result.asset_events:
            self.instance.report_runless_asset_event(event)
        self.landing_cursor = result.cursor
        return [e.partition for e in result.asset_events]

    def tick(self, minutes: float = 1) -> dict[str | None, set[str]]:
        """Evaluate the conditions ``minutes`` later, run what they request (grouped into runs as the
        daemon groups them: see :func:`_runs_of`) and return it by partition."""
        from collections import defaultdict
        from datetime import timedelta

        self.clock += timedelta(minutes=minutes)
        started = time.perf_counter()
        result = dg.evaluate_automation_conditions(defs=self.defs, instance=self.instance,
                                                   evaluation_time=self.clock, cursor=self.cursor)
        self.log.append(("evaluate", None, [], time.perf_counter() - started))
        self.cursor = result.cursor
        requested: dict[str | None, set[str]] = defaultdict(set)
        if result.total_requested:
            for key in self.defs.resolve_asset_graph().get_all_asset_keys():
                for partition in result.get_requested_partitions(key):
                    requested[partition].add(key.to_user_string())
        for partitions, keys in _runs_of(requested):
            started = time.perf_counter()
            if len(partitions) > 1:  # as a backfill's multi_run batch: one ranged run
                where = {"tags": {"dagster/asset_partition_range_start": partitions[0],
                                  "dagster/asset_partition_range_end": partitions[-1]}}
            else:
                where = {"partition_key": partitions[0]}
            outcome = dg.materialize(self.defs.assets, selection=sorted(keys), resources=self.defs.resources,
                                     instance=self.instance, raise_on_error=False, run_config=QUIET, **where)
            label = partitions[0] if len(partitions) == 1 else f"{partitions[0]}..{partitions[-1]}"
            self.log.append(("run", label, sorted(keys), time.perf_counter() - started))
            if not outcome.success:
                raise RuntimeError(f"automation's run {outcome.run_id} of {sorted(keys)} [{label}] failed")
        return dict(requested)


def _runs_of(requested: dict) -> list[tuple[list, set]]:
    """The runs the daemon makes of one tick's requests: the same assets over consecutive hours
    become one ranged run (a backfill's ``multi_run`` batch, up to HOURLY_BATCH hours); anything
    else is one run per partition."""
    from datetime import timedelta

    from .partitions import hour_of_key

    runs: list[tuple[list, set]] = []
    last_hour = None  # the hour that ended the last run, if that run is a growing hourly range
    for partition, keys in sorted(requested.items(), key=lambda kv: kv[0] or ""):
        try:
            hour = hour_of_key(partition) if partition else None
        except ValueError:  # a month
            hour = None
        if (hour and last_hour and runs[-1][1] == keys and hour == last_hour + timedelta(hours=1)
                and len(runs[-1][0]) < HOURLY_BATCH):
            runs[-1][0].append(partition)
        else:
            runs.append(([partition], keys))
        last_hour = hour
    return runs
