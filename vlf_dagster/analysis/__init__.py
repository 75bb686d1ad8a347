"""The study as pure functions over the artifacts: :mod:`.steps` (the pipeline: bags, VLF sets,
extraction, matching, consistency, expectations, the SQL catalog), :mod:`.tables` (the study's tables
and figures, by subject) and :mod:`.report` (the report parts and the HTML page).  No dagster here.
"""
