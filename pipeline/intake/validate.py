"""Raw intake cells (strings) -> a typed frame plus one reject line per bad cell.

Implements the value conventions of docs/intake-form.md exactly: case-insensitive, surrounding
spaces ignored; `NA`, `N/A`, `null`, `none` and the empty cell mean unknown; numbers are
decimals with `.` (or a decimal comma, when the source uses one) inside hard bounds; a bad cell
rejects its row (not the file). Vectorised with pyarrow compute; no I/O.

Most cells are spelled the way exports spell them (`yes`, `No`, an empty cell, a plain decimal),
so each column is read first through a fast path: a yes/no or category cell is looked up among
the usual spellings (whose outcome was worked out once by the full rules), a number cell that is
already a plain decimal is parsed directly. Only the other cells (spaces to trim, odd spellings,
junk) go through the full rules, `_typed_column`, which define the outcome of every cell.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.contract.schema import Column, Schema
from pipeline.intake.frames import empty_typed_frame
from pipeline.intake.seen_ids import SeenIds

DECIMAL = r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)$"


@dataclass
class Validated:
    typed: pd.DataFrame  # valid rows, index = 1-based data-row position
    rejects: pd.DataFrame  # row, record_id, field, value, reason
    warnings: list[str] = field(default_factory=list)


CACHE_ENTRIES = 512  # entries a per-schema cache holds before it starts afresh (a Spark task brings its own schema)


def _per_schema(cache: dict, key: tuple, schema: Schema, make: Callable[[], object]):
    """cache[key], made by `make` once per schema object (kept beside it: an id reused by another
    object is not taken for it)."""
    hit = cache.get(key)
    if hit is None or hit[0] is not schema:
        if len(cache) >= CACHE_ENTRIES:
            cache.clear()
        hit = cache[key] = (schema, make())
    return hit[1]


_EMPTY_REJECTS: dict[tuple, tuple[Schema, pd.DataFrame]] = {}


def empty_rejects(schema: Schema) -> pd.DataFrame:
    """No reject lines: the rejects columns with their types (row a number, the rest text). Made
    once per schema (most chunks have none, and building a frame costs more than copying one)."""

    def make() -> pd.DataFrame:
        return pd.DataFrame({c: pd.Series([], dtype="int64" if c == "row" else "str") for c in schema.rejects_columns})

    return _per_schema(_EMPTY_REJECTS, (id(schema),), schema, make).copy()


def _np_bool(a: pa.Array | pa.ChunkedArray) -> np.ndarray:
    return np.asarray(pc.fill_null(a, False).to_numpy(zero_copy_only=False), dtype=bool)


class _Column:
    """One raw column: trimmed and lowered text, and which cells are blank."""

    def __init__(self, raw: pa.Array, missing_markers: pa.Array):
        self.raw = raw
        self.text = pc.utf8_trim_whitespace(raw)
        self.lower = pc.utf8_lower(self.text)
        self.blank = _np_bool(pc.is_in(self.lower, value_set=missing_markers))


def _bounds_reason(col: Column, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    low, high = values < col.min, values > col.max
    reasons = np.where(low, f"below the minimum {col.min:g}", f"above the maximum {col.max:g}")
    return low | high, reasons


def _typed_column(
    col: Column, c: _Column, schema: Schema, decimal_comma: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(values, bad, reason) for one column; values are float codes or numbers."""
    n = len(c.raw)
    bad = np.zeros(n, dtype=bool)
    reason = np.full(n, "", dtype=object)
    if col.kind == "yes_no":
        yes = _np_bool(pc.is_in(c.lower, value_set=pa.array(sorted(schema.yes_values))))
        no = _np_bool(pc.is_in(c.lower, value_set=pa.array(sorted(schema.no_values))))
        values = np.where(yes, 1.0, np.where(no, 0.0, np.nan))
        bad = ~(c.blank | yes | no)
        reason[bad] = f"not yes/no ({', '.join(sorted(schema.yes_values | schema.no_values))})"
    elif col.kind == "category":
        idx = pc.index_in(c.lower, value_set=pa.array(list(col.categories)))
        codes = pc.fill_null(idx, -1).to_numpy(zero_copy_only=False)
        values = np.where(codes >= 0, codes, np.nan).astype(float)
        bad = ~c.blank & (codes < 0)
        reason[bad] = f"not one of: {', '.join(col.categories)}"
    else:
        text = pc.replace_substring(c.text, ",", ".", max_replacements=1) if decimal_comma else c.text
        is_decimal = _np_bool(pc.match_substring_regex(text, DECIMAL))
        as_text = pc.if_else(pa.array(is_decimal), text, pa.scalar(None, pa.string()))
        values = pc.cast(as_text, pa.float64()).to_numpy(zero_copy_only=False).astype(float)
        not_number = ~c.blank & ~is_decimal
        reason[not_number] = "not a number (a decimal with '.', no units)"
        out_of_bounds, bounds_reason = _bounds_reason(col, np.where(is_decimal, values, col.min))
        out_of_bounds &= is_decimal
        reason[out_of_bounds] = bounds_reason[out_of_bounds]
        bad = not_number | out_of_bounds
        if col.kind == "integer":
            fractional = is_decimal & ~out_of_bounds & (values != np.round(values))
            reason[fractional] = "not a whole number"
            bad |= fractional
        values = np.where(is_decimal & ~bad, values, np.nan)
    if col.required:
        required_blank = c.blank
        reason[required_blank] = "required field is blank"
        bad |= required_blank
    values = np.where(c.blank | bad, np.nan, values)
    return values, bad, reason


