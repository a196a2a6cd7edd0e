"""Cutting CSV bytes into whole records (pipeline/intake/records.py), checked against a plain
sequential reading of the same rules: pyarrow's quoting (a quote opens a field only at a field
start; `""` inside a quoted field is a quote), a cap on a record's length, an unclosed quote at the
end, and a multi-line record with the wrong number of fields all cut as bad records after their
first line, whatever the block size."""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.csv as pacsv
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.intake.records import _body_end, _line_ends, iter_segments

LF, CR, QUOTE = 10, 13, 34


def _is_line_end(data: bytes, i: int) -> bool:
    return data[i] == LF or (data[i] == CR and (i + 1 == len(data) or data[i + 1] != LF))


def _read_record(data: bytes, start: int, delimiter: int, limit: int | None = None) -> dict:
    """One record read byte by byte from `start`: where it ends (None: not before `limit` or the
    end), the quote still open there (-1 if none), its fields, its first line end inside quotes."""
    i, quoted, field_start, opened, fields, spanning = start, False, True, -1, 1, None
    n = len(data)
    while i < n and (limit is None or i < limit):
        c = data[i]
        if quoted:
            if c == QUOTE and i + 1 < n and data[i + 1] == QUOTE:
                i += 2
                continue
            if c == QUOTE:
                quoted, field_start = False, False
            elif spanning is None and _is_line_end(data, i):
                spanning = i
        elif c == QUOTE and field_start:
            quoted, opened, field_start = True, i, False
        elif c == delimiter:
            fields, field_start = fields + 1, True
        elif _is_line_end(data, i):
            return {"end": i + 1, "open": -1, "fields": fields, "spanning": spanning}
        else:
            field_start = c == CR  # the CR of a CRLF
        i += 1
    return {"end": None, "open": opened if quoted else -1, "fields": fields, "spanning": spanning}


def _line_end_after(data: bytes, pos: int) -> int:
    return next((i + 1 for i in range(pos, len(data)) if _is_line_end(data, i)), len(data))


def reference(data: bytes, delimiter: int, cap: int) -> list[tuple[str, bytes]]:
    """The rules, one byte at a time: ("header" | "good" | "bad", bytes) in order."""
    header = _read_record(data, 0, delimiter)
    out, start = [("header", data[: header["end"]])], header["end"]
    while start < len(data):
        record = _read_record(data, start, delimiter)
        end = record["end"] if record["end"] is not None else len(data)
        if (record["end"] is not None or record["open"] < 0) and end - start <= cap:
            stray = record["spanning"] is not None and record["fields"] != header["fields"]
            if stray and data.count(bytes([delimiter]), start, record["spanning"]) + 1 != header["fields"]:
                out.append(("bad", data[start:end]))  # a well-quoted record with the wrong field count
                start = end
            elif stray:  # its first line has the header's fields: a stray quote, cut after that line
                out.append(("bad", data[start : record["spanning"] + 1]))
                start = record["spanning"] + 1
            else:
                out.append(("good", data[start:end]))
                start = end
            continue
        limit = min(start + cap, len(data))
        while limit > start and data[limit - 1 : limit + 1] == b'""':
            limit -= 1
        opened = _read_record(data, start, delimiter, limit)["open"]
        stop = _line_end_after(data, opened if opened >= 0 else max(limit - 1, start))
        out.append(("bad", data[start:stop]))
        start = stop
    return out


