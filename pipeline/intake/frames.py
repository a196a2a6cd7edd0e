"""The typed intake frame: dtypes, and its CSV (intake format) and Parquet forms.

A typed frame has `record_id` (str), one float64 column per yes/no (1.0/0.0), integer
or number field, and one pandas Categorical per category field; NaN is a blank.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.contract.schema import Schema


def typed_frame_dtypes(schema: Schema, with_labels: bool = False) -> dict[str, object]:
    dtypes: dict[str, object] = {schema.id_column: "str"}
    for col in schema.columns:
        if col.kind == "category":
            dtypes[col.name] = pd.CategoricalDtype(list(col.categories))
        else:
            dtypes[col.name] = "float64"
    if with_labels:
        dtypes.update({label: "int8" for label in schema.label_columns})
    return dtypes


def empty_typed_frame(schema: Schema) -> pd.DataFrame:
    """A typed frame with no rows (index named `row`, like every validated chunk's)."""
    dtypes = typed_frame_dtypes(schema)
    index = pd.Index([], dtype="int64", name="row")
    return pd.DataFrame({name: pd.Series([], dtype=dt, index=index) for name, dt in dtypes.items()}, index=index)


def _decoded(codes: np.ndarray, labels: list[str]) -> pa.Array:
    mask = codes < 0
    indices = pa.array(np.where(mask, 0, codes).astype(np.int32), mask=mask)
    return pa.DictionaryArray.from_arrays(indices, pa.array(labels)).cast(pa.string())


def columns_from_frame(frame: pd.DataFrame, schema: Schema, with_labels: bool = False) -> dict:
    """A typed frame as raw columns: category codes (-1 blank), floats (NaN blank), int8 labels."""
    cols: dict[str, object] = {schema.id_column: pa.array(frame[schema.id_column].astype(str).to_numpy())}
    for col in schema.columns:
        values = frame[col.name]
        if col.kind == "category":
            cols[col.name] = values.cat.codes.to_numpy().astype(np.int64)
        else:
            cols[col.name] = values.to_numpy(dtype=float)
    if with_labels:
        cols.update({label: frame[label].to_numpy() for label in schema.label_columns})
    return cols


def frame_from_columns(cols: dict, schema: Schema, with_labels: bool = False) -> pd.DataFrame:
    """Raw columns as a typed frame."""
    data: dict[str, object] = {schema.id_column: np.asarray(cols[schema.id_column], dtype=object)}
    for col in schema.columns:
        if col.kind == "category":
            data[col.name] = pd.Categorical.from_codes(cols[col.name], categories=list(col.categories))
        else:
            data[col.name] = cols[col.name]
    if with_labels:
        data.update({label: cols[label] for label in schema.label_columns})
    return pd.DataFrame(data).astype(typed_frame_dtypes(schema, with_labels=with_labels))


def csv_table_from_columns(cols: dict, schema: Schema, with_labels: bool = False) -> pa.Table:
    """The intake CSV form: yes/no as yes/no, integers as integers, blanks empty."""
    arrays, names = [pa.array(cols[schema.id_column], pa.string())], [schema.id_column]
    for col in schema.columns:
        v = cols[col.name]
        if col.kind == "category":
            arrays.append(_decoded(v, list(col.categories)))
        else:
            blank = np.isnan(v)
            if col.kind == "yes_no":
                arrays.append(_decoded(np.where(blank, -1, v).astype(np.int64), ["no", "yes"]))
            elif col.kind == "integer":
                arrays.append(pa.array(np.where(blank, 0, v).astype(np.int64), mask=blank))
            else:
                arrays.append(pa.array(v, mask=blank))
        names.append(col.name)
    return _table(arrays, names, cols, schema, with_labels)


def _table(arrays: list, names: list[str], cols: dict, schema: Schema, with_labels: bool) -> pa.Table:
    """The intake columns, then the label_<condition> columns when asked for."""
    if with_labels:
        arrays = [*arrays, *(pa.array(cols[label]) for label in schema.label_columns)]
        names = [*names, *schema.label_columns]
    return pa.Table.from_arrays(arrays, names=names)


def parquet_table_from_columns(cols: dict, schema: Schema, with_labels: bool = False) -> pa.Table:
    """Typed columns for Parquet: categories dictionary-encoded, numbers float64 with nulls."""
    arrays, names = [pa.array(cols[schema.id_column], pa.string())], [schema.id_column]
    for col in schema.columns:
        v = cols[col.name]
        if col.kind == "category":
            mask = v < 0
            indices = pa.array(np.where(mask, 0, v).astype(np.int8), mask=mask)
            arrays.append(pa.DictionaryArray.from_arrays(indices, pa.array(list(col.categories))))
        else:
            arrays.append(pa.array(v, mask=np.isnan(v)))
        names.append(col.name)
    return _table(arrays, names, cols, schema, with_labels)


def to_csv_table(frame: pd.DataFrame, schema: Schema, with_labels: bool = False) -> pa.Table:
    """The intake CSV form of a typed frame."""
    return csv_table_from_columns(columns_from_frame(frame, schema, with_labels), schema, with_labels)


def read_parquet_dataset(path: Path, schema: Schema) -> pd.DataFrame:
    """A generated Parquet data set as a typed frame (labels included when present)."""
    frame = pq.read_table(path).to_pandas()
    for col in schema.columns_of(kind="category"):
        frame[col.name] = frame[col.name].astype(str).where(frame[col.name].notna())
    with_labels = all(label in frame.columns for label in schema.label_columns)
    return frame.astype(typed_frame_dtypes(schema, with_labels=with_labels))


def parquet_metadata(path: Path) -> dict[str, str]:
    meta = pq.read_schema(path).metadata or {}
    return {k.decode(): v.decode() for k, v in meta.items() if k.startswith(b"leg_fatigue.")}
