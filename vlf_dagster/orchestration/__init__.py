"""The Dagster code location: :mod:`.definitions` (``defs``), :mod:`.partitions`, :mod:`.jobs`,
:mod:`.schedules`, :mod:`.sensors`, :mod:`.assets` (thin: one file per asset group, calling
:mod:`vlf_dagster.analysis`), :mod:`.resources`, :mod:`.runs` (materializing from the command line)
and :mod:`.instance_storage` (the instance's faster SQLite event log).
"""