def _merged(items: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    out: list[tuple[str, bytes]] = []
    for kind, data in items:
        if kind == "good" and out and out[-1][0] == "good":
            out[-1] = ("good", out[-1][1] + data)
        elif data or kind != "good":
            out.append((kind, data))
    return out


def _records(data: bytes, delimiter: str) -> int:
    """How many records pyarrow reads from `data`."""
    invalid = []
    table = pacsv.read_csv(
        io.BytesIO(data),
        read_options=pacsv.ReadOptions(column_names=["a"], use_threads=False),
        parse_options=pacsv.ParseOptions(
            delimiter=delimiter, newlines_in_values=True, invalid_row_handler=lambda row: invalid.append(1) or "skip"
        ),
        convert_options=pacsv.ConvertOptions(column_types={"a": pa.string()}),
    )
    return table.num_rows + len(invalid)


PIECES = ["a", "b", " ", '"', '""', ",", ";", "\n", "\r\n", "\r", "é"]


@settings(max_examples=200, deadline=None)
@given(
    body=st.lists(st.sampled_from(PIECES), max_size=60).map("".join),
    delimiter=st.sampled_from([",", ";"]),
    cap=st.sampled_from([6, 16, 40, 1 << 16]),
    block_bytes=st.sampled_from([1, 3, 7, 1 << 20]),
    first=st.sampled_from([0, 2, 1 << 20]),
    tentative=st.booleans(),
    header_end=st.sampled_from(["\n", "\r\n", "\r"]),
)
def test_segments_follow_the_rules_whatever_the_block_size(
    body, delimiter, cap, block_bytes, first, tentative, header_end
):
    data = ("x,y;z" + header_end + body).encode()
    stream = io.BytesIO(data)
    segments = []
    for segment in iter_segments(stream.read(first), stream.read, delimiter, block_bytes, cap, tentative):
        if segment.tentative and _records(segment.data, delimiter) != segment.records:
            segment.retry = True  # as the reader does: the same bytes come again, cut by the quoting rules
            continue
        segments.append(segment)
    got = [("header", segments[0].data)] + [("bad" if s.bad else "good", s.data) for s in segments[1:]]
    want = _merged(reference(data, ord(delimiter), cap))
    got = _merged(got)
    assert [k for k, _ in got] == [k for k, _ in want]
    for (kind, mine), (_, theirs) in zip(got, want, strict=True):
        # a bad line longer than the buffer is kept in part (the rest is skipped, not held)
        assert mine == theirs or (kind == "bad" and theirs.startswith(mine) and mine), (mine, theirs)
    for segment in segments[1:]:
        if not segment.bad:
            assert segment.records == _records(segment.data, delimiter), segment
    assert sum(s.lines for s in segments) == data.count(b"\n") + data.count(b"\r") - data.count(b"\r\n")


def test_quoted_fields_stay_whole_across_blocks():
    rows = [b'a,"x\ny",1\r\n', b'"say ""hi"", then, go",2\n', b'Jo"hn,"",3\n', b'"a,""b",4\n', b'"x,""y""",5\n']
    data = b"id,note,n\n" + b"".join(rows * 50)
    for block_bytes in (1, 5, 64, 1 << 20):
        stream = io.BytesIO(data)
        segments = list(iter_segments(b"", stream.read, ",", block_bytes))
        assert not any(s.bad for s in segments)
        assert b"".join(s.data for s in segments) == data
        assert sum(s.records for s in segments[1:]) == 250 == _records(data[10:], ",")


@settings(max_examples=300, deadline=None)
@given(data=st.lists(st.sampled_from(["a", "\n", "\r", "\r\n", ","]), max_size=40).map("".join), look=st.integers(1, 8))
def test_the_end_of_the_last_line_is_found_without_copying_the_text(data, look):
    assert _body_end(data.encode(), look) == len(data.encode().rstrip(b"\r\n"))


@settings(max_examples=300, deadline=None)
@given(data=st.lists(st.sampled_from(["a", "\n", "\r", "\r\n", ","]), max_size=40).map("".join), step=st.integers(1, 9))
def test_line_ends_found_a_few_bytes_at_a_time_are_all_of_them(data, step):
    text = data.encode()
    lines = text.split(b"\n")[:-1]  # each line before a line end (LF), its CR kept
    assert _line_ends(text, step) == (text.count(b"\n"), sum(line in (b"", b"\r") for line in lines))
