"""Synthetic intake records and their true conditions, sampled from the compiled knowledge base.

Vectorised over rows; chunk i of a data set draws from its own child of the seed
(SeedSequence(seed, spawn_key=(i,))), so output is identical for the same seed, N,
population and knowledge base, and a smaller N gives a prefix of a larger one.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from scipy.special import expit, ndtr, ndtri

from pipeline.bayesnet import CompiledModel, noisy_or_absent
from pipeline.dataset import to_csv_table, typed_frame_dtypes
from pipeline.knowledge import Lab, NumericDistribution

CHUNK_ROWS = 100_000


def _round_to_step(x: np.ndarray, step: float) -> np.ndarray:
    """Round to a multiple of step so the value prints as its short decimal."""
    if step >= 1:
        return np.rint(x / step) * step
    inv = round(1.0 / step)
    return np.rint(x * inv) / inv


def _truncated_normal(
    rng: np.random.Generator, n: int, mean, sd, lower: float, upper: float
) -> np.ndarray:
    """Inverse-CDF draws from Normal(mean, sd) truncated to [lower, upper]."""
    a, b = ndtr((lower - mean) / sd), ndtr((upper - mean) / sd)
    u = a + rng.random(n) * (b - a)
    return np.clip(mean + sd * ndtri(u), lower, upper)


def _numeric_field(rng: np.random.Generator, n: int, dist: NumericDistribution) -> np.ndarray:
    x = _truncated_normal(rng, n, dist.mean, dist.sd, dist.min, dist.max)
    return np.clip(_round_to_step(x, dist.step), dist.min, dist.max)


def _categorical(rng: np.random.Generator, n: int, probs: np.ndarray) -> np.ndarray:
    return np.searchsorted(np.cumsum(probs), rng.random(n) * np.sum(probs), side="right")


def _lab_values(
    rng: np.random.Generator, lab: Lab, abnormal: np.ndarray, lower: float, upper: float
) -> np.ndarray:
    n = len(abnormal)
    mean = np.where(abnormal, lab.abnormal.mean, lab.normal.mean)
    sd = np.where(abnormal, lab.abnormal.sd, lab.normal.sd)
    if lab.scale == "log":
        lo = np.log(lower) if lower > 0 else -np.inf
        x = np.exp(_truncated_normal(rng, n, mean, sd, lo, np.log(upper)))
    else:
        x = _truncated_normal(rng, n, mean, sd, lower, upper)
    return np.clip(_round_to_step(x, lab.step), lower, upper)


def sample_chunk(
    model: CompiledModel, n: int, rng: np.random.Generator, first_id: int = 1, id_prefix: str = "syn"
) -> pd.DataFrame:
    """n synthetic intake rows (typed) with their label_<condition> columns."""
    kb, pop, schema = model.kb, model.population, model.kb.schema
    cols: dict[str, np.ndarray] = {}

    age = _numeric_field(rng, n, pop.numeric["age"])
    cols["age"] = age
    codes = np.zeros((n, len(model.parent_vars)), dtype=np.int64)
    x = np.zeros((n, len(model.feature_names)))
    x[:, 0] = (age - 50.0) / 10.0
    risk_logits_bias = model.risk_bias
    for v, var in enumerate(model.parent_vars):
        if var.kind == "band":
            band = kb.bands[var.name]
            value = _numeric_field(rng, n, pop.numeric[var.name])
            cols[var.name] = value
            codes[:, v] = np.searchsorted(np.array(band.cuts), value, side="right")
        elif var.kind in ("category", "yes_no"):
            codes[:, v] = _categorical(rng, n, np.exp(var.log_prior))
        else:
            logit = x @ model.risk_weights[:, var.risk_index] + risk_logits_bias[var.risk_index]
            codes[:, v] = rng.random(n) < expit(logit)
        model.set_features(x, v, codes[:, v])
        if var.kind != "band":
            cols[var.name] = codes[:, v]

    present = rng.random((n, model.n_conditions)) < expit(model.condition_logits(x))

    absent_p = noisy_or_absent(present, model.finding_leak, model.finding_link)
    finding_on = rng.random(absent_p.shape) >= absent_p
    for j, f in enumerate(model.findings):
        col = schema.column(f.field)
        if col.kind == "integer":
            lo_p, hi_p = f.present_range
            lo_a, hi_a = f.absent_range
            cols[f.field] = np.where(
                finding_on[:, j],
                rng.integers(lo_p, hi_p + 1, n),
                rng.integers(lo_a, hi_a + 1, n),
            ).astype(float)
        elif col.kind == "category":
            cats = col.categories
            cols[f.field] = np.where(finding_on[:, j], cats.index(f.present), cats.index(f.absent))
        else:
            cols[f.field] = finding_on[:, j].astype(np.int64)

    normal_p = noisy_or_absent(present, model.lab_leak, model.lab_link)
    lab_abnormal = rng.random(normal_p.shape) >= normal_p
    for j, lab in enumerate(model.labs):
        col = schema.column(lab.name)
        cols[lab.name] = _lab_values(rng, lab, lab_abnormal[:, j], col.min, col.max)
    for lab in model.parent_labs:
        col = schema.column(lab.name)
        parent_on = codes[:, model.var_index(lab.parent)] == 1
        cols[lab.name] = _lab_values(rng, lab, parent_on, col.min, col.max)

    dur = kb.duration
    weeks = np.exp(np.log(dur.median) + dur.sd_log * rng.standard_normal(n))
    cols["symptom_duration_weeks"] = np.clip(_round_to_step(weeks, dur.step), dur.min, dur.max)

    frame = {schema.id_column: [f"{id_prefix}-{i:08d}" for i in range(first_id, first_id + n)]}
    blank_draws = rng.random((n, len(schema.columns)))
    for k, col in enumerate(schema.columns):
        raw = cols[col.name]
        blank = blank_draws[:, k] < kb.blank_rates[col.name]
        if col.kind == "category":
            codes_k = np.where(blank, -1, raw).astype(np.int64)
            frame[col.name] = pd.Categorical.from_codes(codes_k, categories=list(col.categories))
        else:
            frame[col.name] = np.where(blank, np.nan, raw.astype(float))
    for c, name in enumerate(model.conditions):
        frame[f"label_{name}"] = present[:, c].astype(np.int8)
    df = pd.DataFrame(frame)
    return df.astype(typed_frame_dtypes(schema, with_labels=True))


def generate_chunks(
    model: CompiledModel, n: int, seed: int, chunk_rows: int = CHUNK_ROWS
) -> Iterator[pd.DataFrame]:
    """Yield the data set in chunks; chunk i uses child i of the seed."""
    for i, start in enumerate(range(0, n, chunk_rows)):
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(i,)))
        size = min(chunk_rows, n - start)
        yield sample_chunk(model, size, rng, first_id=start + 1, id_prefix=f"syn{seed}")


def generate_frame(model: CompiledModel, n: int, seed: int) -> pd.DataFrame:
    """The whole data set in memory (tests, training)."""
    return pd.concat(list(generate_chunks(model, n, seed)), ignore_index=True)


def dataset_metadata(model: CompiledModel, n: int, seed: int) -> dict[str, str]:
    return {
        "leg_fatigue.seed": str(seed),
        "leg_fatigue.n": str(n),
        "leg_fatigue.population": model.population.name,
        "leg_fatigue.kb_sha256": model.kb.sha256,
        "leg_fatigue.schema_sha256": model.kb.schema.sha256,
        "leg_fatigue.note": "synthetic records from the knowledge base; not patient data",
    }


def write_dataset(
    model: CompiledModel, n: int, seed: int, out: Path, fmt: str, progress: bool = False
) -> Path:
    """Generate n rows to `out` (parquet or csv) via a temporary file renamed on success."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    chunks = generate_chunks(model, n, seed)
    if progress:
        from tqdm import tqdm

        chunks = tqdm(chunks, total=-(-n // CHUNK_ROWS), unit="chunk", desc="generate")
    try:
        if fmt == "parquet":
            writer = None
            for chunk in chunks:
                table = pa.Table.from_pandas(chunk, preserve_index=False)
                if writer is None:
                    meta = {
                        **(table.schema.metadata or {}),
                        **{k.encode(): v.encode() for k, v in dataset_metadata(model, n, seed).items()},
                    }
                    writer = pq.ParquetWriter(tmp, table.schema.with_metadata(meta))
                writer.write_table(table.replace_schema_metadata(writer.schema.metadata))
            if writer is not None:
                writer.close()
        elif fmt == "csv":
            from pyarrow import csv as pacsv

            writer = None
            for chunk in chunks:
                table = to_csv_table(chunk, model.kb.schema, with_labels=True)
                if writer is None:
                    writer = pacsv.CSVWriter(tmp, table.schema)
                writer.write_table(table)
            if writer is not None:
                writer.close()
        else:
            raise ValueError(f"unknown format {fmt!r}: use parquet or csv")
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()
    return out
