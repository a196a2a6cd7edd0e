"""What clinics actually export (docs/intake-form.md, contract version 2): every input form gives
the typed rows and reject lines the plain CSV gives. Standard input (read once, a pipe), gzip,
bzip2 and zstd by name and by magic bytes, Parquet by name and by magic bytes, `;` with decimal
commas, tab, cp1252, and header spellings; then the header rules, undecodable bytes, and a stray
quote (one rejected row, the rest read, memory flat)."""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import json
import os
import subprocess
import sys
import textwrap
import threading
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from helpers import SCHEMA, base_row, write_intake
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.intake.errors import IntakeFormatError
from pipeline.intake.frames import to_csv_table
from pipeline.intake.stream import iter_validated
from pipeline.world.generate import generate_frame
from pipeline.world.network import default_model

REPO = Path(__file__).resolve().parent.parent
NUMBER_COLUMNS = {c.name for c in SCHEMA.columns if c.kind in ("integer", "number")}
MALFORMED_AT = 40  # 0-based data row with one field too many


@dataclass(frozen=True)
class Forms:
    """Intake forms as cell text (a few bad cells, one malformed row), and what the plain CSV gives."""

    header: list[str]
    rows: list[list[str]]
    expected: tuple  # (typed, rejects, rows read) of the plain CSV
    expected_tabular: tuple  # the same without the malformed row (for Parquet and frames)


def render(
    header: list[str],
    rows: list[list[str]],
    *,
    delimiter: str = ",",
    decimal_comma: bool = False,
    newline: str = "\n",
    spell=None,
) -> str:
    """CSV text of the forms, the way a clinic's export might write it."""
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter=delimiter, lineterminator=newline)
    writer.writerow([spell(i, h) if spell else h for i, h in enumerate(header)])
    numbers = [h in NUMBER_COLUMNS for h in header]
    for row in rows:
        if decimal_comma:
            row = [c.replace(".", ",") if i < len(numbers) and numbers[i] else c for i, c in enumerate(row)]
        writer.writerow(row)
    return buf.getvalue()


def read(source, **kwargs) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    chunks = list(iter_validated(source, SCHEMA, **kwargs))
    typed = pd.concat([c.typed for c in chunks])
    rejects = pd.concat([c.rejects for c in chunks], ignore_index=True)
    return typed, rejects, sum(c.rows_read for c in chunks)


def assert_same(got: tuple, expected: tuple, what: str = "") -> None:
    typed, rejects, read_rows = got
    assert read_rows == expected[2], what
    pd.testing.assert_frame_equal(typed, expected[0], obj=f"typed {what}")
    # a malformed row's value is its raw line, written with the form's own delimiter
    mask = rejects["field"] != ""
    pd.testing.assert_frame_equal(rejects.drop(columns="value"), expected[1].drop(columns="value"), obj=what)
    assert rejects["value"][mask].tolist() == expected[1]["value"][mask].tolist(), what


@pytest.fixture(scope="module")
def forms(tmp_path_factory) -> Forms:
    frame = generate_frame(default_model(), 240, 7)
    buf = io.BytesIO()
    pacsv.write_csv(to_csv_table(frame, SCHEMA), buf)
    names = list(SCHEMA.intake_columns)
    options = pacsv.ConvertOptions(column_types={n: pa.string() for n in names}, strings_can_be_null=False)
    text = pacsv.read_csv(io.BytesIO(buf.getvalue()), convert_options=options).to_pandas()
    text.loc[4, "age"] = "130"
    text.loc[8, "sex"] = "alien"
    text.loc[12, "record_id"] = text.loc[2, "record_id"]
    text.loc[20, "bmi"] = "25 kg"
    text.loc[30, "leg_swelling"] = "maybe"
    for i, rid in {3: "café-3", 7: "Zoë «7»", 11: "€-11", 15: "a,b;c\td"}.items():
        text.loc[i, "record_id"] = rid  # non-ASCII (cp1252 has them all) and delimiters inside a cell
    rows = text.to_numpy().tolist()
    root = tmp_path_factory.mktemp("input_forms")
    plain = root / "plain.csv"
    plain.write_text(render(names, rows[:MALFORMED_AT] + [[*rows[MALFORMED_AT], "extra"]] + rows[MALFORMED_AT + 1 :]))
    tabular = root / "tabular.csv"
    tabular.write_text(render(names, rows))
    expected = read(plain)
    assert expected[2] == 240 and len(expected[0]) == 234  # five bad cells and one malformed row
    rows[MALFORMED_AT] = [*rows[MALFORMED_AT], "extra"]
    return Forms(names, rows, expected, read(tabular))