@dataclass(frozen=True)
class _Spellings:
    """The usual spellings of a yes/no or category column's cells, and the outcome of each."""

    text: pa.Array
    values: np.ndarray
    bad: np.ndarray
    reasons: np.ndarray


_SPELLINGS: dict[tuple, tuple[Schema, _Spellings]] = {}


def _spellings(col: Column, schema: Schema, decimal_comma: bool) -> _Spellings:
    """Every accepted word in lower, Title and UPPER case, the missing markers likewise, and the
    empty cell; their outcomes come from the full rules (`_typed_column`). Worked out once per
    schema and column."""
    key = (id(schema), col.name, decimal_comma)
    return _per_schema(_SPELLINGS, key, schema, lambda: _spelled(col, schema, decimal_comma))


def _spelled(col: Column, schema: Schema, decimal_comma: bool) -> _Spellings:
    words = sorted(schema.yes_values | schema.no_values) if col.kind == "yes_no" else list(col.categories)
    words += sorted(schema.missing_markers)
    text = pa.array(sorted({w for word in words for w in (word, word.lower(), word.title(), word.upper())}))
    markers = pa.array(sorted(schema.missing_markers))
    values, bad, reasons = _typed_column(col, _Column(text, markers), schema, decimal_comma)
    return _Spellings(text, values, bad, reasons)


Decided = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # values, bad, reasons of the bad, other


def _text(raw: pa.Array) -> pa.Array:
    """Cells as plain strings (a dictionary-encoded column decoded)."""
    return raw if raw.type == pa.string() else pc.cast(raw, pa.string())


