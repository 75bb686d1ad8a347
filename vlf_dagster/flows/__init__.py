"""The record library (as SiLK's libsilk): the flow schema, fields, flags, flowtypes, IP sets, bags,
the data directory's storage, the archive, SiLK's own file formats, time syntax and registries.

Subpackages: :mod:`.tools` (what a verb computes), :mod:`.sources` (collection from exporters),
:mod:`.importers` (other tools' files).  No module here imports dagster.
"""
