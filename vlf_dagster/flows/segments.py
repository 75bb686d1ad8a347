"""Window artifacts that change by source: a base file, a delta file, and the base rows the delta
replaces, so that a refresh writes what changed, not the whole window.

A segmented artifact is a directory::

    <name>/manifest.json          which files are current (rewritten atomically, last)
    <name>/base-<g>.parquet       every row as of the last full write (generation g)
    <name>/removed-<g>.parquet    base rows (their row numbers) that no longer hold
    <name>/delta-<g>.parquet      the current rows of every source changed since the base
    <name>/changes-<g>.parquet    the sources that generation g changed (the change log)
    <name>/summary_<s>-<g>.parquet  row counts by some columns (a :class:`Summary`), if declared

Its rows are ``base minus removed, then delta`` (:meth:`Segmented.relation_sql`).  Every row
belongs to one source, named by a key of two SQL expressions over the row (an IPv4 number and an
IPv6 address, NULL for IPv4).  :meth:`Segmented.apply` replaces the rows of some sources: it marks
their base rows removed and rewrites the small delta with their new rows.  Consumers ask
:meth:`Segmented.changes_since` which sources changed after the generation they last read, and
redo only those; ``None`` means everything may have changed (a full write, or a log they fell
behind).  Files of the previous generation are kept so that a reader (or a catalog view) that
bound them a moment ago still finds them.

A writer may declare :class:`Summary` tables: row counts by a few columns (port, category, ...)
that report tables read instead of the rows.  Counts are sums over rows, so a refresh keeps them
from the changed sources' old and new rows alone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .schema import ipv6_words
from .sets import IPSet
from .sql import ident, path_literal, path_list
from .storage import write_parquet, write_parquet_batches, write_text
from . import duck

MANIFEST = "manifest.json"
VERSION = 1
CHANGE_LOG_LENGTH = 96  # generations a consumer may fall behind before it must redo everything
# When the delta and the removed rows pass this share of the base, the next refresh folds them
# into a new base: reads and refreshes stay as cheap as the first ones, and the fold (a rewrite of
# the window's rows) comes once per that many changed rows, not at every refresh.
COMPACT_SHARE = 0.25
CHANGES_SCHEMA = pa.schema([("ip", pa.uint64()), ("ipv6", pa.binary())])
ROW_COLUMN = "row"


class SegmentError(ValueError):
    """A segmented artifact that is missing or unreadable."""


@dataclass(frozen=True)
class SourceKey:
    """How a row names its source: SQL expressions for its IPv4 number and its IPv6 address
    (NULL for IPv4), with ``{t}`` standing for the row's table alias."""

    ip: str = "{t}.sIP"
    ipv6: str = "{t}.sIPv6"

    def joins(self, row: str, key: str) -> str:
        """Join condition of a row (alias ``row``) with a key table (alias ``key``)."""
        ip, ipv6 = (e.replace("{t}", row) for e in (self.ip, self.ipv6))
        return f"{ip} = {key}.ip AND {ipv6} IS NOT DISTINCT FROM {key}.ipv6"


SOURCE_IS_SIP = SourceKey("{t}.sIP", "{t}.sIPv6")
SOURCE_IS_DIP = SourceKey("{t}.dIP", "{t}.dIPv6")


def rows_of_sources(relation: str, key: SourceKey, keys: pa.Table, *, order_by: str | None = None) -> pa.Table:
    """The rows of ``relation`` (SQL) whose source (``key``) is among ``keys`` (ip, ipv6)."""
    with duck.connect() as con:
        con.register("wanted", keys)
        order = f" ORDER BY {order_by}" if order_by else ""
        return con.sql(f"SELECT t.* FROM ({relation}) t SEMI JOIN wanted w ON {key.joins('t', 'w')}{order}").to_arrow_table()


def is_segmented(path: str | Path) -> bool:
    return (Path(path) / MANIFEST).is_file()


