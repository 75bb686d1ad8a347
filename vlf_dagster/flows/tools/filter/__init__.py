"""rwfilter's engine: select archive files, then partition flow records into pass and fail.

Two halves, as in SiLK:

- **Selection** (:mod:`.selection`): which hourly archive files to read, from
  ``--start-date``/``--end-date`` (SiLK's precision rules), ``--type`` and ``--sensors``.
- **Partitioning**: the tests of one invocation (:mod:`.spec`), written in rwfilter's value and
  address syntaxes (:mod:`.values`, :mod:`.addresses`), become ONE DuckDB boolean expression
  (:mod:`.compiler`), which runs over ``read_parquet(file list)`` or a registered Arrow table
  (:mod:`.run`, also the statistics and the streaming writers).

Every user error raises :class:`.spec.FilterError` (a ``ValueError``) with a one-line message
that names the switch and the bad value.  Import the names from their modules: this package
re-exports nothing.
"""
