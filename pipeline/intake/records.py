"""Cut a UTF-8 CSV byte stream into whole records, in pieces of about a block, with flat memory.

Record ends are found the way pyarrow's CSV parser reads quotes (double quotes escape a quote):
a quote opens a quoted field only at the start of a field (after a delimiter, a line end or the
start of the record); inside a quoted field `""` is a quote and a single quote closes the field;
any other quote (`Jo"hn`) is literal text. Vectorised: the quotes are grouped into runs of
consecutive quotes, and each run either toggles the state (an odd run at a field start), leaves
it (an even run), or closes whatever is open (an odd run anywhere else), so the state at every
line end is a cumulative sum since the last close.

No record is allowed to be longer than RECORD_CAP bytes (no intake record is anywhere near
that): a record that does not end within the cap (typically one stray quote opening a field that
never closes) is cut out as a bad record, from its start to the end of the line where its open
quote (or the cap) is, and reading resumes on the next line. At the end of the input an open
quote does the same. A record whose quoted field runs over a line end and that then has the wrong
number of fields is cut the same way after its first line when that line alone (its quotes read as
text) has the header's fields (two stray quotes closing each other); otherwise it is one record
with the wrong number of fields (a line break inside a value, and a field missing or extra).
So one stray quote costs one rejected row, not the rest of the file, and memory stays flat.

With `tentative=True` a buffer whose lines are all short enough is first offered whole, cut at
its last line end, as if no quoted field ran over a line end (the usual export): the consumer
parses it and checks that its records are its non-empty lines. If they are not (a quoted field
does span lines, or a quote never closes), the consumer sets `retry` on that segment before
asking for the next one, and the same bytes come again cut by the rules above. Finding line ends
is much cheaper than following every quote, and a quoted export has a hundred quotes a row.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

RECORD_CAP = 64 << 10
QUOTE, LF, CR = 34, 10, 13
_KEEP_OF_SKIPPED = 4096  # bytes kept of an over-long bad line (for its reject line)


@dataclass
class Segment:
    """Bytes of whole records (`bad` empty), or one bad record (`bad` says why)."""

    data: bytes
    records: int  # non-empty records (pyarrow skips empty lines and does not number them)
    lines: int  # line ends in `data`
    bad: str = ""
    open_at: int = -1  # in a bad record: offset of the quote that never closes, -1 if none
    tentative: bool = False  # whole lines, assuming no quoted field spans lines (see the module doc)
    retry: bool = False  # set by the consumer of a tentative segment whose records are not its lines


def count_line_ends(data: bytes, after_cr: bool = False) -> tuple[int, bool]:
    """(line ends in `data`: LF, CRLF or a lone CR; whether `data` ends with a CR), given whether
    the data before it ended with a CR (then a first LF completes that CRLF)."""
    n = data.count(b"\n")
    if b"\r" in data:
        n += data.count(b"\r") - data.count(b"\r\n")
    if after_cr and data[:1] == b"\n":
        n -= 1
    return n, data[-1:] == b"\r"


class _Scan:
    """Line ends and quote runs of one buffer that starts at a record boundary."""

    def __init__(self, buf: bytes, delimiter: int, final: bool):
        arr = np.frombuffer(buf, dtype=np.uint8)
        self.arr, self.delimiter = arr, delimiter
        ends = np.flatnonzero(arr == LF)
        if b"\r" in buf:  # a CR not followed by LF also ends a line (as in pyarrow)
            cr = np.flatnonzero(arr == CR)
            nxt = np.minimum(cr + 1, len(arr) - 1)
            lone = np.where(cr + 1 < len(arr), arr[nxt] != LF, final)
            ends = np.union1d(ends, cr[lone])
        self.ends = ends  # offsets of line-end bytes
        self.run_start = None
        if b'"' not in buf:
            return
        q = np.flatnonzero(arr == QUOTE)
        first = np.concatenate(([0], np.flatnonzero(np.diff(q) != 1) + 1))
        self.run_start = q[first]
        odd = (np.diff(np.append(first, len(q))) & 1).astype(bool)
        prev = arr[np.maximum(self.run_start - 1, 0)]
        at_field_start = (self.run_start == 0) | (prev == delimiter) | (prev == LF) | (prev == CR)
        self.toggled = np.cumsum(odd & at_field_start, dtype=np.int64)
        closes = odd & ~at_field_start
        self.last_close = np.maximum.accumulate(np.where(closes, np.arange(len(first)), -1))

    def _state_after(self, runs: np.ndarray, first_run: int) -> np.ndarray:
        """1 where a quoted field is open after run `runs` (outside quotes before first_run)."""
        base = self.toggled[first_run - 1] if first_run > 0 else 0
        closed = self.last_close[runs]
        since = np.where(closed >= first_run, self.toggled[np.maximum(closed, 0)], base)
        return (self.toggled[runs] - since) & 1

    def open_at(self, start: int, pos: np.ndarray) -> np.ndarray:
        """1 where a quoted field is open at offsets `pos`, reading from `start` (a record boundary)."""
        out = np.zeros(len(pos), dtype=np.int64)
        if self.run_start is None:
            return out
        first_run = int(np.searchsorted(self.run_start, start))
        runs = np.searchsorted(self.run_start, pos) - 1
        inside = runs >= first_run
        out[inside] = self._state_after(runs[inside], first_run)
        return out

    def line_states(self, start: int) -> tuple[np.ndarray, np.ndarray]:
        """The line ends from `start` on, and 1 for those inside a quoted field."""
        ends = self.ends[np.searchsorted(self.ends, start) :]
        return ends, self.open_at(start, ends)

    def record_ends(self, start: int) -> np.ndarray:
        """Offsets just after each record end from `start` (a record boundary) on."""
        ends, inside = self.line_states(start)
        return ends[inside == 0] + 1

    def fields(self, starts: np.ndarray, stops: np.ndarray, start: int) -> np.ndarray:
        """Fields of the records [starts, stops) (delimiters outside quotes, plus one)."""
        lengths = stops - starts
        offsets = np.repeat(starts - np.concatenate(([0], np.cumsum(lengths)[:-1])), lengths)
        index = np.arange(int(lengths.sum())) + offsets
        delimiters = index[self.arr[index] == self.delimiter]
        outside = delimiters[self.open_at(start, delimiters) == 0]
        return np.searchsorted(outside, stops) - np.searchsorted(outside, starts) + 1

    def opener(self, start: int, limit: int) -> int:
        """Offset of the quote that opened the field still open at `limit`, or -1 if none is open."""
        if self.run_start is None or not self.open_at(start, np.array([limit]))[0]:
            return -1
        first_run = int(np.searchsorted(self.run_start, start))
        runs = np.arange(first_run, int(np.searchsorted(self.run_start, limit)))
        state = self._state_after(runs, first_run)
        before = np.concatenate(([0], state[:-1]))
        return int(self.run_start[runs[(state == 1) & (before == 0)][-1]])

    def line_end_after(self, pos: int) -> int:
        """Offset just after the first line end at or after `pos`, or -1."""
        i = int(np.searchsorted(self.ends, pos))
        return int(self.ends[i]) + 1 if i < len(self.ends) else -1

    def lines(self, start: int, stop: int) -> int:
        return int(np.searchsorted(self.ends, stop) - np.searchsorted(self.ends, start))

    def count(self, start: int, stop: int) -> tuple[int, int]:
        """(non-empty records, line ends) in [start, stop); start is a record boundary, stop one
        too or the end of the input."""
        ends = self.record_ends(start)
        ends = ends[ends <= stop]
        tail = int(stop > (ends[-1] if len(ends) else start))  # a last record without a line end
        if not len(ends):
            return tail, self.lines(start, stop)
        lengths = np.diff(ends, prepend=start)
        empty = (lengths == 1) | ((lengths == 2) & (self.arr[ends - 2] == CR))
        return len(ends) - int(empty.sum()) + tail, self.lines(start, stop)


def _utf8_prefix(data: bytes) -> bytes:
    """`data` without a UTF-8 character cut at its end."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte & 0xC0 != 0x80:  # ASCII or the first byte of a character
            width = 1 if byte < 0xC0 else 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
            return data[:-back] if width > back else data
    return data