def relation_sql(source: str | Path | Sequence[str | Path], *, union_by_name: bool = True) -> str:
    """A query of a table source: a segmented artifact (its directory), or Parquet file(s)."""
    paths = [source] if isinstance(source, (str, Path)) else list(source)
    if len(paths) == 1 and is_segmented(paths[0]):
        return Segmented(Path(paths[0])).relation_sql()
    if any(is_segmented(p) for p in paths):
        return " UNION ALL BY NAME ".join(f"SELECT * FROM ({relation_sql(p)})" for p in paths)
    options = ", union_by_name = true" if union_by_name else ""
    return f"SELECT * FROM read_parquet({path_list([str(p) for p in paths])}{options})"


@dataclass(frozen=True)
class Summary:
    """Row counts of a segmented artifact by ``keys``.  ``select`` is SQL over the relation
    ``summarized`` (the rows) giving the key columns of each counted row, once per count: a
    filter, or a UNION ALL that counts a row under two keys."""

    name: str
    keys: tuple[str, ...]
    select: str

    def counts_sql(self, rows: str, sign: int = 1) -> str:
        keys = ", ".join(ident(k) for k in self.keys)
        return (f"WITH summarized AS ({rows}) SELECT {keys}, ({int(sign)} * count(*))::BIGINT AS n "
                f"FROM ({self.select}) GROUP BY ALL")

    def file(self, generation: int) -> str:
        return f"summary_{self.name}-{generation:08d}.parquet"


