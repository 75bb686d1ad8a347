"""Sources that will not return: each month's source profiles, the return model and the retirement set."""

from datetime import timedelta

import dagster as dg

from ... import artifacts as A
from ...analysis.steps.profiles import MS_PER_DAY, refresh_month_profiles
from ...analysis.steps.retirement import retirement_set
from ...analysis.steps.returns import CALIBRATION_FILE, train_return_model
from ...analysis.report import render as tables
from ...analysis.tables.returns import backtest_table, calibration_table
from ...flows.flowtypes import INBOUND_TYPES, OUTBOUND_TYPES
from ...flows.storage import fingerprint, hours_between
from ..partitions import StudyPartitions
from ..resources import GeoIPResource, VlfStore
from .clock import asset


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _markdown(table, metrics: dict) -> dg.MetadataValue:
    """A table of the report's (analysis/tables/returns.py) as the asset's metadata, or why there is none."""
    return dg.MetadataValue.md(tables.to_markdown(table) if len(table) else f"No backtest: {metrics['status']}.")


def _countries(store: VlfStore, geoip: GeoIPResource):
    """The GeoIP lookup (None without a database) and what names its data: a new database is new input."""
    lookup = geoip.lookup(ranges_dir=store.state_dir("geoip"))
    if lookup is None:
        return None, "no GeoIP"
    return lookup.countries, f"{lookup.path.resolve()}:{fingerprint(lookup.path)}"


def build(parts: StudyPartitions) -> list:
    monthly = A.MONTHLY_SOURCE_PROFILES

    @asset(name=monthly.name, group_name=monthly.group, kinds=monthly.kinds, partitions_def=parts.monthly,
           deps=[A.HOURLY_FLOWS.name], description=monthly.asset_description)
    def monthly_source_profiles(context: dg.AssetExecutionContext, store: VlfStore) -> dg.MaterializeResult:
        window = context.partition_time_window
        days: dict[int, tuple[list, list]] = {}
        for day_start in hours_between(window.start, window.end)[::24]:  # months start at midnight
            hours = hours_between(day_start, min(day_start + timedelta(days=1), window.end))
            day = int(day_start.timestamp() * 1000) // MS_PER_DAY
            days[day] = (store.archive_files(hours, list(INBOUND_TYPES)), store.archive_files(hours, list(OUTBOUND_TYPES)))
        out = store.path(monthly, window.start)
        table, read = refresh_month_profiles(days, out, store.state_dir(monthly) / f"{window.start:%Y-%m}")
        return dg.MaterializeResult(metadata={
            "source_days": table.num_rows, "dagster/row_count": table.num_rows, "days_read_again": read,
            "path": dg.MetadataValue.path(str(out))})

    model = A.RETURN_MODEL

    @asset(name=model.name, group_name=model.group, kinds=model.kinds, deps=[monthly.name],
           description=model.asset_description)
    def return_model(store: VlfStore, geoip: GeoIPResource) -> dg.MaterializeResult:
        site = store.site
        country_of, country_key = _countries(store, geoip)
        folder = store.path(model)
        metrics = train_return_model(store.existing(monthly), site.start, site.window_end(), site.returns, folder,
                                     country_of, state=store.state_dir(model), country_key=country_key)
        last = metrics["backtest"][-1] if metrics["backtest"] else None
        figures = {}
        if last is not None:
            ours = last["model"]
            figures = {"precision": ours["precision"], "recall": ours["recall"], "auc": ours["auc"],
                       "brier": last["brier"], "state_shrink": ours["shrink"], "missed_returns": ours["missed_returns"],
                       "backtest_cutoff": last["cutoff"]}
        return dg.MaterializeResult(metadata={
            "status": metrics["status"], "refreshed": metrics["refreshed"], "training_rows": metrics["training_rows"], "dagster/row_count": metrics["training_rows"],
            **{k: v for k, v in figures.items() if v is not None},
            "backtest": _markdown(backtest_table(metrics), metrics),
            "calibration": _markdown(calibration_table(metrics), metrics),
            "calibration_plot": dg.MetadataValue.path(str(folder / CALIBRATION_FILE)),
            "path": dg.MetadataValue.path(str(folder))})

    retired = A.RETIREMENT_SET

    @asset(name=retired.name, group_name=retired.group, kinds=retired.kinds, deps=[model.name, monthly.name],
           description=retired.asset_description)
    def retirement_set_asset(store: VlfStore, geoip: GeoIPResource) -> dg.MaterializeResult:
        site = store.site
        country_of, country_key = _countries(store, geoip)
        out = store.path(retired)
        facts = retirement_set(store.existing(monthly), site.start, site.window_end(), site.returns, store.path(model),
                               out, country_of, state=store.state_dir(retired), country_key=country_key)
        return dg.MaterializeResult(metadata={
            "cutoff": facts["cutoff"], "judged_again": facts["judged"], "tracked_sources": facts["state"], "retired": facts["retired"],
            "dagster/row_count": facts["retired"], "state_shrink": _pct(facts["shrink"]),
            "path": dg.MetadataValue.path(str(out))})

    return [monthly_source_profiles, return_model, retirement_set_asset]
