"""The one intake path: a source of intake forms in, validated chunks out, in input order.

Every engine reads forms through `iter_validated` (the batch scorer, the oracle job, the demo,
the MLflow pyfunc), so each applies the contract of docs/intake-form.md the same way: the
header checked once, the cells of every row validated, a repeated record_id rejected across
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

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.contract.schema import Schema
from pipeline.intake.cells import arrow_cells, raw_cells
from pipeline.intake.errors import IntakeFormatError
from pipeline.intake.reader import BLOCK_BYTES, iter_raw_chunks, read_header
from pipeline.intake.validate import (
    SeenIds,
    check_header,
    empty_rejects,
    header_column,
    learn_record_ids,
    validate_table,
)

PARQUET_BATCH_ROWS = 65_536


@dataclass
class ValidatedChunk:
    """One chunk of a source: its valid rows typed, and its reject lines."""

    typed: pd.DataFrame  # valid rows; index = 1-based data-row position in the source
    rejects: pd.DataFrame  # the rejects columns, one line per bad cell or malformed row, by row
    raw: pa.Table  # the well-formed rows' cells as text, every header column (labels included)
    rows_read: int  # data rows in the chunk, well-formed or not

    @property
    def rows_rejected(self) -> int:
        return int(self.rejects["row"].nunique())


@dataclass
class _RawPiece:
    table: pa.Table  # text cells
    rows: np.ndarray  # 1-based positions of the table's rows
    malformed: pd.DataFrame  # reject lines of rows that could not be cut into fields


class IntakeStream:
    """An opened source: `header` and `warnings` at once, then its chunks (iterate once).

    `first_seen` holds record ids used before this source (a repeat of one rejects the row); it
    learns this source's ids as the chunks are read. `id_only` reads the record_id column alone,
    for `record_id_uses`: its chunks are not forms.
    """

    def __init__(
        self,
        source: str | Path | pd.DataFrame | pa.Table,
        schema: Schema,
        *,
        expected_extra: tuple[str, ...] = (),
        block_bytes: int = BLOCK_BYTES,
        first_seen: SeenIds | None = None,
        id_only: bool = False,
    ):
        self.source, self.schema, self.block_bytes = source, schema, block_bytes
        self.first_seen = SeenIds() if first_seen is None else first_seen
        self._id_only = id_only
        self._pieces = self._open(source)
        try:
            self.warnings = check_header(self.header, schema, expected_extra)
        except IntakeFormatError as err:
            where = "the input" if isinstance(source, pd.DataFrame | pa.Table) else str(source)
            raise IntakeFormatError(f"{where}: {err}") from None

    def _kept_columns(self) -> list[str] | None:
        """The header cells to read: all (None), or the one naming record_id when `id_only`."""
        if not self._id_only:
            return None
        return [h for h in self.header if header_column(h) == self.schema.id_column][:1]

    def _open(self, source) -> Iterator[_RawPiece]:
        if isinstance(source, pd.DataFrame | pa.Table):
            table = raw_cells(source) if isinstance(source, pd.DataFrame) else arrow_cells(source)
            self.header = list(table.column_names)
            if self._kept_columns() is not None:
                table = table.select(self._kept_columns())
            return iter([_RawPiece(table, np.arange(1, table.num_rows + 1), empty_rejects(self.schema))])
        path = Path(source)
        if path.suffix == ".parquet":
            return self._parquet(path)
        self.header = read_header(path)
        pieces = iter_raw_chunks(path, self.header, self.schema, self.block_bytes, self._kept_columns())
        return (_RawPiece(c.table, c.rows, c.malformed) for c in pieces)

    def _parquet(self, path: Path) -> Iterator[_RawPiece]:
        try:
            reader = pq.ParquetFile(path)
        except FileNotFoundError:
            raise IntakeFormatError(f"{path}: no such file") from None
        except pa.ArrowInvalid as err:
            raise IntakeFormatError(f"{path}: not a readable Parquet file ({str(err).splitlines()[0]})") from None
        self.header = list(reader.schema_arrow.names)

        def pieces() -> Iterator[_RawPiece]:
            start = 0
            for batch in reader.iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=self._kept_columns()):
                table = arrow_cells(pa.Table.from_batches([batch]))
                yield _RawPiece(table, np.arange(start + 1, start + table.num_rows + 1), empty_rejects(self.schema))
                start += table.num_rows

        return pieces()

    def __iter__(self) -> Iterator[ValidatedChunk]:
        for piece in self._pieces:
            result = validate_table(piece.table, piece.rows, self.schema, self.first_seen)
            rejects = result.rejects
            if len(piece.malformed):
                rejects = pd.concat([piece.malformed, rejects], ignore_index=True)
                rejects = rejects.sort_values("row", kind="stable", ignore_index=True)
            yield ValidatedChunk(result.typed, rejects, piece.table, piece.table.num_rows + len(piece.malformed))


def iter_validated(
    source: str | Path | pd.DataFrame | pa.Table,
    schema: Schema,
    *,
    expected_extra: tuple[str, ...] = (),
    block_bytes: int = BLOCK_BYTES,
    first_seen: SeenIds | None = None,
) -> IntakeStream:
    """Open an intake source (a CSV or Parquet path, a DataFrame, an Arrow table) for validated reading.

    Raises IntakeFormatError at once for a source no form can be read from (no such file, no
    header, a required column missing); bad cells and malformed rows become reject lines.
    `first_seen`: record ids used before this source, with where (an engine reading many files).
    """
    return IntakeStream(source, schema, expected_extra=expected_extra, block_bytes=block_bytes, first_seen=first_seen)


def record_id_uses(
    source: str | Path | pd.DataFrame | pa.Table, schema: Schema, *, block_bytes: int = BLOCK_BYTES, **read_options
) -> SeenIds:
    """Every record_id the source uses, with the row of its first use: what a later repeat is
    checked against. Reads the id column alone (the other cells are neither typed nor validated),
    so it costs a small part of `iter_validated`; the ids and rows are the ones it would see."""
    stream = IntakeStream(source, schema, block_bytes=block_bytes, id_only=True, **read_options)
    for piece in stream._pieces:
        learn_record_ids(piece.table, piece.rows, schema, stream.first_seen)
    return stream.first_seen


def validate_frame(frame: pd.DataFrame, schema: Schema) -> ValidatedChunk:
    """A whole DataFrame of intake cells through the intake path, as one chunk."""
    chunks = list(iter_validated(frame, schema))
    return chunks[0]
