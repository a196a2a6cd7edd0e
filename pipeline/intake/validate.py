"""Raw intake cells (strings) -> a typed frame plus one reject line per bad cell.

Implements the value conventions of docs/intake-form.md exactly: case-insensitive, surrounding
spaces ignored; `NA`, `N/A`, `null`, `none` and the empty cell mean unknown; numbers are
decimals with `.` (or a decimal comma, when the source uses one) inside hard bounds; a bad cell
rejects its row (not the file). Vectorised with pyarrow compute; no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.contract.schema import Column, Schema
from pipeline.intake.frames import empty_typed_frame, typed_frame_dtypes

DECIMAL = r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)$"


@dataclass
class Validated:
    typed: pd.DataFrame  # valid rows, index = 1-based data-row position
    rejects: pd.DataFrame  # row, record_id, field, value, reason
    warnings: list[str] = field(default_factory=list)


class SeenIds:
    """Record ids used so far in a source, with the row of each first use: exact, and compact
    (Arrow strings and an int64 array rather than a dict of Python strings).

    `earlier(ids, rows, places)` starts one that already knows ids first used in other sources
    (an engine reading many files): a use of one of them is a repeat, and its reason names the
    place, e.g. `repeated record_id (first used at row 6 of a.csv)`.
    """

    def __init__(self):
        self.ids = pa.array([], pa.string())
        self.rows = np.empty(0, dtype=np.int64)
        self.places: np.ndarray | None = None  # per id: where it was first used ("" for this source)

    @classmethod
    def earlier(cls, ids, rows, places) -> SeenIds:
        """Knowing distinct `ids` as first used at `rows` of the sources `places` names."""
        seen = cls()
        seen.ids = pc.cast(ids if isinstance(ids, pa.Array) else pa.array(ids, pa.string()), pa.string())
        seen.rows = np.asarray(rows, dtype=np.int64)
        seen.places = np.asarray(places, dtype=object)
        return seen

    def first_use(self, ids: np.ndarray, rows: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(row of the first use of each id, its own row when new; where, "" for this source, or
        None when every id known was first used in this source). Records the new ones."""
        first = rows.copy()
        place = None if self.places is None else np.full(len(rows), "", dtype=object)
        keep = np.flatnonzero(valid)
        if not len(keep):
            return first, place
        chunk_ids = pa.array(ids[keep], pa.string())
        earlier = pc.index_in(chunk_ids, value_set=self.ids).to_numpy(zero_copy_only=False)
        known = ~np.isnan(earlier.astype(float))
        within = pd.Series(rows[keep]).groupby(ids[keep], sort=False).transform("first").to_numpy()
        index = np.nan_to_num(earlier.astype(float)).astype(np.int64)
        prior = self.rows[index] if len(self.rows) else np.zeros(len(index), dtype=np.int64)
        first[keep] = np.where(known, prior, within)
        if place is not None:
            place[keep] = np.where(known, self.places[index] if len(self.places) else "", "")
        new = ~known & (within == rows[keep])
        self.ids = pa.concat_arrays([self.ids, chunk_ids.filter(pa.array(new))])
        self.rows = np.concatenate([self.rows, rows[keep][new]])
        if self.places is not None:
            self.places = np.concatenate([self.places, np.full(int(new.sum()), "", dtype=object)])
        return first, place


def empty_rejects(schema: Schema) -> pd.DataFrame:
    """No reject lines: the rejects columns with their types (row a number, the rest text)."""
    return pd.DataFrame({c: pd.Series([], dtype="int64" if c == "row" else "str") for c in schema.rejects_columns})


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


def _id_cells(table: pa.Table, schema: Schema, names: dict[str, str]) -> tuple[pa.Array, _Column]:
    """The record_id cells as text, and trimmed with their blanks."""
    raw_id = pc.cast(table.column(names[schema.id_column]).combine_chunks(), pa.string())
    return raw_id, _Column(raw_id, pa.array(sorted(schema.missing_markers)))


