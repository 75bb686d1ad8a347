"""Our toolbox against nfdump on the same flows: flows per second, peak memory, same answers.

    .venv/bin/python bench/nfdump_compare.py [--days 2] [--sources 20000] [--repeat 3]
                                             [--rate 25000] [--compress none] [--keep DIR]

Simulates a site and packs its archive as bench/toolbox.py does, then exports every archived
flow to nfcapd as NetFlow v5 over UDP on 127.0.0.1 (datagrams encoded with numpy, paced), and
checks that nfdump reads back every record, field for field (times to the millisecond).  The
same flows then sit in two storage formats: our hourly Parquet archive (zstd, one file per hour,
flowtype and sensor) and nfcapd files (uncompressed by default, --compress lzo|lz4|bz2).  Each tool runs in its own
process on its own format; the best wall time of --repeat runs and the peak resident memory
(ru_maxrss of the command's process) are reported for:

  filter   TCP flows with SYN and without ACK, written to a file
           ours:   vlf filter --data-dir D --start-date .. --end-date .. --type all
                       --proto 6 --flags-all S/SA --pass-destination out.parquet
           nfdump: nfdump -R dir -w out.nf 'proto tcp and flags S and not flags A'
           agree:  same records, packets and bytes in the two output files
  top-10   the 10 sources with the most flows
           ours:   vlf stats --fields sip --values flows --count 10 <archive files>
           nfdump: nfdump -R dir -s srcip/flows -n 10
           agree:  same counts, and the same sources wherever the 10th count has no tie
  text     every record printed as comma-separated text, nine fields
           ours:   vlf cut FILES --fields sTime,sIP,dIP,sPort,dPort,protocol,flags,packets,bytes
                       --delimited=, --no-titles
           nfdump: nfdump -R dir -q -N -o 'fmt:%ts,%sa,%da,%sp,%dp,%pr,%flg,%pkt,%byt'
           agree:  same number of lines and the same packet and byte sums
  totals   one full pass summing records, packets and bytes
           ours:   vlf filter --data-dir D ... --type all --print-volume-statistics
           nfdump: nfdump -R dir -o null   (its Summary line)
           agree:  same three totals, equal to what was exported

Caveats:
* Both commands are timed whole, process start included: ours pays for a Python interpreter
  and importing DuckDB and Arrow (the "start-up" line shows that floor), nfdump for almost
  nothing.  At small sizes that fixed cost dominates our figures.  The start-up line prints
  both floors (seconds and MB); the last column is our rate with our start-up seconds removed.
* The inputs differ on purpose (that is the comparison): compressed, columnar Parquet read by
  DuckDB against nfdump's row-oriented binary files.  Their sizes on disk are printed.
* NetFlow v5 has 32-bit counters and IPv4 only, so flows it cannot carry are removed from the
  archive too before timing (and counted); the simulator normally produces none.
* v5 has no sensor or flowtype, so nfdump sees one undivided stream where we read one file per
  hour, flowtype and sensor.
* Both tools use the machine's CPUs as they see fit (DuckDB threads, nfdump's worker threads);
  the CPU count is printed.  The page cache is warm after the first run of each command.
* Peak memory is measured through GNU time (/usr/bin/time) when present: a child forked by this
  (large) process would otherwise inherit our RSS as its ru_maxrss.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as csv
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from collector import free_port, wait_bound  # noqa: E402  (bench/collector.py's loopback helpers)
from toolbox import _files, _setup  # noqa: E402  (the same site and archive as bench/toolbox.py)

from vlf_dagster.flows.schema import ATTR_IPV6  # noqa: E402
from vlf_dagster.flows.site import load_site  # noqa: E402
from vlf_dagster.flows.storage import write_parquet  # noqa: E402

# --- NetFlow v5 ------------------------------------------------------------------------------

V5_HEADER = np.dtype([
    ("version", ">u2"), ("count", ">u2"), ("sys_uptime", ">u4"), ("unix_secs", ">u4"),
    ("unix_nsecs", ">u4"), ("flow_sequence", ">u4"), ("engine_type", "u1"), ("engine_id", "u1"),
    ("sampling_interval", ">u2"),
])
V5_RECORD = np.dtype([
    ("srcaddr", ">u4"), ("dstaddr", ">u4"), ("nexthop", ">u4"), ("input", ">u2"), ("output", ">u2"),
    ("dPkts", ">u4"), ("dOctets", ">u4"), ("First", ">u4"), ("Last", ">u4"), ("srcport", ">u2"),
    ("dstport", ">u2"), ("pad1", "u1"), ("tcp_flags", "u1"), ("prot", "u1"), ("tos", "u1"),
    ("src_as", ">u2"), ("dst_as", ">u2"), ("src_mask", "u1"), ("dst_mask", "u1"), ("pad2", ">u2"),
])
V5_PER_DATAGRAM = 30
V5_DATAGRAM = np.dtype([("header", V5_HEADER), ("records", V5_RECORD, (V5_PER_DATAGRAM,))])
assert (V5_HEADER.itemsize, V5_RECORD.itemsize) == (24, 48)

# The exporter's uptime in every header: large, so First/Last (uptime minus the age of the flow's
# start/end at export) stay positive for any flow in the datagram, and below 2^32 so nfdump sees no
# uptime wrap.
SYS_UPTIME_MS = 3_000_000_000
U32_MAX = 2**32 - 1


def v5_representable(table: pa.Table) -> np.ndarray:
    """Mask of the flows v5 can carry: IPv4 with packets and bytes within 32 bits."""
    ipv4 = pc.equal(pc.bit_wise_and(table["attributes"], ATTR_IPV6), 0)
    fits = pc.and_(pc.less_equal(table["packets"], U32_MAX), pc.less_equal(table["bytes"], U32_MAX))
    return pc.and_(ipv4, fits).to_numpy(zero_copy_only=False)


def encode_v5(table: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """All flows of ``table`` as v5 datagrams: (datagram array, records in each datagram).

    Each datagram's export time is the latest end time among its records, rounded up to a whole
    second (unix_secs), so a collector maps First/Last back to exactly sTime and sTime+duration.
    """
    n = table.num_rows
    col = {name: table[name].to_numpy() for name in ("sIP", "dIP", "nhIP", "in", "out", "packets", "bytes",
                                                    "sPort", "dPort", "flags", "protocol", "sTime", "duration")}
    start = col["sTime"].astype(np.int64)
    end = start + col["duration"].astype(np.int64)
    datagrams = -(-n // V5_PER_DATAGRAM)
    out = np.zeros(datagrams, V5_DATAGRAM)
    first_row = np.arange(datagrams) * V5_PER_DATAGRAM
    counts = np.minimum(V5_PER_DATAGRAM, n - first_row)
    export_ms = (np.maximum.reduceat(end, first_row) + 999) // 1000 * 1000
    boot_ms = np.repeat(export_ms - SYS_UPTIME_MS, counts)  # per record: absolute time of uptime 0
    first, last = start - boot_ms, end - boot_ms
    if first.min() < 0 or last.max() > SYS_UPTIME_MS:
        raise SystemExit("a datagram spans more time than the v5 uptime can express")

    header = out["header"]
    header["version"] = 5
    header["count"] = counts
    header["sys_uptime"] = SYS_UPTIME_MS
    header["unix_secs"] = export_ms // 1000
    header["flow_sequence"] = first_row  # flows sent before this datagram: no sequence errors

    records = np.zeros(datagrams * V5_PER_DATAGRAM, V5_RECORD)  # the last datagram's tail stays 0
    rec = records[:n]
    for field, column in (("srcaddr", "sIP"), ("dstaddr", "dIP"), ("nexthop", "nhIP"), ("input", "in"),
                          ("output", "out"), ("dPkts", "packets"), ("dOctets", "bytes"), ("srcport", "sPort"),
                          ("dstport", "dPort"), ("tcp_flags", "flags"), ("prot", "protocol")):
        rec[field] = col[column]
    rec["First"], rec["Last"] = first, last
    out["records"] = records.reshape(datagrams, V5_PER_DATAGRAM)
    return out, counts


def send_paced(datagrams: np.ndarray, counts: np.ndarray, port: int, rate: int) -> None:
    """Send each datagram (cut to its record count) at ``rate`` datagrams per second."""
    raw = datagrams.tobytes()
    sizes = V5_HEADER.itemsize + V5_RECORD.itemsize * counts
    offsets = np.arange(len(datagrams)) * V5_DATAGRAM.itemsize
    view = memoryview(raw)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
        address = ("127.0.0.1", port)
        started = time.perf_counter()
        for i, (offset, size) in enumerate(zip(offsets.tolist(), sizes.tolist())):
            sock.sendto(view[offset : offset + size], address)
            ahead = (i + 1) / rate - (time.perf_counter() - started)
            if ahead > 0.001:  # sleep only in whole milliseconds: short bursts, never a flood
                time.sleep(ahead)


NFCAPD_COMPRESSION = {"none": [], "lzo": ["-z"], "lz4": ["-y"], "bz2": ["-j"]}


def export_to_nfcapd(table: pa.Table, flowdir: Path, rate: int, compress: str) -> None:
    """Run nfcapd on loopback, send it ``table`` as v5 and stop it (SIGTERM flushes its file)."""
    flowdir.mkdir(parents=True)
    datagrams, counts = encode_v5(table)
    port = free_port()
    with open(flowdir.parent / "nfcapd.log", "w") as log:
        nfcapd = subprocess.Popen(["nfcapd", "-b", "127.0.0.1", "-p", str(port), "-w", str(flowdir), "-B", str(8 << 20),
                                   *NFCAPD_COMPRESSION[compress]],
                                  stdout=log, stderr=log)
        try:
            try:
                wait_bound(port)
            except RuntimeError as exc:
                raise SystemExit(f"nfcapd: {exc}") from None
            send_paced(datagrams, counts, port, rate)
            time.sleep(1.0)  # let nfcapd drain its socket buffer
        finally:
            nfcapd.send_signal(signal.SIGTERM)
            nfcapd.wait(60)


# --- timing ----------------------------------------------------------------------------------


GNU_TIME = shutil.which("time", path="/usr/bin:/bin")


def run_measured(cmd: list[str], out_path: Path, env: dict | None = None) -> tuple[float, float, str, str]:
    """Run ``cmd`` to completion: (wall seconds, peak RSS MB of that process, stdout, stderr).

    A child's ru_maxrss starts at the RSS of the process that forked it (Linux carries the high
    water mark across exec), and this process holds the flows, so the command is started by
    GNU time, a 2 MB program that forks it afresh and reports its ru_maxrss (%M, from wait4).
    Without GNU time we wait4 the command ourselves and the peak includes our own size.
    """
    rss_path = out_path.with_suffix(".rss")
    launcher = [GNU_TIME, "-f", "%M", "-o", str(rss_path)] if GNU_TIME else []
    with open(out_path, "w+") as out, open(out_path.with_suffix(".err"), "w+") as err:
        started = time.perf_counter()
        proc = subprocess.Popen([*launcher, *cmd], stdout=out, stderr=err, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:6])} ... failed ({proc.returncode}):\n{stderr[-2000:]}")
    peak_kb = int(rss_path.read_text().split()[-1]) if GNU_TIME else usage.ru_maxrss
    return seconds, peak_kb / 1024, stdout, stderr


def best_of(cmd: list[str], repeat: int, work: Path, env: dict | None = None) -> tuple[float, float, str, str]:
    """Best wall time and highest peak memory over ``repeat`` runs; the last run's output."""
    best, peak = float("inf"), 0.0
    for _ in range(repeat):
        seconds, rss, stdout, stderr = run_measured(cmd, work / "cmd.out", env)
        best, peak = min(best, seconds), max(peak, rss)
    return best, peak, stdout, stderr