@dataclass
class _Bad:
    start: int
    stop: int  # -1: the line goes on past the buffer
    reason: str
    opener: int  # -1: no open quote


def _unclosed(scan: _Scan, buf: bytes, start: int, cap: int) -> _Bad:
    """A record that does not end within the cap, or whose quote is still open at the end."""
    limit = min(start + cap, len(buf))
    while limit > start and buf[limit - 1 : limit + 1] == b'""':  # not inside a run of quotes
        limit -= 1
    opener = scan.opener(start, limit)
    stop = scan.line_end_after(opener if opener >= 0 else max(limit - 1, start))
    if opener < 0:
        return _Bad(start, stop, f"record longer than {cap} bytes (no line end)", -1)
    where = f"no closing quote within {cap} bytes" if limit - start >= cap else "not closed before the end of the file"
    return _Bad(start, stop, f"unbalanced quote: the quoted field opened here never closes ({where})", opener)


def _first_bad(scan: _Scan, buf: bytes, pos: int, ends: np.ndarray, n_fields: int, cap: int) -> _Bad | None:
    """The first bad record from `pos` among the complete records (ending at `ends`), if any."""
    bounds = np.concatenate(([pos], ends))
    too_long = np.flatnonzero(np.diff(bounds) > cap)
    first = int(too_long[0]) if len(too_long) else len(ends)
    split = None
    if scan.run_start is not None:  # records with a line end inside quotes: do their fields add up?
        line_ends, inside = scan.line_states(pos)
        spanning = line_ends[inside == 1]
        records = np.unique(np.searchsorted(ends, spanning, side="right"))
        records = records[records < first]
        if len(records):
            fields = scan.fields(bounds[records], ends[records], pos)
            wrong = np.flatnonzero(fields != n_fields)
            if len(wrong):
                first, split = int(records[wrong[0]]), int(fields[wrong[0]])
    if first == len(ends):
        return None
    start = int(bounds[first])
    if split is None:
        return _unclosed(scan, buf, start, cap)
    line_end = int(scan.line_states(start)[0][0])  # the first line end is inside a quoted field
    if buf.count(bytes([scan.delimiter]), start, line_end) + 1 != n_fields:
        # Its first line, the quote read as text, does not have the header's fields either: not a
        # stray quote but a well-quoted record (a line break in a value) with the wrong field count.
        return _Bad(start, int(ends[first]), f"row has {split} fields, the header has {n_fields}", -1)
    reason = (
        "unbalanced quote: the quoted field opened here runs on over the next lines "
        f"(the record would have {split} fields, the header has {n_fields})"
    )
    return _Bad(start, line_end + 1, reason, scan.opener(start, line_end))


