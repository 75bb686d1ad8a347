"""The study's tables and figures by subject (ports, flags, destinations, sessions, protocols,
geography, categories, samples, figures), each a function from artifact files to a DataFrame or a
PNG.  A new table is a function here and one :class:`~vlf_dagster.analysis.report.study.Part` in
:data:`~vlf_dagster.analysis.report.study.PARTS`.
"""
