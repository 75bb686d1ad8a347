"""vlf_dagster: a SiLK-compatible flow toolbox and the 2008 VLF study as a Dagster workflow.

- :mod:`.flows`: the record library (schema, sets, bags, storage, SiLK files), with :mod:`.flows.tools`
  (the engines of filter, cut, match, stats), :mod:`.flows.sources` (NetFlow/IPFIX collection) and
  :mod:`.flows.importers` (other tools' exports);
- :mod:`.verbs`: the toolbox's command lines (``vlf filter``, ``vlf cut``, ...), one module per family;
- :mod:`.analysis`: the study as pure functions: :mod:`.analysis.steps` (the pipeline),
  :mod:`.analysis.tables` (its tables and figures), :mod:`.analysis.report` (the page);
- :mod:`.artifacts`: every file the study writes, declared once;
- :mod:`.orchestration`: the Dagster code location (assets, jobs, sensors, resources, runs);
- :mod:`.simulate`: the synthetic site with its ground truth; :mod:`.cli`: the ``vlf`` command.

Nothing under flows, analysis, simulate or verbs imports dagster.
"""
