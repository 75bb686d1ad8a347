"""The data on object storage (issue 14): a local S3-compatible server, the archive and the window's
artifacts uploaded as steps write them, and a second machine with an empty data directory that
builds the window from what the first one left in the bucket."""

import socket
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from conftest import START, flows, write_landing
from vlf_dagster.flows import objectstore
from vlf_dagster.flows.storage import hour_ms
from vlf_dagster.orchestration.definitions import build_definitions
from vlf_dagster.orchestration.runs import materialize_all

BUCKET = "vlf-data"
SERVER = Path(sys.executable).with_name("moto_server")  # moto's standalone S3 server, from PyPI


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory):
    """An S3-compatible server on 127.0.0.1, in its own process, and a bucket on it."""
    if not SERVER.exists():
        pytest.skip("moto_server is not installed (make install puts it in the venv)")
    port = _free_port()
    log = tmp_path_factory.mktemp("s3") / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(SERVER), "-H", "127.0.0.1", "-p", str(port)], stdout=out, stderr=out)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"the S3 server did not start: {log.read_text()[-2000:]}")
                time.sleep(0.2)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def store_url(s3_server, monkeypatch, request):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "vlf")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "vlf-secret")
    url = (f"s3://{BUCKET}/{request.node.name}?endpoint_override={s3_server}&scheme=http&region=us-east-1"
           "&allow_bucket_creation=true")
    objectstore.ObjectStore(url, ".").fs.create_dir(BUCKET)
    return url


def test_push_then_pull_gives_the_same_bytes_and_keeps_a_newer_local_write(store_url, tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    (first / "archive" / "in").mkdir(parents=True)
    (first / "archive" / "in" / "a.parquet").write_bytes(b"one")
    (first / "vlf_f_set.set").write_bytes(b"set bytes")
    a = objectstore.ObjectStore(store_url, first)
    assert a.push([first / "archive", first / "vlf_f_set.set"]) == 2
    assert a.push([first / "archive", first / "vlf_f_set.set"]) == 0  # the store holds these versions
    b = objectstore.ObjectStore(store_url, second)
    assert b.pull([second / "archive", second / "vlf_f_set.set", second / "absent.parquet"]) == 2
    assert (second / "archive" / "in" / "a.parquet").read_bytes() == b"one"
    assert (second / "vlf_f_set.set").read_bytes() == b"set bytes"
    assert not (second / "absent.parquet").exists()
    # the first machine writes a new version: the second fetches it; its own newer write it keeps
    time.sleep(1.1)  # S3 keeps times to the second
    (first / "vlf_f_set.set").write_bytes(b"new set")
    assert a.push([first / "vlf_f_set.set"]) == 1
    assert b.pull([second / "vlf_f_set.set"]) == 1 and (second / "vlf_f_set.set").read_bytes() == b"new set"
    time.sleep(1.1)
    (second / "vlf_f_set.set").write_bytes(b"local, not pushed yet")
    assert b.pull([second / "vlf_f_set.set"]) == 0
    assert (second / "vlf_f_set.set").read_bytes() == b"local, not pushed yet"
    assert not list(second.rglob("*.tmp"))  # downloads land whole, through a temporary


def test_a_bad_store_setting_says_so_in_one_line(tmp_path):
    with pytest.raises(objectstore.ObjectStoreError, match="VLF_OBJECT_STORE='nowhere://x'"):
        objectstore.ObjectStore("nowhere://x", tmp_path)


def _plant(data: Path) -> None:
    """A (1 flow), B (one flow an hour), D (12 flows in the second hour), over three hours."""
    for h in range(3):
        t = hour_ms(START) + h * 3_600_000
        rows = [{"sIP": "4.0.0.2", "dIP": "10.1.24.6", "dPort": 7717, "protocol": 17, "sTime": t + 5}]
        if h == 0:
            rows.append({"sIP": "4.0.0.1", "dIP": "10.1.24.5", "dPort": 25, "sTime": t + 10})
        if h == 1:
            rows += [{"sIP": "4.0.0.4", "dIP": "10.1.24.9", "dPort": 80, "sTime": t + i} for i in range(12)]
        write_landing(data, START.replace(hour=h), flows(rows))


def test_a_second_machine_builds_the_window_from_the_bucket_alone(store_url, monkeypatch, site, tmp_path):
    monkeypatch.setenv(objectstore.ENV, store_url)
    first, second = tmp_path / "first", tmp_path / "second"
    for data in (first, second):
        data.mkdir()
        (data / "site.toml").write_text(site.to_toml())
    _plant(first)
    with dg.instance_for_test() as instance:
        materialize_all(build_definitions(first), instance, hours_per_run=3, echo=lambda *_: None)
    bucket = objectstore.ObjectStore(store_url, first)
    local = sorted(p for p in first.rglob("*") if p.is_file())
    uploaded = bucket.infos(first)
    for path in local:
        rel = path.relative_to(first).parts
        if rel[0] in ("landing", "site.toml", "catalog.duckdb") or any(part.startswith(".") for part in rel):
            continue  # the input, and what a machine keeps for itself (locks, journals, refresh state,
            # the SQL catalog's views over its own copy)
        assert path in uploaded, f"{path.relative_to(first)} is not in the bucket"
        with bucket.fs.open_input_stream(uploaded[path].path) as remote:
            assert remote.read() == path.read_bytes(), path
    assert any(p.relative_to(first).parts[0] == "archive" for p in uploaded)

    # the second machine: a site file and the bucket; no landing, no archive on its disk
    defs = build_definitions(second)
    with dg.instance_for_test() as instance:
        assert defs.resolve_job_def("window_job").execute_in_process(instance=instance).success
    for name in ("vlf_f_set.set", "vlf_d_set.set", "vlf_fd_set.set", "source_flow_bag.parquet",
                 "retirement_set.parquet", "return_model/metrics.json"):  # the return model from the bucket's profiles
        assert (second / name).read_bytes() == (first / name).read_bytes(), name
    table = lambda data: next(data.glob("reports/*/report_per_host_flow_distribution/*.csv")).read_text()
    assert table(second) == table(first)
    assert not (second / "landing").exists()
