"""The intake CSV text of generated chunks, built by one Arrow `take` per chunk.

Every cell the generator writes comes from a small vocabulary (yes/no, a category, an integer in its
range, a number on its step's grid, a 0/1 label); the record id is the one per-row text. A cell is
written as a token that carries its delimiter ("27.3," ... "0\\n"), and runs of neighbouring
columns are merged into one token of their product vocabulary ("no,yes,,no,"), so a chunk's text
is `tokens.take(index)` with one index per row and segment, row by row: the data buffer of that
take is the CSV body. Tokens are made by Arrow's own casts, so the bytes are those pyarrow's CSV
writer prints for the same columns (`csv_text_table`, the plain path, which the tests compare with
and which a chunk falls back to if a value is off its vocabulary).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from pipeline.contract.schema import Column, Schema

MAX_PRODUCT = 4096  # tokens in a merged segment's vocabulary
MAX_GRID = 1_000_000  # a number column with more grid values than this is formatted per row
WRITE_OPTIONS = pacsv.WriteOptions(quoting_style="none", include_header=False)
YES_NO = pa.array(["no", "yes"])
ZERO_ONE = pa.array(["0", "1"])


def _looked_up(labels: pa.Array, codes: np.ndarray, blank: np.ndarray) -> pa.Array:
    """labels[code] per row, null (an empty cell) where blank."""
    return labels.take(pa.array(np.where(blank, 0, codes).astype(np.int32), mask=blank))


def csv_text_table(cols: dict, schema: Schema) -> pa.Table:
    """Cells (see pipeline.world.sampling.sample_cells) as text columns, nulls for blanks: the
    intake columns, then the label_<condition> columns."""
    arrays, names = [pa.array(cols[schema.id_column], pa.string())], [schema.id_column]
    for col in schema.columns:
        v = cols[col.name]
        if col.kind in ("category", "yes_no"):
            arrays.append(_looked_up(YES_NO if col.kind == "yes_no" else pa.array(list(col.categories)), v, v < 0))
        elif col.kind == "integer":
            blank = np.isnan(v)
            arrays.append(pc.cast(pa.array(np.where(blank, 0, v).astype(np.int64), mask=blank), pa.string()))
        else:
            arrays.append(pc.cast(pa.array(v, mask=np.isnan(v)), pa.string()))
        names.append(col.name)
    for label in schema.label_columns:
        arrays.append(ZERO_ONE.take(pa.array(cols[label])))
        names.append(label)
    return pa.Table.from_arrays(arrays, names=names)


@dataclass(frozen=True)
class _Vocabulary:
    """One column's cells: `texts` (blank last) and how a raw value maps to its index, or None."""

    name: str
    texts: pa.Array
    kind: str  # "label" | "category" (codes, -1 blank; yes/no too) | "grid"
    first: float = 0.0  # grid: the value of index 0 is first_k / inv (or first_k * step)
    step: float = 1.0

    def codes(self, v: np.ndarray) -> np.ndarray | None:
        """Index of each row's text, or None if a value has none (the chunk takes the plain path)."""
        if self.kind == "label":  # no blank
            return v.astype(np.int32) if v.min(initial=0) >= 0 and v.max(initial=0) < len(self.texts) else None
        size = len(self.texts) - 1  # the blank's index
        if self.kind == "category":
            ok = v.min(initial=0) >= -1 and v.max(initial=0) < size
            return np.where(v < 0, size, v).astype(np.int32) if ok else None
        blank = np.isnan(v)
        k = np.rint(v / self.step) if self.step >= 1 else np.rint(v * round(1.0 / self.step))
        on_grid = (k * self.step if self.step >= 1 else k / round(1.0 / self.step)) == v
        if np.any(on_grid & (v == 0) & np.signbit(v)):  # -0.0 prints as "-0", its grid value as "0"
            return None
        k = k - self.first
        if not np.all(blank | (on_grid & (k >= 0) & (k < size))):
            return None
        return np.where(blank, size, k).astype(np.int32)


def _grid(col: Column, step: float) -> tuple[float, np.ndarray] | None:
    """The values a number rounded to `step` within the column's bounds can take (a superset)."""
    if step >= 1:
        lo, hi = np.floor(col.min / step), np.ceil(col.max / step)
        values = lambda k: k * step  # noqa: E731 - the sampler's own formula, see sampling._round_to_step
    else:
        inv = round(1.0 / step)
        lo, hi = np.floor(col.min * inv), np.ceil(col.max * inv)
        values = lambda k: k / inv  # noqa: E731
    if hi - lo + 1 > MAX_GRID:
        return None
    return lo, values(np.arange(lo, hi + 1))


