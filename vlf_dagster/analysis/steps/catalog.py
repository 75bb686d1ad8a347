"""The SQL catalog: one DuckDB file of views over the archive, the bags and the study's flows.

Views read the Parquet files when a query runs, so the catalog stays current as hours land and
partitions are re-materialized (every write is a rename).  IP sets are roaring files DuckDB cannot
read: they are copied in as a table each time the catalog is refreshed.  Readers open the file
read-only (:func:`connect`), any number at once; the refresh builds a new file and renames it into
place, so a reader never sees a half-built catalog.

Paths inside the views are absolute: move the data folder, refresh the catalog.
"""

from __future__ import annotations

import glob
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa

from ... import artifacts as A
from ...flows import duck
from ...flows.flowtypes import FLOWTYPES
from ...flows.ingest import QUARANTINE_SCHEMA
from ...flows.schema import FLOW_SCHEMA
from ...flows.sets import IPSet
from ...flows.sql import glob_escaped, ident, literal
from ...flows.segments import Segmented, is_segmented
from ...flows.storage import ParquetRowCounts, atomic_path, complete_publishes
from .traffic import PORT_SCHEMA, VOLUME_SCHEMA
from .profiles import PROFILE_SCHEMA, RETIREMENT_SCHEMA
from .scanners import WINDOW_SCHEMA as SCANNERS_SCHEMA

CATALOG_FILE = A.SQL_CATALOG.file

# Hourly files keep their hour in the file name (hour=HH.parquet); hive partitioning only reads folders.
_HOUR_OF_FILE = (
    "CAST(regexp_extract(filename, 'dt=([0-9-]{10})', 1) || ' ' || "
    "regexp_extract(filename, 'hour=([0-9]{2})', 1) || ':00:00' AS TIMESTAMP) AS hour"
)
_MONTH_OF_FILE = "CAST(regexp_extract(filename, 'month=([0-9-]{7})', 1) || '-01' AS DATE) AS month"


_PARTITION_COLUMNS = {A.HOURLY: _HOUR_OF_FILE, A.MONTHLY: _MONTH_OF_FILE}


@dataclass(frozen=True)
class Source:
    """One view over an artifact's files."""

    artifact: A.Artifact
    # The columns of the view, for an empty one while no file exists (the quarantine of a site
    # that never rejected a record): None for sources that exist once the window is built.
    empty_schema: pa.Schema | None = None
    view: str = ""  # the view's name where it is not the artifact's
    note: str = ""  # what the view adds to the artifact's records

    @property
    def name(self) -> str:
        return self.view or self.artifact.name

    @property
    def pattern(self) -> str:  # the files it reads, a glob under the data folder
        return self.artifact.glob()

    @property
    def description(self) -> str:
        return f"{self.artifact.description.removesuffix('.')}{self.note}." if self.note else self.artifact.description

    @property
    def segmented(self) -> bool:  # a directory kept by flows/segments.py (base, removed rows, delta)
        return self.artifact.format == "segmented"

    @property
    def partition_column(self) -> str:  # SQL that derives the partition from ``filename``
        return "" if self.artifact.format == "archive" else _PARTITION_COLUMNS.get(self.artifact.grain, "")


_HOUR = pa.field("hour", pa.timestamp("us"))
_MONTH = pa.field("month", pa.date32())


SOURCES: tuple[Source, ...] = (
    Source(A.HOURLY_FLOWS, FLOW_SCHEMA.append(pa.field("flowtype_name", pa.string())), view="flows",
           note="; flowtype_name added"),
    Source(A.QUARANTINE, QUARANTINE_SCHEMA.append(_HOUR)),
    Source(A.HOURLY_SOURCE_BAGS),
    Source(A.HOURLY_CONTACT_PAIRS),
    Source(A.MONTHLY_SOURCE_BAGS),
    Source(A.MONTHLY_CONTACT_PAIRS),
    Source(A.MONTHLY_TRAFFIC_VOLUMES, VOLUME_SCHEMA.append(_MONTH)),
    Source(A.MONTHLY_PORT_USAGE, PORT_SCHEMA.append(_MONTH)),
    Source(A.SOURCE_FLOW_BAG),
    Source(A.SOURCE_HOUR_COUNT_BAG),
    Source(A.SOURCE_DESTINATION_COUNT_BAG),
    Source(A.VLF_FLOWS),
    Source(A.VLF_OUTBOUND_FLOWS),
    Source(A.MATCHED_VLF_FLOWS),
    Source(A.VLF_CATEGORIES),
    Source(A.SCANNERS, SCANNERS_SCHEMA),  # rwscan's rows by month: vlf sql "SELECT ... FROM scanners"
    Source(A.MONTHLY_SOURCE_PROFILES, PROFILE_SCHEMA.append(_MONTH)),
    Source(A.RETIREMENT_SET, RETIREMENT_SCHEMA),
)

