"""Stage 5: one asset per table or figure of the study, and the HTML report that gathers them."""

import time

import dagster as dg

from ... import artifacts as A
from ...analysis.report.page import render_report
from ...analysis.report.parts import markdown_of, section_from_folder, write_part
from ...analysis.report.study import PARTS, Part, StudyInputs
from ...flows.schema import early_times_warning
from ...flows.storage import write_text
from ..resources import GeoIPResource, VlfStore
from .clock import asset


def _inputs(store: VlfStore, geoip: GeoIPResource, part: Part) -> StudyInputs:
    # the database's IPv4 ranges, kept in the data's state: one binary search per address
    lookup = geoip.lookup(ranges_dir=store.state_dir("geoip")) if part.geo else None
    store.fetch(part.deps)  # read from the local copy: fetched first where an object store holds newer
    return StudyInputs(
        data_dir=store.base, site=store.site, folder=store.report_dir() / part.name,
        country_of=lookup.countries if lookup is not None else None, geoip_status=geoip.status(),
    )


def _part_asset(part: Part) -> dg.AssetsDefinition:
    @asset(name=part.name, group_name=A.VLF_REPORT.group, kinds={"csv", "png"}, deps=[d.name for d in part.deps],
           description=part.description or part.title)
    def _asset(context: dg.AssetExecutionContext, store: VlfStore, geoip: GeoIPResource) -> dg.MaterializeResult:
        started = time.perf_counter()
        inputs = _inputs(store, geoip, part)
        result = part.run(inputs)
        write_part(result, inputs.folder)
        store.written([inputs.folder])
        seconds = time.perf_counter() - started
        context.log.info(f"{part.title}: {len(result.pieces)} piece(s) in {seconds:.2f} s")
        # the tables and figures themselves (figures inline), and where their files are
        return dg.MaterializeResult(metadata={
            "report": dg.MetadataValue.md(markdown_of(result)),
            "folder": dg.MetadataValue.path(str(inputs.folder)),
        })

    return _asset


def build() -> list:
    part_assets = [_part_asset(part) for part in PARTS]

    @asset(name=A.VLF_REPORT.name, group_name=A.VLF_REPORT.group, kinds=A.VLF_REPORT.kinds, deps=part_assets,
           description=A.VLF_REPORT.asset_description)
    def vlf_report(store: VlfStore, geoip: GeoIPResource) -> dg.MaterializeResult:
        site = store.site
        out_dir = store.report_dir()
        sections = [s for part in PARTS if (s := section_from_folder(out_dir / part.name, out_dir)) is not None]
        window = f"{site.start:%Y-%m-%d %H:00} to {site.window_end():%Y-%m-%d %H:00} UTC"
        subtitle = f"{site.name}: {', '.join(map(str, site.internal_networks))}, {window}. {geoip.status()}"
        early = early_times_warning(int(site.start.timestamp() * 1000))
        path = write_text(render_report("Very Low Frequency traffic", subtitle, sections, [early] if early else []),
                          out_dir / "index.html")
        store.written([path])
        return dg.MaterializeResult(metadata={"report": dg.MetadataValue.url(path.resolve().as_uri()),
                                              "sections": len(sections)})

    return [*part_assets, vlf_report]
