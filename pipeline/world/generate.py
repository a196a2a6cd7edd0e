"""Synthetic data sets: chunks of sampled rows (pipeline.world.sampling) on two threads, written as
Parquet or as the intake CSV.

Chunk i of a data set draws from its own child of the seed (SeedSequence(seed, spawn_key=(i,))),
so output is identical for the same seed, N, population and knowledge base, and the first k
full chunks (k x 100,000 rows) are the same for every N that covers them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from threadpoolctl import threadpool_limits

from pipeline.contract.schema import Schema
from pipeline.intake.frames import frame_from_columns
from pipeline.intake.outputs import atomic_paths
from pipeline.world.csv_text import CsvText
from pipeline.world.network import CompiledModel
from pipeline.world.sampling import Workspace, raw_columns, sample_cells
from pipeline.world.versions import generator_version

CHUNK_ROWS = 100_000


def _chunk_cells(model: CompiledModel, seed: int, index: int, start: int, size: int, ws: Workspace | None = None):
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index,)))
    return sample_cells(model, size, rng, first_id=start + 1, id_prefix=f"syn{seed}", workspace=ws)


def generate_column_chunks(
    model: CompiledModel,
    n: int,
    seed: int,
    chunk_rows: int = CHUNK_ROWS,
    workers: int = 2,
    transform: Callable[[dict], object] | None = None,
) -> Iterator:
    """Yield the data set in order, chunk by chunk, as cells (see pipeline.world.sampling.sample_cells);
    chunk i uses child i of the seed.

    Chunks are sampled (and passed through `transform`, e.g. to an Arrow table or CSV text) on
    `workers` threads, as numpy and pyarrow release the GIL in the bulk work; at most
    `workers + 1` chunks are held at once. BLAS runs one thread per call until the iterator ends.
    """

    scratch = threading.local()  # one workspace per sampling thread

    def job(i: int) -> object:
        if not hasattr(scratch, "workspace"):
            scratch.workspace = Workspace()
        start = i * chunk_rows
        cells = _chunk_cells(model, seed, i, start, min(chunk_rows, n - start), scratch.workspace)
        return transform(cells) if transform else cells

    n_chunks = -(-n // chunk_rows)
    # One BLAS thread per call: the chunks already use the cores, and OpenBLAS's own threads only
    # wait for each other when two sampling threads call it at once (same results, less time).
    with threadpool_limits(limits=1, user_api="blas"):
        if workers <= 1 or n_chunks == 1:
            yield from (job(i) for i in range(n_chunks))
        else:
            yield from _in_order(job, n_chunks, workers)


def _in_order(job: Callable[[int], object], n_chunks: int, workers: int) -> Iterator:
    """job(0), job(1), ... run on `workers` threads, yielded in order, at most workers + 1 held."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending = [pool.submit(job, i) for i in range(min(workers + 1, n_chunks))]
        for i in range(len(pending), n_chunks + len(pending)):
            done = pending.pop(0).result()
            if i < n_chunks:
                pending.append(pool.submit(job, i))
            yield done


def generate_frame(model: CompiledModel, n: int, seed: int) -> pd.DataFrame:
    """The whole data set as one typed frame with labels (tests, training)."""
    schema = model.kb.schema

    def to_frame(cells: dict) -> pd.DataFrame:
        return frame_from_columns(raw_columns(cells, schema), schema, with_labels=True)

    return pd.concat(generate_column_chunks(model, n, seed, transform=to_frame), ignore_index=True)


def dataset_metadata(model: CompiledModel, n: int, seed: int) -> dict[str, str]:
    return {
        "leg_fatigue.seed": str(seed),
        "leg_fatigue.n": str(n),
        "leg_fatigue.population": model.population.name,
        "leg_fatigue.kb_sha256": model.kb.sha256,
        "leg_fatigue.schema_sha256": model.kb.schema.sha256,
        "leg_fatigue.generator": generator_version(),
        "leg_fatigue.note": "synthetic records from the knowledge base; not patient data",
    }


def parquet_table(cells: dict, schema: Schema) -> pa.Table:
    """Cells as the typed Parquet table of pipeline.intake.frames.parquet_table_from_columns (categories
    dictionary-encoded, yes/no and numbers float64 with nulls, int8 labels), built from the codes."""
    arrays = [pa.array(cells[schema.id_column], pa.string())]
    for col in schema.columns:
        v = cells[col.name]
        if col.kind == "category":
            arrays.append(pa.DictionaryArray.from_arrays(pa.array(v, mask=v < 0), pa.array(list(col.categories))))
        elif col.kind == "yes_no":
            arrays.append(pa.array(v, mask=v < 0).cast(pa.float64()))
        else:
            arrays.append(pa.array(v, mask=np.isnan(v)))
    arrays += [pa.array(cells[label]) for label in schema.label_columns]
    return pa.Table.from_arrays(arrays, names=[schema.id_column, *schema.column_names, *schema.label_columns])


def number_steps(model: CompiledModel) -> dict[str, float]:
    """The step each generated number is rounded to (person fields and labs)."""
    labs = (*model.labs, *model.parent_labs)
    return {name: d.step for name, d in model.population.numeric.items()} | {lab.name: lab.step for lab in labs}


def write_dataset(model: CompiledModel, n: int, seed: int, out: Path, fmt: str, progress: bool = False) -> Path:
    """Generate n rows to `out` (parquet or csv) via a temporary file renamed on success.

    CSV chunks are turned into text on the sampling threads, so this thread only writes bytes;
    Parquet row groups are encoded here, one chunk per row group, while the next chunks are sampled.
    """
    if fmt not in ("parquet", "csv"):
        raise ValueError(f"unknown format {fmt!r}: use parquet or csv")
    schema = model.kb.schema
    meta = {k.encode(): v.encode() for k, v in dataset_metadata(model, n, seed).items()}

    def to_parquet_table(cells: dict) -> pa.Table:
        return parquet_table(cells, schema).replace_schema_metadata(meta)

    text = CsvText(schema, number_steps(model)) if fmt == "csv" else None
    chunks = generate_column_chunks(model, n, seed, transform=text.body if text else to_parquet_table)
    if progress:
        from tqdm import tqdm

        chunks = tqdm(chunks, total=-(-n // CHUNK_ROWS), unit="chunk", desc="generate")
    with atomic_paths(out) as (tmp,):
        if fmt == "parquet":
            writer = None
            for table in chunks:
                writer = writer or pq.ParquetWriter(tmp, table.schema)
                writer.write_table(table)
            if writer is not None:
                writer.close()
        else:
            with open(tmp, "wb") as f:
                f.write(text.header())
                for body in chunks:
                    f.write(body)
    return Path(out)