def _spelling_index(raws: list[pa.Array], known: pa.Array) -> np.ndarray:
    """(columns, rows): each cell's place among the `known` spellings, -1 where it is not one. A
    dictionary-encoded column is looked up once per distinct spelling; plain strings all at once."""
    index = np.empty((len(raws), len(raws[0])), dtype=np.int32)  # a few dozen spellings: int32 halves the memory
    plain = [j for j, raw in enumerate(raws) if not pa.types.is_dictionary(raw.type)]
    encoded = [j for j, raw in enumerate(raws) if pa.types.is_dictionary(raw.type)]
    if encoded:  # every column's few distinct spellings looked up in one call
        words = [_text(raws[j].dictionary) for j in encoded]
        found = pc.fill_null(pc.index_in(pa.concat_arrays(words), value_set=known), -1).to_numpy(zero_copy_only=False)
        starts = np.cumsum([0] + [len(w) for w in words[:-1]], dtype=np.int32)
        codes = np.stack([raws[j].indices.to_numpy(zero_copy_only=False) for j in encoded]).astype(np.int32)
        index[encoded] = found[codes + starts[:, None]]
    if plain:
        cells = pa.concat_arrays([raws[j] for j in plain]) if len(plain) > 1 else raws[plain[0]]
        found = pc.fill_null(pc.index_in(cells, value_set=known), -1).to_numpy(zero_copy_only=False)
        index[plain] = found.reshape(len(plain), -1)
    return index


def _fast_words(cols: list[Column], raws: list[pa.Array], schema: Schema, decimal_comma: bool) -> list[Decided]:
    """The fast path for yes/no or category columns that share their words and rules: every cell
    looked up among the usual spellings. Per column: (values, bad, reasons of the bad cells,
    other: the cells the fast path cannot decide)."""
    known = _spellings(cols[0], schema, decimal_comma)
    index = _spelling_index(raws, known.text)
    other = index < 0
    index = np.where(other, 0, index)
    values, bad = known.values[index], known.bad[index] & ~other
    return [(values[j], bad[j], known.reasons[index[j][bad[j]]], other[j]) for j in range(len(raws))]


def _fast_numbers(cols: list[Column], raws: list[pa.Array]) -> list[Decided]:
    """The fast path for number columns, all at once: an empty cell is blank, a plain decimal (nothing
    to trim or replace) is parsed and checked against its column's bounds. As `_fast_words`."""
    cells = pa.concat_arrays(raws) if len(raws) > 1 else raws[0]
    empty = pc.equal(pc.binary_length(cells), 0).to_numpy(zero_copy_only=False)
    filled = np.flatnonzero(~empty)  # labs are mostly blank: read only the filled cells
    text = cells.take(pa.array(filled)) if len(filled) < len(cells) else cells
    plain_filled = _np_bool(pc.match_substring_regex(text, DECIMAL))
    parsed = pc.cast(pc.if_else(pa.array(plain_filled), text, pa.scalar(None, pa.string())), pa.float64())
    plain, values = np.zeros(len(cells), dtype=bool), np.full(len(cells), np.nan)
    plain[filled], values[filled] = plain_filled, parsed.to_numpy(zero_copy_only=False)
    shape = (len(raws), -1)
    plain, values, empty = plain.reshape(shape), values.reshape(shape), empty.reshape(shape)
    low = plain & (values < np.array([[c.min] for c in cols]))
    high = plain & (values > np.array([[c.max] for c in cols]))
    bad = low | high
    whole = np.array([[c.kind == "integer"] for c in cols])
    fractional = whole & plain & ~bad & (values != np.round(values))
    blank = empty & np.array([[c.required] for c in cols])
    bad |= fractional | blank
    values = np.where(plain & ~bad, values, np.nan)
    out = []
    any_bad, other = bad.any(axis=1), ~(plain | empty)
    for j, col in enumerate(cols):
        b, reasons = bad[j], np.empty(0, dtype=object)
        if any_bad[j]:  # np.select costs more than the rest of a clean column
            reasons = np.select(
                [blank[j][b], low[j][b], high[j][b]],
                ["required field is blank", f"below the minimum {col.min:g}", f"above the maximum {col.max:g}"],
                "not a whole number",
            ).astype(object)
        out.append((values[j], b, reasons, other[j]))
    return out


def _raw(column: pa.ChunkedArray, col: Column) -> pa.Array:
    """A column's cells as one array: strings, or dictionary-encoded strings for yes/no and category
    columns read that way (numbers, which the fast path parses as text, always plain strings)."""
    cells = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    if pa.types.is_dictionary(cells.type) and col.kind in ("yes_no", "category"):
        if cells.null_count:  # a dictionary read elsewhere with nulls: as plain text, like any other
            return _text(cells)
        return cells if cells.dictionary.type == pa.string() else cells.cast(pa.dictionary(pa.int32(), pa.string()))
    return _text(cells)


