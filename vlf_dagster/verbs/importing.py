"""`vlf import`: other tools' flow exports into the landing area, every line accounted for."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from .common import HelpFormatter, VerbError

DESCRIPTION = """\
Import flow records exported by other tools into the landing area, where the pipeline's hourly
archive picks them up: landing/dt=YYYY-MM-DD/hour=HH/<source>.parquet, one file per hour in
which flows start.  Lines that cannot be read are kept with FILE:LINE and a reason in
quarantine/import/<source>.parquet; header, comment and summary lines are counted.  <source> is
the file's base name (or --source): importing under the same name again replaces what that name
landed before, and files with the same name in one run land together.

Formats (--format, default auto: sniffed from the first lines):
{formats}

Examples:
  vlf import capture.binetflow
  vlf import --format zeek --source sensor1 conn.*.log
  vlf import --format rwcut --fields 1-10 untitled-rwcut.txt
  TZ=UTC nfdump -r nfcapd.201801121530 -o csv > flows.csv && vlf import flows.csv
"""


def _formats_help() -> str:
    """One entry per registered format, continuation lines under the first."""
    from ..flows.importers.formats import REGISTRY

    out = []
    for entry in REGISTRY:
        first, *more = entry.summary.split("\n")
        out.append(f"  {entry.name:<10}  {first}")
        out.extend(" " * 14 + line for line in more)
    return "\n".join(out)


def _listed(names) -> str:
    return ", ".join(names[:-1]) + " and " + names[-1] if len(names) > 1 else "".join(names)


def register(subparsers) -> None:
    from ..flows.importers.formats import DEFAULT_OLD_TIMES, FORMATS, LOCAL_TIME_FORMATS, OLD_TIME_POLICIES

    p = subparsers.add_parser(
        "import", help="import nfdump, Argus, Zeek, rwcut or SiLK flow files into the landing area",
        description=DESCRIPTION.format(formats=_formats_help()), formatter_class=HelpFormatter,
    )
    p.add_argument("files", nargs="+", metavar="FILES", help="input files")
    p.add_argument("--format", default="auto", choices=("auto", *FORMATS), help="input format (default: auto)")
    p.add_argument("--data-dir", metavar="DIR", help="data directory (default: $VLF_DATA_DIR or ./data)")
    p.add_argument("--source", metavar="NAME",
                   help="landing name for all FILES together (default: each file's base name)")
    p.add_argument("--fields", metavar="FIELDS", help="rwcut text without a title line: its columns (rwcut --fields)")
    p.add_argument("--column-separator", metavar="C", help="rwcut text: the separator (default: '|' or tab, sniffed)")
    keep = [name for name, policy in DEFAULT_OLD_TIMES.items() if policy == "keep"]
    p.add_argument("--old-times", choices=OLD_TIME_POLICIES,
                   help=f"records starting before 1990: keep (default for {_listed(keep)}: relative capture times) or "
                        "quarantine (default otherwise: an exporter clock that was not set)")
    p.add_argument("--tz", metavar="ZONE",
                   help=f"read the date-time text of {_listed(LOCAL_TIME_FORMATS)} input as wall-clock time in this "
                        "IANA zone, e.g. Europe/Prague (default: UTC); a repeated DST hour takes its first occurrence, "
                        "a time inside a skipped hour is quarantined")
    p.add_argument("--dry-run", action="store_true", help="read and report, land nothing")
    p.set_defaults(func=run)


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")


def _hour_span(hours) -> str:
    if not hours:
        return "no hours"
    first, last = min(hours), max(hours)
    if first == last:
        return f"1 hour ({first:%Y-%m-%d %H}:00 UTC)"
    return f"{_plural(len(hours), 'hour')} ({first:%Y-%m-%d %H}:00 .. {last:%Y-%m-%d %H}:00 UTC)"


_MAIN_KEYS = ("lines", "data_lines", "skipped_lines", "quarantined_lines", "records")  # said in the first line


def describe(name: str, result) -> list[str]:
    """The per-file report lines."""
    c = result.counts
    if "lines" not in c:  # binary input (SiLK files, pcaps): records, not lines
        out = [f"{name} [{result.format}]: {_plural(result.records, 'record')}, {result.quarantined:,} quarantined; "
               f"{_hour_span(result.hours())}"]
    else:
        out = [
            f"{name} [{result.format}]: {_plural(c.get('lines', 0), 'line')} -> {_plural(result.records, 'record')} "
            f"from {c.get('data_lines', 0):,} data lines; {c.get('skipped_lines', 0):,} skipped, "
            f"{result.quarantined:,} quarantined; {_hour_span(result.hours())}"
        ]
    skipped = [f"{k.removesuffix('_lines').replace('_', ' ')} {v:,}" for k, v in c.items()
               if k.endswith(("_lines", "without_packets")) and k not in _MAIN_KEYS]
    if skipped:
        out.append("  skipped: " + ", ".join(skipped))
    notes = [f"{k.replace('_', ' ')} {v:,}" for k, v in c.items()
             if k not in _MAIN_KEYS and not k.endswith(("_lines", "without_packets"))]
    if notes:
        out.append("  notes: " + ", ".join(notes))
    reasons = result.reasons()
    if reasons:
        top = "; ".join(f"{reason} ({count:,})" for reason, count in reasons[:3])
        more = f"; {len(reasons) - 3} more reasons" if len(reasons) > 3 else ""
        out.append(f"  quarantined: {top}{more}")
    return out


def _warn_outside_window(data_dir: Path, hours: list) -> None:
    """Say which landed hours the site's window leaves out: they land, but no hourly partition
    packs them until the window (the site's start and end) takes them in.  The site is the one the
    pipeline reads for this data folder (site.resolve_site); without one there is nothing to say."""
    from ..flows.site import SiteConfigError, resolve_site, site_config_path

    if site_config_path(None, data_dir) is None:
        return
    try:
        site = resolve_site(None, data_dir)
    except SiteConfigError:
        return
    outside = sorted({h for h in hours if h < site.start or (site.end is not None and h >= site.end)})
    if outside:
        end = f"{site.end:%Y-%m-%d %H}:00" if site.end else "now (live)"
        print(f"warning: {_hour_span(outside)} lie outside the site's window {site.start:%Y-%m-%d %H}:00 .. {end} UTC "
              f"({data_dir / 'site.toml'}): they landed, but are not archived until the window takes them in",
              file=sys.stderr)


def run(args) -> int:
    from .. import progress
    from ..flows.importers.readers import check_source_name, import_file, land, source_name
    from ..flows.importers.result import ImportFormatError

    data_dir = Path(args.data_dir or os.environ.get("VLF_DATA_DIR", "data"))
    if args.source is not None:
        try:
            check_source_name(args.source)
        except ValueError as exc:
            raise VerbError(str(exc)) from None
    results = []
    for name in args.files:
        if not Path(name).is_file():
            raise VerbError(f"{name}: cannot read: no such file")
        try:
            with progress.shown("vlf import"):
                results.append((name, import_file(name, args.format, fields=args.fields, delimiter=args.column_separator,
                                                  old_times=args.old_times, tz=args.tz)))
        except ImportFormatError as exc:
            raise VerbError(str(exc)) from None
    for name, result in results:
        print("\n".join(describe(name, result)))
    total = sum(r.records for _, r in results)
    if args.dry_run:
        print(f"dry run: {_plural(total, 'record')} would land; nothing written")
        return 0 if total else 1
    # files landing under one name land together (a re-import of that name replaces them all)
    groups: dict[str, list] = {}
    for name, result in results:
        groups.setdefault(args.source or source_name(name), []).append((name, result))
    landed = 0
    for source, named in groups.items():
        group = [result for _, result in named]
        if not sum(r.records for r in group):
            # a failed import leaves what an earlier import of this name landed (its input file
            # is untouched: nothing is lost)
            print(f"{', '.join(n for n, _ in named)}: no input line gave a record; nothing landed as {source}.parquet, "
                  "an earlier import under that name is kept", file=sys.stderr)
            continue
        outcome = land(group, data_dir, source)
        landed += outcome.records
        removed = f", removed {len(outcome.removed)} stale" if outcome.removed else ""
        print(f"landed {_plural(outcome.records, 'record')} as {source}.parquet in {_hour_span(list(outcome.hours))} "
              f"under {data_dir / 'landing'}{removed}; quarantine: {outcome.quarantine}")
    if not landed:
        raise VerbError(f"nothing landed from {', '.join(args.files)}: no input line gave a record")
    _warn_outside_window(data_dir, [h for _, r in results for h in r.hours()])
    return 0
