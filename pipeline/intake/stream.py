"""The one intake path: a source of intake forms in, validated chunks out, in input order.

Every engine reads forms through `iter_validated` (the batch scorer, the oracle job, the demo,
the MLflow pyfunc), so each applies the contract of docs/intake-form.md the same way: the
header matched once, the cells of every row validated, a repeated record_id rejected across
the whole source, and every data row either typed or in the reject lines with its position.

>>> from pipeline.contract import default_schema
>>> stream = iter_validated(pd.DataFrame({"record_id": ["a", "b"], "age": ["50", "old"]}), default_schema())
>>> [(len(c.typed), c.rejects["reason"].tolist(), c.rows_read) for c in stream]
[(1, ['not a number (a decimal with '.', no units)'], 2)]
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pandas as pd
import pyarrow as pa

from pipeline.contract.schema import Schema
from pipeline.intake.cells import arrow_cells, raw_cells
from pipeline.intake.errors import IntakeFormatError
from pipeline.intake.header import match_header
from pipeline.intake.reader import BLOCK_BYTES, CsvReader, RawChunk, delimiter_option
from pipeline.intake.source import Opened, open_source
from pipeline.intake.validate import SeenIds, empty_rejects, learn_record_ids, validate_table

PARQUET_BATCH_ROWS = 65_536

Source = str | Path | BinaryIO | pd.DataFrame | pa.Table


@dataclass
class ValidatedChunk:
    """One chunk of a source: its valid rows typed, and its reject lines."""

    typed: pd.DataFrame  # valid rows; index = 1-based data-row position in the source
    rejects: pd.DataFrame  # the rejects columns, one line per bad cell or malformed row, by row
    raw: pa.Table | None  # the well-formed rows' cells as text, every header column (labels included); from a
    # CSV the yes/no and category cells are dictionary-encoded text. None from a stream opened with keep_raw=False
    rows_read: int  # data rows in the chunk, well-formed or not

    @property
    def rows_rejected(self) -> int:
        return int(self.rejects["row"].nunique())


class IntakeStream:
    """An opened source: `header`, `columns` and `warnings` at once, then its chunks (iterate once).

    `first_seen` holds record ids used before this source (see `SeenIds.earlier`); it learns the
    source's own ids as the chunks are read. With `keep_raw` False the chunks leave out their raw
    cells (`raw` is None), so a reader that does not look at them does not hold them.
    """

    def __init__(
        self,
        source: Source,
        schema: Schema,
        *,
        expected_extra: tuple[str, ...] = (),
        block_bytes: int = BLOCK_BYTES,
        delimiter: str | None = None,
        decimal_comma: bool | None = None,
        encoding: str | None = None,
        first_seen: SeenIds | None = None,
        keep_raw: bool = True,
    ):
        self.source, self.schema, self.block_bytes, self.keep_raw = source, schema, block_bytes, keep_raw
        self.first_seen = SeenIds() if first_seen is None else first_seen
        self.delimiter = delimiter_option(delimiter) if delimiter else None
        self._opened: Opened | None = None
        try:
            self._open(source, encoding)
            try:
                match = match_header(self.header, schema, expected_extra)
            except IntakeFormatError as err:
                raise IntakeFormatError(f"{self.name}: {err}") from None
        except BaseException:
            if self._opened is not None:
                self._opened.close()
            raise
        self.columns, self.warnings = match.names, match.warnings
        self.decimal_comma = self.delimiter == ";" if decimal_comma is None else bool(decimal_comma)

    def _open(self, source: Source, encoding: str | None) -> None:
        if isinstance(source, pd.DataFrame | pa.Table):
            self.name = "the input"
            frame = isinstance(source, pd.DataFrame)
            self.header = [str(name) for name in source.columns] if frame else list(source.column_names)
            self._kind = "frame"
            return
        opened = self._opened = open_source(source, encoding)
        self.name = opened.name
        if opened.parquet is not None:
            self.header, self._kind = list(opened.parquet.schema_arrow.names), "parquet"
            return
        self._csv = CsvReader(opened, self.delimiter, self.block_bytes)
        self.header, self.delimiter, self._kind = self._csv.header, self._csv.delimiter, "csv"

    def close(self) -> None:
        """Release the source without reading its rows (after a look at its header and warnings)."""
        if self._opened is not None:
            self._opened.close()

    def _pieces(self, keep: list[str] | None = None) -> Iterator[RawChunk]:
        """The raw pieces in order; with `keep`, only those (contract) columns' cells."""
        if self._kind == "csv":
            yield from self._csv.chunks(self.columns, self.schema, keep)
            return
        if self._kind == "frame":
            source = self.source
            table = raw_cells(source) if isinstance(source, pd.DataFrame) else arrow_cells(source)
            table = table.rename_columns(self.columns).select(keep or self.columns)
            yield RawChunk(table, np.arange(1, table.num_rows + 1), empty_rejects(self.schema))
            return
        read = None if keep is None else [self.header[self.columns.index(name)] for name in keep]
        try:
            start = 0
            for batch in self._opened.parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=read):
                table = arrow_cells(pa.Table.from_batches([batch])).rename_columns(keep or self.columns)
                yield RawChunk(table, np.arange(start + 1, start + table.num_rows + 1), empty_rejects(self.schema))
                start += table.num_rows
        except (pa.ArrowException, OSError) as err:
            raise IntakeFormatError(f"{self.name}: not a readable Parquet file ({str(err).splitlines()[0]})") from None
        finally:
            self._opened.close()

    def __iter__(self) -> Iterator[ValidatedChunk]:
        for piece in self._pieces():
            result = validate_table(piece.table, piece.rows, self.schema, self.first_seen, self.decimal_comma)
            rejects = result.rejects
            if len(piece.malformed):
                rejects = pd.concat([piece.malformed, rejects], ignore_index=True)
                rejects = rejects.sort_values("row", kind="stable", ignore_index=True)
            rows_read = piece.table.num_rows + len(piece.malformed)
            raw = piece.table
            if not self.keep_raw:  # the readers still hold the piece until the next: let go of its cells
                piece.table = raw = None
            yield ValidatedChunk(result.typed, rejects, raw, rows_read)


