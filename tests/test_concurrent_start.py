"""Two first starts on one new Dagster home: the instance's storages are created once."""

import sqlite3
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
START = ("import sys, dagster as dg; from vlf_dagster.orchestration.runs import ensure_instance_home; "
         "ensure_instance_home(sys.argv[1]); i = dg.DagsterInstance.get(); print(len(i.get_runs()))")


def test_first_starts_at_once_create_the_instance_once(tmp_path):
    for attempt in range(3):
        home = tmp_path / f"home{attempt}"
        started = [subprocess.Popen([sys.executable, "-c", START, str(home)], cwd=ROOT, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True) for _ in range(4)]
        for process in started:
            out, err = process.communicate(timeout=120)
            assert process.returncode == 0 and out.strip() == "0", err[-2000:]
        runs_db = next(home.rglob("runs.db"))
        assert sqlite3.connect(runs_db).execute("SELECT count(*) FROM alembic_version").fetchone() == (1,)


def test_a_failed_run_is_one_line_naming_the_step_and_its_error(tmp_path, capsys):
    import dagster as dg
    import pytest

    from vlf_dagster.cli import _is_user_error
    from vlf_dagster.orchestration.runs import RunFailed, RunLog, _execute

    @dg.asset
    def broken_asset():
        raise OSError("No space left on device: data/archive/x.parquet")

    job = dg.Definitions(assets=[broken_asset], jobs=[dg.define_asset_job("broken_job")]).resolve_job_def("broken_job")
    with dg.instance_for_test() as instance:
        with pytest.raises(RunFailed) as failed:
            _execute(job, instance, {}, "2006-04-01", RunLog(), print)
        import os

        from vlf_dagster.orchestration.runs import PID_TAG
        assert instance.get_runs()[0].tags[PID_TAG] == str(os.getpid())  # a later start can tell if it was killed
    message = str(failed.value)
    assert "\n" not in message and _is_user_error(failed.value)
    assert "of broken_job [2006-04-01] failed at broken_asset:" in message and "No space left on device" in message


def test_runs_a_killed_process_left_started_are_marked_failed_on_the_next_start():
    import os
    import socket

    import dagster as dg

    from vlf_dagster.orchestration.runs import HOST_TAG, PID_TAG, fail_orphaned_runs

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a process id no longer in use
    here = socket.gethostname()
    cases = {"killed": {PID_TAG: str(gone.pid), HOST_TAG: here}, "running": {PID_TAG: str(os.getpid()), HOST_TAG: here},
             "elsewhere": {PID_TAG: str(gone.pid), HOST_TAG: here + "-other"}, "untagged": {}}
    with dg.instance_for_test() as instance:
        for run_id, tags in cases.items():
            instance.add_run(dg.DagsterRun(job_name="hourly_job", run_id=run_id, status=dg.DagsterRunStatus.STARTED, tags=tags))
        assert fail_orphaned_runs(instance) == ["killed"]
        status = {run_id: instance.get_run_by_id(run_id).status for run_id in cases}
        assert status == {"killed": dg.DagsterRunStatus.FAILURE, "running": dg.DagsterRunStatus.STARTED,
                          "elsewhere": dg.DagsterRunStatus.STARTED, "untagged": dg.DagsterRunStatus.STARTED}
        assert fail_orphaned_runs(instance) == []  # once


def test_a_kill_s_temporary_files_are_swept_and_a_writer_s_are_not(tmp_path):
    import os
    import time

    from vlf_dagster.flows.storage import atomic_path, sweep_temp_files

    folder = tmp_path / "data" / "archive" / "in"
    folder.mkdir(parents=True)
    with atomic_path(folder / "x.parquet") as writing:  # the temporary name atomic_path gives
        writing.write_bytes(b"half")
        left = folder / writing.name.replace(".tmp", "9.tmp")
        left.write_bytes(b"half")  # as a kill leaves one
        old = time.time() - 7200
        os.utime(left, (old, old))
        keep = folder / ".hidden-notes.txt"
        keep.write_text("not ours")
        assert sweep_temp_files(tmp_path / "data") == [left]
        assert writing.exists() and keep.exists()  # a write under way and foreign files stay
    assert (folder / "x.parquet").read_bytes() == b"half" and not left.exists()
