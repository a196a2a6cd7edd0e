"""Synthetic intake records and their true conditions, sampled from the compiled knowledge base.

Vectorised over rows; chunk i of a data set draws from its own child of the seed
(SeedSequence(seed, spawn_key=(i,))), so output is identical for the same seed, N,
population and knowledge base, and the first k full chunks (k x 100,000 rows) are the
same for every N that covers them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from scipy.special import expit, ndtr, ndtri

from pipeline.contract.knowledge import Lab, NumericDistribution
from pipeline.intake.frames import csv_table_from_columns, frame_from_columns, parquet_table_from_columns
from pipeline.intake.outputs import atomic_paths
from pipeline.world.network import CompiledModel, noisy_or_absent
from pipeline.world.versions import generator_version

CHUNK_ROWS = 100_000


def _round_to_step(x: np.ndarray, step: float) -> np.ndarray:
    """Round to a multiple of step so the value prints as its short decimal."""
    if step >= 1:
        return np.rint(x / step) * step
    inv = round(1.0 / step)
    return np.rint(x * inv) / inv


def _truncated_normal(rng: np.random.Generator, n: int, mean, sd, lower: float, upper: float) -> np.ndarray:
    """Inverse-CDF draws from Normal(mean, sd) truncated to [lower, upper]."""
    a, b = ndtr((lower - mean) / sd), ndtr((upper - mean) / sd)
    u = a + rng.random(n) * (b - a)
    return np.clip(mean + sd * ndtri(u), lower, upper)


def _numeric_field(rng: np.random.Generator, n: int, dist: NumericDistribution) -> np.ndarray:
    x = _truncated_normal(rng, n, dist.mean, dist.sd, dist.min, dist.max)
    return np.clip(_round_to_step(x, dist.step), dist.min, dist.max)


def _categorical(rng: np.random.Generator, n: int, probs: np.ndarray) -> np.ndarray:
    return np.searchsorted(np.cumsum(probs), rng.random(n) * np.sum(probs), side="right")


def _lab_values(rng: np.random.Generator, lab: Lab, abnormal: np.ndarray, lower: float, upper: float) -> np.ndarray:
    n = len(abnormal)
    mean = np.where(abnormal, lab.abnormal.mean, lab.normal.mean)
    sd = np.where(abnormal, lab.abnormal.sd, lab.normal.sd)
    if lab.scale == "log":
        lo = np.log(lower) if lower > 0 else -np.inf
        x = np.exp(_truncated_normal(rng, n, mean, sd, lo, np.log(upper)))
    else:
        x = _truncated_normal(rng, n, mean, sd, lower, upper)
    return np.clip(_round_to_step(x, lab.step), lower, upper)


def sample_columns(
    model: CompiledModel, n: int, rng: np.random.Generator, first_id: int = 1, id_prefix: str = "syn"
) -> dict[str, object]:
    """n synthetic intake rows with their label_<condition> columns, as raw columns
    (see pipeline.intake.frames: category codes with -1 blank, floats with NaN blank)."""
    kb, pop, schema = model.kb, model.population, model.kb.schema
    cols: dict[str, np.ndarray] = {}

    age = _numeric_field(rng, n, pop.numeric["age"])
    cols["age"] = age
    codes = np.zeros((n, len(model.parent_vars)), dtype=np.int64)
    x = np.zeros((n, len(model.feature_names)), order="F")  # column-major: fast column writes
    x[:, 0] = (age - 50.0) / 10.0
    for v, var in enumerate(model.parent_vars):
        if var.kind == "band":
            band = kb.bands[var.name]
            value = _numeric_field(rng, n, pop.numeric[var.name])
            cols[var.name] = value
            codes[:, v] = np.searchsorted(np.array(band.cuts), value, side="right")
        elif var.kind in ("category", "yes_no"):
            codes[:, v] = _categorical(rng, n, np.exp(var.log_prior))
        else:
            weights = model.risk_weights[:, var.risk_index]
            used = np.flatnonzero(weights)
            logit = x[:, used] @ weights[used] + model.risk_bias[var.risk_index]
            codes[:, v] = rng.random(n) < expit(logit)
        model.set_features(x, v, codes[:, v])
        if var.kind != "band":
            cols[var.name] = codes[:, v]

    present = rng.random((n, model.n_conditions)) < expit(model.condition_logits(x))
    present_t = present.T

    absent_p = noisy_or_absent(present, model.finding_leak, model.finding_link).T  # (B, n)
    finding_on = rng.random(absent_p.shape) >= absent_p
    for j, f in enumerate(model.findings):
        col = schema.column(f.field)
        if col.kind == "integer":
            lo_p, hi_p = f.present_range
            lo_a, hi_a = f.absent_range
            cols[f.field] = np.where(
                finding_on[j],
                rng.integers(lo_p, hi_p + 1, n),
                rng.integers(lo_a, hi_a + 1, n),
            ).astype(float)
        elif col.kind == "category":
            cats = col.categories
            cols[f.field] = np.where(finding_on[j], cats.index(f.present), cats.index(f.absent))
        else:
            cols[f.field] = finding_on[j].astype(np.int64)

    normal_p = noisy_or_absent(present, model.lab_leak, model.lab_link).T  # (L, n)
    lab_abnormal = rng.random(normal_p.shape) >= normal_p
    for j, lab in enumerate(model.labs):
        col = schema.column(lab.name)
        cols[lab.name] = _lab_values(rng, lab, lab_abnormal[j], col.min, col.max)
    for lab in model.parent_labs:
        col = schema.column(lab.name)
        parent_on = codes[:, model.var_index(lab.parent)] == 1
        cols[lab.name] = _lab_values(rng, lab, parent_on, col.min, col.max)

    numbers = pc.utf8_lpad(pc.cast(pa.array(np.arange(first_id, first_id + n)), pa.string()), 8, "0")
    out: dict[str, object] = {schema.id_column: pc.binary_join_element_wise(f"{id_prefix}-", numbers, "")}
    blank_draws = rng.random((len(schema.columns), n))
    for k, col in enumerate(schema.columns):
        blank = blank_draws[k] < kb.blank_rates[col.name]
        if col.kind == "category":
            out[col.name] = np.where(blank, -1, cols[col.name]).astype(np.int64)
        else:
            out[col.name] = np.where(blank, np.nan, cols[col.name].astype(float))
    for c, name in enumerate(model.conditions):
        out[f"label_{name}"] = present_t[c].astype(np.int8)
    return out


def _chunk_columns(model: CompiledModel, seed: int, index: int, start: int, size: int) -> dict:
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index,)))
    return sample_columns(model, size, rng, first_id=start + 1, id_prefix=f"syn{seed}")


def generate_column_chunks(
    model: CompiledModel,
    n: int,
    seed: int,
    chunk_rows: int = CHUNK_ROWS,
    workers: int = 2,
    transform: Callable[[dict], object] | None = None,
) -> Iterator:
    """Yield the data set in order, chunk by chunk; chunk i uses child i of the seed.

    Chunks are sampled (and passed through `transform`, e.g. to an Arrow table) on
    `workers` threads, as numpy and pyarrow release the GIL in the bulk work; at most
    `workers + 1` chunks are held at once.
    """

    def job(i: int) -> object:
        start = i * chunk_rows
        cols = _chunk_columns(model, seed, i, start, min(chunk_rows, n - start))
        return transform(cols) if transform else cols

    n_chunks = -(-n // chunk_rows)
    if workers <= 1 or n_chunks == 1:
        yield from (job(i) for i in range(n_chunks))
        return
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
    parts = [frame_from_columns(c, schema, with_labels=True) for c in generate_column_chunks(model, n, seed)]
    return pd.concat(parts, ignore_index=True)


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


def write_dataset(model: CompiledModel, n: int, seed: int, out: Path, fmt: str, progress: bool = False) -> Path:
    """Generate n rows to `out` (parquet or csv) via a temporary file renamed on success."""
    if fmt not in ("parquet", "csv"):
        raise ValueError(f"unknown format {fmt!r}: use parquet or csv")
    schema = model.kb.schema
    meta = {k.encode(): v.encode() for k, v in dataset_metadata(model, n, seed).items()}

    def to_table(cols: dict) -> pa.Table:
        if fmt == "parquet":
            return parquet_table_from_columns(cols, schema, with_labels=True).replace_schema_metadata(meta)
        return csv_table_from_columns(cols, schema, with_labels=True)

    tables = generate_column_chunks(model, n, seed, transform=to_table)
    if progress:
        from tqdm import tqdm

        tables = tqdm(tables, total=-(-n // CHUNK_ROWS), unit="chunk", desc="generate")
    with atomic_paths(out) as (tmp,):
        writer = None
        for table in tables:
            if writer is None and fmt == "parquet":
                writer = pq.ParquetWriter(tmp, table.schema)
            elif writer is None:
                # Generated ids and category names hold no comma, quote or line break: no quoting.
                options = pacsv.WriteOptions(quoting_style="none")
                writer = pacsv.CSVWriter(tmp, table.schema, write_options=options)
            writer.write_table(table)
        if writer is not None:
            writer.close()
    return Path(out)
