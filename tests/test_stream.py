"""The one intake path: a CSV file, a Parquet file, a DataFrame and an Arrow table of the same
forms give the same typed rows and the same reject lines, whatever the chunk size; the record ids
a source uses, read alone, are those validation sees; ids known from an earlier source repeat."""

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
from pipeline.intake.stream import iter_validated, record_id_uses
from pipeline.intake.validate import SeenIds
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


@pytest.mark.parametrize("name", ["csv", "parquet", "frame"])
def test_chunks_without_their_raw_cells_are_the_same_chunks(forms, name):
    """A scorer's stream (keep_raw=False) does not hold the raw cells, and reads the same rows."""
    kept = list(iter_validated(forms[name], SCHEMA, block_bytes=4096))
    left_out = list(iter_validated(forms[name], SCHEMA, block_bytes=4096, keep_raw=False))
    assert len(left_out) == len(kept) and all(c.raw is None for c in left_out)
    assert all(c.raw is not None and c.raw.num_rows > 0 for c in kept)
    for mine, theirs in zip(left_out, kept, strict=True):
        assert mine.rows_read == theirs.rows_read
        pd.testing.assert_frame_equal(mine.typed, theirs.typed)
        pd.testing.assert_frame_equal(mine.rejects, theirs.rejects)


def test_typed_numbers_read_like_their_text(forms):
    """A frame with real numbers (as pandas reads a CSV) gives the rows its text gives."""
    numeric = pd.read_csv(forms["csv"])  # ints, floats with NaN blanks
    assert numeric["age"].dtype == np.dtype("O") or numeric["bmi"].dtype == np.float64
    typed, _, _ = _read(forms["csv"])
    numeric_typed, _, _ = _read(numeric)
    pd.testing.assert_frame_equal(numeric_typed, typed)


def test_record_id_uses_sees_what_the_validated_stream_sees(tmp_path, forms):
    """The ids and first-use rows of the id-only reading are those validation records, on every source."""
    path = tmp_path / "forms.csv"
    path.write_text(
        'record_id,age,bmi\n a1 ,50,\na2,50,25 kg\nNA,50,\na1,50,\na3,50\n,50,\na4,50,,extra\na5,130,\nzz,1,"open\n',
        encoding="utf-8",
    )
    uses = record_id_uses(path, SCHEMA, block_bytes=64)
    seen = SeenIds()
    for _ in iter_validated(path, SCHEMA, first_seen=seen):
        pass
    assert uses.ids.to_pylist() == seen.ids.to_pylist() == ["a1", "a2", "a5"]
    assert uses.rows.tolist() == seen.rows.tolist() == [1, 2, 8]  # malformed rows 5, 7, 9 use no id
    expected = record_id_uses(forms["csv"], SCHEMA)
    assert len(expected.ids) == 299  # 300 rows, one repeat
    for name in ("parquet", "frame", "arrow"):
        other = record_id_uses(forms[name], SCHEMA)
        assert other.ids.equals(expected.ids) and other.rows.tolist() == expected.rows.tolist(), name


def test_ids_used_in_an_earlier_source_are_repeats_naming_it(forms):
    """`first_seen` knows ids from other sources: their use here is rejected, citing the source and
    row, even on the same row number; ids first used here cite their row alone."""
    frame = forms["frame"]
    first, later = frame.loc[0, "record_id"], frame.loc[40, "record_id"]
    seen = SeenIds.earlier([first, later], [1, 41], ["a.csv", "b.csv"])
    typed, rejects, read = _read(forms["csv"], first_seen=seen)
    assert read == 300 and len(typed) == 295
    lines = rejects[rejects["field"] == "record_id"][["row", "reason"]].values.tolist()
    assert lines == [
        [1, "repeated record_id (first used at row 1 of a.csv)"],
        [13, "repeated record_id (first used at row 4)"],
        [41, "repeated record_id (first used at row 41 of b.csv)"],
    ]
    assert first not in set(typed["record_id"]) and len(seen.ids) == 2 + 297  # the rest learnt as they came


def test_repeats_are_found_across_the_growth_of_the_id_bitmap():
    """The bitmap of ids kept starts small and grows with them; an id first used before it grew is
    still a repeat after, and a file of a few ids keeps a small bitmap."""
    import pipeline.intake.seen_ids as seen_ids

    seen = SeenIds()
    small = seen._filter.nbytes
    assert small <= 1 << (seen_ids.FILTER_BITS[0] - 3)
    chunk, n = 10_000, 120_000  # past the smallest bitmap's 32 bits per id
    for start in range(0, n, chunk):
        ids = np.array([f"id{i}" for i in range(start, start + chunk)], dtype=object)
        rows = np.arange(start + 1, start + chunk + 1)
        first, _ = seen.first_use(ids, rows, np.ones(chunk, dtype=bool))
        assert (first == rows).all()  # all new
    assert seen._filter.nbytes * 8 >= seen_ids.FILTER_BITS_PER_ID * n > small * 8
    again = np.array(["id0", "id12345", "new", f"id{n - 1}"], dtype=object)
    first, _ = seen.first_use(again, np.arange(n + 1, n + 5), np.ones(4, dtype=bool))
    assert first.tolist() == [1, 12346, n + 3, n]