def _vocabulary(col: Column, steps: dict[str, float]) -> _Vocabulary | None:
    """A column's vocabulary, or None for a number without a step (formatted per row)."""
    if col.kind in ("category", "yes_no"):
        return _Vocabulary(col.name, pa.array([*(col.categories or ("no", "yes")), ""]), "category")
    step = 1.0 if col.kind == "integer" else steps.get(col.name)
    grid = _grid(col, step) if step is not None else None
    if grid is None:
        return None
    first, values = grid
    texts = pc.cast(pa.array(values.astype(np.int64) if col.kind == "integer" else values), pa.string())
    return _Vocabulary(col.name, pa.concat_arrays([texts, pa.array([""])]), "grid", first, step)


@dataclass(frozen=True)
class _Segment:
    """Neighbouring columns written as one token (vocabularies) or one column's per-row text."""

    vocabularies: tuple[_Vocabulary, ...]
    start: int = -1  # first token of the product vocabulary in the shared tokens
    column: str = ""  # per-row text: the column
    integer: bool = False


def _product_tokens(vocabs: list[_Vocabulary], delimiters: list[str]) -> pa.Array:
    """Every combination's text (first column most significant), each cell followed by its delimiter."""
    sizes = [len(v.texts) for v in vocabs]
    combo = np.arange(int(np.prod(sizes)))
    strides = np.cumprod([1, *sizes[::-1]])[:-1][::-1]
    parts = []
    for v, size, stride, delim in zip(vocabs, sizes, strides, delimiters, strict=True):
        parts += [v.texts.take(pa.array((combo // stride) % size)), pa.scalar(delim)]
    return pc.binary_join_element_wise(*parts, "")


class CsvText:
    """The CSV form of generated chunks for one schema: `header()` once, then `body(cols)` per chunk."""

    def __init__(self, schema: Schema, steps: dict[str, float]):
        self.schema = schema
        self.names = [schema.id_column, *(c.name for c in schema.columns), *schema.label_columns]
        delimiters = {name: "," for name in self.names} | {self.names[-1]: "\n"}
        vocabs = {c.name: _vocabulary(c, steps) for c in schema.columns}
        vocabs |= {label: _Vocabulary(label, ZERO_ONE, "label") for label in schema.label_columns}
        integers = {c.name for c in schema.columns if c.kind == "integer"}
        self.segments: list[_Segment] = []
        tokens: list[pa.Array] = []
        run: list[_Vocabulary] = []

        def close_run() -> None:
            if run:
                start = sum(len(t) for t in tokens)
                tokens.append(_product_tokens(run, [delimiters[v.name] for v in run]))
                self.segments.append(_Segment(tuple(run), start))
                run.clear()

        for name in self.names:
            vocab = vocabs.get(name)
            if vocab is None:  # the record id, a number without a grid
                close_run()
                self.segments.append(_Segment((), column=name, integer=name in integers))
                continue
            if run and np.prod([len(v.texts) for v in (*run, vocab)]) > MAX_PRODUCT:
                close_run()
            run.append(vocab)
        close_run()
        self.tokens = pa.concat_arrays(tokens) if tokens else pa.array([], pa.string())
        self.delimiters = delimiters

    def header(self) -> bytes:
        empty = pa.table({name: pa.array([], pa.string()) for name in self.names})
        sink = pa.BufferOutputStream()
        pacsv.write_csv(empty, sink, pacsv.WriteOptions(quoting_style="none", include_header=True))
        return sink.getvalue().to_pybytes()

    def _row_texts(self, segment: _Segment, cols: dict) -> pa.Array:
        v = cols[segment.column]
        if isinstance(v, np.ndarray):
            blank = np.isnan(v)
            v = pa.array(np.where(blank, 0, v).astype(np.int64) if segment.integer else v, mask=blank)
        texts = pc.fill_null(pc.cast(v, pa.string()), "")
        return pc.binary_join_element_wise(texts, self.delimiters[segment.column], "")

    def body(self, cols: dict) -> pa.Buffer:
        """The CSV lines of one chunk of cells (see pipeline.world.sampling.sample_cells), without header."""
        n = len(cols[self.schema.id_column])
        index = np.empty((n, len(self.segments)), dtype=np.int32)
        extra, size = [], len(self.tokens)
        for s, segment in enumerate(self.segments):
            if not segment.vocabularies:
                extra.append(self._row_texts(segment, cols))
                index[:, s] = np.arange(size, size + n)
                size += n
                continue
            code = np.zeros(n, dtype=np.int32)
            for vocab in segment.vocabularies:
                c = vocab.codes(cols[vocab.name])
                if c is None:
                    return self._plain_body(cols)
                code = code * len(vocab.texts) + c
            index[:, s] = code + segment.start
        text = pa.concat_arrays([self.tokens, *extra]).take(pa.array(index.ravel()))
        _, offsets, data = text.buffers()
        bounds = np.frombuffer(offsets, dtype=np.int32, count=len(text) + 1, offset=4 * text.offset)
        return data.slice(int(bounds[0]), int(bounds[-1] - bounds[0]))

    def _plain_body(self, cols: dict) -> pa.Buffer:
        sink = pa.BufferOutputStream()
        pacsv.write_csv(csv_text_table(cols, self.schema), sink, WRITE_OPTIONS)
        return sink.getvalue()
