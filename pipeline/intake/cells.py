"""Cells as the validator reads them: any DataFrame or Arrow table turned into text cells.

The intake contract is about text (an export's cells); a frame read by pandas or a Parquet
file has numbers, nullable and Arrow-backed dtypes, booleans and categories instead. They are
written back as the text a clinic's export would hold: numbers as plain decimals (no
exponent), true/false as yes/no, and blanks (None, NaN, <NA>) as empty cells.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc


def _cell_text(value) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    if isinstance(value, float | np.floating):
        return np.format_float_positional(value, trim="-")
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    return str(value)


def _number_text(values: np.ndarray) -> pa.Array:
    """Floats as plain decimals ("1" not "1.0", never an exponent); NaN as an empty cell."""
    text = pc.cast(pa.array(values, mask=np.isnan(values)), pa.string())
    text = pc.replace_substring_regex(text, r"\.0$", "")
    exponent = np.asarray(pc.fill_null(pc.match_substring(text, "e"), False), dtype=bool)
    if exponent.any():  # rare: tiny or huge numbers, written positionally
        fixed = np.asarray(text.to_pylist(), dtype=object)
        fixed[exponent] = [_cell_text(v) for v in values[exponent]]
        text = pa.array(fixed, pa.string())
    return pc.fill_null(text, "")


def raw_cells(frame: pd.DataFrame) -> pa.Table:
    """Any DataFrame (e.g. pd.read_csv of an intake file) as string cells the validator reads."""
    columns = {}
    for name in frame.columns:
        series = frame[name]
        if pd.api.types.is_float_dtype(series) or pd.api.types.is_integer_dtype(series):
            columns[str(name)] = _number_text(series.to_numpy(dtype=float))
        elif pd.api.types.is_string_dtype(series) and not isinstance(series.dtype, pd.CategoricalDtype):
            columns[str(name)] = pa.array(series.fillna("").astype(str).to_numpy(), pa.string())
        else:
            columns[str(name)] = pa.array([_cell_text(v) for v in series.astype(object)], pa.string())
    return pa.table(columns)


def arrow_cells(table: pa.Table) -> pa.Table:
    """An Arrow table (e.g. a Parquet row group) as string cells the validator reads."""
    columns = {}
    for name, column in zip(table.column_names, table.columns, strict=True):
        kind = column.type
        if pa.types.is_dictionary(kind):
            column, kind = column.cast(kind.value_type), kind.value_type
        if pa.types.is_integer(kind) or pa.types.is_floating(kind):
            text = _number_text(column.to_numpy(zero_copy_only=False).astype(float))
        elif pa.types.is_boolean(kind):
            text = pc.if_else(column, "yes", "no").combine_chunks()
        else:
            text = pc.cast(column, pa.string()).combine_chunks()
        columns[str(name)] = pc.fill_null(text, "")
    return pa.table(columns)