@dataclass
class Segmented:
    directory: Path
    key: SourceKey = SOURCE_IS_SIP
    summaries: tuple[Summary, ...] = ()  # kept by the writer's write_full and apply

    def __post_init__(self):
        self.directory = Path(self.directory)

    # --- reading ------------------------------------------------------------------------------

    def manifest(self) -> dict | None:
        path = self.directory / MANIFEST
        try:
            manifest = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise SegmentError(f"{path}: unreadable manifest ({exc})") from None
        if manifest.get("version") != VERSION:
            return None
        return manifest

    def _manifest(self) -> dict:
        manifest = self.manifest()
        if manifest is None:
            raise SegmentError(f"{self.directory}: no segmented artifact here (no {MANIFEST})")
        return manifest

    def exists(self) -> bool:
        return self.manifest() is not None

    @property
    def generation(self) -> int:
        return int(self._manifest()["generation"])

    @property
    def rows(self) -> int:
        return int(self._manifest()["rows"])

    @property
    def extra(self) -> dict:
        return dict(self._manifest().get("extra", {}))

    def _path(self, name: str | None) -> Path | None:
        return None if name is None else self.directory / name

    def files(self) -> list[Path]:
        """The Parquet files holding the current rows (base, then delta)."""
        m = self._manifest()
        return [p for p in (self._path(m["base"]), self._path(m["delta"])) if p is not None]

    @property
    def base(self) -> Path:
        return self._path(self._manifest()["base"])

    def schema(self) -> pa.Schema:
        return pq.read_schema(self.base).remove_metadata()

    def summary(self, name: str) -> Path | None:
        """The Parquet file of the summary ``name`` (keys, n), or None when the writer keeps none."""
        manifest = self.manifest()
        file = (manifest or {}).get("summaries", {}).get(name)
        return None if file is None else self.directory / file

    def relation_sql(self, manifest: dict | None = None, *, row_numbers: bool = False) -> str:
        """A query of the artifact's current rows: the base without its removed rows, then the
        delta.  With ``row_numbers``, each row gets a stable ``_row`` (its file and position)."""
        m = manifest or self._manifest()
        base, removed, delta = (self._path(m[k]) for k in ("base", "removed", "delta"))
        number = lambda i, alias: f", ({i}::BIGINT << 40) + {alias}.file_row_number AS _row" if row_numbers else ""  # noqa: E731
        sql = (f"SELECT b.* EXCLUDE (file_row_number){number(0, 'b')} "
               f"FROM read_parquet({path_literal(str(base))}, file_row_number = true) b")
        if removed is not None:
            sql += f" ANTI JOIN read_parquet({path_literal(str(removed))}) r ON b.file_row_number = r.{ROW_COLUMN}"
        if delta is not None:
            sql += (f" UNION ALL BY NAME SELECT d.* EXCLUDE (file_row_number){number(1, 'd')} "
                    f"FROM read_parquet({path_literal(str(delta))}, file_row_number = true) d")
        return sql

    def rows_of(self, keys: pa.Table, *, row_numbers: bool = False) -> pa.Table:
        """The current rows of the sources among ``keys`` (with ``_row`` when ``row_numbers``)."""
        return rows_of_sources(self.relation_sql(row_numbers=row_numbers), self.key, keys)

    def read(self, columns: list[str] | None = None) -> pa.Table:
        """The current rows as one table (base order, then delta order)."""
        m = self._manifest()
        if m["removed"] is None and m["delta"] is None:
            return pq.read_table(self.base, columns=columns, pre_buffer=False)
        with duck.connect() as con:
            select = ", ".join(ident(c) for c in columns) if columns else "*"
            table = con.sql(f"SELECT {select} FROM ({self.relation_sql(m)})").to_arrow_table()
        return table.cast(self.schema() if columns is None else pa.schema([self.schema().field(c) for c in columns]))

    def changes_since(self, generation: int | None) -> pa.Table | None:
        """The sources changed after ``generation`` (ip, ipv6), or None when everything may have:
        no generation given, a full write since, or a change log that no longer reaches back."""
        m = self.manifest()
        if m is None or generation is None or generation > m["generation"]:
            return None
        log = {int(e["generation"]): e["keys"] for e in m["changes"]}
        wanted = range(generation + 1, m["generation"] + 1)
        if any(g not in log or log[g] is None for g in wanted):
            return None
        tables = [pq.read_table(self.directory / log[g]) for g in wanted]
        if not tables:
            return CHANGES_SCHEMA.empty_table()
        with duck.connect() as con:
            con.register("changes", pa.concat_tables(tables))
            return con.sql("SELECT DISTINCT ip, ipv6 FROM changes ORDER BY ip, ipv6").to_arrow_table().cast(CHANGES_SCHEMA)

    # --- writing ------------------------------------------------------------------------------

    def write_full(self, write_base: Callable[[Path], object], extra: dict | Callable[[Path], dict] | None = None) -> dict:
        """A new base written by ``write_base(path)`` (atomically, to ``path``); no delta, and
        the change log says: everything.  ``extra`` may be a function of the written base."""
        self.directory.mkdir(parents=True, exist_ok=True)
        previous = self.manifest()
        g = (previous["generation"] if previous else 0) + 1
        base = f"base-{g:08d}.parquet"
        write_base(self.directory / base)
        rows = pq.ParquetFile(self.directory / base).metadata.num_rows
        if callable(extra):
            extra = extra(self.directory / base)
        manifest = {"version": VERSION, "generation": g, "base": base, "removed": None, "delta": None,
                    "rows": rows, "base_rows": rows, "removed_rows": 0, "delta_rows": 0,
                    "extra": extra or {}, "changes": [{"generation": g, "keys": None}]}
        manifest["summaries"] = self._summaries(manifest, None)
        return self._publish(manifest, previous)

    def apply(self, changed: pa.Table, added: pa.Table, extra: dict | None = None, *,
              old_rows: pa.Table | None = None) -> dict:
        """Replace the rows of the ``changed`` sources (ip, ipv6) by ``added`` (their new rows,
        none for a source that left): their base rows are marked removed, and the delta keeps
        its other rows, then ``added``.  Every added row must belong to a changed source.
        ``old_rows``: the changed sources' current rows, when the caller has read them already
        (the summaries need them)."""
        m = self._manifest()
        g = m["generation"] + 1
        schema = self.schema()
        changed = changed.select(["ip", "ipv6"]).cast(CHANGES_SCHEMA)
        with duck.connect() as con:
            con.register("changed", changed)
            con.register("added", added)
            stray = con.sql(f"SELECT count(*) FROM added a ANTI JOIN changed c ON {self.key.joins('a', 'c')}").fetchall()[0][0]
            if stray:
                raise SegmentError(f"{self.directory}: {stray} added row(s) of sources not among the changed ones")
            changed = con.sql("SELECT DISTINCT ip, ipv6 FROM changed ORDER BY ip, ipv6").to_arrow_table().cast(CHANGES_SCHEMA)
            con.register("changed", changed)
            base = path_literal(self._path(m["base"]))
            hit = con.sql(f"SELECT b.file_row_number AS {ROW_COLUMN} FROM read_parquet({base}, file_row_number = true) b "
                          f"SEMI JOIN changed c ON {self.key.joins('b', 'c')}").to_arrow_table()
            con.register("hit", hit)
            was_removed = (f"SELECT {ROW_COLUMN} FROM read_parquet({path_literal(self._path(m['removed']))})"
                           if m["removed"] is not None else f"SELECT NULL::BIGINT AS {ROW_COLUMN} WHERE FALSE")
            removed = con.sql(f"SELECT {ROW_COLUMN}::BIGINT AS {ROW_COLUMN} FROM (SELECT * FROM hit UNION {was_removed}) "
                              "ORDER BY 1").to_arrow_table()
            kept = schema.empty_table()
            delta = f"read_parquet({path_literal(self._path(m['delta']))}, file_row_number = true) d" if m["delta"] else None
            if delta:
                kept = con.sql(f"SELECT d.* EXCLUDE (file_row_number) FROM {delta} ANTI JOIN changed c "
                               f"ON {self.key.joins('d', 'c')} ORDER BY d.file_row_number").to_arrow_table()
            if self.summaries and old_rows is None:
                # the changed sources' current rows: base rows newly removed (fetched by row
                # number, which Parquet row groups prune), then their delta rows
                rows = con.sql(f"SELECT {ROW_COLUMN} FROM hit EXCEPT {was_removed}").fetchnumpy()[ROW_COLUMN]
                wanted = ", ".join(str(int(r)) for r in rows) or "NULL"
                sql = (f"SELECT * EXCLUDE (file_row_number) FROM read_parquet({base}, file_row_number = true) "
                       f"WHERE file_row_number IN ({wanted})")
                if delta:
                    sql += f" UNION ALL SELECT d.* EXCLUDE (file_row_number) FROM {delta} SEMI JOIN changed c ON {self.key.joins('d', 'c')}"
                old_rows = con.sql(sql).to_arrow_table()
        delta = pa.concat_tables([kept.cast(schema), added.select(schema.names).cast(schema)])
        names = {k: f"{k}-{g:08d}.parquet" for k in ("removed", "delta", "changes")}
        write_parquet(removed, self.directory / names["removed"])
        write_parquet(delta, self.directory / names["delta"])
        write_parquet(changed, self.directory / names["changes"])
        log = [e for e in m["changes"] if e["generation"] > g - CHANGE_LOG_LENGTH] + [{"generation": g, "keys": names["changes"]}]
        manifest = {**m, "generation": g, "removed": names["removed"], "delta": names["delta"],
                    "rows": m["base_rows"] - removed.num_rows + delta.num_rows, "removed_rows": removed.num_rows,
                    "delta_rows": delta.num_rows, "extra": {**m.get("extra", {}), **(extra or {})}, "changes": log}
        manifest["summaries"] = self._summaries(manifest, m, added, old_rows)
        if removed.num_rows + delta.num_rows > COMPACT_SHARE * max(m["base_rows"], 1):
            manifest = self._compacted(manifest)
        return self._publish(manifest, m)

    def _summaries(self, manifest: dict, previous: dict | None, added: pa.Table | None = None,
                   old_rows: pa.Table | None = None) -> dict:
        """Write each declared summary of ``manifest``'s rows: the previous counts less those of
        ``old_rows``, plus those of ``added``; counted over every row when there are no previous
        counts (a full write, or a summary declared since)."""
        kept = (previous or {}).get("summaries", {})
        out = {}
        with duck.connect() as con:
            for summary in self.summaries:
                keys = ", ".join(ident(k) for k in summary.keys)
                if summary.name in kept and previous is not None:
                    if not (added is not None and added.num_rows) and not (old_rows is not None and old_rows.num_rows):
                        out[summary.name] = kept[summary.name]  # nothing changed: the same file
                        continue
                    parts = [f"SELECT {keys}, n FROM read_parquet({path_literal(self._path(kept[summary.name]))})"]
                    for name, rows, sign in (("added_rows", added, 1), ("old_rows", old_rows, -1)):
                        if rows is not None and rows.num_rows:
                            con.register(name, rows)
                            parts.append(f"SELECT * FROM ({summary.counts_sql(f'SELECT * FROM {name}', sign)})")
                    sql = (f"SELECT {keys}, sum(n)::BIGINT AS n FROM ({' UNION ALL '.join(parts)}) "
                           "GROUP BY ALL HAVING sum(n) <> 0 ORDER BY ALL")
                else:
                    sql = f"SELECT * FROM ({summary.counts_sql(self.relation_sql(manifest))}) ORDER BY ALL"
                file = summary.file(manifest["generation"])
                write_parquet(con.sql(sql).to_arrow_table(), self.directory / file)
                out[summary.name] = file
        return out

    def _compacted(self, manifest: dict) -> dict:
        """The same rows as one new base (base order, then delta order); the change log keeps its
        entries, since no source's rows changed by folding them."""
        base = f"base-{manifest['generation']:08d}.parquet"
        schema = self.schema()
        with duck.connect() as con:
            reader = con.sql(f"SELECT * FROM ({self.relation_sql(manifest, row_numbers=True)}) ORDER BY _row"
                             ).fetch_record_batch(1 << 20)
            write_parquet_batches((pa.Table.from_batches([b]).drop_columns(["_row"]).cast(schema) for b in reader),
                                  self.directory / base, schema)
        return {**manifest, "base": base, "removed": None, "delta": None, "base_rows": manifest["rows"],
                "removed_rows": 0, "delta_rows": 0}

    def touch(self, extra: dict | None = None) -> dict:
        """A new generation with no change (an empty change-log entry), e.g. to record new ``extra``."""
        return self.apply(CHANGES_SCHEMA.empty_table(), self.schema().empty_table(), extra)

    def _publish(self, manifest: dict, previous: dict | None) -> dict:
        write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n", self.directory / MANIFEST)
        # keep what this generation and the previous one read: a reader (or a catalog view) that
        # bound the previous manifest a moment ago still finds its files
        keep = {e["keys"] for e in manifest["changes"]}
        for m in (manifest, previous or {}):
            keep |= {m.get(k) for k in ("base", "removed", "delta")} | set(m.get("summaries", {}).values())
        for path in self.directory.glob("*-*.parquet"):
            if path.name not in keep:
                path.unlink(missing_ok=True)
        return manifest


