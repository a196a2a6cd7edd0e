"""The one intake path: a CSV file, a Parquet file, a DataFrame and an Arrow table of the same
forms give the same typed rows and the same reject lines, whatever the chunk size."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from helpers import SCHEMA

from pipeline.intake.frames import to_csv_table
from pipeline.intake.stream import iter_validated
from pipeline.world.generate import generate_frame
from pipeline.world.network import default_model


@pytest.fixture(scope="module")
def forms(tmp_path_factory) -> dict:
    """300 synthetic forms with a few bad cells, as a CSV file and its other forms."""
    frame = generate_frame(default_model(), 300, 11)
    table = to_csv_table(frame, SCHEMA)
    text = pacsv.read_csv(io.BytesIO(_csv_bytes(table)), convert_options=_as_text(table)).to_pandas()
    text.loc[5, "age"] = "130"
    text.loc[9, "sex"] = "alien"
    text.loc[12, "record_id"] = text.loc[3, "record_id"]
    root = tmp_path_factory.mktemp("forms")
    csv_path = root / "forms.csv"
    text.to_csv(csv_path, index=False)
    parquet_path = root / "forms.parquet"
    pq.write_table(pa.Table.from_pandas(text, preserve_index=False), parquet_path)
    return {"csv": csv_path, "parquet": parquet_path, "frame": text, "arrow": pa.Table.from_pandas(text)}


def _csv_bytes(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pacsv.write_csv(table, buf)
    return buf.getvalue()


def _as_text(table: pa.Table) -> pacsv.ConvertOptions:
    return pacsv.ConvertOptions(column_types={n: pa.string() for n in table.column_names}, strings_can_be_null=False)


def _read(source, **kwargs) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    chunks = list(iter_validated(source, SCHEMA, **kwargs))
    typed = pd.concat([c.typed for c in chunks])
    rejects = pd.concat([c.rejects for c in chunks], ignore_index=True)
    return typed, rejects, sum(c.rows_read for c in chunks)


def test_every_source_gives_the_same_rows_and_rejects(forms):
    typed, rejects, read = _read(forms["csv"])
    assert read == 300 and len(typed) == 297
    assert rejects[["row", "field"]].values.tolist() == [[6, "age"], [10, "sex"], [13, "record_id"]]
    for name in ("parquet", "frame", "arrow"):
        other_typed, other_rejects, other_read = _read(forms[name])
        assert other_read == read, name
        pd.testing.assert_frame_equal(other_typed, typed, obj=name)
        pd.testing.assert_frame_equal(other_rejects, rejects, obj=name)


@pytest.mark.parametrize("block_bytes", [512, 4096, 1 << 16])
def test_chunk_size_changes_nothing(forms, block_bytes):
    typed, rejects, read = _read(forms["csv"])
    small_typed, small_rejects, small_read = _read(forms["csv"], block_bytes=block_bytes)
    assert small_read == read
    pd.testing.assert_frame_equal(small_typed, typed)
    pd.testing.assert_frame_equal(small_rejects, rejects)


def test_typed_numbers_read_like_their_text(forms):
    """A frame with real numbers (as pandas reads a CSV) gives the rows its text gives."""
    numeric = pd.read_csv(forms["csv"])  # ints, floats with NaN blanks
    assert numeric["age"].dtype == np.dtype("O") or numeric["bmi"].dtype == np.float64
    typed, _, _ = _read(forms["csv"])
    numeric_typed, _, _ = _read(numeric)
    pd.testing.assert_frame_equal(numeric_typed, typed)
