"""An hour is published whole: its archive files (one per flowtype and sensor, in several folders),
its quarantine file and the removal of what a re-pack no longer writes go in one step through a
journal (flows/storage.py, publishing_hours).  A pack killed at any point leaves readers either
the previous version of the hour or, once the journal is rolled forward, exactly what a clean
pack writes, never part of an hour.  Kills here are real: SIGKILL of a packing process."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from conftest import START, flows, write_landing
from vlf_dagster import cli
from vlf_dagster.flows import storage
from vlf_dagster.flows.archive import pack_hour
from vlf_dagster.flows.storage import (archive_files, complete_publishes, hour_ms, landing_dir, publish_dir,
                                       quarantine_path, sweep_temp_files)

ROOT = Path(__file__).resolve().parents[1]
T0 = hour_ms(START)
OUTSIDE, INSIDE = "4.3.2.1", "10.1.24.5"


def old_version():
    """Before the re-pack: in-S0, iw-S1 and out-S0, and two quarantined records (13 archived)."""
    rows = ([dict(sIP=OUTSIDE, dIP=INSIDE, dPort=25, sensor=0, sTime=T0 + i) for i in range(7)]
            + [dict(sIP=OUTSIDE, dIP=INSIDE, dPort=80, sensor=1, sTime=T0 + i) for i in range(4)]
            + [dict(sIP=INSIDE, dIP=OUTSIDE, dPort=25, sensor=0, sTime=T0 + i) for i in range(2)]
            + [dict(sIP=OUTSIDE, dIP=INSIDE, packets=9, bytes=1)] * 2)
    return flows(rows)


def new_version():
    """After: five archive files (in-S0, in-S1, iw-S0, out-S1, ow-S0: 105 records) and one
    quarantined record; iw-S1 and out-S0 of the old version are stale."""
    rows = ([dict(sIP=OUTSIDE, dIP=INSIDE, dPort=25, sensor=0, sTime=T0 + 10 * i) for i in range(40)]
            + [dict(sIP=OUTSIDE, dIP=INSIDE, dPort=22, sensor=1, sTime=T0 + 11 * i) for i in range(30)]
            + [dict(sIP=OUTSIDE, dIP=INSIDE, dPort=80, sensor=0, sTime=T0 + 12 * i) for i in range(20)]
            + [dict(sIP=INSIDE, dIP=OUTSIDE, dPort=53, sensor=1, sTime=T0 + 13 * i) for i in range(10)]
            + [dict(sIP=INSIDE, dIP=OUTSIDE, sPort=80, dPort=3000, sensor=0, sTime=T0 + 14 * i) for i in range(5)]
            + [dict(sIP=OUTSIDE, dIP=INSIDE, packets=9, bytes=1)])
    return flows(rows)


OLD_RECORDS, NEW_RECORDS = 13, 105
NEW_NAMES = ["in-S0_20060401.00.parquet", "in-S1_20060401.00.parquet", "out-S1_20060401.00.parquet",
             "iw-S0_20060401.00.parquet", "ow-S0_20060401.00.parquet"]  # SiLK's order: flowtype id, sensor


def land(data: Path, table) -> None:
    shutil.rmtree(landing_dir(data, START), ignore_errors=True)
    write_landing(data, START, table)


def published(data: Path) -> dict[str, bytes]:
    """Every archive and quarantine file (hidden temporaries and journals aside), by relative path."""
    return {str(p.relative_to(data)): p.read_bytes() for folder in ("archive", "quarantine")
            for p in sorted((data / folder).rglob("*.parquet")) if not p.name.startswith(".")}


def leftovers(data: Path) -> list[str]:
    """Temporary files and journals anywhere under the data folder."""
    return sorted(str(p.relative_to(data)) for p in data.rglob("*")
                  if p.name.endswith(storage.TEMP_SUFFIX) or p.name.endswith(storage.JOURNAL_SUFFIX))


def records(files: list[Path]) -> int:
    return sum(pq.ParquetFile(p).metadata.num_rows for p in files)


@pytest.fixture
def clean(tmp_path, site):
    """What packs that are never interrupted leave: the old version of the hour, then the new one
    (in the folder the tests use then: quarantined records name their landing file's path)."""
    folder = tmp_path / "data"
    land(folder, old_version())
    pack_hour(folder, START, site)
    old = published(folder)
    land(folder, new_version())
    pack_hour(folder, START, site)
    assert leftovers(folder) == [] and not any(publish_dir(folder).glob("*.json"))
    new = published(folder)
    shutil.rmtree(folder)
    return {"old": old, "new": new}


@pytest.fixture
def data(tmp_path, site, clean):
    """A data folder holding the old version of the hour, with the new one landed to re-pack."""
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "site.toml").write_text(site.to_toml())
    land(folder, old_version())
    pack_hour(folder, START, site)
    assert published(folder) == clean["old"]
    land(folder, new_version())
    return folder


