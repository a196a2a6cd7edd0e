"""Stream an intake CSV as chunks of raw string cells, with their 1-based data-row positions.

Rows whose field count differs from the header's are not dropped: they come back as reject
lines with their position. File-level problems (missing, empty, not UTF-8, not parseable
as CSV) raise IntakeFormatError with one line a user can act on.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from pipeline.contract.schema import Schema
from pipeline.intake.errors import IntakeFormatError

BLOCK_BYTES = 8 << 20


@dataclass
class RawChunk:
    table: pa.Table  # string cells, one column per header name
    rows: np.ndarray  # 1-based data-row position of each table row
    malformed: pd.DataFrame  # reject lines for rows with the wrong number of fields


def read_header(path: Path) -> list[str]:
    """The header fields of a CSV file, checked for the file-level failure cases."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            head = fh.read(1 << 20)
    except FileNotFoundError:
        raise IntakeFormatError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise IntakeFormatError(f"{path}: is a directory, not a CSV file") from None
    if not head.strip(b"\xef\xbb\xbf \t\r\n"):
        raise IntakeFormatError(f"{path}: the file is empty")
    if b"\x00" in head:
        raise IntakeFormatError(f"{path}: not a CSV text file (it contains NUL bytes)")
    try:
        text = head.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        if len(head) == 1 << 20 and err.start > len(head) - 4:
            text = head[: err.start].decode("utf-8-sig")  # a character cut at the buffer end
        else:
            raise IntakeFormatError(f"{path}: not UTF-8 text (byte {err.start})") from None
    try:
        header = next(csv.reader(io.StringIO(text)))
    except (csv.Error, StopIteration) as err:
        raise IntakeFormatError(f"{path}: not a readable CSV header ({err})") from None
    return header


def _field(text: str, index: int) -> str:
    """Field `index` of one raw CSV row, or "" when the row is too short or unparseable."""
    try:
        fields = next(csv.reader(io.StringIO(text)), []) if text else []
    except csv.Error:
        return ""
    return fields[index] if 0 <= index < len(fields) else ""


def _last_record_end(buf: bytes) -> int:
    """Offset just after the last newline outside quotes (even quote count before it), or -1.

    `buf` always starts at a record boundary, so quote parity starts even.
    """
    arr = np.frombuffer(buf, dtype=np.uint8)
    newlines = np.flatnonzero(arr == 10)
    if not len(newlines):
        return -1
    quotes_before = np.cumsum(arr == 34)[newlines]
    outside = newlines[quotes_before % 2 == 0]
    return int(outside[-1]) + 1 if len(outside) else -1


def _record_pieces(path: Path, block_bytes: int) -> Iterator[bytes]:
    """The file as byte pieces of whole records, about block_bytes each (the header first).

    Pieces are cut here, not by pyarrow's streaming reader, whose read-ahead thread buffers
    the whole file when the consumer (scoring) is slower than reading.
    """
    pending, header_done = b"", False
    with Path(path).open("rb") as fh:
        while True:
            block = fh.read(block_bytes)
            pending += block
            if not header_done:
                cut = _first_record_end(pending)
                if cut < 0 and block:
                    continue
                cut = len(pending) if cut < 0 else cut
                yield pending[:cut]
                pending, header_done = pending[cut:], True
            end = _last_record_end(pending) if block else len(pending)
            if end > 0:
                yield pending[:end]
                pending = pending[end:]
            if not block:
                return


def _first_record_end(buf: bytes) -> int:
    """Offset just after the first newline outside quotes, or -1."""
    arr = np.frombuffer(buf, dtype=np.uint8)
    newlines = np.flatnonzero(arr == 10)
    if not len(newlines):
        return -1
    outside = newlines[np.cumsum(arr == 34)[newlines] % 2 == 0]
    return int(outside[0]) + 1 if len(outside) else -1


def iter_raw_chunks(
    path: Path, header: list[str], schema: Schema, block_bytes: int = BLOCK_BYTES, columns: list[str] | None = None
) -> Iterator[RawChunk]:
    """Yield the file's data rows in order, as string tables, with malformed rows as reject lines.

    `columns` (header cells) keeps only those columns in the tables; every field is still counted.
    """
    path = Path(path)
    n_fields = len(header)
    names = [h.strip() for h in header]
    id_index = names.index(schema.id_column) if schema.id_column in names else 0
    options = {
        "convert_options": pacsv.ConvertOptions(
            column_types={name: pa.string() for name in header},
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
            null_values=[],
            check_utf8=True,
            include_columns=columns or [],
        ),
    }
    try:
        pieces = _record_pieces(path, block_bytes)
        header_bytes = next(pieces, b"")
        offset = 0  # records before this piece
        for piece in pieces:
            malformed: list[dict] = []

            def on_invalid(row, malformed=malformed, offset=offset) -> str:
                if row.number is None or row.number < 0:
                    raise IntakeFormatError(f"{path}: cannot locate a malformed row")
                malformed.append(
                    {
                        "row": offset + row.number - 1,
                        "record_id": _field(row.text, id_index),
                        "field": "",
                        "value": row.text[:200],
                        "reason": f"row has {row.actual_columns} fields, the header has {n_fields}",
                    }
                )
                return "skip"

            data = header_bytes + piece
            table = pacsv.read_csv(
                io.BytesIO(data),
                read_options=pacsv.ReadOptions(use_threads=False, block_size=len(data) + 1),
                parse_options=pacsv.ParseOptions(newlines_in_values=True, invalid_row_handler=on_invalid),
                **options,
            )
            n_records = table.num_rows + len(malformed)
            bad = {m["row"] for m in malformed}
            positions = np.setdiff1d(
                np.arange(offset + 1, offset + n_records + 1), np.array(sorted(bad), dtype=np.int64)
            )
            offset += n_records
            yield RawChunk(table, positions, _reject_frame(malformed, schema))
    except pa.ArrowInvalid as err:
        message = str(err).splitlines()[0]
        if "UTF8" in message or "utf8" in message.lower():
            raise IntakeFormatError(f"{path}: not UTF-8 text ({message})") from None
        raise IntakeFormatError(f"{path}: not a readable CSV file ({message})") from None


def _reject_frame(lines: list[dict], schema: Schema) -> pd.DataFrame:
    frame = pd.DataFrame(lines, columns=list(schema.rejects_columns))
    return frame.astype({"row": "int64"})