def _zstd(data: bytes) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.CompressedOutputStream(sink, "zstd") as out:
        out.write(data)
    return sink.getvalue().to_pybytes()


COMPRESS = {"gzip": gzip.compress, "bz2": bz2.compress, "zstd": _zstd, None: lambda data: data}
SUFFIX = {"gzip": ".gz", "bz2": ".bz2", "zstd": ".zst"}


def _tabular_rows(forms: Forms) -> pd.DataFrame:
    rows = [r[: len(forms.header)] for r in forms.rows]
    return pd.DataFrame(rows, columns=forms.header)


@pytest.mark.parametrize("codec", ["gzip", "bz2", "zstd"])
@pytest.mark.parametrize("by", ["name", "magic"])
def test_compressed_csv_by_name_or_magic_bytes(forms, tmp_path, codec, by):
    data = COMPRESS[codec](render(forms.header, forms.rows).encode())
    path = tmp_path / (f"forms.csv{SUFFIX[codec]}" if by == "name" else "forms.csv")  # a misleading name
    path.write_bytes(data)
    assert_same(read(path), forms.expected, f"{codec} by {by}")
    if codec == "gzip":
        assert_same(read(path, block_bytes=8192), forms.expected, f"{codec} by {by}, small blocks")


@pytest.mark.parametrize("by", ["name", "magic"])
def test_parquet_by_name_or_magic_bytes_read_as_text(forms, tmp_path, by):
    frame = _tabular_rows(forms)
    path = tmp_path / ("forms.parquet" if by == "name" else "forms.csv")
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path)
    assert_same(read(path), forms.expected_tabular, f"parquet by {by}")


@pytest.mark.parametrize(
    ("name", "options", "kwargs"),
    [
        ("semicolon, decimal comma", {"delimiter": ";", "decimal_comma": True}, {}),
        ("semicolon forced", {"delimiter": ";", "decimal_comma": True}, {"delimiter": ";"}),
        ("tab", {"delimiter": "\t"}, {}),
        ("tab forced by name", {"delimiter": "\t"}, {"delimiter": "tab"}),
        ("comma, decimal comma asked for", {"decimal_comma": True}, {"decimal_comma": True}),
        ("CRLF", {"newline": "\r\n"}, {}),
    ],
)
def test_delimiters_and_decimal_commas(forms, tmp_path, name, options, kwargs):
    path = tmp_path / "forms.csv"
    path.write_text(render(forms.header, forms.rows, **options), newline="")
    assert_same(read(path, **kwargs), forms.expected, name)


def test_a_decimal_comma_in_a_comma_delimited_file_is_a_bad_cell(tmp_path):
    path = write_intake(tmp_path / "in.csv", [base_row("a", bmi="25,5"), base_row("b", bmi="25.5")])
    typed, rejects, _ = read(path)
    assert typed["record_id"].tolist() == ["b"]
    assert rejects[["row", "field", "value"]].values.tolist() == [[1, "bmi", "25,5"]]
    assert "not a number" in rejects["reason"].iloc[0]
    semicolon = tmp_path / "semi.csv"
    semicolon.write_text("record_id;age;bmi\na;50;25,5\nb;50;1.234,5\n")
    typed, rejects, _ = read(semicolon)
    assert typed["bmi"].tolist() == [25.5] and rejects[["row", "field"]].values.tolist() == [[2, "bmi"]]
    typed, rejects, _ = read(semicolon, decimal_comma=False)
    assert typed.empty and rejects["field"].tolist() == ["bmi", "bmi"]


