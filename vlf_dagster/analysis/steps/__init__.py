"""The pipeline's steps, each a pure function over files that an asset calls: hourly and monthly
bags and their window rollups (:mod:`.vlf`, :mod:`.contacts`, :mod:`.traffic`), extraction of the VLF
sources' flows (:mod:`.extraction`), matching and categories (:mod:`.matching`), cross-artifact
checks (:mod:`.consistency`, :mod:`.expectations`) and the SQL catalog (:mod:`.catalog`).
"""
