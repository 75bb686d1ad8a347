"""Sources that will not return: a model of which outside sources are seen again (the retirement
set it judges is :mod:`.retirement`'s).

Cutoffs fall every ``horizon_days`` days from the window's first midnight.  At a cutoff ``c`` each
source seen before ``c`` is a row: its features are its history before ``c`` (from the day-by-day
profiles, :mod:`.profiles`), its label whether it is seen again in ``[c, c + horizon)``.  A label
is known only once ``c + horizon`` has passed, so a model judged at cutoff ``c_k`` is trained only
on cutoffs whose horizon ended by ``c_k``: time-ordered, never peeking ahead.

The classifier is scikit-learn's HistGradientBoostingClassifier (gradient-boosted trees: no
scaling, missing values and a categorical country handled natively, deterministic with a seed).
It is compared, on the same rows, with two rules: "a one-flow source never returns" and "a source
not seen for ``horizon`` days will not return".  Positive = will not return (what retiring acts on).
"""

from __future__ import annotations

import hashlib
import json
import pickle
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

from ...flows import duck
from ...flows.site import ReturnSettings
from ...flows.sql import NO_HIVE, path_list
from ...flows.storage import fingerprint, write_bytes, write_parquet, write_text
from ...flows.schema import MS_PER_HOUR
from .profiles import MS_PER_DAY, PROFILE_SCHEMA

FEATURES = ["flows", "packets", "bytes", "bytes_per_packet", "hours", "days", "max_destinations", "destination_days",
            "max_ports", "tcp_share", "udp_share", "icmp_share", "answered", "hours_since_last", "hours_since_first",
            "mean_gap_hours", "recent_flows", "country"]
CATEGORICAL = ["country"]
OTHER_COUNTRY, UNKNOWN_COUNTRY, TOP_COUNTRIES = 250, 251, 250  # country codes: rank among the training's top 250
SAMPLE_SPACE = 1_000_000  # sources are sampled by hash(address) % SAMPLE_SPACE < a threshold
CALIBRATION_BINS = 10
MODEL_FILE, TRAINING_FILE, METRICS_FILE, CALIBRATION_FILE = "model.pkl", "training.parquet", "metrics.json", "calibration.png"


@dataclass(frozen=True)
class Cutoffs:
    """The study's cutoffs, as day numbers (days since 1970-01-01, UTC)."""

    first: int  # the first cutoff
    horizon: int  # days between cutoffs, and the days a return is looked for
    final: int  # the day the data ends (exclusive): where the retirement set is predicted

    @property
    def label_end(self) -> int:
        """The day after the last labelled cutoff's horizon: training reads no day from here on."""
        labelled = self.labelled
        return labelled[-1] + self.horizon if labelled else self.first

    @property
    def labelled(self) -> list[int]:
        """Cutoffs whose horizon has passed: their labels are known."""
        return list(range(self.first, self.final - self.horizon + 1, self.horizon))

    def trainable_before(self, test: int) -> list[int]:
        """The cutoffs a model judged at ``test`` may learn from: their horizon ended by ``test``."""
        return [c for c in self.labelled if c + self.horizon <= test]


