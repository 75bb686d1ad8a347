"""The ``vlf`` command line: simulate a site, materialize the study, run the demo."""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from datetime import timedelta
from pathlib import Path

from . import progress
from .flows.site import data_site_file, load_site, packaged_site, parse_utc
from .verbs.common import VerbError  # the one user-facing error: one line, exit status 1


def _data_dir(args) -> Path:
    path = Path(args.data_dir or os.environ.get("VLF_DATA_DIR", "data"))
    os.environ["VLF_DATA_DIR"] = str(path)
    return path


def cmd_simulate(args) -> dict:
    from .flows.storage import write_text
    from .simulate import SimulationConfig, simulate

    data = _data_dir(args)
    site = load_site(args.site) if args.site else packaged_site()
    start = parse_utc(args.start, what="--start") if args.start else site.start
    site = site.with_window(start, start + timedelta(days=args.days))
    configured, site = site.returns.horizon_days, site.with_horizon_for(args.days)
    data.mkdir(parents=True, exist_ok=True)
    write_text(site.to_toml(), data_site_file(data))
    started = time.perf_counter()
    with progress.shown("vlf simulate"):
        summary = simulate(site, SimulationConfig(days=args.days, sources=args.sources, seed=args.seed, campaigns=args.campaigns,
                                                  returning=args.returning), data)
    elapsed = time.perf_counter() - started
    print(
        f"simulated {summary.flows:,} flows ({summary.inbound_flows:,} inbound) from {summary.sources:,} outside "
        f"sources over {summary.hours} hours in {elapsed:.1f} s\n"
        f"  landing:      {data / 'landing'}\n  ground truth: {summary.ground_truth_path}\n  site config:  {data_site_file(data)}"
        + (f"\n  return times: {summary.returns_path}" if args.returning else "")
        + (f"\n  return horizon: {site.returns.horizon_days} day(s) in the site file (a seventh of the window, at least one; "
           f"the configured {configured} days need {4 * configured} days of data)" if site.returns.horizon_days != configured else "")
    )
    return {"flows": summary.flows, "seconds": elapsed}


def cmd_materialize(args) -> dict:
    import dagster as dg

    from .orchestration.assets.archive import HOURLY_BATCH
    from .orchestration.definitions import build_definitions
    from .flows.storage import sweep_temp_files
    from .orchestration.runs import ensure_instance_home, fail_orphaned_runs, materialize_all

    data = _data_dir(args)
    home = ensure_instance_home(args.dagster_home)
    defs = build_definitions(data)
    print(f"materializing every asset through Dagster (instance {home})")
    with dg.DagsterInstance.get() as instance:
        for run_id in fail_orphaned_runs(instance):
            print(f"  run {run_id[:8]} was left STARTED by a killed process: marked failed")
        swept = sweep_temp_files(data)
        if swept:
            print(f"  removed {len(swept)} temporary file(s) a killed run left under {data}")
        with progress.shown("vlf materialize"):
            log = materialize_all(defs, instance, hours_per_run=args.hours_per_run or HOURLY_BATCH,
                                  workers=args.workers, echo=progress.echo)
    print(f"{len(log.runs)} runs, {log.seconds:.1f} s")
    return {"runs": len(log.runs), "seconds": log.seconds}


def _print_catalog(data: Path) -> None:
    catalog = data / "catalog.duckdb"
    if catalog.exists():
        print(f"SQL:     {catalog.resolve()}  (ask it: .venv/bin/vlf sql \"SELECT count(*) FROM vlf_flows\")")


def cmd_demo(args) -> None:
    from . import artifacts as A
    started = time.perf_counter()
    cmd_simulate(args)
    cmd_materialize(args)
    data = _data_dir(args)
    reports = sorted(A.VLF_REPORT.path(data).glob("*/index.html"))
    elapsed = time.perf_counter() - started
    print(f"\ndemo finished in {elapsed:.0f} s")
    for report in reports:
        print(f"report:  {report.resolve()}")
    _print_catalog(data)
    table = sorted(A.VLF_REPORT.path(data).glob("*/report_per_host_flow_distribution/*.csv"))
    if table:
        print("\nPer Host Flow Distribution:\n" + table[-1].read_text())
    print(
        "UI:      make ui  (or .venv/bin/vlf ui), then open http://127.0.0.1:3000; Ctrl-C stops it"
    )


