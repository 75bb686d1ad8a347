"""SiLK's rwuniq, rwstats and rwcount: bins by key, top-N lists and traffic over time.

Three pure functions, each taking either a flow table (``pa.Table``) or a list of Parquet paths
(:mod:`.source` opens either as one DuckDB relation):

* :func:`.uniq.uniq` groups flows by key fields (``fields.py`` names or rwcut numbers) and computes
  aggregate values per bin (records, packets, bytes, earliest start, latest end, distinct counts),
  keeping only bins inside every ``--threshold`` range.  One DuckDB ``GROUP BY`` (:mod:`.bins`).
* :func:`.top.top_n` ranks the same bins by their first value: the N largest (or smallest), those
  at or beyond a threshold, or those holding at least a percentage of the total, with each bin's
  share and the cumulative share.  Ties are broken by the key, smaller first (SiLK leaves them
  arbitrary).
* :func:`.count.count_bins` spreads records, bytes and packets over fixed time bins with one of
  rwcount's seven load schemes; a flow spanning k bins is expanded with ``numpy.repeat``, never a
  Python loop.

The request (key fields, values, thresholds, bin time) is parsed and checked in :mod:`.keys`;
errors in it raise :class:`.keys.StatsError` with a one-line message.  :mod:`.text` renders the
results in the SiLK tools' text layouts (right-aligned columns, ``|`` separators including a
trailing one, keys shown as rwcut shows them).

IPv6: when the input holds IPv6 records and an address field is a key or a distinct count, every
address is handled as IPv6 with IPv4 mapped into ``::ffff:0:0/96`` (SiLK's ``mix`` policy); mapped
addresses are printed as dotted quads again, as SiLK does.

The package re-exports nothing: import the names from their modules.
"""
