"""What one task of a partitioned scoring job does with one input file (no engine code here).

Pass 1 (`file_id_uses`) lists the record ids a file uses with the row of each first use, reading
the id column alone (`intake.stream.record_id_uses`). `earlier_uses` turns the ids used in more
than one file into, for each file, the ids an earlier file (in name order) used first. Pass 2
(`score_one_file`) runs the single-machine intake path over the file with those ids already
known (`SeenIds.earlier`), so a repeat of one is rejected like a repeat within the file and its
reason names the file; it scores the valid rows with `score_chunk` and writes the file's scores
and rejects part files atomically. Row numbers are positions in the file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from pipeline.contract.knowledge import KnowledgeBase
from pipeline.contract.schema import Schema
from pipeline.intake.errors import IntakeFormatError
from pipeline.intake.outputs import CSV_OPTIONS, atomic_paths, neutralize_formulas, rejects_arrow_schema, rejects_table
from pipeline.intake.reader import BLOCK_BYTES
from pipeline.intake.stream import iter_validated, record_id_uses
from pipeline.intake.validate import SeenIds
from pipeline.scoring.score import score_chunk, scores_arrow_schema
from pipeline.tracking.persistence import load_model_bytes

FILE_COLUMN = "file"
ID_USES_SCHEMA = pa.schema(
    [("file", pa.int64()), ("record_id", pa.string()), ("row", pa.int64()), ("error", pa.string())]
)
RESULT_SCHEMA = pa.schema(
    [
        ("file", pa.int64()),
        ("rows_read", pa.int64()),
        ("rows_scored", pa.int64()),
        ("rows_rejected", pa.int64()),
        ("error", pa.string()),
    ]
)
ID_BATCH_ROWS = 65_536

_MODELS: dict[str, object] = {}  # skops digest -> model, so a worker process loads it once


@dataclass(frozen=True)
class EarlierUses:
    """Record ids a file repeats from earlier files, with the file index and row of each first use."""

    ids: pa.Array
    files: np.ndarray
    rows: np.ndarray


@dataclass(frozen=True)
class ScoringJob:
    """Everything a task needs, shipped to the workers once (the model as reviewed skops bytes).

    `explainer_factory`, when given, is called once per file with (model, kb); what it returns is
    passed to `score_chunk` as `explainer=` (`score --explain`): the scores get its columns.
    """

    files: tuple[str, ...]  # the input files in name order (absolute); a file's index is its position here
    names: tuple[str, ...]  # the same files as the user named them: the rejects' `file` column
    kb: KnowledgeBase
    model: bytes
    model_version: str
    model_digest: str  # sha256 of `model`: the key of the per-worker model cache
    scores_dir: str
    rejects_dir: str
    earlier: dict[int, EarlierUses] = field(default_factory=dict)
    read_options: dict = field(default_factory=dict)
    block_bytes: int = BLOCK_BYTES
    explainer_factory: Callable | None = None  # importable on the workers (pickled by reference)


def part_name(index: int, files: int) -> str:
    """The part file of the input file at `index` of `files`: in name order, the part files follow
    the input files (`part-00000.csv`, ...; wider numbers beyond 100,000 files)."""
    return f"part-{index:0{max(5, len(str(files - 1)))}d}.csv"


def file_rejects_schema(schema: Schema) -> pa.Schema:
    """The rejects part files' columns: the file first, then the rejects file's columns."""
    return pa.schema([pa.field(FILE_COLUMN, pa.string()), *rejects_arrow_schema(schema)])


def _model(job: ScoringJob):
    """The job's model, loaded once per worker process (the workers are reused across tasks)."""
    digest = job.model_digest
    if digest not in _MODELS:
        _MODELS.clear()
        _MODELS[digest] = load_model_bytes(job.model)
    return _MODELS[digest]