# --- reading the answers ---------------------------------------------------------------------

SUMMARY = re.compile(r"Summary: total flows: (\d+), total bytes: (\d+), total packets: (\d+)")


def nfdump_totals(args: list[str]) -> tuple[int, int, int]:
    """(flows, packets, bytes) from nfdump's Summary line over ``args`` (-r file or -R dir)."""
    text = subprocess.run(["nfdump", *args, "-N", "-o", "null"], check=True, capture_output=True, text=True).stdout
    return summary_totals(text)


def summary_totals(text: str) -> tuple[int, int, int]:
    match = SUMMARY.search(text)
    if not match:
        raise SystemExit(f"no Summary line in nfdump's output:\n{text[-1000:]}")
    flows, octets, packets = (int(g) for g in match.groups())
    return flows, packets, octets


def text_totals(text: str) -> tuple[int, int, int]:
    """(lines, sum of the packets column, sum of the bytes column) of comma-separated records
    whose last two fields are packets and bytes."""
    import pandas as pd

    frame = pd.read_csv(io.StringIO(text), header=None, usecols=[7, 8], names=["packets", "bytes"], dtype="int64",
                        skipinitialspace=True)
    return len(frame), int(frame["packets"].sum()), int(frame["bytes"].sum())


def parquet_totals(path: Path) -> tuple[int, int, int]:
    table = pq.read_table(path, columns=["packets", "bytes"])
    return table.num_rows, int(pc.sum(table["packets"]).as_py() or 0), int(pc.sum(table["bytes"]).as_py() or 0)


