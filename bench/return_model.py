"""The return model at a site's size: time, memory and what retiring its predictions buys.

    python bench/return_model.py DATA_DIR [--profiles DIR] [--horizon DAYS] [--sample N]

Reads DATA_DIR's site file and monthly source profiles (``monthly_source_profiles/``, or
``--profiles``), trains the model with its backtest (as the ``return_model`` asset does) and
predicts the retirement set (as ``retirement_set`` does), into a scratch folder.  Prints the
seconds and peak RSS of each, the backtest's figures (model and rules side by side) and the
state's shrink at the data's end.  With ``sim/returns.parquet`` (``vlf simulate --returning``)
it also judges the retirement set against the simulator's return times.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vlf_dagster import artifacts as A  # noqa: E402
from vlf_dagster.analysis.steps import returns as R  # noqa: E402
from vlf_dagster.analysis.steps.retirement import retirement_set  # noqa: E402
from vlf_dagster.analysis.tables.returns import backtest_table, figure_of_merit  # noqa: E402
from vlf_dagster.flows.site import load_site  # noqa: E402
from vlf_dagster.flows.site import data_site_file  # noqa: E402
from vlf_dagster.analysis.steps.profiles import MS_PER_DAY  # noqa: E402
from vlf_dagster.simulate.truth import return_truth, seen_within  # noqa: E402


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _against_truth(folder: Path, visits, settings) -> None:
    """The planted returners' labels against their visits, and how each method ranks and retires them."""
    import pyarrow.parquet as pq
    from sklearn.metrics import roc_auc_score

    horizon_days = settings.horizon_days
    training = pq.read_table(folder / R.TRAINING_FILE).to_pandas()
    if "sIP" not in training:
        print("planted returners: no training rows to judge")
        return
    planted = training[training.sIP.isin(visits.sIP)]
    wrong = 0
    for cutoff, rows in planted.groupby("cutoff"):
        c = int(cutoff) * MS_PER_DAY
        wrong += int((rows.returned.to_numpy() != seen_within(visits, rows.sIP, c, c + horizon_days * MS_PER_DAY)).sum())
    print(f"planted returners: {visits.sIP.nunique():,} sources, {len(visits):,} visits; {len(planted):,} training rows, "
          f"{wrong} labels differ from the visits")
    judged = planted[planted.p_return_backtest.notna()]
    if not len(judged):
        return
    gone, came_back = ~judged.returned.to_numpy(bool), judged.returned.to_numpy(bool)
    retired_model = judged.p_return_backtest.to_numpy() < settings.retire_below
    retired_rule = judged.hours_since_last.to_numpy() >= 24 * horizon_days
    print(f"  at the backtest cutoffs: {len(judged):,} rows of planted returners, {came_back.sum():,} came back within "
          f"the horizon; AUC model {roc_auc_score(gone, 1 - judged.p_return_backtest):.3f}, last-seen rule "
          f"{roc_auc_score(gone, judged.hours_since_last):.3f}; retired model {retired_model.sum():,} (missed returns "
          f"{(retired_model & came_back).sum():,}), rule {retired_rule.sum():,} (missed {(retired_rule & came_back).sum():,}), "
          f"one-flow rule {(judged.flows == 1).sum():,} (missed {((judged.flows == 1) & came_back).sum():,})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--profiles", type=Path, help="folder of month=YYYY-MM.parquet profiles (default: the data's)")
    parser.add_argument("--horizon", type=int, help="returns.horizon_days (default: the site file's)")
    parser.add_argument("--sample", type=int, help="returns.sample_sources (default: the site file's)")
    args = parser.parse_args()
    site = load_site(data_site_file(args.data_dir))
    settings = site.returns
    if args.horizon:
        settings = dataclasses.replace(settings, horizon_days=args.horizon)
    if args.sample:
        settings = dataclasses.replace(settings, sample_sources=args.sample)
    folder = args.profiles or args.data_dir / A.MONTHLY_SOURCE_PROFILES.name
    profiles = sorted(folder.glob("month=*.parquet"))
    print(f"{len(profiles)} months of profiles in {folder}; {settings}")
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        started = time.perf_counter()
        metrics = R.train_return_model(profiles, site.start, site.window_end(), settings, scratch / "model")
        train_s = time.perf_counter() - started
        print(f"return_model: {train_s:.1f} s, peak RSS {_rss_mb():.0f} MB, {metrics['training_rows']:,} training rows, "
              f"{len(metrics['cutoffs'])} labelled cutoffs, status: {metrics['status']}")
        print(backtest_table(metrics).to_string(index=False))
        print(figure_of_merit(metrics))
        visits = return_truth(args.data_dir)
        if len(visits):
            _against_truth(scratch / "model", visits, settings)
        started = time.perf_counter()
        facts = retirement_set(profiles, site.start, site.window_end(), settings, scratch / "model", scratch / "retired.parquet")
        print(f"retirement_set: {time.perf_counter() - started:.1f} s, peak RSS {_rss_mb():.0f} MB: "
              f"{json.dumps(facts, sort_keys=True)}")


if __name__ == "__main__":
    main()
