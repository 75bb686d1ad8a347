"""NetFlow v5, NetFlow v9 and IPFIX export datagrams -> flow records, with every byte accounted for.

The decoders are pure (no sockets, no dagster): a :class:`~.decoder.Decoder` is fed the UDP
payloads of one exporter at a time and returns flow-schema tables
(:func:`~vlf_dagster.flows.schema.conform`) plus the datagrams or parts of datagrams it could not
decode, each with a reason.  It keeps the state a collector needs between datagrams: templates and
options templates per (exporter address, version, observation domain / source id), sequence
numbers per exporter and stream, data sets held while their template has not arrived yet, and
sampling and system-init times announced in options data.

No per-record Python loop on the hot path, and for the bulk of a stream no per-datagram one:

- NetFlow v5 (:mod:`.v5`): the headers of a whole batch of datagrams are checked with numpy
  (version, count against length, engine, sequence numbers), and the records are viewed through a
  big-endian structured dtype (48 bytes per record); header values are repeated per record.
- NetFlow v9 and IPFIX (:mod:`.v9_ipfix`, :mod:`.templates`): a template is compiled once into a
  numpy dtype that picks the fields SiLK needs at their offsets; the data records of every set
  using that template in a batch are joined and viewed at once.  Datagrams holding a single data
  set of a known template (nearly all of them) are checked and cut into records with numpy as well;
  the others (templates, options, several sets, unknown templates, anything malformed) go through
  the per-datagram path in order, and identical template re-announcements are recognised from
  their bytes and skipped.  Sequence numbers are checked in datagram order after the batch
  (:mod:`.sequences`).  Batches decode exactly as datagram-by-datagram feeding does (a property
  test holds them to it).
- Templates with variable-length fields (IPFIX) fall back to a per-record path, which also reads
  5-tuples out of sampled packet sections (``ipHeaderPacketSection``, ``dataLinkFrameSection``)
  when a record carries no addresses of its own (:mod:`.columns`).
- RFC 5103 biflows (reverse elements, enterprise 29305) give a second record for the reverse
  direction when it carried packets; other enterprise elements are skipped.

Accounting (:class:`~.accounting.Accounting`): datagrams, flow records, option records, sequence
gaps per exporter (lost records for v5 ``flow_sequence`` and IPFIX sequence numbers, lost datagrams
for the v9 package sequence; a jump beyond :data:`~.sequences.MAX_RECORD_GAP` /
:data:`~.sequences.MAX_DATAGRAM_GAP` counts as a stream reset, not loss), undecodable datagrams by
reason, and every input byte in exactly one of the ``bytes`` categories (headers, templates,
records, options, other records, padding, held, quarantined): ``accounting.bytes_balanced()``
checks it.  Exporters disagree on what a sequence number counts (softflowd's IPFIX counts the
message's own records, and no options records): the reading that explains a stream is learned per
stream, so quirks are not reported as loss.  Decoded records that start before 1995 (an exporter
clock never set: "times in 1970"), over a day after their export time, or relative to a
system-init time never announced are quarantined with their decoded fields.

The modules, one job each (as SiLK's libflowsource keeps its sources apart); the version modules
are mixins of the :class:`~.decoder.Decoder`, sharing its state:

- :mod:`.decoder`: the Decoder (state, dispatch by version, output) and ``decode_datagrams``;
- :mod:`.v5`: NetFlow v5 datagrams;
- :mod:`.v9_ipfix`: NetFlow v9 and IPFIX messages, their sets and data records, held sets, options;
- :mod:`.templates`: information elements, compiled templates, template sets and the templates in force;
- :mod:`.sequences`: sequence numbers -> loss, resets, reordering;
- :mod:`.columns`: records -> flow columns, time checks, flow tables;
- :mod:`.accounting`: counters, quarantine entries and ``quarantine_table``.

Captures of export traffic (pcap files) are read by :mod:`vlf_dagster.flows.sources.pcap`.
"""