def ours_volume_totals(stderr: str) -> tuple[int, int, int]:
    """(records, packets, bytes) of the 'total' row of --print-volume-statistics."""
    for line in stderr.splitlines():
        cells = [c.strip() for c in line.split("|")]
        if cells and cells[0].lower() == "total":
            return tuple(int(c) for c in cells[1:4])
    raise SystemExit(f"no total row in vlf filter's volume statistics:\n{stderr[-1000:]}")


def ours_top_sources(stdout: str) -> list[tuple[str, int]]:
    """(source, flows) rows of `vlf stats --no-titles --delimited`."""
    rows = [line.split("|") for line in stdout.splitlines() if line.strip()]
    return [(cells[0].strip(), int(cells[1])) for cells in rows]


def nfdump_top_sources(stdout: str) -> list[tuple[str, int]]:
    """(source, flows) rows of `nfdump -s srcip/flows -N -q`: the IP and the count after it."""
    rows = []
    for line in stdout.splitlines():
        match = re.search(r"\s(\d+\.\d+\.\d+\.\d+)\s+(\d+)\(", line)
        if match:
            rows.append((match.group(1), int(match.group(2))))
    return rows


def same_top(ours: list[tuple[str, int]], theirs: list[tuple[str, int]]) -> bool:
    """Equal counts in order, and equal sources above the last count (ties there break differently)."""
    if [c for _, c in ours] != [c for _, c in theirs] or not ours:
        return False
    cut = ours[-1][1]
    return {row for row in ours if row[1] > cut} == {row for row in theirs if row[1] > cut}