def iter_validated(
    source: Source,
    schema: Schema,
    *,
    expected_extra: tuple[str, ...] = (),
    block_bytes: int = BLOCK_BYTES,
    delimiter: str | None = None,
    decimal_comma: bool | None = None,
    encoding: str | None = None,
    first_seen: SeenIds | None = None,
    keep_raw: bool = True,
) -> IntakeStream:
    """Open an intake source for validated reading: a CSV or Parquet path (compressed CSV too),
    "-" for standard input, an open binary file, a DataFrame or an Arrow table.

    `delimiter` forces one (else it is detected from the header line among `,` `;` and tab);
    `decimal_comma` accepts `7,5` in number cells (default: when the delimiter is `;`);
    `encoding` names the text's encoding (default UTF-8). Raises IntakeFormatError at once for
    a source no form can be read from (no such file, no header, a required column missing, two
    header cells naming one column); bad cells and malformed rows become reject lines.
    `first_seen`: record ids used before this source (an engine reading many files).
    `keep_raw=False`: the chunks without their raw cells (a scorer, which needs only the typed rows).
    """
    return IntakeStream(
        source,
        schema,
        expected_extra=expected_extra,
        block_bytes=block_bytes,
        delimiter=delimiter,
        decimal_comma=decimal_comma,
        encoding=encoding,
        first_seen=first_seen,
        keep_raw=keep_raw,
    )


def record_id_uses(source: Source, schema: Schema, *, block_bytes: int = BLOCK_BYTES, **read_options) -> SeenIds:
    """Every record_id the source uses, with the row of its first use, as `iter_validated` sees
    them: what a later source's repeats are checked against. Only the id column's cells are
    converted and nothing else is validated, so it costs a fraction of `iter_validated`."""
    stream = IntakeStream(source, schema, block_bytes=block_bytes, **read_options)
    for piece in stream._pieces(keep=[schema.id_column]):
        learn_record_ids(piece.table, piece.rows, schema, stream.first_seen)
    return stream.first_seen


def validate_frame(frame: pd.DataFrame, schema: Schema) -> ValidatedChunk:
    """A whole DataFrame of intake cells through the intake path, as one chunk."""
    chunks = list(iter_validated(frame, schema))
    return chunks[0]