@pytest.mark.parametrize("encoding", ["cp1252", "latin-1", "utf-8"])
def test_another_encoding_is_transcoded(forms, tmp_path, encoding):
    rows = forms.rows
    if encoding == "latin-1":  # no euro sign in latin-1
        rows = [[c.replace("€", "E") for c in r] for r in rows]
        expected = read(_write(tmp_path / "utf8.csv", render(forms.header, rows).encode()))
    else:
        expected = forms.expected
    path = _write(tmp_path / "forms.csv", render(forms.header, rows).encode(encoding))
    assert_same(read(path, encoding=encoding), expected, encoding)
    if encoding == "utf-8":  # characters cut at block ends
        assert_same(read(path, encoding=encoding, block_bytes=8191), expected, f"{encoding}, small blocks")


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


STYLES = {
    "as is": lambda h: h,
    "upper": str.upper,
    "title, spaces": lambda h: h.replace("_", " ").title(),
    "hyphens": lambda h: h.replace("_", "-"),
    "surrounding spaces": lambda h: f"  {h} ",
    "mixed": lambda h: " " + h.replace("_", "-").capitalize() + "  ",
}


@pytest.mark.parametrize("style", list(STYLES))
def test_header_spellings_name_their_columns(forms, tmp_path, style):
    spell = STYLES[style]
    path = tmp_path / "forms.csv"
    path.write_text(render(forms.header, forms.rows, spell=lambda i, h: spell(h)))
    stream = iter_validated(path, SCHEMA)
    assert stream.warnings == [] and stream.columns == forms.header
    assert_same(read(path), forms.expected, style)
    frame = _tabular_rows(forms).rename(columns=spell)
    assert_same(read(frame), forms.expected_tabular, f"{style}, DataFrame")
    assert_same(read(pa.Table.from_pandas(frame, preserve_index=False)), forms.expected_tabular, f"{style}, Arrow")
    parquet = tmp_path / "forms.parquet"
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), parquet)
    assert_same(read(parquet), forms.expected_tabular, f"{style}, Parquet")


def test_the_examples_of_the_contract_name_their_columns(tmp_path):
    path = tmp_path / "in.csv"
    path.write_text("Record_ID,Age, BMI ,Leg Swelling,calf-pain-tenderness-warmth\nx,50,25,yes,no\n")
    typed, rejects, _ = read(path)
    assert rejects.empty and typed[["age", "bmi", "leg_swelling", "calf_pain_tenderness_warmth"]].values.tolist() == [
        [50.0, 25.0, 1.0, 0.0]
    ]


# Standard input: a pipe (read once; it cannot be reopened or rewound)


@pytest.fixture
def stdin_pipe(monkeypatch):
    """Feed bytes to sys.stdin through a real pipe, from a thread."""
    opened = []

    def feed(data: bytes) -> None:
        read_fd, write_fd = os.pipe()

        def write() -> None:
            try:
                with os.fdopen(write_fd, "wb") as fh:
                    fh.write(data)
            except BrokenPipeError:
                pass

        thread = threading.Thread(target=write, daemon=True)
        thread.start()
        stdin = io.TextIOWrapper(os.fdopen(read_fd, "rb"))
        opened.append(stdin)
        monkeypatch.setattr(sys, "stdin", stdin)

    yield feed
    for stdin in opened:
        stdin.close()


@pytest.mark.parametrize("codec", [None, "gzip", "zstd"])
def test_standard_input_is_read_once(forms, stdin_pipe, codec):
    stdin_pipe(COMPRESS[codec](render(forms.header, forms.rows).encode()))
    assert_same(read("-"), forms.expected, f"stdin, {codec}")


def test_standard_input_may_be_parquet_cp1252_or_semicolons(forms, stdin_pipe, tmp_path):
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(_tabular_rows(forms), preserve_index=False), sink)
    stdin_pipe(sink.getvalue())
    assert_same(read(Path("-")), forms.expected_tabular, "parquet on stdin")
    text = render(forms.header, forms.rows, delimiter=";", decimal_comma=True, newline="\r\n")
    stdin_pipe(bz2.compress(text.encode("cp1252")))
    assert_same(read("-", encoding="cp1252"), forms.expected, "bz2 cp1252 ; on stdin")


def test_an_open_binary_file_is_a_source(forms, tmp_path):
    path = _write(tmp_path / "forms.bin", gzip.compress(render(forms.header, forms.rows).encode()))
    with path.open("rb") as fh:
        assert_same(read(fh), forms.expected, "open file")
    assert_same(read(io.BytesIO(path.read_bytes())), forms.expected, "BytesIO")


