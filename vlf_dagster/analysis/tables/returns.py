"""The report's tables of the return model: its backtest beside the two rules, and the retirement set."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from ..steps.retirement import retirement_facts

METHODS = {"model": "return model", "one_flow": "rule: a one-flow source never returns",
           "last_seen": "rule: unseen for the horizon, never returns"}
BACKTEST_COLUMNS = ["Cutoff", "Method", "Sources", "Retired", "Precision", "Recall", "AUC", "State shrink",
                    "Missed returns", "% of returners missed", "Retired yet seen later"]


def _share(value) -> float | None:
    return None if value is None else round(100 * value, 2)


def backtest_table(metrics: dict) -> pd.DataFrame:
    """One row per backtest cutoff and method: the model and the rules judged on the same sampled
    sources (precision and recall of "will not return"; AUC of each method's score)."""
    rows = []
    for test in metrics.get("backtest", []):
        for method, label in METHODS.items():
            m = test[method]
            rows.append([test["cutoff"], label, m["rows"], m["retired"], _share(m["precision"]), _share(m["recall"]),
                         None if m["auc"] is None else round(m["auc"], 3), _share(m["shrink"]), m["missed_returns"],
                         _share(m["missed_share_of_returners"]), m["retired_seen_later"]])
    return pd.DataFrame(rows, columns=BACKTEST_COLUMNS)


def figure_of_merit(metrics: dict) -> str:
    """One paragraph: what retiring buys and costs at the last backtest cutoff, the model against the rules."""
    if not metrics.get("backtest"):
        return f"The return model is {metrics.get('status', 'not trained')}."
    last = metrics["backtest"][-1]
    ours, flow_rule, age_rule = last["model"], last["one_flow"], last["last_seen"]
    horizon = metrics["settings"]["horizon_days"]

    def said(m: dict) -> str:
        return (f"retires {100 * (m['shrink'] or 0):.1f}% of the tracked sources, {100 * (m['precision'] or 0):.1f}% of "
                f"them truly gone, missing {100 * (m['missed_share_of_returners'] or 0):.1f}% of the returns")

    auc = f"AUC {ours['auc']:.3f}" if ours["auc"] is not None else "AUC undefined"
    return (f"At the cutoff {last['cutoff']} (trained on {len(last['trained_on'])} earlier cutoffs, never on what "
            f"followed them), predicting who is seen again within {horizon} day{'s' if horizon != 1 else ''} ({auc}, Brier {last['brier']:.3f}): "
            f"the model {said(ours)}; the one-flow rule {said(flow_rule)}; the last-seen rule {said(age_rule)}.")


CALIBRATION_COLUMNS = ["p_return", "Rows", "Mean predicted", "Observed"]


def calibration_table(metrics: dict) -> pd.DataFrame:
    """The calibration at the last backtest cutoff: per bin of prediction, rows, mean prediction and
    the share that returned (what ``calibration.png`` plots)."""
    bins = metrics["backtest"][-1]["calibration"] if metrics.get("backtest") else []
    return pd.DataFrame([[b["bin"], b["rows"], round(b["predicted"], 3), round(b["observed"], 3)] for b in bins],
                        columns=CALIBRATION_COLUMNS)


RETIREMENT_COLUMNS = ["Cutoff", "Tracked sources", "Retired", "State shrink", "Mean confidence", "Retired with 1 flow"]


def retirement_summary(retirement: Path) -> pd.DataFrame:
    """The retirement set at the data's end: how far it shrinks the tracked state."""
    facts = retirement_facts(retirement)
    table = pq.read_table(retirement, columns=["flows", "confidence"]).to_pandas()
    state = facts.get("state", 0)
    return pd.DataFrame([[facts.get("cutoff"), state, len(table), round(100 * len(table) / state, 2) if state else None,
                          round(float(table["confidence"].mean()), 4) if len(table) else None,
                          int((table["flows"] == 1).sum())]], columns=RETIREMENT_COLUMNS)