# nfdump's legacy "pipe" output: every field a plain integer, IPv4 addresses in the last word.
PIPE_COLUMNS = {"sTime": 1, "eTime": 2, "protocol": 3, "sIP": 7, "sPort": 8, "dIP": 12, "dPort": 13,
                "in": 16, "out": 17, "flags": 18, "packets": 20, "bytes": 21}


def same_records(table: pa.Table, flowdir: Path) -> bool:
    """Whether nfdump holds exactly the flows of ``table``, field by field, as multisets."""
    text = subprocess.run(["nfdump", "-R", str(flowdir), "-q", "-N", "-o", "pipe"], check=True, capture_output=True).stdout
    pipe = csv.read_csv(pa.BufferReader(text), read_options=csv.ReadOptions(autogenerate_column_names=True),
                        parse_options=csv.ParseOptions(delimiter="|"))
    theirs = np.stack([pipe.column(i).to_numpy().astype(np.int64) for i in PIPE_COLUMNS.values()])
    column = {name: table[name].to_numpy().astype(np.int64) for name in PIPE_COLUMNS if name != "eTime"}
    column["eTime"] = column["sTime"] + table["duration"].to_numpy().astype(np.int64)
    ours = np.stack([column[name] for name in PIPE_COLUMNS])
    if ours.shape != theirs.shape:
        return False
    return np.array_equal(ours[:, np.lexsort(ours)], theirs[:, np.lexsort(theirs)])


# --- main ------------------------------------------------------------------------------------