KILLER = """
import os, signal, sys, threading
from datetime import datetime, timezone
from vlf_dagster.flows import storage
from vlf_dagster.flows.archive import pack_hour
from vlf_dagster.flows.site import site_from_mapping

data, stage, at = sys.argv[1], sys.argv[2], int(sys.argv[3])
count, guard = [0], threading.Lock()

def tick():
    with guard:
        count[0] += 1
        if count[0] == at:
            os.kill(os.getpid(), signal.SIGKILL)

if stage == "writes":  # killed after `at` of the batch's files are written, before any journal
    write = storage.HourPublish.write_parquet
    def writing(self, table, path):
        out = write(self, table, path)
        tick()
        return out
    storage.HourPublish.write_parquet = writing
else:  # killed after the journal and `at` of its renames
    replace = os.replace
    def replacing(src, dst):
        replace(src, dst)
        if str(dst).endswith((".parquet", ".json")):
            tick()
    os.replace = replacing
site = site_from_mapping({"internal_networks": ["10.1.24.0/22"], "sensors": ["S0", "S1"],
                          "start": "2006-04-01T00:00", "end": "2006-04-01T03:00"})
pack_hour(data, datetime(2006, 4, 1, tzinfo=timezone.utc), site)
raise SystemExit("not killed")
"""


def killed_pack(data: Path, stage: str, at: int) -> None:
    """Pack the hour in another process, SIGKILLed at the given point."""
    done = subprocess.run([sys.executable, "-c", KILLER, str(data), stage, str(at)], cwd=ROOT, capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert done.returncode == -9, done.stderr


def filtered(data: Path, dest: Path) -> int:
    """Records ``vlf filter`` reads over the hour (every type)."""
    assert cli.main(["filter", "--data-dir", str(data), "--start-date", "2006/04/01:00", "--type", "all",
                     "--pass", str(dest)]) == 0
    return pq.read_metadata(dest).num_rows


# The journal's rename count: 1 is the journal itself, then the 6 files (5 archive, 1 quarantine).
@pytest.mark.parametrize("renames", [0, 3, 6], ids=["journal-only", "half-renamed", "renamed-not-removed"])
def test_a_pack_killed_after_its_journal_is_rolled_forward_to_what_a_clean_pack_writes(data, clean, tmp_path, renames):
    killed_pack(data, "renames", 1 + renames)
    journals = list(publish_dir(data).glob("*.json"))
    assert len(journals) == 1  # the kill left its publish unfinished
    on_disk = published(data)
    if renames == 0:
        assert on_disk == clean["old"]
    else:  # what a reader globbing the folders would see: neither version (the audit's 288 of 304)
        assert on_disk != clean["old"] and on_disk != clean["new"]
    # a reader finishes the publish before it lists: the whole new hour, the bytes a clean pack writes
    assert filtered(data, tmp_path / "out.parquet") == NEW_RECORDS
    assert published(data) == clean["new"]
    assert [p.name for p in archive_files(data, [START])] == NEW_NAMES
    assert leftovers(data) == []  # no temporary, no journal
    assert quarantine_path(data, START).exists()


def test_a_pack_killed_before_its_journal_leaves_the_previous_hour_whole(data, clean, tmp_path, site):
    killed_pack(data, "writes", 3)  # 3 of the 6 files written, to temporaries
    assert published(data) == clean["old"]
    assert not any(publish_dir(data).glob("*.json"))
    temps = leftovers(data)
    assert len(temps) >= 3 and all(Path(t).name.startswith(".") for t in temps)
    # readers see the old hour whole, the killed run's temporaries are never published
    assert records(archive_files(data, [START])) == OLD_RECORDS == filtered(data, tmp_path / "out.parquet")
    assert complete_publishes(data) == [] and published(data) == clean["old"]
    # packing the hour again is not tripped by them, and writes what a clean pack writes
    pack_hour(data, START, site)
    assert published(data) == clean["new"]
    assert leftovers(data) == temps  # the kill's, until the sweep (a writer running now is spared)
    assert sweep_temp_files(data, older_than_s=0) == sorted(data / t for t in temps)
    assert leftovers(data) == [] and published(data) == clean["new"]


def interrupted(*_):  # as if the process died between the journal and its first rename
    raise KeyboardInterrupt


def test_removing_a_re_pack_s_stale_files_goes_with_the_hour(data, clean, monkeypatch, site):
    """The old version's iw-S1 and out-S0 files are removed in the same publish as the new files."""
    stale = ["archive/inweb/2006/04/01/iw-S1_20060401.00.parquet", "archive/out/2006/04/01/out-S0_20060401.00.parquet"]
    assert all(s in clean["old"] and s not in clean["new"] for s in stale)
    monkeypatch.setattr(storage, "_apply", interrupted)
    with pytest.raises(KeyboardInterrupt):
        pack_hour(data, START, site)
    monkeypatch.undo()
    assert published(data) == clean["old"] and all((data / s).exists() for s in stale)
    journal = next(publish_dir(data).glob("*.json"))
    assert len(list(data.rglob(".*.tmp"))) == 6  # the journal's temporaries outlive the exception
    assert complete_publishes(data) == [journal]
    assert published(data) == clean["new"] and not any((data / s).exists() for s in stale)
    assert leftovers(data) == [] and complete_publishes(data) == []


def test_a_reader_that_cannot_finish_a_publish_says_which_hour_and_the_sweep_keeps_its_files(
        data, clean, monkeypatch, capsys, site):
    monkeypatch.setattr(storage, "_apply", interrupted)
    with pytest.raises(KeyboardInterrupt):
        pack_hour(data, START, site)
    monkeypatch.undo()
    temps = list(data.rglob(".*.tmp"))
    assert len(temps) == 6

    def read_only(src, dst):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "replace", read_only)
    assert [p.name for p in archive_files(data, [START])] == [  # the old hour, whole
        "in-S0_20060401.00.parquet", "out-S0_20060401.00.parquet", "iw-S1_20060401.00.parquet"]
    archive_files(data, [START])
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "2006-04-01T00Z may be incomplete" in err[0] and "Permission denied" in err[0]
    assert sweep_temp_files(data, older_than_s=0) == []  # a journal names them: not litter
    assert all(t.exists() for t in temps)
    monkeypatch.undo()
    assert [p.name for p in archive_files(data, [START])] == NEW_NAMES
    assert published(data) == clean["new"] and leftovers(data) == []


