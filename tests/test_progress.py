"""Progress of long work shows on a terminal and nowhere else (issue 14)."""

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest

from vlf_dagster import progress

ROOT = Path(__file__).resolve().parents[1]
BINETFLOW = ROOT.parent / "shared" / "data" / "real" / "binetflow" / "test11-portscan.binetflow"


def _run(args, tmp_path, terminal: bool) -> tuple[int, str]:
    """Run `vlf ARGS` with stderr on a pseudo-terminal (or a pipe); its exit status and stderr."""
    env = {**os.environ, "VLF_DATA_DIR": str(tmp_path / "data")}
    if not terminal:
        done = subprocess.run([sys.executable, "-m", "vlf_dagster.cli", *args], env=env, cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=300)
        return done.returncode, done.stderr.decode()
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))  # a terminal 120 columns wide
    proc = subprocess.Popen([sys.executable, "-m", "vlf_dagster.cli", *args], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the terminal's other end closed: the command ended
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    return proc.wait(60), b"".join(chunks).decode(errors="replace")


def test_simulate_shows_its_stages_on_a_terminal(tmp_path):
    code, shown = _run(["simulate", "--days", "2", "--sources", "40000"], tmp_path, terminal=True)
    assert code == 0
    assert "vlf simulate: simulating sources" in shown and "/40.0k" in shown
    assert "vlf simulate: writing the landing files" in shown and "/48.0" in shown  # hours


def test_simulate_prints_no_progress_into_a_pipe(tmp_path):
    code, stderr = _run(["simulate", "--days", "1", "--sources", "4000"], tmp_path, terminal=False)
    assert code == 0 and stderr == ""


@pytest.mark.skipif(not BINETFLOW.exists(), reason="the shared real data is not here")
def test_import_counts_the_lines_of_a_file_as_it_goes(tmp_path):
    # A path longer than the terminal is wide (CI's clone sits deeper than ours): the count must still show.
    deep = tmp_path / ("a-long-directory-name-" * 4) / ("and-another-one-" * 4) / BINETFLOW.name
    deep.parent.mkdir(parents=True)
    deep.write_bytes(BINETFLOW.read_bytes())
    code, shown = _run(["import", "--dry-run", str(deep)], tmp_path, terminal=True)
    assert code == 0
    assert f"vlf import: importing {BINETFLOW.name}" in shown and "lines/s]" in shown
    code, stderr = _run(["import", "--dry-run", str(deep)], tmp_path, terminal=False)
    assert code == 0 and "importing" not in stderr


def test_work_reports_progress_for_free_when_no_command_shows_it(capsys):
    progress.start(10, "things", "nothing shown")
    progress.advance(5)  # no display opened: nothing happens, nothing is printed
    assert capsys.readouterr() == ("", "")


def test_materialize_counts_its_runs_on_a_terminal_and_keeps_its_run_lines(tmp_path):
    assert _run(["simulate", "--days", "1", "--sources", "500"], tmp_path, terminal=False)[0] == 0
    code, shown = _run(["materialize", "--dagster-home", str(tmp_path / "home")], tmp_path, terminal=True)
    assert code == 0
    assert "vlf materialize: materializing" in shown and "/3.00 [" in shown  # 1 hourly batch, 1 month, the window