def file_id_uses(job: ScoringJob, index: int) -> list[pa.RecordBatch]:
    """Pass 1: (file, record_id, row) of each id's first use in the file; one error line instead
    when the file cannot be read (pass 2 then reports it)."""
    try:
        seen = record_id_uses(job.files[index], job.kb.schema, block_bytes=job.block_bytes, **job.read_options)
    except IntakeFormatError as err:
        error = {"file": index, "record_id": None, "row": -1, "error": str(err)}
        return pa.Table.from_pylist([error], schema=ID_USES_SCHEMA).to_batches()
    n = len(seen.ids)
    columns = [pa.array(np.full(n, index, dtype=np.int64)), seen.ids, pa.array(seen.rows), pa.nulls(n, pa.string())]
    return pa.Table.from_arrays(columns, schema=ID_USES_SCHEMA).to_batches(max_chunksize=ID_BATCH_ROWS)


def earlier_uses(repeated: pa.Table) -> dict[int, EarlierUses]:
    """From ids used in several files (`record_id`, `uses`: their (file, row) first uses, sorted),
    each later file's ids with the file and row of the first use."""
    if repeated.num_rows == 0:
        return {}
    uses = repeated.column("uses").combine_chunks()
    first = pc.list_element(uses, 0)
    flat = pc.list_flatten(uses)
    parent = pc.list_parent_indices(uses).to_numpy()
    starts = uses.offsets.to_numpy()[:-1]
    position = np.arange(len(flat)) - starts[parent]
    later = position > 0
    ids = repeated.column("record_id").combine_chunks().take(pa.array(parent[later]))
    files = flat.field("file").to_numpy()[later]
    first_files = first.field("file").to_numpy()[parent[later]]
    first_rows = first.field("row").to_numpy()[parent[later]]
    out = {}
    for index in np.unique(files):
        mine = np.flatnonzero(files == index)
        out[int(index)] = EarlierUses(ids.take(pa.array(mine)), first_files[mine], first_rows[mine])
    return out


def _file_rejects(rejects: pd.DataFrame, name: str, schema: Schema) -> pa.Table:
    table = rejects_table(rejects, schema)
    label = neutralize_formulas(pa.array(np.full(table.num_rows, name, dtype=object), pa.string()), schema)
    return table.add_column(0, FILE_COLUMN, label)


def earlier_seen(job: ScoringJob, index: int) -> SeenIds | None:
    """The ids earlier files used that file `index` uses too, each with the file and row of its first use."""
    earlier = job.earlier.get(index)
    if earlier is None:
        return None
    return SeenIds.earlier(earlier.ids, earlier.rows, [job.names[f] for f in earlier.files])


def score_one_file(job: ScoringJob, index: int) -> list[pa.RecordBatch]:
    """Pass 2: score one file into its part files; one result line (rows read, scored, rejected, or
    the error that makes the file unreadable)."""
    schema, name = job.kb.schema, job.names[index]
    read = scored = rejected = 0
    error = None
    part = part_name(index, len(job.files))
    targets = [Path(job.scores_dir) / part, Path(job.rejects_dir) / part]
    try:
        stream = iter_validated(
            job.files[index],
            schema,
            block_bytes=job.block_bytes,
            first_seen=earlier_seen(job, index),
            keep_raw=False,
            **job.read_options,
        )
        model = _model(job)
        extra = {} if job.explainer_factory is None else {"explainer": job.explainer_factory(model, job.kb)}
        # The directories are not created: once a failed job has removed them, a straggling task writes nothing.
        with atomic_paths(*targets, make_parents=False) as (scores_path, rejects_path):
            scores_schema = scores_arrow_schema(schema, explain=job.explainer_factory is not None)
            scores_out = pacsv.CSVWriter(scores_path, scores_schema, write_options=CSV_OPTIONS)
            rejects_out = pacsv.CSVWriter(rejects_path, file_rejects_schema(schema), write_options=CSV_OPTIONS)
            try:
                for chunk in stream:
                    if len(chunk.rejects):
                        rejects_out.write_table(_file_rejects(chunk.rejects, name, schema))
                    if len(chunk.typed):
                        scores_out.write_table(score_chunk(chunk.typed, model, job.kb, job.model_version, **extra))
                    read += chunk.rows_read
                    scored += len(chunk.typed)
                    rejected += chunk.rows_rejected
            finally:
                scores_out.close()
                rejects_out.close()
    except IntakeFormatError as err:
        error = str(err)
    result = {"file": index, "rows_read": read, "rows_scored": scored, "rows_rejected": rejected, "error": error}
    return [pa.RecordBatch.from_pylist([result], schema=RESULT_SCHEMA)]
