"""Stage 5: the study's tables as report assets, and the HTML report that gathers them."""


import dagster as dg

from ..analysis import tables
from ..analysis.report import Section, render_report
from ..analysis.vlf import per_host_flow_distribution
from ..flows.sets import IPSet
from ..flows.storage import write_text
from ..resources import VlfStore

SET_NAMES = {
    "vlf_f_set": "VLF-f (1..max_flows flows)",
    "vlf_d_set": "VLF-d (1..max_destinations destinations)",
    "vlf_fd_set": "VLF-fd (both)",
    "active_inside_set": "Active inside hosts",
}


def build() -> list:
    @dg.asset(group_name="reports", kinds={"csv"}, deps=["source_flow_bag"],
              description="The study's 'Per Host Flow Distribution' table: sources and flows for 1..10 "
              "flows per source, 1...100, > 100 and the total, with % and cumulative %.")
    def per_host_flow_distribution_report(store: VlfStore) -> dg.MaterializeResult:
        df = per_host_flow_distribution(store.window("source_flow_bag"), store.site.vlf.max_flows)
        path = write_text(tables.to_csv(df), store.report_dir() / "per_host_flow_distribution.csv")
        return dg.MaterializeResult(
            metadata={"table": dg.MetadataValue.md(tables.to_markdown(df)), "csv": dg.MetadataValue.path(str(path))}
        )

    @dg.asset(group_name="reports", kinds={"html"},
              deps=[per_host_flow_distribution_report, "vlf_f_set", "vlf_d_set", "vlf_fd_set", "active_inside_set", "vlf_flows"],
              description="One HTML page with every table of the study, with a table of contents.")
    def vlf_report(store: VlfStore) -> dg.MaterializeResult:
        import pandas as pd

        site = store.site
        out_dir = store.report_dir()
        distribution = pd.read_csv(out_dir / "per_host_flow_distribution.csv", keep_default_na=False)
        distribution["Flows/host"] = distribution["Flows/host"].astype(str)
        sizes = pd.DataFrame(
            [(label, len(IPSet.read(store.window(name, "set")))) for name, label in SET_NAMES.items()],
            columns=["Set", "Addresses"],
        )
        sections = [
            Section("Per Host Flow Distribution", tables.to_html(distribution),
                    notes=["Outside sources by the number of inbound flows they sent over the window."],
                    files=["per_host_flow_distribution.csv"]),
            Section("VLF sets", tables.to_html(sizes),
                    notes=[f"Thresholds: max_flows = {site.vlf.max_flows}, max_destinations = {site.vlf.max_destinations}."]),
        ]
        window = f"{site.start:%Y-%m-%d %H:00} to {site.window_end():%Y-%m-%d %H:00} UTC"
        page = render_report("Very Low Frequency traffic", f"{site.name}: {', '.join(map(str, site.internal_networks))}, {window}", sections)
        path = write_text(page, out_dir / "index.html")
        return dg.MaterializeResult(
            metadata={
                "report": dg.MetadataValue.path(str(path.resolve())),
                "vlf_sets": dg.MetadataValue.md(tables.to_markdown(sizes)),
            }
        )

    return [per_host_flow_distribution_report, vlf_report]