def cmd_demo_real(args) -> None:
    """Import real flow files, set the site's window to their hours, run the whole study."""
    from .flows.storage import write_text
    from . import artifacts as A
    import pyarrow.compute as pc

    from .flows.importers.readers import import_file, land, source_name
    from .flows.schema import early_times_warning
    from .flows.site import site_from_mapping

    data = _data_dir(args)
    data.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    hours = set()
    for path in args.files:
        with progress.shown("vlf demo-real"):
            result = import_file(path, args.format)
        if not result.records:
            raise VerbError(f"{path}: no records imported ({result.quarantined} quarantined)")
        landed = land(result, data, source_name(path))
        hours |= set(result.hours())
        print(f"imported {path}: {result.records:,} records, {result.quarantined:,} quarantined, {len(landed.hours)} hours")
        early = result.counts.get("times_before_1990", 0)
        if early:
            warning = early_times_warning(int(pc.min(result.flows.column("sTime")).as_py()), early)
            print(f"{path}: {warning[0].lower()}{warning[1:]}", file=sys.stderr)
    first, last = min(hours), max(hours)
    if last - first > timedelta(days=400):
        raise VerbError(f"the imported records span {first:%Y-%m-%d} .. {last:%Y-%m-%d}; split them by time first")
    site = site_from_mapping({
        "name": "real-" + Path(args.files[0]).name, "internal_networks": args.internal, "sensors": ["S0"],
        "start": f"{first:%Y-%m-%dT%H:00}", "end": f"{last + timedelta(hours=1):%Y-%m-%dT%H:00}",
    }, source="--internal")
    write_text(site.to_toml(), data_site_file(data))
    cmd_materialize(args)
    reports = sorted(A.VLF_REPORT.path(data).glob("*/index.html"))
    print(f"\nreal-data study finished in {time.perf_counter() - started:.0f} s")
    for report in reports:
        print(f"report:  {report.resolve()}")
    _print_catalog(data)


