"""Writing outputs safely: temporary files renamed into place, and spreadsheet-safe text."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.schema import Schema


@contextlib.contextmanager
def atomic_paths(*targets: Path) -> Iterator[list[Path]]:
    """Temporary paths beside each target, renamed onto the targets only if the block succeeds.

    On any exception (KeyboardInterrupt and SystemExit included) the temporaries are removed
    and the targets, including earlier versions of them, are left untouched.
    """
    targets = [Path(t) for t in targets]
    temps = [t.with_name(f".{t.name}.{os.getpid()}.partial") for t in targets]
    for t in targets:
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