def _whole_lines(buf: bytes, final: bool, delimiter: int, cap: int) -> Segment | None:
    """A tentative segment of `buf`'s whole lines (up to its last line end, or all of it at the
    end of the input), or None when they cannot be one: no line end, a lone CR as a line end, a
    line longer than the cap, or quotes still open at the end, read from the start of the last
    non-empty line (a parser takes the end of its input as closing them, so its record count would
    not tell: a record running on from that line to the end has only empty lines after it)."""
    cut = len(buf) if final else buf.rfind(b"\n") + 1
    if not cut:
        return None
    data = buf[:cut] if cut < len(buf) else buf
    if b"\r" in data and data.count(b"\r") != data.count(b"\r\n"):
        return None
    if not _lines_within(data, cap):
        return None
    last = data[data.rfind(b"\n", 0, _body_end(data)) + 1 :]
    if b'"' in last and _Scan(last, delimiter, True).open_at(0, np.array([len(last)]))[0]:
        return None  # quotes still open at the end (a record could run on to it over empty lines)
    lines, empty = _line_ends(data)
    records = lines + int(not data.endswith(b"\n")) - empty
    return Segment(data, records, lines, tentative=True)


def _body_end(data: bytes, look: int = 4096) -> int:
    """len(data.rstrip(b"\r\n")), copying only the last `look` bytes unless they are all line ends."""
    start = max(len(data) - look, 0)
    tail = data[start:].rstrip(b"\r\n")
    return start + len(tail) if tail or not start else len(data.rstrip(b"\r\n"))


def _lines_within(data: bytes, cap: int) -> bool:
    """Whether no line of `data` (line end included) is longer than `cap` bytes."""
    step = max(cap // 2, 1)
    if all(data.find(b"\n", k, k + step) >= 0 for k in range(0, len(data) - step, step)):
        return True  # a line end in every stretch of cap/2 bytes: no line reaches cap
    stops = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == LF) + 1
    if len(stops) == 0 or stops[-1] != len(data):
        stops = np.append(stops, len(data))
    return bool(np.diff(stops, prepend=0).max() <= cap)


def _line_ends(data: bytes, step: int = 1 << 19) -> tuple[int, int]:
    """The line ends (LF) of `data`, and its lines that hold nothing but their line end (LF or CRLF).
    Counted from the line ends' positions even when there is no empty line: that is faster than
    looking for b"\n\n" and b"\n\r\n" first (bytes' substring search slows down on text with a line
    end every few hundred bytes). The positions are found `step` bytes at a time, so the byte
    comparisons take a fraction of the block's size in memory, not all of it."""
    arr = np.frombuffer(data, dtype=np.uint8)
    pieces = [np.flatnonzero(arr[k : k + step] == LF) + (k + 1) for k in range(0, len(arr), step)]
    stops = np.concatenate(pieces) if pieces else np.empty(0, dtype=np.intp)
    lengths = np.diff(stops, prepend=0)
    return len(stops), int(((lengths == 1) | ((lengths == 2) & (arr[stops - 2] == CR))).sum())


