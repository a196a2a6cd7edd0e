"""Reading CSV files: rows cut into fields whatever their quoting, malformed rows rejected as rows
with their position, and files no form can be read from refused with one clear line; reading
whole lines first gives exactly what the quoting rules give."""

from __future__ import annotations

import csv
import io

import pandas as pd
import pytest
from helpers import SCHEMA, base_row
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.intake.errors import IntakeFormatError
from pipeline.intake.reader import CsvReader
from pipeline.intake.source import open_source
from pipeline.intake.stream import iter_validated

FILE_LEVEL_FAILURES = {
    "missing_required_column": (b"record_id,sex,bmi\na,male,25\n", "missing required column"),
    "empty_file": (b"", "empty"),
    "only_a_bom_and_blank_lines": (b"\xef\xbb\xbf\r\n\r\n", "empty"),
    "not_utf8": ("record_id,age\nJos\xe9,30\n".encode("latin-1"), "UTF-8"),
    "corrupt_gzip": (bytes.fromhex("1f8b0800000000000003") + bytes(range(256)), "not a readable gzip stream"),
    "binary_zeros": (bytes(64), "NUL"),
    "binary_png": (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(40)), "NUL"),
    "html_not_an_intake_csv": (b"<!doctype html>\n<html><body><p>leg fatigue</p></body></html>\n", "column"),
    "no_such_file": (None, "no such file"),
}


@pytest.mark.parametrize("case", list(FILE_LEVEL_FAILURES))
def test_a_file_no_form_can_be_read_from_is_refused(tmp_path, case):
    content, words = FILE_LEVEL_FAILURES[case]
    src = tmp_path / "intake.csv"
    if content is not None:
        src.write_bytes(content)
    with pytest.raises(IntakeFormatError, match=words) as err:
        list(iter_validated(src, SCHEMA))
    assert str(src) in str(err.value) and "\n" not in str(err.value)


def test_undecodable_bytes_after_the_first_megabyte_are_refused(tmp_path):
    """The header check reads only the first MiB; a bad byte further on must still refuse the file."""
    filler = "," * (len(SCHEMA.intake_columns) - 2)
    text = ",".join(SCHEMA.intake_columns) + "\n" + "".join(f"r{i},30{filler}\n" for i in range(20_000))
    assert len(text) > 1 << 20
    src = tmp_path / "intake.csv"
    src.write_bytes(text.encode() + f"Jos\xe9,30{filler}\n".encode("latin-1"))
    with pytest.raises(IntakeFormatError, match="UTF-8"):
        list(iter_validated(src, SCHEMA))


def test_rows_with_too_many_or_too_few_fields_are_rejected_as_rows(tmp_path):
    n = len(SCHEMA.intake_columns)
    good = ["50" if c == "age" else "" for c in SCHEMA.intake_columns[1:]]
    lines = [
        ",".join(SCHEMA.intake_columns),
        ",".join(["a", *good]),
        ",".join(["too-many", *good, "extra"]),
        ",".join(["b", *good]),
        "too-few,50",
        ",".join(["c", *good]),
    ]
    path = tmp_path / "in.csv"
    path.write_text("\n".join(lines) + "\n")
    chunks = list(iter_validated(path, SCHEMA))
    typed = pd.concat([c.typed for c in chunks])
    rejects = pd.concat([c.rejects for c in chunks], ignore_index=True)
    assert sum(c.rows_read for c in chunks) == 5
    assert typed["record_id"].tolist() == ["a", "b", "c"] and typed.index.tolist() == [1, 3, 5]
    assert rejects[["row", "record_id", "field"]].values.tolist() == [[2, "too-many", ""], [4, "too-few", ""]]
    assert f"row has {n + 1} fields, the header has {n}" in rejects["reason"].iloc[0]
    assert f"row has 2 fields, the header has {n}" in rejects["reason"].iloc[1]
    assert rejects["value"].iloc[1] == "too-few,50"


