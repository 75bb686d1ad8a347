"""The retirement set: every tracked source judged by the return model, refreshed source by source.

At the data's last midnight (the final cutoff) every source seen before it gets the model's
probability of returning within the horizon; those below ``retire_below`` are retired.  The
whole state is 12.7 M sources at the study's size (96 s to judge), so a refresh judges again only
the sources whose profile rows changed: each profile file's per-source digests are kept, a changed
file's are compared with its new ones, and only the sources that differ are read and predicted
again; the others keep their kept prediction (the same model on the same rows gives the same
number).  A new model, cutoff, GeoIP database or settings judges everyone again.
"""

from __future__ import annotations

import hashlib
import json
import pickle
from datetime import datetime
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ...flows import duck
from ...flows.site import ReturnSettings
from ...flows.storage import fingerprint, write_parquet, write_text
from .profiles import RETIREMENT_SCHEMA
from .returns import MODEL_FILE, ProfileDigests, ReturnModel, _countries, _day_text, _profiles, cutoff_rows, cutoffs_of, last_day

FACTS_KEY = b"vlf.retirement"  # the retirement set's facts (cutoff, tracked sources, ...) in its Parquet metadata
CHUNK_SOURCES = 1_000_000  # sources judged at once: the state's features held in memory (~250 MB)
PREDICTIONS_SCHEMA = pa.schema([*(RETIREMENT_SCHEMA.field(n) for n in ("sIP", "sIPv6", "first_ms", "last_ms", "flows", "p_return"))])
_ORDER = "ORDER BY sIP, sIPv6 NULLS FIRST"
_SAME_SOURCE = "a.sIP = b.sIP AND a.sIPv6 IS NOT DISTINCT FROM b.sIPv6"


def retirement_facts(path: Path) -> dict:
    return json.loads((pq.read_metadata(path).metadata or {}).get(FACTS_KEY, b"{}"))