SETS: tuple[A.Artifact, ...] = (A.VLF_F_SET, A.VLF_D_SET, A.VLF_FD_SET, A.ACTIVE_INSIDE_SET)

# the assets the catalog reads: what the sql_catalog asset depends on
VIEWED: list[str] = [s.artifact.name for s in SOURCES if s.artifact.asset] + [a.name for a in SETS]

# Readable forms of the stored encodings, usable in any query on the catalog.
MACROS = (
    "CREATE MACRO ipv4_text(a) AS CASE WHEN a IS NOT NULL THEN "
    "concat_ws('.', (a >> 24) & 255, (a >> 16) & 255, (a >> 8) & 255, a & 255) END",
    # The full (uncompressed) eight-group form: exact, if not the shortest spelling.
    "CREATE MACRO ipv6_text(b) AS "
    "array_to_string([lower(substr(hex(b), i, 4)) FOR i IN range(1, 33, 4)], ':')",
    "CREATE MACRO ip_text(v4, v6) AS CASE WHEN v6 IS NULL THEN ipv4_text(v4) ELSE ipv6_text(v6) END",
    "CREATE MACRO flag_text(f) AS concat("
    + ", ".join(f"CASE WHEN f & {bit} <> 0 THEN '{letter}' ELSE '' END" for letter, bit in
                zip("FSRPAUEC", (1, 2, 4, 8, 16, 32, 64, 128)))
    + ")",
    "CREATE MACRO ms_time(ms) AS make_timestamp(ms * 1000)",
)


class CatalogError(ValueError):
    pass


@dataclass(frozen=True)
class CatalogSummary:
    path: Path
    objects: dict[str, int]  # view or table name -> rows at refresh time
    missing: tuple[str, ...]  # sources with no file yet (no view)


def _flowtype_case() -> str:
    whens = " ".join(f"WHEN {i} THEN {literal(name)}" for i, (name, _) in sorted(FLOWTYPES.items()))
    return f"CASE flowtype {whens} END AS flowtype_name"


def _view_sql(source: Source, base: Path) -> str:
    # Every file of a source is written by one function with one schema: no union_by_name, which
    # would read all ~80,000 archive footers whenever the view is bound (at refresh and per query).
    if source.artifact is A.VLF_CATEGORIES and A.SCANNERS.path(base).exists():
        # rwscan's verdict beside each VLF flow, so the VLF tables read with and without scanners
        scanners = literal(glob_escaped(A.SCANNERS.path(base)))
        return (f"SELECT *, (sIPv6 IS NULL AND sIP IN (SELECT sIP FROM read_parquet({scanners}))) AS scanner "
                f"FROM ({Segmented(base / source.pattern).relation_sql()})")
    if source.segmented:
        return Segmented(base / source.pattern).relation_sql()
    files = literal(f"{glob_escaped(base)}/{source.pattern}")  # the folder read by name, the pattern as one
    if source.artifact is A.HOURLY_FLOWS:  # the archive: flowtypes by name too
        return f"SELECT *, {_flowtype_case()} FROM read_parquet({files})"
    if source.partition_column:
        return (f"SELECT * EXCLUDE (filename), {source.partition_column} "
                f"FROM read_parquet({files}, filename = true, hive_partitioning = false)")
    return f"SELECT * FROM read_parquet({files})"


ROW_CACHE = ".row_counts.parquet"  # rows of every file counted at an earlier refresh, by size and mtime


def _copy_sets(con, base: Path) -> list[str]:
    """Copy the members of each set file into table ``ip_sets`` (set_name, ipv4, ipv6): IPv4
    members pass to DuckDB as one zero-copy uint32 column each (building whole Arrow rows with
    a name and a null IPv6 per member took ~10 s for the 34 M members of the seed's size)."""
    con.execute("CREATE TABLE ip_sets (set_name VARCHAR, ipv4 UINTEGER, ipv6 BLOB)")
    found = []
    for artifact in SETS:
        name, path = artifact.name, artifact.path(base)
        if not path.exists():
            continue
        found.append(name)
        ipset = IPSet.read(path)
        con.register("members_v4", pa.table({"ipv4": pa.array(ipset.ipv4_array(), pa.uint32())}))
        con.register("members_v6", pa.table({"ipv6": ipset.ipv6_array().cast(pa.binary())}))
        con.execute(f"INSERT INTO ip_sets SELECT {literal(name)}, ipv4, NULL FROM members_v4")
        con.execute(f"INSERT INTO ip_sets SELECT {literal(name)}, NULL, ipv6 FROM members_v6")
        con.unregister("members_v4")
        con.unregister("members_v6")
    return found


