"""`python -m pipeline oracle`: the exact posterior of the generator's model for each form of a file.

Reads intake forms through the one intake path (a CSV export or a generated Parquet data set)
and writes, chunk by chunk into temporary files renamed at the end, the posterior p_ columns per
valid row and the rejects file.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from pipeline.intake.outputs import CSV_OPTIONS, RejectsWriter, atomic_paths, default_rejects_path, neutralize_formulas
from pipeline.intake.stream import iter_validated
from pipeline.world.network import CompiledModel
from pipeline.world.oracle import ERROR_COLUMN, posterior_probabilities


@dataclass
class OracleSummary:
    rows: int
    rejected_rows: int
    seconds: float
    largest_error_bound: float
    warnings: list[str]
    rejects_path: Path


def oracle_file(model: CompiledModel, input_path: Path, output: Path) -> OracleSummary:
    """Posterior probabilities for every valid form of `input_path` into `output` (+ its rejects file)."""
    schema = model.kb.schema
    stream = iter_validated(input_path, schema, expected_extra=schema.label_columns, keep_raw=False)
    rejects_path = default_rejects_path(output)
    rows = rejected = 0
    worst, seconds = 0.0, 0.0
    with atomic_paths(Path(output), rejects_path) as (tmp_out, tmp_rej):
        writer, rejects_writer = None, RejectsWriter(tmp_rej, schema)
        try:
            for chunk in stream:
                rejects_writer.write(chunk.rejects)
                rejected += chunk.rows_rejected
                if not len(chunk.typed):
                    continue
                start = time.perf_counter()
                post = posterior_probabilities(model, chunk.typed)
                seconds += time.perf_counter() - start
                ids = neutralize_formulas(pa.array(chunk.typed[schema.id_column].to_numpy(), pa.string()), schema)
                table = pa.table({schema.id_column: ids, **{c: pa.array(post[c].to_numpy()) for c in post.columns}})
                if writer is None:
                    writer = pacsv.CSVWriter(tmp_out, table.schema, write_options=CSV_OPTIONS)
                writer.write_table(table)
                rows += len(post)
                worst = max(worst, float(np.max(post[ERROR_COLUMN])))
            if writer is None:  # no valid row: the header alone
                names = [schema.id_column, *schema.probability_columns, ERROR_COLUMN]
                pacsv.write_csv(pa.table({n: pa.array([], pa.string()) for n in names}), tmp_out)
        finally:
            if writer is not None:
                writer.close()
            rejects_writer.close()
    return OracleSummary(rows, rejected, seconds, worst, stream.warnings, rejects_path)
