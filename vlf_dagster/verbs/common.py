"""What every `vlf` verb shares: one-line errors, reading and writing flow streams.

Flow streams between verbs are Arrow IPC streams (stdout when it is not a terminal, stdin as
``-``).  Files are read by content: Parquet (``PAR1``), Arrow IPC file (``ARROW1``) or Arrow IPC
stream.  Written files are Parquet when the name ends in ``.parquet``, else an Arrow IPC stream.
"""

from __future__ import annotations

import argparse
import os
import stat
import sys
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Iterable, Sequence

if TYPE_CHECKING:
    import pyarrow as pa

# pyarrow, DuckDB and the flow library are imported where they are used: a verb's parser (and its
# --help) is built from this module and must not pay their 0.3-0.5 s import.


class VerbError(Exception):
    """A user-facing error: `vlf` prints it as one line and exits with status 1."""


def stdin_binary() -> BinaryIO:
    return sys.stdin.buffer


def stdout_binary() -> BinaryIO:
    return sys.stdout.buffer


def stdout_is_terminal() -> bool:
    return sys.stdout.isatty()


def _open_bytes(name: str, what: str = "a flow stream") -> tuple[bytes, str]:
    if name == "-":
        if sys.stdin.isatty():
            raise VerbError(f"no input: give FILES or pipe {what} into stdin")
        return stdin_binary().read(), "<stdin>"
    try:
        return Path(name).read_bytes(), name
    except OSError as exc:
        raise VerbError(f"{name}: cannot read: {exc.strerror}") from None


def read_flow_table(data: bytes, label: str) -> pa.Table:
    """Decode one flow file or stream and conform it to the flow schema."""
    import pyarrow as pa
    import pyarrow.ipc as ipc

    from ..flows.schema import FLOW_SCHEMA, SchemaError, conform
    from ..flows.silkfile import SilkFileError, is_silk_file, read_silk_flows
    from ..flows.storage import read_parquet_bytes

    if is_silk_file(data[:4]):  # a SiLK flow file (rwtuc, rwcat, rwfilter output)
        try:
            return read_silk_flows(data, label)
        except SilkFileError as exc:
            raise VerbError(str(exc)) from None
    try:
        if data[:4] == b"PAR1":
            table = read_parquet_bytes(data)
        elif data[:6] == b"ARROW1":
            table = ipc.open_file(pa.BufferReader(data)).read_all()
        elif not data:
            return FLOW_SCHEMA.empty_table()
        elif data[:4] == IPC_STREAM_START:
            table = ipc.open_stream(pa.BufferReader(data)).read_all()
        else:  # say what it is not, rather than what Arrow made of its first bytes
            raise VerbError(f"{label}: not a flow file or stream: it starts with {data[:12]!r}, where Parquet, Arrow and "
                            "SiLK files start with PAR1, ARROW1, an Arrow stream with 0xFFFFFFFF and SiLK with 0xDEADBEEF")
    except (pa.ArrowInvalid, OSError) as exc:
        kind = "Parquet file" if data[:4] == b"PAR1" else "Arrow file" if data[:6] == b"ARROW1" else "Arrow stream"
        raise VerbError(f"{label}: damaged {kind} ({str(exc).splitlines()[0]})") from None
    try:
        return conform(table.replace_schema_metadata(None), source=label)
    except SchemaError as exc:
        raise VerbError(f"not a flow file: {exc}") from None


def parquet_flow_files(names: Sequence[str]) -> list[str] | None:
    """The inputs as paths DuckDB can scan itself, when every one is a named Parquet file holding
    every flow column; None otherwise (stdin, Arrow IPC, files that need conforming).

    Scanning the files in DuckDB reads them in parallel and only the columns a query needs, where
    reading them one by one into Python costs a read and a conform per file.
    """
    from ..flows.storage import holds_flow_columns

    if not names or any(name == "-" or _GLOB_CHARACTERS.intersection(name) for name in names):
        return None  # DuckDB would expand *, ? and [..] in a name: read such files by name instead
    for name in names:
        try:
            if not stat.S_ISREG(os.stat(name).st_mode):
                return None  # a pipe, FIFO or /dev/stdin: sniffing would eat its first bytes
            with open(name, "rb") as handle:
                if handle.read(4) != b"PAR1":
                    return None
        except OSError:
            return None  # the one-file-at-a-time path names the problem
    return list(names) if holds_flow_columns(list(names)) else None


_GLOB_CHARACTERS = frozenset("*?[")