def _validated_columns(
    table: pa.Table, names: dict[str, str], schema: Schema, markers: pa.Array, decimal_comma: bool
) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, pa.Array]]:
    """(values, bad, reasons of the bad cells, raw cells) of every schema column the table has: the
    fast path for columns grouped by their rules, then the full rules for the cells it left."""
    present = [col for col in schema.columns if col.name in names]
    raws = {col.name: _raw(table.column(names[col.name]), col) for col in present}
    groups: dict[tuple, list[Column]] = {}
    for col in present:
        key = ("number",) if col.kind in ("integer", "number") else (col.kind, col.categories, col.required)
        groups.setdefault(key, []).append(col)
    fast = {}
    for key, cols in groups.items():
        group = [raws[c.name] for c in cols]
        results = _fast_numbers(cols, group) if key == ("number",) else _fast_words(cols, group, schema, decimal_comma)
        fast.update({c.name: r for c, r in zip(cols, results, strict=True)})
    out = {}
    for col in present:
        values, bad, reasons, other = fast[col.name]
        raw = raws[col.name]
        if other.any():
            where = np.flatnonzero(other)
            sub_values, sub_bad, sub_reasons = _typed_column(col, _Column(_text(raw.take(pa.array(where))), markers),
                                                             schema, decimal_comma)  # fmt: skip
            all_reasons = np.full(len(raw), "", dtype=object)
            all_reasons[bad] = reasons
            values, bad = values.copy(), bad.copy()
            values[where], bad[where], all_reasons[where] = sub_values, sub_bad, sub_reasons
            reasons = all_reasons[bad]
        out[col.name] = (values, bad, reasons, raw)
    return out


def _id_cells(table: pa.Table, schema: Schema, names: dict[str, str]) -> tuple[pa.Array, _Column]:
    """The record_id cells as text, and trimmed with their blanks."""
    raw_id = pc.cast(table.column(names[schema.id_column]).combine_chunks(), pa.string())
    return raw_id, _Column(raw_id, pa.array(sorted(schema.missing_markers)))


def learn_record_ids(table: pa.Table, rows: np.ndarray, schema: Schema, seen: SeenIds) -> None:
    """Record the ids of raw cells in `seen` as `validate_table` does, validating nothing else."""
    _, ids = _id_cells(table, schema, {name.strip(): name for name in table.column_names})
    seen.first_use(ids.text, np.asarray(rows, dtype=np.int64), ~ids.blank)


