"""Sequence numbers of NetFlow v5 / v9 / IPFIX streams -> lost records, lost datagrams, resets, reordering.

A stream is (exporter address:port, version, engine or observation domain).  Lost records are
counted for v5 ``flow_sequence`` and IPFIX sequence numbers, lost datagrams for the v9 package
sequence; a jump beyond :data:`MAX_RECORD_GAP` / :data:`MAX_DATAGRAM_GAP` counts as a stream
reset, not loss.  Exporters disagree on what a sequence number counts (softflowd's IPFIX counts
the message's own records, and no options records): the reading that explains a stream is learned
per stream, so quirks are not reported as loss.  A batch's checks run after it is decoded, in
datagram order, vectorised when the batch has no gap.

:class:`SequencesMixin` is that part of :class:`~.decoder.Decoder`, whose state it uses.
"""

from __future__ import annotations

import numpy as np

from .accounting import ExporterStats

# A jump ahead this far between two datagrams of one stream is no loss an exporter could have had
# (a restart, a damaged or mutated header): it counts as a reset, and the new number is the baseline.
MAX_RECORD_GAP = 10_000_000  # v5 flow_sequence, IPFIX sequence (records)
MAX_DATAGRAM_GAP = 1_000_000  # v9 package_sequence (datagrams)
# Streams one decoder keeps a baseline for; a flood of made-up streams cannot grow its memory.
MAX_STREAMS = 16_384  # sequence-number streams (address:port, version, domain); the oldest baseline goes first


class SequencesMixin:
    """Sequence checks per stream, kept in the decoder's ``sequences``."""

    def _sequence(self, key: tuple, sequence: int, increments: tuple[int, ...] | None, stats: ExporterStats, *, per_record: bool) -> None:
        """Count a sequence gap.

        ``increments`` are what this datagram adds to the exporter's counter under the readings
        an exporter may use (IPFIX: all data records, or flow records only, as softflowd does).
        The standard says a header carries the counter *before* its datagram; some exporters
        (softflowd's IPFIX) send it *after*.  The reading that explains the stream is learned per
        stream, so neither quirk shows up as loss.  ``None``: unknown (a held set), next datagram
        starts a new baseline.
        """
        if self._seq_events is not None:  # inside a batch: checked later, in datagram order
            self._seq_events.append((self._position, key, sequence, increments, per_record))
            return
        state = self.sequences.get(key)
        if state is not None and increments is not None:
            previous, previous_increments, mode = state
            # fast path: the stream's learned reading explains this datagram
            if sequence == (previous + (previous_increments if mode[0] == "before" else increments)[mode[1]]) & 0xFFFFFFFF:
                self.sequences[key] = (sequence, increments, mode)
                return
            candidates = [("before", i, (previous + inc) & 0xFFFFFFFF) for i, inc in enumerate(previous_increments)]
            candidates += [("after", i, (previous + inc) & 0xFFFFFFFF) for i, inc in enumerate(increments)]
            ordered = sorted(candidates, key=lambda c: (c[0], c[1]) != mode)
            match = next((c for c in ordered if c[2] == sequence), None)
            if match is not None:
                mode = match[:2]
            else:
                expected = next(c[2] for c in ordered)
                gap = (sequence - expected) & 0xFFFFFFFF
                if gap > (MAX_RECORD_GAP if per_record else MAX_DATAGRAM_GAP) and gap < 0x80000000:
                    self.accounting.sequence_resets += 1  # a restart or a damaged header, not loss
                    stats.sequence_resets += 1
                elif gap < 0x80000000:
                    if per_record:
                        self.accounting.lost_records += gap
                        stats.lost_records += gap
                    else:
                        self.accounting.lost_datagrams += gap
                        stats.lost_datagrams += gap
                else:
                    self.accounting.out_of_order += 1
                    stats.out_of_order += 1
        else:
            mode = state[2] if state is not None else ("before", 0)
        if increments is None:
            self.sequences.pop(key, None)
        else:
            self.sequences[key] = (sequence, increments, mode)

    def _apply_sequences(self, events: list, simple_events: list, label: str, version: int, stats: ExporterStats) -> None:
        """A batch's sequence checks in datagram order: vectorised when the batch has no gap."""
        per_record = version == 10
        readings = 2 if version == 10 else 1
        singles_by_key: dict[tuple, list] = {}
        for position, key, sequence, increments, _ in events:
            singles_by_key.setdefault(key, []).append((position, sequence, increments))
        blocks_by_key: dict[tuple, list] = {}
        for indices, domains, sequences, increments in simple_events:
            for domain in np.unique(domains).tolist():
                pick = domains == domain
                blocks_by_key.setdefault((label, version, domain), []).append((indices[pick], sequences[pick], increments[pick]))
        for key in sorted(set(singles_by_key) | set(blocks_by_key), key=repr):
            singles = singles_by_key.get(key, [])
            blocks = blocks_by_key.get(key, [])
            position = np.concatenate([np.fromiter((e[0] for e in singles), dtype=np.int64, count=len(singles))] + [b[0] for b in blocks])
            seq = np.concatenate([np.fromiter((e[1] for e in singles), dtype=np.int64, count=len(singles))] + [b[1] for b in blocks])
            inc = np.concatenate(
                [np.array([[e[2][0], e[2][-1]] if e[2] is not None else [0, 0] for e in singles], dtype=np.int64).reshape(-1, 2)]
                + [np.stack([b[2], b[2]], axis=1) for b in blocks]
            )
            order = np.argsort(position, kind="stable")
            position, seq, inc = position[order], seq[order], inc[order]
            single_increments = {e[0]: e[2] for e in singles}

            def increments_at(i):
                at = int(position[i])
                if at in single_increments:
                    return single_increments[at]
                return tuple(int(x) for x in inc[i][:readings])

            start = 0
            if not any(e[2] is None for e in singles):
                self._sequence(key, int(seq[0]), increments_at(0), stats, per_record=per_record)
                state = self.sequences.get(key)
                mode = state[2] if state is not None else ("before", 0)
                column = inc[:, min(mode[1], 1)]
                ahead = column[:-1] if mode[0] == "before" else column[1:]
                if len(seq) == 1 or ((seq[:-1] + ahead) & 0xFFFFFFFF == seq[1:]).all():
                    if len(seq) > 1:
                        self.sequences[key] = (int(seq[-1]), increments_at(len(seq) - 1), mode)
                    continue
                start = 1
            for i in range(start, len(seq)):
                self._sequence(key, int(seq[i]), increments_at(i), stats, per_record=per_record)

    def _trim_streams(self) -> None:
        while len(self.sequences) > MAX_STREAMS:  # the oldest stream's baseline: its next datagram starts anew
            del self.sequences[next(iter(self.sequences))]
