"""The formats `vlf import` reads and its policies for times before 1990: names only.

Kept apart from ``importers.py`` (which loads pyarrow and DuckDB) so that `vlf import --help`
and the parser are built without them.
"""

FORMATS = ("nfdump-csv", "nfcapd", "binetflow", "zeek", "rwcut", "netflow-pcap", "silk")
OLD_TIME_POLICIES = ("keep", "quarantine")
# Zeek logs read from a capture with relative time start in 1970 on purpose; elsewhere a time
# before 1990 means an exporter whose clock was not set.
DEFAULT_OLD_TIMES = {"zeek": "keep"}
