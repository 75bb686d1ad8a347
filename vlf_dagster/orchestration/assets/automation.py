"""Declarative automation: what brings each asset up to date by itself, and when.

The chain, with no manual launch once a daemon runs (``make ui``):

- the landing sensor reports ``landing_flows`` for every hour whose landing input is new or has
  changed since it was last seen (a runless materialization, the way Dagster records data made
  outside it);
- hourly assets follow their hour's ``landing_flows`` at once (a late or replaced file re-packs its
  hour: the archive is rewritten, never appended to);
- monthly assets follow any hour of their month; ``study_months`` then follows the months;
- window assets (window bags, VLF sets, VLF flows, matching, report parts, report, catalog) follow
  at most once per tick of the site's ``[automation] window_cron``, once something they read has
  changed and nothing upstream is still running, all in one run.

None of the conditions looks only at the latest partition, as Dagster's ``eager()`` does: late data
lands in old hours.  Asset checks run with their asset, so blocking checks keep automation from
building on data that failed them.
"""

from __future__ import annotations

import dagster as dg

from ... import artifacts as A
from ...flows.site import AutomationSettings, SiteConfigError

AC = dg.AutomationCondition

LANDING_FLOWS = A.LANDING_FLOWS.name  # the external hourly asset the landing sensor reports
STUDY_MONTHS = A.STUDY_MONTHS.name  # the unpartitioned index of the months' rollups the window reads
AUTOMATION_SENSOR = "study_automation"
# Every run automation launches carries this tag; the instance lets one such run go at a time
# (runs.write_instance_config), so a window refresh never reads a month or an hour being rewritten.
AUTOMATION_RUN_TAG = "vlf/automation"


def _settled(condition: dg.AutomationCondition) -> dg.AutomationCondition:
    """``condition``, once nothing upstream or of the target itself is still being written."""
    return condition & ~AC.any_deps_in_progress() & ~AC.in_progress()


def _follows(label: str, condition: dg.AutomationCondition | None = None) -> dg.AutomationCondition:
    """As soon as a dependency was updated (and ``condition`` holds), once everything is settled."""
    updated = AC.any_deps_updated().since_last_handled()
    return _settled(updated if condition is None else updated & condition).with_label(label)


def hourly_condition() -> dg.AutomationCondition:
    return _follows("new or changed landing input")


def monthly_condition() -> dg.AutomationCondition:
    """Once an hour of the month changed, and the archive's blocking checks of the last run passed
    (they report last in the hourly step: in progress until the whole step is done)."""
    return _follows("an hour of the month changed", AC.all_deps_blocking_checks_passed())


def window_condition(cron: str, partitioned: dg.AssetSelection | None = None) -> dg.AutomationCondition:
    """At most once per ``cron`` tick, once a window-level input changed.

    Updates of ``partitioned`` deps (hours, months) are ignored: they reach the window through
    ``study_months``, which follows the months, so the window does not run once for the hour and
    again for its month.
    """
    updated = AC.any_deps_updated()
    if partitioned is not None:
        updated = updated.ignore(partitioned)
    # Not in the same run as study_months: Dagster 1.13 then records the run's older version of
    # study_months as the window asset's input, and the asset shows stale right after its refresh.
    with_index = AC.any_deps_match(AC.will_be_requested()).allow(dg.AssetSelection.assets(STUDY_MONTHS))
    return _settled(
        AC.cron_tick_passed(cron, "UTC").since_last_handled()
        & updated.since_last_handled()
        & ~with_index
        & AC.all_deps_blocking_checks_passed()
    ).with_label(f"inputs changed, at most once per {cron}")


# A check runs whenever its asset is requested, in the same run.
CHECK_CONDITION = AC.any_deps_match(AC.will_be_requested()).with_label("with its asset")


def _condition_for(spec: dg.AssetSpec, settings: AutomationSettings,
                   partitioned: dg.AssetSelection) -> dg.AutomationCondition:
    partitions = spec.partitions_def
    if isinstance(partitions, dg.HourlyPartitionsDefinition):
        return hourly_condition()
    if isinstance(partitions, dg.MonthlyPartitionsDefinition):
        return monthly_condition()
    if spec.key.to_user_string() == STUDY_MONTHS:
        return _follows("a month was rolled up")
    return window_condition(settings.window_cron, partitioned)


def with_automation(assets: list, settings: AutomationSettings, source: str = "site") -> list:
    """``assets`` with the condition of their stage on every asset (checks carry theirs already).

    A window asset that reads monthly (or hourly) files also depends on ``study_months``: Dagster
    computes no staleness across a partitioned -> unpartitioned edge, so without it a month rolled up
    again would leave the window assets looking up to date in the UI.
    """
    try:
        window_condition(settings.window_cron)
    except Exception:  # noqa: BLE001 - dagster's check.param_invariant raises its own CheckError
        raise SiteConfigError(
            f"{source}: automation.window_cron {settings.window_cron!r} is not a valid cron schedule") from None
    partitioned = {spec.key for item in assets for spec in _specs(item) if spec.partitions_def is not None}
    partitioned_selection = dg.AssetSelection.assets(*partitioned)
    study_months = dg.AssetKey(STUDY_MONTHS)

    def automated(spec: dg.AssetSpec) -> dg.AssetSpec:
        attributes = {"automation_condition": _condition_for(spec, settings, partitioned_selection)}
        if (spec.partitions_def is None and spec.key != study_months
                and any(dep.asset_key in partitioned for dep in spec.deps)):
            attributes["deps"] = [*spec.deps, dg.AssetDep(study_months)]
        return spec.replace_attributes(**attributes)

    return [item.map_asset_specs(automated) if isinstance(item, dg.AssetsDefinition) and item.specs else item
            for item in assets]


def _specs(item) -> list[dg.AssetSpec]:
    if isinstance(item, dg.AssetSpec):
        return [item]
    return list(item.specs) if isinstance(item, dg.AssetsDefinition) else []


def automation_sensor(settings: AutomationSettings) -> dg.AutomationConditionSensorDefinition:
    status = dg.DefaultSensorStatus.RUNNING if settings.enabled else dg.DefaultSensorStatus.STOPPED
    return dg.AutomationConditionSensorDefinition(
        AUTOMATION_SENSOR, target=dg.AssetSelection.all(), default_status=status,
        run_tags={AUTOMATION_RUN_TAG: "study"},
        minimum_interval_seconds=settings.evaluation_seconds,
        description="Evaluates every asset's automation condition: new landing hours are packed and rolled into "
        "their month, and the window assets follow at most once per window_cron tick (site file, [automation]).",
    )