def build_catalog(base: str | Path, path: str | Path | None = None) -> CatalogSummary:
    """Write ``catalog.duckdb`` under ``base`` (or at ``path``) atomically and describe what is in it."""
    base = Path(base).resolve()
    complete_publishes(base)  # the views glob the folders: no hour half published by a kill
    target = Path(path) if path is not None else base / CATALOG_FILE
    objects: dict[str, int] = {}
    missing: list[str] = []
    entries: list[tuple[str, str, str, str]] = []  # name, kind, description, files
    with atomic_path(target) as tmp:
        tmp.unlink()  # DuckDB creates its own file; an empty one is not a database
        # DuckDB names a database's write-ahead log by cutting its path at a "?": a folder with
        # one in its name gets a catalog built in a private temporary folder, then copied
        building = tmp if "?" not in str(tmp) else Path(tempfile.mkdtemp(prefix="vlf-catalog-")) / CATALOG_FILE
        con = duck.connect(str(building))
        try:
            for statement in MACROS:
                con.execute(statement)
            counts = ParquetRowCounts(base / ROW_CACHE)
            for source in SOURCES:
                files = [] if source.segmented else sorted(glob.glob(f"{glob.escape(str(base))}/{source.pattern}"))
                if not (is_segmented(base / source.pattern) if source.segmented else files):
                    if source.empty_schema is None:
                        missing.append(source.name)
                        continue
                    # no file yet: an empty table of the view's columns, so queries on it still work
                    con.register("no_rows", source.empty_schema.empty_table())
                    con.execute(f"CREATE TABLE {ident(source.name)} AS SELECT * FROM no_rows")
                    con.unregister("no_rows")
                    objects[source.name] = 0
                    entries.append((source.name, "table", f"{source.description} (empty: no file yet)",
                                    str(base / source.pattern)))
                    continue
                con.execute(f"CREATE VIEW {ident(source.name)} AS {_view_sql(source, base)}")
                objects[source.name] = Segmented(base / source.pattern).rows if source.segmented else counts.rows(con, files)
                entries.append((source.name, "view", source.description, str(base / source.pattern)))
            found = _copy_sets(con, base)
            objects["ip_sets"] = con.sql("SELECT count(*) FROM ip_sets").fetchall()[0][0]
            entries.append(("ip_sets", "table", "Members of the study's IP sets (set_name, ipv4 or ipv6), "
                            "copied at refresh.", ", ".join(str(A.BY_NAME[n].path(base)) for n in found)))
            for artifact in SETS:
                name, description = artifact.name, artifact.description
                if name not in found:
                    missing.append(name)
                    continue
                con.execute(f"CREATE VIEW {ident(name)} AS SELECT ipv4, ipv6 FROM ip_sets WHERE set_name = {literal(name)}")
                objects[name] = con.sql(f"SELECT count(*) FROM {ident(name)}").fetchall()[0][0]
                entries.append((name, "view", description, str(artifact.path(base))))
            con.execute("CREATE TABLE catalog_source AS SELECT ? AS data_dir", [str(base)])  # what readers may read
            con.execute("CREATE TABLE catalog (name VARCHAR, kind VARCHAR, description VARCHAR, files VARCHAR, "
                        "rows_at_refresh UBIGINT)")
            con.executemany("INSERT INTO catalog VALUES (?, ?, ?, ?, ?)",
                            [(n, k, d, f, objects[n]) for n, k, d, f in entries])
            con.execute("CHECKPOINT")
            counts.save()
        finally:
            con.close()
            Path(f"{building}.wal").unlink(missing_ok=True)  # also when the build failed half-way
        if building != tmp:
            shutil.copyfile(building, tmp)
            shutil.rmtree(building.parent, ignore_errors=True)
    return CatalogSummary(target, objects, tuple(missing))


def connect(base: str | Path, path: str | Path | None = None) -> duckdb.DuckDBPyConnection:
    """Open the catalog read-only (any number of readers may do so while it is refreshed)."""
    target = Path(path) if path is not None else Path(base) / CATALOG_FILE
    if not target.exists():
        raise CatalogError(f"{target}: no catalog yet; materialize the sql_catalog asset (make demo does)")
    try:
        con = duck.connect(str(target), read_only=True)
        found = con.sql("SELECT data_dir FROM catalog_source").fetchall() if _has_table(con, "catalog_source") else []
    except duckdb.Error as exc:
        raise CatalogError(f"{target}: not a DuckDB catalog ({str(exc).splitlines()[0]})") from None
    # Queries read the data folder's files and nothing else: no other file, no write, no setting
    # changed back (the views name the folder glob-escaped, so both spellings are allowed).
    folder = Path(found[0][0]) if found else target.resolve().parent
    complete_publishes(folder)  # the views glob the archive's folders: no hour half published by a kill
    allowed = [f"{folder}/", f"{glob_escaped(folder)}/"]
    con.execute(f"SET allowed_directories = [{', '.join(literal(a) for a in allowed)}]")
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    return con


def _has_table(con, name: str) -> bool:
    return bool(con.sql(f"SELECT count(*) FROM duckdb_tables() WHERE table_name = {literal(name)}").fetchall()[0][0])