def damaged_parquet_file(paths: Sequence[str | Path]) -> str | None:
    """Which of many Parquet files a failed scan tripped on, as one line naming it (a query over
    many files names none); None when every file reads.  Footers first, then the data pages."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    for check in (pq.read_metadata, lambda path: pq.read_table(path)):
        for path in paths:
            try:
                check(path)
            except (pa.ArrowException, OSError) as exc:
                name = Path(path).name
                hour = ""
                if name.endswith(".parquet") and "_" in name:  # an archive file: <prefix>-<sensor>_YYYYMMDD.HH
                    stamp = name[: -len(".parquet")].rsplit("_", 1)[1]
                    if len(stamp) == 11 and stamp[8] == ".":
                        hour = f" (archive hour {stamp[:4]}-{stamp[4:6]}-{stamp[6:8]}T{stamp[9:]})"
                return f"{path}: damaged Parquet file{hour}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
    return None


def read_flows(names: Iterable[str], columns: Sequence[str] | None = None) -> pa.Table:
    """All records of the named inputs (``-`` is stdin) as one flow-schema table, in input order.

    With ``columns``, only those flow columns, in the flow schema's types: Parquet files are then
    scanned for them alone (`vlf set` needs 3 of 30 columns).
    """
    import pyarrow as pa

    from ..flows import duck
    from ..flows.schema import FLOW_SCHEMA, conform, conform_columns
    from ..flows.segments import is_segmented
    from ..flows.sql import NO_HIVE, glob_escaped, ident

    names = list(names) or ["-"]
    paths = parquet_flow_files(names)
    if paths is not None:
        select = ", ".join(ident(c) for c in columns) if columns is not None else "*"
        with duck.connect() as con:
            table = con.sql(f"SELECT {select} FROM read_parquet($files, {NO_HIVE})", params={"files": [glob_escaped(p) for p in paths]}).to_arrow_table()
        if columns is not None:
            return conform_columns(table, columns)
        return conform(table.replace_schema_metadata(None))
    tables = [_read_segmented(n) if is_segmented(n) else read_flow_table(*_open_bytes(n)) for n in names]
    table = pa.concat_tables(tables) if tables else FLOW_SCHEMA.empty_table()
    return table.select(list(columns)) if columns is not None else table


IPC_STREAM_START = b"\xff\xff\xff\xff"  # an Arrow IPC stream's first message: the continuation marker
BROKEN_STREAM = IPC_STREAM_START + b"\xff\xff\xff\x7f"  # a message claiming 2 GiB of metadata: readers stop there


class _Prefixed:
    """A binary stream whose first bytes were already read (to sniff them): they come first."""

    def __init__(self, head: bytes, rest: BinaryIO):
        self.head, self.rest, self.closed = head, rest, False

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            data, self.head = self.head + self.rest.read(), b""
            return data
        if self.head:
            data, self.head = self.head[:size], self.head[size:]
            return data + (self.rest.read(size - len(data)) if len(data) < size else b"")
        return self.rest.read(size)

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self.closed = True


def read_flow_source(names: Iterable[str]) -> "pa.Table | pa.RecordBatchReader":
    """The named inputs as :func:`read_flows` reads them, except that one Arrow IPC stream on
    stdin (a pipe from another verb) comes as a reader of flow-schema batches, taken as they
    arrive: a consumer such as DuckDB then never holds the whole input."""
    import pyarrow as pa
    import pyarrow.ipc as ipc

    from ..flows.schema import FLOW_SCHEMA, SchemaError, conform

    names = list(names) or ["-"]
    if names not in (["-"], ["stdin"]) or sys.stdin.isatty():
        return read_flows(names)
    stdin = stdin_binary()
    peek = getattr(stdin, "peek", None)  # sniffing without consuming: the stream is then read in C
    head = peek(len(IPC_STREAM_START))[: len(IPC_STREAM_START)] if peek is not None else b""
    if len(head) < len(IPC_STREAM_START):  # no buffered peek (or a writer's first bytes trickle in)
        head = stdin.read(len(IPC_STREAM_START))
        stdin = _Prefixed(head, stdin)
    if head != IPC_STREAM_START:  # Parquet, Arrow file, SiLK or empty: read whole, as read_flows does
        return read_flow_table(stdin.read(), "<stdin>")
    try:
        reader = ipc.open_stream(pa.PythonFile(stdin, mode="r"))
    except (pa.ArrowInvalid, OSError) as exc:
        raise VerbError(f"<stdin>: not a flow stream ({str(exc).splitlines()[0]})") from None
    if reader.schema.remove_metadata().equals(FLOW_SCHEMA):
        return reader
    try:  # a stream that can never be flows is told now, not from inside the consumer's scan
        conform(reader.schema.empty_table(), source="<stdin>")
    except SchemaError as exc:
        raise VerbError(f"not a flow stream: {exc}") from None

    def conformed():
        for batch in reader:
            try:
                yield from conform(pa.Table.from_batches([batch]).replace_schema_metadata(None), source="<stdin>").to_batches()
            except SchemaError as exc:
                raise VerbError(f"not a flow file: {exc}") from None

    return pa.RecordBatchReader.from_batches(FLOW_SCHEMA, conformed())


def _read_segmented(name: str) -> pa.Table:
    """A window artifact kept segmented (``data/vlf_flows``, ``data/matched_vlf_flows``): its
    current rows, base then delta, as one flow table."""
    from ..flows.schema import SchemaError, conform
    from ..flows.segments import Segmented

    try:
        return conform(Segmented(Path(name)).read().replace_schema_metadata(None), source=name)
    except SchemaError as exc:
        raise VerbError(f"not a flow file: {exc}") from None


def write_flow_stream(batches: Iterable[pa.RecordBatch] | pa.Table, sink: BinaryIO) -> int:
    """Write flow records as an Arrow IPC stream; returns the number of records."""
    import pyarrow as pa
    import pyarrow.ipc as ipc

    from ..flows.schema import FLOW_SCHEMA

    if isinstance(batches, pa.Table):
        batches = batches.to_batches()
    count = 0
    with ipc.new_stream(sink, FLOW_SCHEMA) as writer:
        try:
            for batch in batches:
                writer.write_batch(batch)
                count += batch.num_rows
        except BaseException:
            # the batches failed half way (a damaged input file): end the stream with a message no
            # reader can read, so the verb downstream fails too rather than take a short stream
            # for the whole one (closing would write a clean end-of-stream marker after it)
            sink.write(BROKEN_STREAM)
            raise
    return count


SILK_OUTPUT_HELP = ("write SiLK flow files (FT_RWIPV6ROUTING, records as SiLK's rwcat writes them) that rwcut and every "
                    "SiLK tool read, stdout included, instead of Parquet or Arrow")


def write_flows(records: pa.Table | Iterable[pa.RecordBatch], dest: str, *, silk: bool = False) -> int:
    """Write to ``-`` (stdout: IPC stream, or text via `vlf cut` on a terminal) or a file; with
    ``silk``, a SiLK flow file either way (to pipe into SiLK's tools).  ``records`` may be batches
    as they come (filter's scan): an Arrow stream out, to a pipe or a file not named .parquet, is
    written batch by batch; the other outputs take them whole."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ..flows.schema import FLOW_SCHEMA
    from ..flows.storage import atomic_path

    streams = (dest == "-" and not stdout_is_terminal()) or (dest != "-" and not dest.endswith(".parquet"))
    if not isinstance(records, pa.Table) and (silk or not streams):
        records = pa.Table.from_batches(list(records), schema=FLOW_SCHEMA)
    if silk:
        from ..flows.silkfile import silk_flow_bytes

        write_binary_output(silk_flow_bytes(records), dest)
        return records.num_rows
    if dest == "-":
        if not streams:  # a terminal: the records as `vlf cut` prints them
            from ..flows.tools.cut import format_text

            for block in format_text(records):
                stdout_binary().write(block)
            stdout_binary().flush()
            return records.num_rows
        count = write_flow_stream(records, stdout_binary())
        stdout_binary().flush()
        return count
    with atomic_path(dest) as tmp:
        if not streams:
            pq.write_table(records, tmp, compression="zstd")
            return records.num_rows
        with open(tmp, "wb") as sink:
            return write_flow_stream(records, sink)


def write_binary_output(data: bytes, dest: str) -> None:
    """Write a file's bytes (a set, a bag, a verb's text) to ``dest`` (``-`` is stdout)."""
    if dest == "-":
        sys.stdout.flush()  # text printed before goes first
        stdout_binary().write(data)
        stdout_binary().flush()
        return
    from ..flows.storage import write_bytes

    write_bytes(data, dest)


def read_binary_input(name: str, what: str = "a flow stream") -> tuple[bytes, str]:
    """A named input's bytes and its label (``-``: standard input, labelled ``<stdin>``)."""
    return _open_bytes(name, what)


def check_clobber(path: str) -> None:
    """SiLK's rule for output files: an existing regular file is replaced only with SILK_CLOBBER
    set (a FIFO, a device such as /dev/null or a link such as /dev/stdout is written to, as SiLK
    does)."""
    from ..flows.storage import written_in_place

    if path in ("-", "stdout", "stderr") or written_in_place(path):
        return
    if Path(path).is_file() and not os.environ.get("SILK_CLOBBER"):
        raise VerbError(f"{path}: output file exists (remove it or set SILK_CLOBBER=1)")


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keep the hand-wrapped descriptions and show defaults."""