# --- sources as key tables ----------------------------------------------------------------------


def keys_of_set(ipset: IPSet) -> pa.Table:
    """The members of an IP set as a key table (ip, ipv6): IPv4 members with a NULL ipv6, IPv6
    members with ip 0, as flow records carry them."""
    v4 = pa.table({"ip": pa.array(ipset.ipv4_array().astype(np.uint64)), "ipv6": pa.nulls(len(ipset.v4), pa.binary())})
    v6 = pa.table({"ip": pa.array(np.zeros(len(ipset.v6), np.uint64)), "ipv6": ipset.ipv6_array().cast(pa.binary())})
    return pa.concat_tables([v4.cast(CHANGES_SCHEMA), v6.cast(CHANGES_SCHEMA)])


def set_of_keys(keys: pa.Table) -> IPSet:
    """The sources of a key table as an IP set."""
    v6_rows = keys.column("ipv6").is_valid().to_numpy(zero_copy_only=False)
    v4 = IPSet.from_ipv4(keys.column("ip").to_numpy()[~v6_rows].astype(np.uint32))
    if not v6_rows.any():
        return v4
    hi, lo = ipv6_words(keys.column("ipv6").filter(pa.array(v6_rows)))
    return v4 | IPSet.from_ipv6_words(hi, lo)