def test_standard_input_of_a_process_pipe_and_redirect(forms, tmp_path):
    """The real thing: `... | score --input -` and `score --input - < file`, in a child process."""
    data = gzip.compress(render(forms.header, forms.rows, delimiter="\t").encode())
    script = textwrap.dedent(
        """
        import sys, pandas as pd
        from pipeline.contract.loader import default_knowledge_base
        from pipeline.intake.stream import iter_validated
        chunks = list(iter_validated("-", default_knowledge_base().schema))
        pd.concat([c.typed for c in chunks]).to_pickle(sys.argv[1])
        pd.concat([c.rejects for c in chunks], ignore_index=True).to_pickle(sys.argv[2])
        print(sum(c.rows_read for c in chunks))
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "MLFLOW_DISABLE_TELEMETRY": "true"}
    typed_path, rejects_path = tmp_path / "typed.pkl", tmp_path / "rejects.pkl"
    command = [sys.executable, "-c", script, str(typed_path), str(rejects_path)]
    done = subprocess.run(command, input=data, capture_output=True, env=env, check=True, timeout=120)
    got = (pd.read_pickle(typed_path), pd.read_pickle(rejects_path), int(done.stdout))
    assert_same(got, forms.expected, "child process, pipe")


@settings(max_examples=20, deadline=None)
@given(
    styles=st.lists(st.sampled_from(list(STYLES)), min_size=1, max_size=8),
    delimiter=st.sampled_from([",", ";", "\t"]),
    encoding=st.sampled_from(["utf-8", "cp1252", None]),
    codec=st.sampled_from([None, "gzip", "bz2", "zstd"]),
    newline=st.sampled_from(["\n", "\r\n"]),
    bom=st.booleans(),
)
def test_any_mix_of_forms_gives_the_same_rows_and_rejects(forms, styles, delimiter, encoding, codec, newline, bom):
    def spell(i: int, h: str) -> str:
        return STYLES[styles[i % len(styles)]](h)

    text = render(
        forms.header, forms.rows, delimiter=delimiter, decimal_comma=delimiter == ";", newline=newline, spell=spell
    )
    data = text.encode(encoding or "utf-8")
    if bom and encoding != "cp1252":
        data = b"\xef\xbb\xbf" + data
    source = io.BytesIO(COMPRESS[codec](data))
    assert_same(read(source, encoding=encoding), forms.expected, f"{styles} {delimiter!r} {encoding} {codec}")


# The header rules


@pytest.mark.parametrize(("first", "second"), [("Age", "age"), ("leg_swelling", "Leg-Swelling"), ("BMI", " bmi ")])
def test_two_header_cells_naming_one_column_are_refused(tmp_path, first, second):
    path = tmp_path / "in.csv"
    columns = ["record_id", first, "sex", second] + (["age"] if "age" not in (first.lower(), second.lower()) else [])
    path.write_text(",".join(columns) + "\n" + ",".join(["a", "50", "male", "50", "50"][: len(columns)]) + "\n")
    with pytest.raises(IntakeFormatError) as err:
        iter_validated(path, SCHEMA)
    message = str(err.value)
    assert repr(first) in message and repr(second) in message and str(path) in message and "\n" not in message
    with pytest.raises(IntakeFormatError, match="both name"):
        iter_validated(pd.DataFrame({"record_id": ["a"], first: ["50"], second: ["50"], "age": ["50"]}), SCHEMA)


def test_a_near_miss_header_cell_gets_a_did_you_mean(tmp_path):
    near_misses = ["bmii", "Leg Swellings", "leg_swelings", "notes"]
    columns = [c for c in SCHEMA.intake_columns if c not in ("bmi", "leg_swelling")] + near_misses
    path = write_intake(tmp_path / "in.csv", [base_row("a", bmii="25")], columns)
    warnings = iter_validated(path, SCHEMA).warnings
    extra = next(w for w in warnings if "extra column" in w)
    assert "bmii (did you mean bmi?)" in extra and "Leg Swellings (did you mean leg_swelling?)" in extra
    # two edits away (a letter missing and one too many) is not a near miss by the contract's rule
    assert "leg_swelings," in extra and "notes" in extra and "notes (did you mean" not in extra
    missing = tmp_path / "missing.csv"
    missing.write_text("record_id,agee,sex\na,50,male\n")
    suggestion = r"missing required column\(s\): age \(did you mean age for the header cell 'agee'\?\)"
    with pytest.raises(IntakeFormatError, match=suggestion):
        iter_validated(missing, SCHEMA)


# Undecodable bytes: the line of the first bad byte, and the --encoding option


def _lines(n: int, start: int = 0) -> str:
    return "".join(f"r{i},{30 + i % 50}\n" for i in range(start, start + n))


@pytest.mark.parametrize("block_bytes", [64, 8 << 20])
def test_an_undecodable_byte_is_refused_with_its_line(tmp_path, block_bytes):
    path = tmp_path / "intake.csv"
    path.write_bytes(b"record_id,age\n" + _lines(3).encode() + "Jos\xe9,30\n".encode("latin-1") + _lines(3).encode())
    with pytest.raises(IntakeFormatError) as err:
        list(iter_validated(path, SCHEMA, block_bytes=block_bytes))
    assert str(err.value) == (
        f"{path}: not UTF-8 text at line 5 (byte 0xe9); if the file is in another encoding, "
        "say which with --encoding (for example --encoding cp1252)"
    )
    assert read(path, encoding="cp1252", block_bytes=block_bytes)[0]["record_id"].tolist()[3] == "José"


def test_the_line_is_counted_in_lines_not_records_and_far_into_the_file(tmp_path):
    head = b'record_id,age\n"multi\nline\r\nid",40\n' + _lines(60_000).encode()  # well past the first block
    data = head + "Jos\xe9,30\n".encode("latin-1")
    line = head.count(b"\n") + 1
    for name, content in {"intake.csv": data, "intake.csv.gz": gzip.compress(data)}.items():
        path = _write(tmp_path / name, content)
        with pytest.raises(IntakeFormatError, match=f"at line {line} \\(byte 0xe9\\).*--encoding"):
            list(iter_validated(path, SCHEMA, block_bytes=1 << 16))
    cp1252 = _write(tmp_path / "cp.csv", head + b"Jos\x81,30\n")
    with pytest.raises(IntakeFormatError, match=f"not cp1252 text at line {line} \\(byte 0x81\\).*--encoding"):
        list(iter_validated(cp1252, SCHEMA, encoding="cp1252", block_bytes=1 << 16))


def test_an_unknown_encoding_or_delimiter_is_one_clear_line(tmp_path):
    path = write_intake(tmp_path / "in.csv", [base_row("a")])
    utf16 = _write(tmp_path / "utf16.csv", path.read_text().encode("utf-16"))
    with pytest.raises(IntakeFormatError, match="NUL bytes; it looks like UTF-16 text: say so with --encoding utf-16"):
        iter_validated(utf16, SCHEMA)
    assert read(utf16, encoding="utf-16")[0]["record_id"].tolist() == ["a"]
    with pytest.raises(IntakeFormatError, match="unknown encoding 'klingon'"):
        iter_validated(path, SCHEMA, encoding="klingon")
    with pytest.raises(IntakeFormatError, match="delimiter"):
        iter_validated(path, SCHEMA, delimiter='"')


# A stray quote: one rejected row, the rest read


def _stray(tmp_path: Path, lines: list[str], name: str = "in.csv") -> Path:
    return _write(tmp_path / name, ("record_id,age,sex\n" + "".join(f"{line}\n" for line in lines)).encode())


@pytest.mark.parametrize(("block_bytes", "n"), [(64, 40), (4096, 2000), (8 << 20, 2000)])
def test_a_stray_quote_rejects_its_row_and_the_rest_is_read(tmp_path, block_bytes, n):
    rows = [f"r{i},{30 + i % 50},female" for i in range(n)]  # at most ~40 KB: under the record cap
    rows[3] = 'r3,"45,male'  # opens a quoted field
    rows[7] = 'Jo"hn,50,male'  # a quote inside a cell is text
    rows[-2] = f'r{n - 2},50,"female'  # opens another: read as CSV, it would close the first one
    typed, rejects, read_rows = read(_stray(tmp_path, rows), block_bytes=block_bytes)
    assert read_rows == n and len(typed) == n - 2
    assert rejects[["row", "record_id", "field"]].values.tolist() == [[4, "r3", ""], [n - 1, f"r{n - 2}", ""]]
    assert rejects["reason"].str.startswith("unbalanced quote: the quoted field opened here").all()
    assert "runs on over the next lines (the record would have" in rejects["reason"].iloc[0]
    assert "never closes (not closed before the end of the file)" in rejects["reason"].iloc[1]
    assert rejects["value"].tolist() == ['r3,"45,male\n', f'r{n - 2},50,"female\n']
    assert typed.loc[8, "record_id"] == 'Jo"hn' and typed.loc[n, "record_id"] == f"r{n - 1}"


def test_a_quote_that_never_closes_within_the_record_cap_rejects_one_row(tmp_path):
    rows = [f"r{i},{30 + i % 50},female" for i in range(10_000)]  # ~190 KB: the cap, not the end of file
    rows[10] = 'r10,"45,male'
    rows[5000] = '"r5000,45,male'  # the record_id itself opened
    typed, rejects, read_rows = read(_stray(tmp_path, rows), block_bytes=4096)
    assert read_rows == 10_000 and len(typed) == 9998
    assert rejects[["row", "record_id"]].values.tolist() == [[11, "r10"], [5001, ""]]
    assert rejects["reason"].str.contains("no closing quote within 65536 bytes").all()


def test_a_line_longer_than_the_record_cap_is_rejected_as_a_row(tmp_path):
    rows = ["a,50,male", "b,50," + "x" * 200_000, "c,50,female"]
    typed, rejects, read_rows = read(_stray(tmp_path, rows), block_bytes=4096)
    assert read_rows == 3 and typed["record_id"].tolist() == ["a", "c"]
    assert rejects[["row", "record_id"]].values.tolist() == [[2, "b"]]
    assert "longer than 65536 bytes" in rejects["reason"].iloc[0] and len(rejects["value"].iloc[0]) == 200


def test_a_stray_quote_in_a_big_file_keeps_memory_flat(tmp_path):
    """200k rows with a stray quote near the start: one rejected row, chunks of a block, flat memory.

    Run in a child process so its peak RSS is this read's (printed, not asserted: machines differ)."""
    n = 200_000
    path = tmp_path / "big.csv"
    with path.open("w") as fh:
        fh.write("record_id,age,sex,bmi,leg_swelling,hours_sitting_per_day\n")
        for i in range(n):
            stray = '"' if i == 10 else ""  # opens the age cell of row 11, never to close it
            fh.write(f"r{i},{stray}{40 + i % 40},male,27.5,yes,6.5\n")
    script = textwrap.dedent(
        """
        import json, resource, sys
        from pipeline.contract.loader import default_knowledge_base
        from pipeline.intake.stream import iter_validated
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        read = typed = biggest = 0
        rejects = []
        for chunk in iter_validated(sys.argv[1], default_knowledge_base().schema, block_bytes=1 << 18):
            read, typed, biggest = read + chunk.rows_read, typed + len(chunk.typed), max(biggest, chunk.rows_read)
            rejects += chunk.rejects[["row", "record_id"]].values.tolist()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(json.dumps({"read": read, "typed": typed, "biggest_chunk": biggest, "rejects": rejects,
                          "peak_mib": peak / 1024, "growth_mib": (peak - before) / 1024}))
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "MLFLOW_DISABLE_TELEMETRY": "true"}
    done = subprocess.run(
        [sys.executable, "-c", script, str(path)], capture_output=True, env=env, check=True, timeout=300
    )
    result = json.loads(done.stdout)
    print(
        f"stray quote, {n} rows, {path.stat().st_size >> 20} MiB: peak RSS {result['peak_mib']:.0f} MiB "
        f"(+{result['growth_mib']:.0f} MiB while reading)"
    )
    assert result["read"] == n and result["typed"] == n - 1
    assert result["rejects"] == [[11, "r10"]]
    assert result["biggest_chunk"] < 40_000  # about a block (256 KiB) of rows at a time, not the rest of the file