def cutoffs_of(start: datetime, end: datetime, last_day: int | None, horizon_days: int) -> Cutoffs:
    """Cutoffs from the window (``start``..``end``) and the last day with data (None: none)."""
    start_day = -(-int(start.timestamp() * 1000) // MS_PER_DAY)  # the first midnight at or after start
    end_day = int(end.timestamp() * 1000) // MS_PER_DAY
    final = min(end_day, last_day + 1) if last_day is not None else start_day
    return Cutoffs(start_day + horizon_days, horizon_days, max(final, start_day))


def _profiles(paths: Sequence[Path]) -> str:
    return f"read_parquet({path_list(paths)}, {NO_HIVE})"


def last_day(con, profiles: Sequence[Path]) -> int | None:
    if not profiles:
        return None
    return con.sql(f"SELECT max(day) FROM {_profiles(profiles)}").fetchall()[0][0]


def _rows_sql(relation: str) -> str:
    """Each source of ``relation`` (profile rows) seen before the cutoff $c (a day): its history's
    features and whether it is seen in [$c, $c + $h) (``returned``) or at any later day before $end
    (``returned_ever``)."""
    before = "FILTER (day < $c)"
    return f"""
        SELECT sIP, sIPv6,
            sum(records) {before}::BIGINT AS flows, sum(packets) {before}::DOUBLE AS packets,
            sum(bytes) {before}::DOUBLE AS bytes,
            sum(bytes) {before} / greatest(sum(packets) {before}, 1) AS bytes_per_packet,
            sum(hours) {before}::BIGINT AS hours, count(*) {before} AS days,
            max(destinations) {before} AS max_destinations, sum(destinations) {before}::BIGINT AS destination_days,
            max(ports) {before} AS max_ports,
            sum(tcp) {before} / sum(records) {before} AS tcp_share, sum(udp) {before} / sum(records) {before} AS udp_share,
            sum(icmp) {before} / sum(records) {before} AS icmp_share, sum(answered) {before}::BIGINT AS answered,
            ($c::BIGINT * {MS_PER_DAY} - max(last_ms) {before}) / {MS_PER_HOUR} AS hours_since_last,
            ($c::BIGINT * {MS_PER_DAY} - min(first_ms) {before}) / {MS_PER_HOUR} AS hours_since_first,
            (max(last_ms) {before} - min(first_ms) {before}) / {MS_PER_HOUR} / greatest(sum(hours) {before} - 1, 1) AS mean_gap_hours,
            coalesce(sum(records) FILTER (day < $c AND day >= $c - $h), 0)::BIGINT AS recent_flows,
            min(first_ms) {before} AS first_ms, max(last_ms) {before} AS last_ms,
            count(*) FILTER (day >= $c AND day < $c + $h) > 0 AS returned,
            count(*) FILTER (day >= $c AND day < $end) > 0 AS returned_ever
        FROM {relation}
        GROUP BY sIP, sIPv6
        HAVING count(*) {before} > 0
        ORDER BY sIP, sIPv6 NULLS FIRST"""


SAMPLED = "sampled_profiles"


def sample_profiles(con, profiles: Sequence[Path], threshold: int, end: int) -> str:
    """The sampled sources' profile rows before day ``end`` as a table of ``con`` (read once, for
    every cutoff): its name."""
    con.sql(f"CREATE OR REPLACE TEMP TABLE {SAMPLED} AS SELECT * FROM {_profiles(profiles)} "
            f"WHERE hash(sIP, sIPv6) % {SAMPLE_SPACE} < {int(threshold)} AND day < {int(end)}")
    return SAMPLED


def cutoff_rows(con, relation: str, cutoff: int, horizon: int, end: int) -> pd.DataFrame:
    """The rows of one cutoff over ``relation`` (a table of ``con`` or :func:`_profiles` of files),
    reading no day from ``end`` on."""
    frame = con.sql(_rows_sql(relation), params={"c": cutoff, "h": horizon, "end": end}).df()
    frame.insert(0, "cutoff", np.int32(cutoff))
    return frame


def _countries(frame: pd.DataFrame, country_of: Callable[[np.ndarray], np.ndarray] | None) -> np.ndarray:
    """Country codes of the rows' IPv4 sources (IPv6 and no GeoIP: unknown, "-")."""
    codes = np.full(len(frame), "-", dtype="<U2")
    if country_of is not None and len(frame):
        v4 = frame["sIPv6"].isna().to_numpy()
        if v4.any():
            codes[v4] = np.asarray(country_of(frame.loc[v4, "sIP"].to_numpy(np.uint32)), dtype="<U2")
    return codes


def _encode_countries(codes: np.ndarray, ranking: list[str]) -> np.ndarray:
    """Countries as the classifier's categories: rank among ``ranking``, others and unknowns apart."""
    index = {c: i for i, c in enumerate(ranking)}
    known = ~np.isin(codes, ["", "-", "--"])
    encoded = pd.Series(codes, dtype=object).map(index).fillna(OTHER_COUNTRY).to_numpy(np.float64)
    return np.where(known, encoded, UNKNOWN_COUNTRY)


def _matrix(frame: pd.DataFrame, ranking: list[str]) -> np.ndarray:
    numeric = frame[[f for f in FEATURES if f != "country"]].to_numpy(np.float64)
    return np.column_stack([numeric, _encode_countries(frame["country_code"].to_numpy(), ranking)])


def _ranking(codes: np.ndarray) -> list[str]:
    known = codes[~np.isin(codes, ["", "-", "--"])]
    values, counts = np.unique(known, return_counts=True)
    order = np.lexsort((values, -counts))  # most frequent first, ties by code
    return [str(v) for v in values[order][:TOP_COUNTRIES]]


@dataclass
class ReturnModel:
    """The fitted classifier and what it needs to encode a row."""

    classifier: object
    countries: list[str]
    cutoffs: list[int]  # the cutoffs it was trained on

    def p_return(self, frame: pd.DataFrame) -> np.ndarray:
        if not len(frame):
            return np.zeros(0)
        with _one_thread():
            return self.classifier.predict_proba(_matrix(frame, self.countries))[:, 1]


def _one_thread():
    """scikit-learn's OpenMP on one thread: on two shared cores (DuckDB, other steps, other runs)
    its spinning threads made a fit 5 to 17 times slower than one thread (bench/return_model.py)."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="openmp")


def fit(training: pd.DataFrame) -> ReturnModel | None:
    """A classifier of ``returned`` over the training rows; None when they hold one class only."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    y = training["returned"].to_numpy(bool)
    if len(training) < 20 or y.all() or not y.any():
        return None
    ranking = _ranking(training["country_code"].to_numpy())
    classifier = HistGradientBoostingClassifier(
        max_iter=200, learning_rate=0.1, max_leaf_nodes=31, categorical_features=[FEATURES.index(c) for c in CATEGORICAL],
        early_stopping=True, validation_fraction=0.1, n_iter_no_change=10, random_state=0)
    with _one_thread():
        classifier.fit(_matrix(training, ranking), y)
    return ReturnModel(classifier, ranking, sorted(set(training["cutoff"].tolist())))


# --- judging ----------------------------------------------------------------------------------


def _judged(gone: np.ndarray, retired: np.ndarray, returned_ever: np.ndarray, score: np.ndarray | None) -> dict:
    """Precision and recall of the retired against the truly gone (not seen within the horizon),
    the state's shrink, the returns it misses, and the AUC of ``score`` (higher: more likely gone)."""
    from sklearn.metrics import roc_auc_score

    n, n_retired, n_gone = len(gone), int(retired.sum()), int(gone.sum())
    hits = int((retired & gone).sum())
    returners = n - n_gone
    missed = n_retired - hits  # retired, yet seen again within the horizon
    auc = float(roc_auc_score(gone, score)) if score is not None and 0 < n_gone < n else None
    return {
        "rows": n, "retired": n_retired, "gone": n_gone,
        "precision": hits / n_retired if n_retired else None, "recall": hits / n_gone if n_gone else None,
        "auc": auc, "shrink": n_retired / n if n else None,
        "missed_returns": missed, "missed_share_of_returners": missed / returners if returners else None,
        "retired_seen_later": int((retired & returned_ever).sum()),
    }


def judge(p_return: np.ndarray, test: pd.DataFrame, settings: ReturnSettings) -> dict:
    """The model's predictions ``p_return`` and the two baseline rules on the same rows."""
    gone = ~test["returned"].to_numpy(bool)
    ever = test["returned_ever"].to_numpy(bool)
    flows = test["flows"].to_numpy()
    age = test["hours_since_last"].to_numpy(np.float64)
    return {
        "model": _judged(gone, p_return < settings.retire_below, ever, 1 - p_return),
        "one_flow": _judged(gone, flows == 1, ever, (flows == 1).astype(np.float64)),
        "last_seen": _judged(gone, age >= settings.horizon_days * 24, ever, age),
        "brier": float(np.mean((p_return - (~gone)) ** 2)) if len(gone) else None,
        "calibration": calibration(p_return, ~gone),
    }


def calibration(p_return: np.ndarray, returned: np.ndarray) -> list[dict]:
    """Predicted against observed return rate in ten equal-width bins of the prediction."""
    bins = np.minimum((p_return * CALIBRATION_BINS).astype(int), CALIBRATION_BINS - 1)
    rows = []
    for b in range(CALIBRATION_BINS):
        inside = bins == b
        if inside.any():
            rows.append({"bin": f"{b / CALIBRATION_BINS:.1f}-{(b + 1) / CALIBRATION_BINS:.1f}", "rows": int(inside.sum()),
                         "predicted": float(p_return[inside].mean()), "observed": float(returned[inside].mean())})
    return rows


# --- the assets' work -----------------------------------------------------------------------------


def _threshold(con, profiles: Sequence[Path], sample_sources: int, end: int) -> int:
    """The sample's hash threshold: about ``sample_sources`` of the sources seen before day ``end``."""
    total = con.sql(f"SELECT count(*) FROM (SELECT DISTINCT sIP, sIPv6 FROM {_profiles(profiles)} WHERE day < {int(end)})"
                    ).fetchall()[0][0]
    return SAMPLE_SPACE if total <= sample_sources else max(1, SAMPLE_SPACE * sample_sources // total)


class ProfileDigests:
    """Order-free digests of the profile rows before a day, file by file, kept in ``state``: a
    file is read again only when its size or time changed (each hour's refresh rewrites the open
    month's alone).  What tells a refresh whether the model's inputs changed."""

    COLUMNS = ", ".join(PROFILE_SCHEMA.names)

    def __init__(self, state: Path):
        self.path = Path(state) / "digests.json"
        try:
            self.known = json.loads(self.path.read_text())
        except (OSError, ValueError):
            self.known = {}

    def digest(self, con, profiles: Sequence[Path], before: int) -> str:
        entries = {}
        for path in profiles:
            key = f"{fingerprint(path)}:{before}"
            cached = self.known.get(str(path))
            if cached is None or cached[0] != key:
                value = con.sql(f"SELECT coalesce(sum(hash({self.COLUMNS})::HUGEINT), 0)::VARCHAR, count(*) "
                                f"FROM {_profiles([path])} WHERE day < {int(before)}").fetchall()[0]
                cached = [key, f"{value[0]}:{value[1]}"]
            entries[str(path)] = cached
        self.known = entries
        write_text(json.dumps(entries, sort_keys=True), self.path)
        return hashlib.sha256(json.dumps({Path(p).name: e[1] for p, e in entries.items()}, sort_keys=True).encode()).hexdigest()


def _key(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def _same_inputs(state: Path, key: str, outputs: Sequence[Path]) -> bool:
    """Whether the last refresh had these inputs and left every output: nothing to do."""
    if not all(p.exists() for p in outputs):
        return False
    try:
        return (Path(state) / "inputs.key").read_text() == key
    except OSError:
        return False


def train_return_model(profiles: Sequence[Path], start: datetime, end: datetime, settings: ReturnSettings,
                       folder: Path, country_of: Callable[[np.ndarray], np.ndarray] | None = None,
                       state: Path | None = None, country_key: str = "") -> dict:
    """Backtest at the last ``backtest_cutoffs`` cutoffs, then fit on every labelled cutoff; writes the
    model, its training rows, the metrics and the calibration figure to ``folder``.  Returns the metrics.

    Training reads no day from the last labelled horizon's end on.  With ``state``, a refresh whose
    inputs are those of the last one (the settings, the cutoffs, the digests of the profile rows it
    reads, ``country_key``: the GeoIP database) keeps the folder as it is: ``metrics["refreshed"]`` False."""
    profiles = sorted(profiles)
    outputs = [folder / f for f in (MODEL_FILE, TRAINING_FILE, METRICS_FILE, CALIBRATION_FILE)]
    with duck.connect() as con:
        cutoffs = cutoffs_of(start, end, last_day(con, profiles), settings.horizon_days)
        if state is not None:
            key = _key(vars(settings), start, cutoffs.labelled, cutoffs.label_end, country_key,
                       ProfileDigests(state).digest(con, profiles, cutoffs.label_end))
            if _same_inputs(state, key, outputs):
                return {**json.loads((folder / METRICS_FILE).read_text()), "refreshed": False}
        threshold = _threshold(con, profiles, settings.sample_sources, cutoffs.label_end) if profiles else SAMPLE_SPACE
        sampled = sample_profiles(con, profiles, threshold, cutoffs.label_end) if cutoffs.labelled else ""
        rows = {c: cutoff_rows(con, sampled, c, cutoffs.horizon, cutoffs.label_end) for c in cutoffs.labelled}
    for frame in rows.values():
        frame["country_code"] = _countries(frame, country_of)
    metrics: dict = {"settings": vars(settings), "cutoffs": [_day_text(c) for c in cutoffs.labelled],
                     "label_end": _day_text(cutoffs.label_end), "sample_share": threshold / SAMPLE_SPACE, "backtest": []}
    tests = [c for c in cutoffs.labelled if cutoffs.trainable_before(c)][-settings.backtest_cutoffs:]
    for test in tests:
        model = fit(pd.concat([rows[c] for c in cutoffs.trainable_before(test)], ignore_index=True))
        if model is None:
            continue
        predicted = model.p_return(rows[test])
        rows[test]["p_return_backtest"] = predicted  # kept with the training rows: what the backtest judged
        metrics["backtest"].append({"cutoff": _day_text(test), "trained_on": [_day_text(c) for c in model.cutoffs],
                                    **judge(predicted, rows[test], settings)})
    for frame in rows.values():
        if "p_return_backtest" not in frame:
            frame["p_return_backtest"] = np.nan
    training = pd.concat(list(rows.values()), ignore_index=True) if rows else pd.DataFrame()
    model = fit(training) if len(training) else None
    metrics["status"] = "trained" if model is not None else _not_enough(cutoffs)
    metrics["training_rows"] = len(training)
    metrics["returned_share"] = float(training["returned"].mean()) if len(training) else None
    folder.mkdir(parents=True, exist_ok=True)
    write_bytes(pickle.dumps(model, protocol=5), folder / MODEL_FILE)
    table = pa.Table.from_pandas(training, preserve_index=False) if len(training) else pa.table({"cutoff": pa.array([], pa.int32())})
    write_parquet(table, folder / TRAINING_FILE)
    write_text(json.dumps(metrics, indent=1, sort_keys=True) + "\n", folder / METRICS_FILE)
    from ..tables.figures import plot_calibration

    plot_calibration(metrics["backtest"][-1]["calibration"] if metrics["backtest"] else [], folder / CALIBRATION_FILE)
    if state is not None:
        write_text(key, Path(state) / "inputs.key")
    return {**metrics, "refreshed": True}


def _not_enough(cutoffs: Cutoffs) -> str:
    return (f"not trained: up to {_day_text(cutoffs.final)} the data holds no cutoff whose {cutoffs.horizon}-day "
            "horizon has passed with both returning and vanishing sources (returns.horizon_days in the site file)")


def _day_text(day: int) -> str:
    return str(np.datetime64(int(day), "D"))