def prepare(data: Path, flowdir: Path, days: int, sources: int, rate: int, compress: str) -> tuple[int, tuple[int, int, int]]:
    """Simulate and pack the archive, drop what v5 cannot carry, export the rest to nfcapd.

    Returns the number of dropped flows and the archive's (flows, packets, bytes).
    """
    started = time.perf_counter()
    _setup(data, days, sources)
    dropped = 0
    parts = []
    for path in _files(data):
        table = pq.read_table(path)
        keep = v5_representable(table)
        if not keep.all():  # rewrite the file without them so both tools see the same flows
            dropped += int((~keep).sum())
            table = table.filter(pa.array(keep))
            write_parquet(table, path)
        parts.append(table)
    flows = pa.concat_tables(parts)
    totals = (flows.num_rows, int(pc.sum(flows["packets"]).as_py()), int(pc.sum(flows["bytes"]).as_py()))
    print(f"archive: {totals[0]:,} flows, {dropped:,} dropped as not v5-representable, "
          f"{time.perf_counter() - started:.1f} s to simulate and pack")

    started = time.perf_counter()
    export_to_nfcapd(flows, flowdir, rate, compress)
    read_back = nfdump_totals(["-R", str(flowdir)])
    print(f"nfcapd:  {read_back[0]:,} flows read back of {totals[0]:,} sent as v5 at {rate:,} datagrams/s, "
          f"{time.perf_counter() - started:.1f} s")
    if read_back != totals:
        raise SystemExit(f"nfcapd stored (flows, packets, bytes) {read_back}, the archive holds {totals}: "
                         f"lost datagrams? try a lower --rate (log: {flowdir.parent / 'nfcapd.log'})")
    if not same_records(flows, flowdir):
        raise SystemExit("nfcapd's records differ from the archive's (times, addresses, ports, protocol, "
                         "interfaces, flags, packets or bytes)")
    print("         every record identical in both (times to the ms, addresses, ports, protocol, flags, volumes)")
    return dropped, totals


