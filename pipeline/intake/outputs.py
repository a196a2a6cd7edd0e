"""Writing outputs safely: temporary files renamed into place, spreadsheet-safe text, the rejects file."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from pipeline.contract.schema import Schema

CSV_OPTIONS = pacsv.WriteOptions(quoting_style="needed")


@contextlib.contextmanager
def atomic_paths(*targets: Path, make_parents: bool = True) -> Iterator[list[Path]]:
    """Temporary paths beside each target, renamed onto the targets only if the block succeeds.

    On any exception (KeyboardInterrupt and SystemExit included) the temporaries are removed
    and the targets, including earlier versions of them, are left untouched. The temporary names
    are unique (several writers, e.g. the tasks of a distributed job, may share a directory);
    with `make_parents=False` a missing directory is not created (the write fails instead).
    """
    targets = [Path(t) for t in targets]
    temps = [t.with_name(f".{t.name}.{os.getpid()}.{uuid.uuid4().hex[:12]}.partial") for t in targets]
    for t in targets if make_parents else ():
        t.parent.mkdir(parents=True, exist_ok=True)
    try:
        yield temps
        for tmp, target in zip(temps, targets, strict=True):
            os.replace(tmp, target)
    finally:
        for tmp in temps:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()


def neutralize_formulas(values: pa.Array | pd.Series, schema: Schema) -> pa.Array:
    """Prefix with ' any text a spreadsheet would run as a formula (=, +, -, @, tab, CR)."""
    arr = values if isinstance(values, pa.Array) else pa.array(values.astype(str).to_numpy())
    arr = pc.cast(arr, pa.string())
    risky = np.zeros(len(arr), dtype=bool)
    for prefix in schema.formula_prefixes:
        risky |= np.asarray(pc.fill_null(pc.starts_with(arr, prefix), False), dtype=bool)
    if not risky.any():
        return arr
    return pc.if_else(pa.array(risky), pc.binary_join_element_wise("'", arr, ""), arr)


def default_rejects_path(output: Path) -> Path:
    """`<output stem>.rejects.csv` beside the output."""
    return Path(output).with_name(f"{Path(output).stem}.rejects.csv")


def rejects_arrow_schema(schema: Schema) -> pa.Schema:
    """The rejects file's columns: `row` a number, the rest text."""
    return pa.schema([(c, pa.int64() if c == "row" else pa.string()) for c in schema.rejects_columns])


def rejects_table(rejects: pd.DataFrame, schema: Schema) -> pa.Table:
    """Reject lines as the rejects file holds them: text copied from the input neutralised."""
    arrays = []
    for field in rejects_arrow_schema(schema):
        if field.name == "row":
            arrays.append(pa.array(rejects["row"].to_numpy(dtype=np.int64)))
            continue
        text = pa.array(rejects[field.name].astype(str).to_numpy(), pa.string())
        arrays.append(neutralize_formulas(text, schema) if field.name in schema.rejects_copied_from_input else text)
    return pa.Table.from_arrays(arrays, schema=rejects_arrow_schema(schema))


class RejectsWriter:
    """The rejects file, written chunk by chunk (header first, even when nothing is rejected)."""

    def __init__(self, path: Path, schema: Schema):
        self.schema = schema
        self._writer = pacsv.CSVWriter(path, rejects_arrow_schema(schema), write_options=CSV_OPTIONS)

    def write(self, rejects: pd.DataFrame) -> None:
        if len(rejects):
            self._writer.write_table(rejects_table(rejects, self.schema))

    def close(self) -> None:
        self._writer.close()


def write_csv_table(table: pa.Table, path: Path) -> None:
    """Write a table with pyarrow's CSV writer (much faster than pandas for floats)."""
    pacsv.write_csv(table, path, write_options=CSV_OPTIONS)