def validate_table(
    table: pa.Table,
    rows: np.ndarray,
    schema: Schema,
    first_seen: SeenIds | None = None,
    decimal_comma: bool = False,
) -> Validated:
    """Validate string cells (one column per header name) of data rows numbered `rows`.

    `first_seen` remembers the record ids used so far and where; pass the same SeenIds
    for every chunk of one file so a repeated id rejects the later rows across chunks.
    With `decimal_comma`, a number cell may use a comma for its decimal point (`7,5`).
    """
    first_seen = SeenIds() if first_seen is None else first_seen
    n = table.num_rows
    rows = np.asarray(rows, dtype=np.int64)
    markers = pa.array(sorted(schema.missing_markers))
    names = {name.strip(): name for name in table.column_names}

    raw_id, ids = _id_cells(table, schema, names)
    id_len = pc.utf8_length(ids.text).to_numpy(zero_copy_only=False)

    bad_rows = np.zeros(n, dtype=bool)
    lines: list[pd.DataFrame] = []

    def add(mask: np.ndarray, field_name: str, raw: pa.Array, reasons) -> None:
        """Reject lines for the cells in `mask`; `reasons` one text, or one per cell in `mask`."""
        if mask.any():
            where = np.flatnonzero(mask)
            picked = pa.array(where)
            lines.append(
                pd.DataFrame(
                    {
                        "row": rows[where],
                        "record_id": np.asarray(raw_id.take(picked).to_numpy(zero_copy_only=False), dtype=object),
                        "field": field_name,
                        "value": np.asarray(_text(raw.take(picked)).to_numpy(zero_copy_only=False), dtype=object),
                        "reason": reasons,
                    }
                )
            )

    id_blank = ids.blank
    add(id_blank, schema.id_column, raw_id, "record_id is blank")
    too_long = ~id_blank & (id_len > schema.id_max_length)
    add(too_long, schema.id_column, raw_id, f"record_id is longer than {schema.id_max_length} characters")
    first_row, first_place = first_seen.first_use(ids.text, rows, ~id_blank)
    repeated = ~id_blank & (first_row != rows)
    if first_place is not None:  # ids first used in another source: a repeat whatever the row
        repeated |= ~id_blank & (first_place != "")
    if repeated.any():
        where = np.flatnonzero(repeated)
        of = [f" of {first_place[i]}" if first_place is not None and first_place[i] else "" for i in where]
        repeat_reason = [
            f"repeated record_id (first used at row {first_row[i]}{o})" for i, o in zip(where, of, strict=True)
        ]
        add(repeated, schema.id_column, raw_id, np.array(repeat_reason, dtype=object))
    bad_rows |= id_blank | too_long | repeated

    out: dict[str, np.ndarray] = {}
    validated = _validated_columns(table, names, schema, markers, decimal_comma)
    for col in schema.columns:
        if col.name not in names:
            out[col.name] = np.full(n, np.nan)
            continue
        values, bad, reasons, raw = validated[col.name]
        add(bad, col.name, raw, reasons)
        bad_rows |= bad
        out[col.name] = values

    if bad_rows.any():
        keep = np.flatnonzero(~bad_rows)
        typed = _typed_frame(ids.text.take(pa.array(keep)), {k: v[keep] for k, v in out.items()}, schema, rows[keep])
    else:
        typed = _typed_frame(ids.text, out, schema, rows)
    if not lines:
        return Validated(typed=typed, rejects=empty_rejects(schema))
    rejects = pd.concat(lines, ignore_index=True).sort_values("row", kind="stable", ignore_index=True)
    return Validated(typed=typed, rejects=rejects[list(schema.rejects_columns)])


STR = pd.StringDtype("pyarrow", na_value=np.nan)  # pandas' `str`: the typed frame's record_id


def _typed_frame(ids: pa.Array, columns: dict[str, np.ndarray], schema: Schema, rows: np.ndarray) -> pd.DataFrame:
    if len(rows) == 0:
        return empty_typed_frame(schema)
    data: dict[str, object] = {schema.id_column: pd.array(ids, dtype=STR)}
    dtypes = _category_dtypes(schema)
    for col in schema.columns:
        v = columns[col.name]
        if col.kind == "category":
            codes = np.where(np.isnan(v), -1, v).astype(np.int64)
            data[col.name] = pd.Categorical.from_codes(codes, dtype=dtypes[col.name])
        else:
            data[col.name] = v
    return pd.DataFrame(data, index=pd.Index(rows, name="row"), copy=False)  # no consolidating copy


_CATEGORY_DTYPES: dict[tuple, tuple[Schema, Mapping[str, pd.CategoricalDtype]]] = {}


def _category_dtypes(schema: Schema) -> Mapping[str, pd.CategoricalDtype]:
    """Each category field's pandas dtype, made once per schema (pandas checks the levels as it makes one)."""

    def make() -> Mapping[str, pd.CategoricalDtype]:
        dtypes = {c.name: pd.CategoricalDtype(list(c.categories)) for c in schema.columns if c.kind == "category"}
        return MappingProxyType(dtypes)  # shared: read only

    return _per_schema(_CATEGORY_DTYPES, (id(schema),), schema, make)