def learn_record_ids(table: pa.Table, rows: np.ndarray, schema: Schema, seen: SeenIds) -> None:
    """Record the ids of raw cells in `seen` as `validate_table` does, validating nothing else."""
    _, ids = _id_cells(table, schema, {name.strip(): name for name in table.column_names})
    text = np.asarray(ids.text.to_numpy(zero_copy_only=False), dtype=object)
    seen.first_use(text, np.asarray(rows, dtype=np.int64), ~ids.blank)


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
    id_text = np.asarray(ids.text.to_numpy(zero_copy_only=False), dtype=object)
    id_len = pc.utf8_length(ids.text).to_numpy(zero_copy_only=False)
    raw_id_np = np.asarray(raw_id.to_numpy(zero_copy_only=False), dtype=object)

    bad_rows = np.zeros(n, dtype=bool)
    lines: list[pd.DataFrame] = []

    def add(mask: np.ndarray, field_name: str, values: np.ndarray, reasons) -> None:
        if mask.any():
            lines.append(
                pd.DataFrame(
                    {
                        "row": rows[mask],
                        "record_id": raw_id_np[mask],
                        "field": field_name,
                        "value": values[mask],
                        "reason": reasons[mask] if isinstance(reasons, np.ndarray) else reasons,
                    }
                )
            )

    id_blank = ids.blank
    add(id_blank, schema.id_column, raw_id_np, "record_id is blank")
    too_long = ~id_blank & (id_len > schema.id_max_length)
    add(
        too_long,
        schema.id_column,
        raw_id_np,
        f"record_id is longer than {schema.id_max_length} characters",
    )
    first_row, first_place = first_seen.first_use(id_text, rows, ~id_blank)
    repeated = ~id_blank & (first_row != rows)
    if first_place is not None:  # ids first used in another source: a repeat whatever the row
        repeated |= ~id_blank & (first_place != "")
    repeat_reason = np.full(n, "", dtype=object)
    for i in np.flatnonzero(repeated):
        of = f" of {first_place[i]}" if first_place is not None and first_place[i] else ""
        repeat_reason[i] = f"repeated record_id (first used at row {first_row[i]}{of})"
    add(repeated, schema.id_column, raw_id_np, repeat_reason)
    bad_rows |= id_blank | too_long | repeated

    out: dict[str, object] = {schema.id_column: id_text}
    for col in schema.columns:
        if col.name not in names:
            out[col.name] = np.full(n, np.nan)
            continue
        raw = pc.cast(table.column(names[col.name]).combine_chunks(), pa.string())
        values, bad, reason = _typed_column(col, _Column(raw, markers), schema, decimal_comma)
        raw_np = np.asarray(raw.to_numpy(zero_copy_only=False), dtype=object)
        add(bad, col.name, raw_np, reason)
        bad_rows |= bad
        out[col.name] = values

    keep = ~bad_rows
    typed = _typed_frame({k: (v[keep]) for k, v in out.items()}, schema, rows[keep])
    rejects = pd.concat(lines, ignore_index=True) if lines else empty_rejects(schema)
    rejects = rejects.sort_values("row", kind="stable", ignore_index=True)
    return Validated(typed=typed, rejects=rejects[list(schema.rejects_columns)])


def _typed_frame(columns: dict[str, np.ndarray], schema: Schema, rows: np.ndarray) -> pd.DataFrame:
    if len(rows) == 0:
        return empty_typed_frame(schema)
    data = {}
    for col in schema.columns:
        v = columns[col.name]
        if col.kind == "category":
            codes = np.where(np.isnan(v), -1, v).astype(np.int64)
            data[col.name] = pd.Categorical.from_codes(codes, categories=list(col.categories))
        else:
            data[col.name] = v
    frame = pd.DataFrame({schema.id_column: columns[schema.id_column], **data}, index=pd.Index(rows, name="row"))
    return frame.astype(typed_frame_dtypes(schema))
