"""Importers: other tools' flow exports -> flow-schema records, every input line accounted for.

One module per format, listed by the registry :mod:`.formats` (names only: the verb's parser reads
it without loading pyarrow): :mod:`.nfdump` (``nfdump-csv``), :mod:`.nfcapd`, :mod:`.argus`
(``binetflow``), :mod:`.zeek`, :mod:`.rwcut`, :mod:`.pcap` (``netflow-pcap``) and :mod:`.silk`.
The text formats share the engine :mod:`.text`; :mod:`.readers` sniffs a file's format, reads it
through its module (:func:`.readers.import_file`) and lands the result (:func:`.readers.land`).

Every importer returns an :class:`~.result.ImportResult`: the flows (flow schema), the quarantine
(:data:`~vlf_dagster.flows.ingest.QUARANTINE_SCHEMA`: origin ``FILE:LINE``, reason, the input line
as a JSON string) and ``counts`` with ``lines == data_lines + skipped_lines + quarantined_lines``:
a line either produced records, or is a header / comment / blank / summary line (or a Zeek
connection without packets), each counted under its own key, or is quarantined with a reason.
"""