def test_malformed_row_record_id_comes_from_the_record_id_column(tmp_path):
    src = tmp_path / "in.csv"
    src.write_text("age,sex,record_id\n30,male,a\n40,female,b,extra\n50,male,c\n")
    chunks = list(iter_validated(src, SCHEMA))
    rejects = pd.concat([c.rejects for c in chunks])
    assert pd.concat([c.typed for c in chunks])["record_id"].tolist() == ["a", "c"]
    assert rejects[["row", "field"]].values.tolist() == [[2, ""]]
    # the value under the record_id column (or nothing), never another column's value such as the age
    assert rejects["record_id"].iloc[0] in ("b", "")


def test_quotes_multiline_bom_and_crlf_are_read_as_written(tmp_path):
    ids = ["a,b", "line1\nline2", "cr\r\nlf", 'say "hi"', "patiënt-ü-東京"]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow(["record_id", "age", "sex"])
    for rid in ids:
        writer.writerow([base_row(rid)[c] if c != "sex" else "female" for c in ("record_id", "age", "sex")])
    src = tmp_path / "odd.csv"
    src.write_bytes(b"\xef\xbb\xbf" + buf.getvalue().encode("utf-8"))
    for block_bytes in (64, 1 << 20):
        chunks = list(iter_validated(src, SCHEMA, block_bytes=block_bytes))
        typed = pd.concat([c.typed for c in chunks])
        assert typed["record_id"].tolist() == ids, block_bytes
        assert typed.index.tolist() == list(range(1, len(ids) + 1))


# ------------------------------------------------- whole lines first, the quoting rules on a mismatch

LINE_PIECES = ['a1,50', '"a2","50"', '"a,3",50', '"a""4",50', 'a5,"5\n0"', '"a6\r\n",50', 'a7,"50', 'a8",50',
               'a9,50,x', 'a10', '', '"a11",""', 'Jo"hn,50', '"é",50']  # fmt: skip


def _raw_rows(path, block_bytes: int, tentative: bool) -> tuple[list, list, list]:
    """(cells, positions, reject lines) of every chunk, read with or without whole lines first."""
    opened = open_source(path, head_bytes=16)
    reader = CsvReader(opened, ",", block_bytes, record_cap=64, tentative=tentative)
    cells, rows, rejects = [], [], []
    for chunk in reader.chunks(list(reader.header), SCHEMA):
        cells += chunk.table.to_pylist()
        rows += chunk.rows.tolist()
        rejects += chunk.malformed.to_dict("records")
    return cells, rows, rejects


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    lines=st.lists(st.sampled_from(LINE_PIECES), min_size=1, max_size=80),
    newline=st.sampled_from(["\n", "\r\n"]),
    end=st.sampled_from(["", "\n"]),
    block_bytes=st.sampled_from([8, 64, 300, 1 << 20]),
)
def test_whole_lines_read_exactly_as_the_quoting_rules(tmp_path, lines, newline, end, block_bytes):
    """A file read whole lines first (checked by their record count) gives the same rows, positions
    and reject lines as read by the quoting rules alone, stray quotes and multi-line fields included."""
    path = tmp_path / "in.csv"
    path.write_bytes(("record_id,age" + newline + newline.join(lines) + end).encode())
    assert _raw_rows(path, block_bytes, True) == _raw_rows(path, block_bytes, False)


def test_a_large_quoted_export_is_read_by_whole_lines(tmp_path):
    """Past the first block, a file whose quoted fields stay on their line is parsed without following
    its quotes (the fast path), and a multi-line field further on is still read whole."""
    rows = [f'"r{i}","{30 + i % 50}","female"' for i in range(20_000)]
    rows[15_000] = '"multi\nline","40","male"'
    path = tmp_path / "big.csv"
    path.write_text('"record_id","age","sex"\n' + "\n".join(rows) + "\n")
    chunks = list(iter_validated(path, SCHEMA, block_bytes=1 << 16))
    typed = pd.concat([c.typed for c in chunks])
    assert len(typed) == 20_000 and typed.index.tolist() == list(range(1, 20_001))
    assert typed["record_id"].iloc[15_000] == "multi\nline" and typed["sex"].iloc[-1] == "female"
