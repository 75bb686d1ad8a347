"""The report: :mod:`.study` lists the parts (one asset each, in the study's order), :mod:`.parts`
files a part's typed tables and figures, :mod:`.render` turns tables into Markdown, HTML or CSV, and
:mod:`.page` builds the HTML page from its Jinja2 templates.
"""