def dir_size_mb(paths) -> float:
    return sum(p.stat().st_size for p in paths) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=2, help="days to simulate (default 2)")
    parser.add_argument("--sources", type=int, default=20000, help="outside sources to simulate (default 20000)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per command; the best time counts (default 3)")
    parser.add_argument("--rate", type=int, default=25000, help="v5 datagrams per second sent to nfcapd (default 25000)")
    parser.add_argument("--compress", choices=sorted(NFCAPD_COMPRESSION), default="none",
                        help="nfcapd file compression (default none, nfcapd's own default)")
    parser.add_argument("--keep", type=Path, help="work in this (new) directory and keep it, instead of a temporary one")
    args = parser.parse_args()
    for tool in ("nfcapd", "nfdump"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} not found: apt-get install nfdump")

    with tempfile.TemporaryDirectory() as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        data, flowdir = work / "data", work / "nfcapd"
        _, totals = prepare(data, flowdir, args.days, args.sources, args.rate, args.compress)
        files = [str(f) for f in _files(data)]
        nf_files = [p for p in flowdir.iterdir() if p.is_file()]
        print(f"inputs:  ours {len(files)} Parquet files, {dir_size_mb(map(Path, files)):.1f} MB; "
              f"nfdump {len(nf_files)} nfcapd file(s) ({args.compress}), {dir_size_mb(nf_files):.1f} MB (same flows, different storage formats)")

        site = load_site(data / "site.toml")
        archive = ["--data-dir", str(data), "--start-date", f"{site.start:%Y/%m/%d:%H}",
                   "--end-date", f"{site.end - timedelta(hours=1):%Y/%m/%d:%H}", "--type", "all"]
        vlf = [sys.executable, "-m", "vlf_dagster.cli"]
        # SILK_CLOBBER: each repeat of filter writes over the last one's output, as nfdump -w does
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]), "SILK_CLOBBER": "1"}
        our_out, their_out = work / "syn.parquet", work / "syn.nf"
        nfdir = ["-R", str(flowdir)]

        # Fixed costs: what a command pays before it reads a single flow.
        ours_floor, ours_floor_mb, _, _ = best_of([sys.executable, "-c", "import duckdb, pyarrow.parquet, vlf_dagster.cli"],
                                                  args.repeat, work, env)
        theirs_floor, theirs_floor_mb, _, _ = best_of(["nfdump", "-V"], args.repeat, work)
        print(f"start-up: ours {ours_floor:.3f} s, {ours_floor_mb:.0f} MB (Python, DuckDB, Arrow imports); "
              f"nfdump {theirs_floor:.3f} s, {theirs_floor_mb:.0f} MB (nfdump -V); included in every figure below")
        print(f"machine:  {os.cpu_count()} CPUs; best of {args.repeat} runs; peak memory by "
              f"{'GNU time (%M)' if GNU_TIME else 'os.wait4 (includes this process: install GNU time)'}")

        rows = []

        # a. filter: SYN without ACK, written to a file.
        t_ours = best_of([*vlf, "filter", *archive, "--proto", "6", "--flags-all", "S/SA", "--pass-destination", str(our_out)],
                         args.repeat, work, env)
        t_theirs = best_of(["nfdump", *nfdir, "-w", str(their_out), "proto tcp and flags S and not flags A"], args.repeat, work)
        ours_res, theirs_res = parquet_totals(our_out), nfdump_totals(["-r", str(their_out)])
        rows.append(("filter SYN/!ACK -> file", t_ours, t_theirs, ours_res == theirs_res,
                     f"passed (flows, packets, bytes): ours {ours_res}, nfdump {theirs_res}"))

        # b. top 10 sources by flows.
        t_ours = best_of([*vlf, "stats", "--fields", "sip", "--values", "flows", "--count", "10", "--no-titles",
                          "--no-percents", "--delimited", *files], args.repeat, work, env)
        t_theirs = best_of(["nfdump", *nfdir, "-s", "srcip/flows", "-n", "10", "-N", "-q"], args.repeat, work)
        ours_top, theirs_top = ours_top_sources(t_ours[2]), nfdump_top_sources(t_theirs[2])
        rows.append(("top 10 sources by flows", t_ours, t_theirs, same_top(ours_top, theirs_top),
                     f"top counts: ours {[c for _, c in ours_top]}, nfdump {[c for _, c in theirs_top]}"))

        # c. totals: one full pass summing records, packets and bytes.
        t_ours = best_of([*vlf, "filter", *archive, "--print-volume-statistics"], args.repeat, work, env)
        t_theirs = best_of(["nfdump", *nfdir, "-N", "-o", "null"], args.repeat, work)
        ours_res, theirs_res = ours_volume_totals(t_ours[3]), summary_totals(t_theirs[2])
        rows.append(("totals (flows, packets, bytes)", t_ours, t_theirs, ours_res == theirs_res == totals,
                     f"ours {ours_res}, nfdump {theirs_res}, exported {totals}"))

        # d. print every record as text (rwcut / nfdump -o fmt), same nine fields.
        t_ours = best_of([*vlf, "cut", *files, "--fields", "sTime,sIP,dIP,sPort,dPort,protocol,flags,packets,bytes",
                          "--delimited=,", "--no-titles"], args.repeat, work, env)
        t_theirs = best_of(["nfdump", *nfdir, "-q", "-N", "-o", "fmt:%ts,%sa,%da,%sp,%dp,%pr,%flg,%pkt,%byt"],
                           args.repeat, work)
        ours_res, theirs_res = text_totals(t_ours[2]), text_totals(t_theirs[2])
        rows.append(("print records as text", t_ours, t_theirs, ours_res == theirs_res == totals,
                     f"lines, packets, bytes printed: ours {ours_res}, nfdump {theirs_res}"))

        flows = totals[0]
        print()
        # ours/nfdump is the speed ratio (flows/s over flows/s); the last column takes our
        # interpreter start-up out of our time, as a hint of where a long-lived process would be.
        print(f"{'operation':<31} {'flows':>10} {'ours flows/s':>13} {'nfdump flows/s':>15} {'ours/nfdump':>12} "
              f"{'ours MB':>8} {'nfdump MB':>10} {'agree':>6} {'ours w/o start-up':>18}")
        for name, ours, theirs, agree, _ in rows:
            print(f"{name:<31} {flows:>10,} {flows / ours[0]:>13,.0f} {flows / theirs[0]:>15,.0f} {theirs[0] / ours[0]:>12.3f} "
                  f"{ours[1]:>8.0f} {theirs[1]:>10.0f} {'yes' if agree else 'NO':>6} {flows / max(ours[0] - ours_floor, 1e-3):>18,.0f}")
        print()
        for name, _, _, agree, detail in rows:
            print(f"{name}: {detail}")
        if not all(agree for *_, agree, _ in rows):
            sys.exit("results disagree")


if __name__ == "__main__":
    main()