def test_a_listing_waits_for_a_publish_under_way(data, site):
    pack_hour(data, START, site)
    fd = storage._open_lock(data, create=True)
    storage._lock(fd, exclusive=True)  # as a publish holds it between its first and last rename
    seen = []
    reader = threading.Thread(target=lambda: seen.append(archive_files(data, [START])))
    try:
        reader.start()
        reader.join(0.3)
        assert reader.is_alive() and not seen
    finally:
        os.close(fd)
    reader.join(10)
    assert [p.name for p in seen[0]] == NEW_NAMES


def test_a_pack_that_fails_while_writing_leaves_the_old_hour_and_no_temporary(data, clean, monkeypatch, site):
    calls = []
    write = storage.HourPublish.write_parquet

    def failing(self, table, path):
        calls.append(path)
        if len(calls) == 4:
            raise OSError(28, "No space left on device")
        return write(self, table, path)

    monkeypatch.setattr(storage.HourPublish, "write_parquet", failing)
    with pytest.raises(OSError, match="No space"):
        pack_hour(data, START, site)
    assert published(data) == clean["old"] and leftovers(data) == []


def test_a_fifo_or_device_destination_is_written_in_place_not_renamed_over(tmp_path):
    """atomic_path on an existing FIFO (as on /dev/null) writes into it: a rename would replace the
    node with a file (as root, /dev/null itself).  A verb's output to a FIFO reaches its reader."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    with storage.atomic_path(fifo) as target:
        assert target == fifo
        target.write_bytes(b"through the pipe")
    reader.join(10)
    assert got == [b"through the pipe"] and fifo.is_fifo()
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    parquet = tmp_path / "f.parquet"
    storage.write_parquet(flows([dict(sIP="1.0.0.1", protocol=6)]), parquet)
    assert cli.main(["filter", "--proto=6", f"--pass-destination={fifo}", str(parquet)]) == 0
    reader.join(10)
    import pyarrow.ipc as ipc

    assert ipc.open_stream(got[1]).read_all().num_rows == 1
    assert fifo.is_fifo() and not list(tmp_path.glob(".*tmp*"))


def test_a_symlinked_destination_is_written_through_not_renamed_over(tmp_path):
    """A link (/dev/stdout is one, into /proc) is written through and stays a link: a rename would
    replace the link itself (as root, /dev/stdout)."""
    target = tmp_path / "target.bin"
    target.write_bytes(b"old")
    link = tmp_path / "link"
    link.symlink_to(target)
    assert storage.written_in_place(link) and storage.written_in_place("/dev/null")
    assert not storage.written_in_place(tmp_path / "new.parquet")
    storage.write_bytes(b"new bytes", link)
    assert link.is_symlink() and target.read_bytes() == b"new bytes"