class _Version(argparse.Action):
    """--version: vlf's and its engines' versions, read from the installed packages' metadata
    (no import: Dagster alone would take two seconds)."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        from importlib.metadata import PackageNotFoundError, version

        def of(package: str) -> str:
            try:
                return version(package)
            except PackageNotFoundError:
                return "not installed"

        engines = ", ".join(f"{name} {of(name)}" for name in ("dagster", "duckdb", "pyarrow"))
        print(f"vlf {of('vlf_dagster')} (SiLK 3.19.1's tools and file formats; {engines})")
        parser.exit()


UI_STOP_SECONDS = 30  # how long `vlf ui` waits for `dagster dev` to shut down before killing what is left


def cmd_ui(args) -> int:
    """`dagster dev` over the data directory, stopped cleanly by SIGTERM as by Ctrl-C.

    `dagster dev` shuts its webserver, daemon and code servers down on SIGINT but ignores SIGTERM,
    and `make ui` passes a SIGTERM on to it: so it runs in its own process group and both signals
    reach it as SIGINT; whatever still runs after UI_STOP_SECONDS is killed."""
    import shutil
    import signal
    import subprocess

    from .orchestration.runs import ensure_instance_home

    data = _data_dir(args)
    home = ensure_instance_home(args.dagster_home)
    env = {**os.environ, "VLF_DATA_DIR": str(data.resolve()), "DAGSTER_HOME": str(home)}
    dagster = shutil.which("dagster", path=str(Path(sys.executable).parent)) or "dagster"
    workspace = Path(__file__).resolve().parent.parent / "workspace.yaml"
    print(f"Dagster UI on http://{args.host}:{args.port} (instance {home}, data {data}); stop with Ctrl-C or SIGTERM",
          flush=True)
    child = subprocess.Popen([dagster, "dev", "-w", str(workspace), "-h", args.host, "-p", str(args.port)], env=env,
                             process_group=0, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    stopping = []

    def stop(signum, frame):
        stopping.append(signum)
        try:
            os.killpg(child.pid, signal.SIGINT)
        except ProcessLookupError:
            pass

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while True:
        try:
            code = child.wait(UI_STOP_SECONDS if stopping else None)
            break
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
    try:
        os.killpg(child.pid, signal.SIGKILL)  # a code server or daemon left behind by its parent
    except ProcessLookupError:
        pass
    return 0 if stopping else code


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The `vlf` parser; with ``command`` (the invoked verb), only that verb's module is loaded."""
    parser = argparse.ArgumentParser(prog="vlf", description="Very-low-frequency flow analysis (SiLK-compatible toolbox + Dagster).")
    parser.add_argument("--version", action=_Version, help="print vlf's version and those of the libraries it runs on")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add_data(p):
        p.add_argument("--data-dir", help="data directory (default: $VLF_DATA_DIR or ./data)")

    def add_sim(p):
        add_data(p)
        p.add_argument("--days", type=int, default=7, help="days to simulate (default 7)")
        p.add_argument("--sources", type=int, default=20000, help="outside sources (default 20000)")
        p.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
        p.add_argument("--campaigns", type=int, default=0, metavar="N",
                       help="plant N port campaigns that start and stop (at most 6; default 0), for the "
                       "report's Transient port activity")
        p.add_argument("--returning", type=float, default=0.0, metavar="SHARE",
                       help="make SHARE (0 to 0.5; default 0) of the P2P peers, scanners, targeted probes, backscatter "
                       "and echo sources with 2 or more flows come back: their flows in 2-5 visits 1-60 days apart "
                       "(closer in a short window); the visits' times go to sim/returns.parquet")
        p.add_argument("--start", help="first hour, YYYY-MM-DDTHH:MM UTC (default: the site's start)")
        p.add_argument("--site", help="site TOML to start from (default: the packaged default)")

    def add_mat(p):
        p.add_argument("--dagster-home", help="Dagster instance folder (default: $DAGSTER_HOME or .dagster_home)")
        p.add_argument("--hours-per-run", type=int, default=None, help="hourly partitions per run (default 168: a week)")
        p.add_argument("--workers", type=int, default=None,
                       help="processes running batches of hours at once (default: 2 when there are 4 batches or more)")

    p = sub.add_parser("simulate", help="simulate a site: hourly landing files and a ground truth")
    add_sim(p)
    p.set_defaults(func=cmd_simulate)
    p = sub.add_parser("materialize", help="materialize every asset of the site's window through Dagster")
    add_data(p)
    add_mat(p)
    p.set_defaults(func=cmd_materialize)
    p = sub.add_parser("demo", help="simulate, then materialize everything and print where the report is")
    add_sim(p)
    add_mat(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("ui", help="the Dagster UI (dagster dev) over the data directory, on 127.0.0.1:3000")
    add_data(p)
    p.add_argument("--dagster-home", help="Dagster instance folder (default: $DAGSTER_HOME or .dagster_home)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=3000, help="port (default 3000)")
    p.set_defaults(func=cmd_ui)

    p = sub.add_parser("demo-real", help="import real flow files and run the whole study on them")
    p.add_argument("files", nargs="+", help="nfcapd, nfdump csv, Argus binetflow, Zeek conn.log or rwcut text files")
    p.add_argument("--internal", action="append", required=True, metavar="CIDR",
                   help="the monitored network (repeatable), e.g. 147.32.0.0/16")
    p.add_argument("--format", default="auto", help="input format (default: sniffed), as `vlf import --format`")
    add_data(p)
    add_mat(p)
    p.set_defaults(func=cmd_demo_real)

    from .verbs import register_all

    register_all(sub, only=command)
    return parser


def _is_user_error(exc: BaseException) -> bool:
    """Errors our modules raise about their input (ValueError subclasses) print as one line."""
    return isinstance(exc, VerbError) or (
        isinstance(exc, ValueError) and type(exc).__module__.startswith("vlf_dagster")
    )


# Options whose value is optional (SiLK's `--opt[=VALUE]`): a following file name is not a value.
OPTIONAL_VALUE_OPTIONS = {"--bin-ips": "linear", "--network-structure": "TS", "--sort-counters": "decreasing", "--cidr-blocks": "1"}
# ... and, per verb, those that as in SiLK take a value only when it is attached with `=`: the next
# word is always an input (`vlf filter --print-statistics flows.parquet` reads flows.parquet).
ATTACHED_VALUE_ONLY = {"filter": {"--print-statistics": "stderr", "--print-volume-statistics": "stderr"},
                       "setbuild": {"--ip-ranges": "-"}}


def _bind_optional_values(argv: list[str]) -> list[str]:
    attached_only = ATTACHED_VALUE_ONLY.get(argv[0], {}) if argv else {}
    out = []
    for i, token in enumerate(argv):
        following = argv[i + 1] if i + 1 < len(argv) else None
        prefix_of = [o for o in attached_only if o.startswith(token)] if token.startswith("--") and "=" not in token else []
        if len(prefix_of) == 1:  # the option or an abbreviation of it, as argparse and SiLK accept
            token = f"{prefix_of[0]}={attached_only[prefix_of[0]]}"
        elif token in OPTIONAL_VALUE_OPTIONS and (following is None or following == "-" or following.startswith("-")
                                                  or Path(following).exists()):
            token = f"{token}={OPTIONAL_VALUE_OPTIONS[token]}"
        out.append(token)
    return out


# Commands that run Dagster: they exit normally so the instance's atexit cleanup runs.
DAGSTER_COMMANDS = frozenset({"materialize", "demo", "demo-real"})


def main(argv: list[str] | None = None) -> int:
    return _run_command(argv)[1]


def _run_command(argv: list[str] | None) -> tuple[str, int]:
    argv = _bind_optional_values(list(sys.argv[1:] if argv is None else argv))
    parser = build_parser(argv[0] if argv else None)
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # the verb's own usage, not the top level's
        verbs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        verbs.choices[args.command].error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        result = args.func(args)
    except VerbError as exc:
        print(f"vlf {args.command}: {exc}", file=sys.stderr)
        return args.command, 1
    except BrokenPipeError:
        # the reader went away (e.g. `| head`): stop quietly, as SiLK tools do
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return args.command, 0
    except OSError as exc:
        # the file system said no (a data folder that is a file, read-only, a full disk): one line
        # naming the path; whatever was written before is complete (every write is a rename)
        where = f": {exc.filename}" if exc.filename else ""
        print(f"vlf {args.command}: {exc.strerror or exc}{where}", file=sys.stderr)
        return args.command, 1
    except Exception as exc:
        if _is_user_error(exc):
            print(f"vlf {args.command}: {exc}", file=sys.stderr)
            return args.command, 1
        raise
    return args.command, result if isinstance(result, int) else 0


class _PandasUnavailable:
    """An import finder under which ``import pandas`` fails.

    pyarrow imports pandas on its first ``pa.array()`` call, only to ask whether the argument is a
    pandas object: 0.3 s of every toolbox verb's start-up (more than the work of many).  No verb
    hands pyarrow a pandas object, so a verb's process runs with pandas unavailable and pyarrow
    takes its pandas-free path.  Only the console entry point does this: a process that goes on to
    run Dagster or the report (which use pandas) must not.
    """

    def find_spec(self, name, path=None, target=None):
        if name == "pandas" or name.startswith("pandas."):
            raise ModuleNotFoundError(f"No module named {name!r} (not loaded by toolbox verbs)", name=name)
        return None


def without_pandas() -> None:
    """Make ``import pandas`` fail in this process (a toolbox verb's; see :class:`_PandasUnavailable`)."""
    if "pandas" not in sys.modules and not any(isinstance(f, _PandasUnavailable) for f in sys.meta_path):
        sys.meta_path.insert(0, _PandasUnavailable())


def run() -> None:
    """The ``vlf`` console entry point.

    Toolbox verbs leave through ``os._exit`` once their output is flushed: pyarrow's and DuckDB's
    native thread pools can abort the process while Python tears down (SIGABRT, "terminate called
    without an active exception", apache/arrow#34314), which would turn a finished command into a
    failure in a shell pipeline.  Every output file is already closed and renamed by then.
    """
    named = next((a for a in sys.argv[1:] if not a.startswith("-")), "")  # the top-level parser takes no values
    if named in DAGSTER_COMMANDS:
        sys.exit(_run_command(None)[1])
    from .verbs import VERB_MODULES

    if named in VERB_MODULES:
        without_pandas()
    try:
        code = _run_command(None)[1]
    except Exception:  # a bug, not bad input: the traceback, then exit 1 (not a teardown abort)
        traceback.print_exc()
        code = 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (BrokenPipeError, ValueError):
            pass
    os._exit(code)


if __name__ == "__main__":
    run()
