"""Read intake CSV text as chunks of raw string cells, with their 1-based data-row positions.

The text comes from an opened source (pipeline/intake/source.py) as one UTF-8 byte stream, read
once: the header is its first record, then pipeline/intake/records.py cuts the rest into whole
records and pyarrow parses each run of them. Rows with a wrong number of fields and records with
an unbalanced quote (or longer than the record cap) are not dropped: they come back as reject
lines with their position. File-level problems (empty, not text, undecodable, no readable header)
raise IntakeFormatError with one line a user can act on.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from pipeline.contract.schema import Schema
from pipeline.intake.errors import IntakeFormatError
from pipeline.intake.records import RECORD_CAP, Segment, count_line_ends, iter_segments
from pipeline.intake.source import Opened, not_text_message
from pipeline.intake.validate import empty_rejects

BLOCK_BYTES = 7 << 19  # 3.5 MB, about 9.5k rows of a typical export: memory stays flat (a few chunks in flight)
DELIMITERS = (",", ";", "\t")
_DELIMITER_WORDS = {"tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";"}


@dataclass
class RawChunk:
    table: pa.Table | None  # string cells, one column per header name (None once a scorer's stream let go of it)
    rows: np.ndarray  # 1-based data-row position of each table row
    malformed: pd.DataFrame  # reject lines for rows that could not be cut into the header's fields


def detect_delimiter(head: bytes) -> str:
    """The delimiter of the header line: the most frequent of `,` `;` and tab outside quotes (`,` if none)."""
    ends = [i for i in (head.find(b"\n"), head.find(b"\r")) if i >= 0]
    line = head[: min(ends)] if ends else head
    outside = b"".join(line.split(b'"')[::2])
    counts = [outside.count(d.encode()) for d in DELIMITERS]
    return DELIMITERS[int(np.argmax(counts))] if max(counts) else ","


def delimiter_option(delimiter: str) -> str:
    """A `delimiter=` option as one character (`tab` and `\\t` mean a tab)."""
    value = _DELIMITER_WORDS.get(delimiter.lower(), delimiter)
    if len(value) != 1 or value in '"\r\n':
        raise IntakeFormatError(f"not a usable delimiter: {delimiter!r} (use one of , ; or tab)")
    return value


def _fields(text: str, delimiter: str) -> list[str]:
    """The fields of one raw CSV record (as far as it can be read), [] if none."""
    try:
        return next(csv.reader(io.StringIO(text), delimiter=delimiter), []) if text else []
    except csv.Error:
        return text.split(delimiter)


class CsvReader:
    """CSV text of an opened source: `header` at once (the first record), then `chunks()` once."""

    def __init__(
        self,
        opened: Opened,
        delimiter: str | None = None,
        block_bytes: int = BLOCK_BYTES,
        record_cap: int = RECORD_CAP,
        tentative: bool = True,
    ):
        self.name, self.block_bytes, self._opened = opened.name, block_bytes, opened
        head = opened.head
        if not head.strip(b" \t\r\n"):
            raise IntakeFormatError(f"{self.name}: the file is empty")
        if b"\x00" in head:
            utf16 = head[:2] in (b"\xff\xfe", b"\xfe\xff")
            hint = "; it looks like UTF-16 text: say so with --encoding utf-16" if utf16 else ""
            raise IntakeFormatError(f"{self.name}: not a CSV text file (it contains NUL bytes{hint})")
        self.delimiter = delimiter_option(delimiter) if delimiter else detect_delimiter(head)
        self._segments = iter_segments(head, opened.read, self.delimiter, block_bytes, record_cap, tentative)
        self._lines, self._after_cr = 0, False
        first = next(self._segments)
        self._check(first)
        text = first.data.decode("utf-8", errors="replace")
        if first.bad:
            raise IntakeFormatError(f"{self.name}: not a readable CSV header ({first.bad.split(' (')[0]})")
        try:
            self.header = next(csv.reader(io.StringIO(text), delimiter=self.delimiter), [])
        except csv.Error as err:
            raise IntakeFormatError(f"{self.name}: not a readable CSV header ({err})") from None

    def _check(self, segment: Segment, count: bool = True) -> None:
        """Check the segment is UTF-8 (an error names the line of its first bad byte); count its lines."""
        data = segment.data
        if not self._opened.utf8_checked and not data.isascii():
            try:
                data.decode("utf-8")
            except UnicodeDecodeError as err:
                line = self._lines + count_line_ends(data[: err.start], self._after_cr)[0] + 1
                raise IntakeFormatError(not_text_message(self.name, None, line, data[err.start])) from None
        if count:
            self._lines += segment.lines
            self._after_cr = data[-1:] == b"\r"

    def chunks(self, names: list[str], schema: Schema, keep: list[str] | None = None) -> Iterator[RawChunk]:
        """The data rows in order, as string tables whose columns are `names` (one per header cell),
        or only those in `keep` (every row is still cut into all its fields and checked)."""
        id_index = names.index(schema.id_column) if schema.id_column in names else 0
        self._parse = _Parser(names, self.delimiter, id_index, schema, self.name, keep)
        batch: list[Segment] = []
        size = 0
        try:
            for segment in self._segments:
                if segment.tentative:  # whole lines: parsed alone, kept if its records are its lines
                    if batch:
                        chunk, batch, size = self._chunk(batch), [], 0
                        yield chunk
                    self._check(segment, count=False)
                    chunk = self._parse(segment.data, segment)
                    if chunk is None:
                        segment.retry = True  # the same bytes come again, cut by the quoting rules
                        continue
                    self._lines += segment.lines
                    self._after_cr = False
                    segment.data = b""  # parsed and kept: its text is not held while the chunk is worked on
                    yield chunk
                    continue
                batch.append(segment)
                size += len(segment.data)
                if size >= self.block_bytes // 2:  # a block read is a little short of block_bytes
                    chunk, batch, size = self._chunk(batch), [], 0  # the segments' text not held from here
                    yield chunk
            if batch:
                yield self._chunk(batch)
        finally:
            self._opened.close()

    def _chunk(self, batch: list[Segment]) -> RawChunk:
        for segment in batch:
            self._check(segment)
        return self._parse.records(batch)


class _Parser:
    """Runs of segments (whole records, and bad records between them) as RawChunks, numbered on."""

    def __init__(
        self, names: list[str], delimiter: str, id_index: int, schema: Schema, name: str, keep: list[str] | None = None
    ):
        self.names, self.delimiter, self.id_index, self.schema, self.name = names, delimiter, id_index, schema, name
        self.offset = 0  # data rows before the next chunk
        self.keep = keep or names
        # yes/no and category cells are read dictionary-encoded: a few distinct spellings per column,
        # so parsing copies no text and validation looks each spelling up once (see validate.py)
        words = {c.name for c in schema.columns if c.kind in ("yes_no", "category")}
        word_type = pa.dictionary(pa.int32(), pa.string())
        self.convert = pacsv.ConvertOptions(
            column_types={n: word_type if n.strip() in words else pa.string() for n in names},
            include_columns=keep or [],
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
            null_values=[],
            check_utf8=False,  # checked (or made UTF-8) before
        )

    def _reject(self, text: str, reason: str, record_id: str | None = None) -> dict:
        if record_id is None:
            record_id = self._id(text)
        return {"row": 0, "record_id": record_id, "field": "", "value": text[:200], "reason": reason}

    def _id(self, text: str) -> str:
        fields = _fields(text, self.delimiter)
        return fields[self.id_index] if 0 <= self.id_index < len(fields) else ""

    def _bad_id(self, segment: Segment, text: str) -> str:
        """The record_id of a bad record, if it comes before the quote that never closes."""
        if segment.open_at < 0:
            fields = _fields(text.splitlines()[0] if text else "", self.delimiter)
            return fields[self.id_index] if self.id_index < len(fields) - 1 else ""
        before = segment.data[: segment.open_at].decode("utf-8", errors="replace")
        fields = _fields(before, self.delimiter) if before else []
        return fields[self.id_index] if self.id_index < len(fields) - 1 else ""

    def _read(self, data: bytes) -> tuple[pa.Table, list[dict], list[int]]:
        """The records of `data`: a table of the well-formed ones, reject lines and record numbers of
        the others (a wrong number of fields)."""
        n_fields = len(self.names)
        malformed: list[dict] = []
        numbers: list[int] = []

        def on_invalid(row) -> str:
            if row.number is None or row.number < 0:
                raise IntakeFormatError(f"{self.name}: cannot locate a malformed row")
            numbers.append(row.number)
            reason = f"row has {row.actual_columns} fields, the header has {n_fields}"
            malformed.append(self._reject(row.text, reason))
            return "skip"

        if not data:
            return pa.table({n: pa.array([], pa.string()) for n in self.keep}), malformed, numbers
        table = pacsv.read_csv(
            pa.BufferReader(data),  # the bytes themselves, not a copy read through a Python file
            read_options=pacsv.ReadOptions(column_names=self.names, use_threads=False, block_size=len(data) + 1),
            parse_options=pacsv.ParseOptions(
                # without a quote no value can hold a line end: the parser need not look for one (a
                # third faster; a quoted export keeps the full rule)
                delimiter=self.delimiter,
                newlines_in_values=b'"' in data,
                invalid_row_handler=on_invalid,
            ),
            convert_options=self.convert,
        )
        return table, malformed, numbers

    def __call__(self, data: bytes, segment: Segment) -> RawChunk | None:
        """A tentative segment (whole lines) as a chunk, or None when its records are not its
        non-empty lines (a quoted field spans lines, or a quote never closes)."""
        try:
            table, malformed, numbers = self._read(data)
        except pa.ArrowInvalid:
            return None
        if table.num_rows + len(malformed) != segment.records:
            return None
        return self._numbered([segment], table, malformed, numbers)

    def records(self, batch: list[Segment]) -> RawChunk:
        """Runs of whole records, and bad records between them, as one chunk."""
        good = [s.data for s in batch if not s.bad]
        try:
            table, malformed, numbers = self._read(good[0] if len(good) == 1 else b"".join(good))
        except pa.ArrowInvalid as err:
            message = str(err).splitlines()[0]
            raise IntakeFormatError(f"{self.name}: not a readable CSV file ({message})") from None
        return self._numbered(batch, table, malformed, numbers)

    def _numbered(self, batch: list[Segment], table: pa.Table, malformed: list[dict], numbers: list[int]) -> RawChunk:
        """The chunk with every row's position in the source (bad records counted where they were)."""
        n_records = table.num_rows + len(malformed)
        record_numbers = np.arange(1, n_records + 1)
        good_numbers = np.setdiff1d(record_numbers, np.array(numbers, dtype=np.int64))
        bad_after: list[int] = []  # for each bad record: the whole records before it in the batch
        seen = 0
        for segment in batch:
            if segment.bad:
                text = segment.data.decode("utf-8", errors="replace")
                malformed.append(self._reject(text, segment.bad, self._bad_id(segment, text)))
                numbers.append(-1)
                bad_after.append(seen)
            else:
                seen += segment.records
        shift = np.array(bad_after, dtype=np.int64)

        def position(record: np.ndarray) -> np.ndarray:
            return self.offset + record + np.searchsorted(shift, record, side="left")

        rows = position(good_numbers)
        for line, number in zip(malformed, numbers, strict=True):
            line["row"] = int(position(np.array([number]))[0]) if number > 0 else 0
        bad_rows = self.offset + shift + np.arange(1, len(shift) + 1)
        for line, row in zip([m for m, n in zip(malformed, numbers, strict=True) if n < 0], bad_rows, strict=True):
            line["row"] = int(row)
        self.offset += n_records + len(shift)
        return RawChunk(table, rows, _reject_frame(malformed, self.schema))


def _reject_frame(lines: list[dict], schema: Schema) -> pd.DataFrame:
    if not lines:
        return empty_rejects(schema)
    frame = pd.DataFrame(lines, columns=list(schema.rejects_columns))
    frame = frame.astype({"row": "int64"})
    return frame.sort_values("row", kind="stable", ignore_index=True) if len(frame) > 1 else frame