def iter_segments(
    first: bytes,
    read: Callable[[int], bytes],
    delimiter: str,
    block_bytes: int,
    cap: int = RECORD_CAP,
    tentative: bool = False,
) -> Iterator[Segment]:
    """The stream (`first`, then read(block_bytes) until b"") as segments: the header record
    alone first, then runs of whole records of about block_bytes, and bad records between them.
    A bad first record (the header) ends the segments. With `tentative`, whole lines are offered
    first (see the module doc)."""
    delim = ord(delimiter)
    pending, final, need_read, after_cr = first, False, not first, False
    n_fields = 0  # the header's, once read
    skipping: Segment | None = None  # a bad line longer than the buffer, read up to its end
    while True:
        if need_read:
            block = read(block_bytes)
            final = not block
            if after_cr and block[:1] == b"\n":  # the LF of a CRLF that ended a cut line
                block = block[1:]
            after_cr = False
            if skipping is not None:
                cut = min([i for i in (block.find(b"\n"), block.find(b"\r")) if i >= 0], default=-1) + 1
                if not cut and not final:
                    continue
                cut += int(0 < cut < len(block) and block[cut - 1 : cut + 1] == b"\r\n")
                after_cr = cut == len(block) and block[-1:] == b"\r"
                skipping.lines += int(cut > 0)
                yield skipping
                skipping, block = None, block[cut:] if cut else b""
            pending += block
            del block  # not held while the consumer works on what is yielded next
        need_read = True
        if tentative and n_fields and skipping is None and pending:
            lines = _whole_lines(pending, final, delim, cap)
            if lines is not None:
                rest = pending[len(lines.data) :]
                pending = b""  # not held (a copy of `lines.data` but for its rest) while the consumer works
                yield lines
                if not lines.retry:
                    pending = rest
                    if final:
                        return
                    continue
                pending = lines.data + rest
        scan, pos = _Scan(pending, delim, final), 0
        while True:
            ends = scan.record_ends(pos)
            last = int(ends[-1]) if len(ends) else pos
            if final and last < len(pending) and not scan.open_at(pos, np.array([len(pending)]))[0]:
                ends, last = np.append(ends, len(pending)), len(pending)  # a last record without a line end
            if not n_fields and len(ends):  # the header
                n_fields = int(scan.fields(np.array([0]), ends[:1], 0)[0])
                yield Segment(pending[: ends[0]], 1, scan.lines(0, int(ends[0])))
                pos = int(ends[0])
                continue
            bad = _first_bad(scan, pending, pos, ends, n_fields, cap)
            if bad is None and (len(pending) - last > cap or (final and last < len(pending))):
                bad = _unclosed(scan, pending, last, cap)
            if bad is None:  # whole records up to the last record end (in pieces of about a block)
                while last - pos > 2 * block_bytes:
                    split = ends[np.searchsorted(ends, pos + block_bytes) :]
                    if not len(split) or split[0] >= last:
                        break
                    yield Segment(pending[pos : split[0]], *scan.count(pos, int(split[0])))
                    pos = int(split[0])
                if last > pos:
                    yield Segment(pending[pos:last], *scan.count(pos, last))
                pending = pending[last:]
                break
            if bad.start > pos:
                yield Segment(pending[pos : bad.start], *scan.count(pos, bad.start))
            stop, opener = bad.stop, bad.opener - bad.start if bad.opener >= 0 else -1
            cr_at_end = 0  # a CR at the end of the buffer is a line end not counted yet
            if stop < 0 and pending.endswith(b"\r"):  # ends at the CR (its LF, if any, comes next)
                stop, after_cr, cr_at_end = len(pending), not final, int(not final)
            if stop < 0 and not final:  # the bad line goes on past the buffer: skip to its end
                kept = pending[bad.start : bad.start + _KEEP_OF_SKIPPED]
                kept = _utf8_prefix(kept) if len(pending) - bad.start > len(kept) else kept
                skipping = Segment(kept, 1, scan.lines(bad.start, len(pending)), bad.reason, opener)
                pending = b""
                break
            stop = len(pending) if stop < 0 else stop
            yield Segment(pending[bad.start : stop], 1, scan.lines(bad.start, stop) + cr_at_end, bad.reason, opener)
            if not n_fields:
                return
            pos = stop
        scan = None  # its arrays (and the buffer it read) are not held while later blocks are read
        if final and skipping is None:
            return