def _address_ranges(con, relation: str, sources: int) -> list[tuple[int, int]]:
    """[lo, hi) ranges of sIP holding about CHUNK_SOURCES sources each, in address order
    (profiles are sorted by sIP: a range reads only the row groups that hold it)."""
    parts = -(-sources // CHUNK_SOURCES)
    if parts <= 1:
        return [(0, 1 << 32)]
    cuts = con.sql(f"SELECT quantile_disc(sIP, {[k / parts for k in range(1, parts)]}) "
                   f"FROM (SELECT DISTINCT sIP FROM {relation})").fetchall()[0][0]
    bounds = [0, *sorted({int(c) for c in cuts if c}), 1 << 32]
    return list(zip(bounds[:-1], bounds[1:]))


def _predicted(con, relation: str, final: int, horizon: int, model: ReturnModel, country_of) -> pa.Table:
    """The model's probability for every source of ``relation`` seen before ``final``, by address."""
    rows = cutoff_rows(con, relation, final, horizon, final)
    rows["country_code"] = _countries(rows, country_of)
    rows["p_return"] = model.p_return(rows)
    return pa.Table.from_pandas(rows[PREDICTIONS_SCHEMA.names], preserve_index=False).cast(PREDICTIONS_SCHEMA)


def _predict_all(con, profiles: Sequence[Path], final: int, horizon: int, model: ReturnModel, country_of) -> pa.Table:
    relation = _profiles(profiles)
    sources = con.sql(f"SELECT count(*) FROM (SELECT DISTINCT sIP, sIPv6 FROM {relation})").fetchall()[0][0]
    parts = [_predicted(con, f"(SELECT * FROM {relation} WHERE sIP >= {lo} AND sIP < {hi})", final, horizon, model, country_of)
             for lo, hi in _address_ranges(con, relation, sources)]
    return pa.concat_tables(parts) if parts else PREDICTIONS_SCHEMA.empty_table()


def _source_digests(con, path: Path, final: int) -> pa.Table:
    """One order-free digest per source of the file's rows before ``final``."""
    return con.sql(f"SELECT sIP, sIPv6, bit_xor(hash({ProfileDigests.COLUMNS})) AS digest FROM {_profiles([path])} "
                   f"WHERE day < {int(final)} GROUP BY ALL").to_arrow_table()


class _Kept:
    """What the last refresh left in ``state``: its basis (model, cutoff, GeoIP, files), every
    source's prediction, and each profile file's per-source digests."""

    def __init__(self, state: Path):
        self.state = Path(state)
        self.meta_path, self.predictions_path = self.state / "basis.json", self.state / "predictions.parquet"
        try:
            self.meta = json.loads(self.meta_path.read_text())
        except (OSError, ValueError):
            self.meta = {}

    def digests_path(self, profile: Path) -> Path:
        return self.state / "digests" / profile.name

    def usable(self, basis: dict) -> bool:
        return self.meta.get("basis") == basis and self.predictions_path.exists()

    def changed_sources(self, con, profiles: Sequence[Path], final: int) -> pa.Table | None:
        """The sources whose rows before ``final`` differ from the last refresh's (None: no file changed);
        the changed files' digests are kept anew."""
        files = {p.name: fingerprint(p) for p in profiles}
        old_files = self.meta.get("files", {})
        stale = [p for p in profiles if old_files.get(p.name) != files[p.name]]
        gone = [name for name in old_files if name not in files]
        if not stale and not gone:
            return None
        changed = []
        for path in stale:
            new = _source_digests(con, path, final)
            old_path = self.digests_path(path)
            old = pq.read_table(old_path) if old_path.exists() else new.schema.empty_table()
            con.register("a_new", new)
            con.register("b_old", old)
            changed.append(con.sql(
                "SELECT coalesce(a.sIP, b.sIP) AS sIP, coalesce(a.sIPv6, b.sIPv6) AS sIPv6 FROM a_new a FULL JOIN b_old b "
                f"ON {_SAME_SOURCE} WHERE a.digest IS DISTINCT FROM b.digest").to_arrow_table())
            con.unregister("a_new")
            con.unregister("b_old")
            write_parquet(new, old_path)
        for name in gone:
            old_path = self.state / "digests" / name
            if old_path.exists():
                changed.append(pq.read_table(old_path, columns=["sIP", "sIPv6"]))
                old_path.unlink()
        return pa.concat_tables([t.cast(pa.schema([("sIP", pa.uint32()), ("sIPv6", pa.binary())])) for t in changed])

    def keep_all(self, con, profiles: Sequence[Path], final: int) -> None:
        for path in profiles:
            write_parquet(_source_digests(con, path, final), self.digests_path(path))

    def record(self, basis: dict, profiles: Sequence[Path], predictions: pa.Table) -> None:
        write_parquet(predictions, self.predictions_path)
        write_text(json.dumps({"basis": basis, "files": {p.name: fingerprint(p) for p in profiles}}, sort_keys=True),
                   self.meta_path)


def _merged(con, kept: pa.Table, changed: pa.Table, fresh: pa.Table) -> pa.Table:
    """The kept predictions without the changed sources, with their fresh ones, by address."""
    con.register("kept", kept)
    con.register("changed", changed)
    con.register("fresh", fresh)
    merged = con.sql(f"SELECT * FROM (SELECT a.* FROM kept a ANTI JOIN changed b ON {_SAME_SOURCE} "
                     f"UNION ALL SELECT * FROM fresh) {_ORDER}").to_arrow_table().cast(PREDICTIONS_SCHEMA)
    for name in ("kept", "changed", "fresh"):
        con.unregister(name)
    return merged


def _write_set(predictions: pa.Table, facts: dict, retire_below: float, out: Path) -> None:
    retired = predictions.filter(pc.less(predictions.column("p_return"), retire_below))
    retired = retired.append_column("confidence", pc.subtract(1.0, retired.column("p_return"))).cast(RETIREMENT_SCHEMA)
    write_parquet(retired.replace_schema_metadata({FACTS_KEY: json.dumps(facts, sort_keys=True).encode()}), out)


def retirement_set(profiles: Sequence[Path], start: datetime, end: datetime, settings: ReturnSettings, folder: Path,
                   out: Path, country_of: Callable[[np.ndarray], np.ndarray] | None = None,
                   state: Path | None = None, country_key: str = "") -> dict:
    """Every source seen before the data's last midnight whose predicted return probability is below
    ``retire_below``, with the probability and its complement as the confidence; sorted by address.
    Its facts (the cutoff, the tracked sources, how many retired, how many judged again) ride in the
    file's metadata.  With ``state``, a refresh judges again only the sources whose rows changed."""
    model_bytes = (folder / MODEL_FILE).read_bytes()
    model = pickle.loads(model_bytes)
    profiles = sorted(Path(p) for p in profiles)
    with duck.connect() as con:
        cutoffs = cutoffs_of(start, end, last_day(con, profiles), settings.horizon_days)
        basis = {"model": hashlib.sha256(model_bytes).hexdigest(), "final": cutoffs.final, "country": country_key}
        kept = _Kept(state) if state is not None else None
        changed = None
        if model is None or not profiles:
            predictions, judged = PREDICTIONS_SCHEMA.empty_table(), 0
        elif kept is not None and kept.usable(basis):
            changed = kept.changed_sources(con, profiles, cutoffs.final)
            predictions = pq.read_table(kept.predictions_path)
            judged = 0 if changed is None else len(changed)
            if changed is None and out.exists():  # no profile file changed: neither did the set
                return {**retirement_facts(out), "judged": 0}
            if changed is not None and len(changed):
                con.register("changed_sources", changed)
                relation = (f"(SELECT a.* FROM {_profiles(profiles)} a SEMI JOIN changed_sources b ON {_SAME_SOURCE})")
                fresh = _predicted(con, relation, cutoffs.final, cutoffs.horizon, model, country_of)
                predictions = _merged(con, predictions, changed, fresh)
        else:
            predictions = _predict_all(con, profiles, cutoffs.final, cutoffs.horizon, model, country_of)
            judged = len(predictions)
            if kept is not None:
                kept.keep_all(con, profiles, cutoffs.final)
    if kept is not None and model is not None:
        kept.record(basis, profiles, predictions)
    state_size = len(predictions)
    retired = int(pc.sum(pc.less(predictions.column("p_return"), settings.retire_below)).as_py() or 0)
    facts = {"cutoff": _day_text(cutoffs.final), "state": state_size, "retired": retired,
             "shrink": retired / state_size if state_size else 0.0, "trained": model is not None,
             "retire_below": settings.retire_below}
    _write_set(predictions, facts, settings.retire_below, out)
    return {**facts, "judged": judged}
