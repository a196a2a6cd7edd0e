"""The generator as it was before it was made fast (main at 95e7346): a plain sampler that draws
and computes one field at a time over whole chunks, and pyarrow's writers fed the raw columns.
Slow, obviously in stream order; the tests check that pipeline.world.generate writes the same
bytes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from scipy.special import expit, ndtr, ndtri

from pipeline.contract.knowledge import Lab, NumericDistribution
from pipeline.intake.frames import csv_table_from_columns, parquet_table_from_columns
from pipeline.world.generate import CHUNK_ROWS, dataset_metadata
from pipeline.world.network import CompiledModel, noisy_or_absent


def _round_to_step(x: np.ndarray, step: float) -> np.ndarray:
    if step >= 1:
        return np.rint(x / step) * step
    inv = round(1.0 / step)
    return np.rint(x * inv) / inv


def _truncated_normal(rng: np.random.Generator, n: int, mean, sd, lower: float, upper: float) -> np.ndarray:
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


def reference_columns(
    model: CompiledModel, n: int, rng: np.random.Generator, first_id: int = 1, id_prefix: str = "syn"
) -> dict[str, object]:
    """n rows as raw columns (category codes with -1 blank, floats with NaN blank, int8 labels)."""
    kb, pop, schema = model.kb, model.population, model.kb.schema
    cols: dict[str, np.ndarray] = {}

    age = _numeric_field(rng, n, pop.numeric["age"])
    cols["age"] = age
    codes = np.zeros((n, len(model.parent_vars)), dtype=np.int64)
    x = np.zeros((n, len(model.feature_names)), order="F")
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

    absent_p = noisy_or_absent(present, model.finding_leak, model.finding_link).T
    finding_on = rng.random(absent_p.shape) >= absent_p
    for j, f in enumerate(model.findings):
        col = schema.column(f.field)
        if col.kind == "integer":
            lo_p, hi_p = f.present_range
            lo_a, hi_a = f.absent_range
            cols[f.field] = np.where(
                finding_on[j], rng.integers(lo_p, hi_p + 1, n), rng.integers(lo_a, hi_a + 1, n)
            ).astype(float)
        elif col.kind == "category":
            cats = col.categories
            cols[f.field] = np.where(finding_on[j], cats.index(f.present), cats.index(f.absent))
        else:
            cols[f.field] = finding_on[j].astype(np.int64)

    normal_p = noisy_or_absent(present, model.lab_leak, model.lab_link).T
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


def write_reference_dataset(model: CompiledModel, n: int, seed: int, out: Path, fmt: str) -> Path:
    """The data set written one chunk after another by pyarrow's CSV or Parquet writer."""
    schema = model.kb.schema
    meta = {k.encode(): v.encode() for k, v in dataset_metadata(model, n, seed).items()}
    writer = None
    for i in range(-(-n // CHUNK_ROWS)):
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(i,)))
        start = i * CHUNK_ROWS
        cols = reference_columns(model, min(CHUNK_ROWS, n - start), rng, start + 1, f"syn{seed}")
        if fmt == "parquet":
            table = parquet_table_from_columns(cols, schema, with_labels=True).replace_schema_metadata(meta)
            writer = writer or pq.ParquetWriter(out, table.schema)
        else:
            table = csv_table_from_columns(cols, schema, with_labels=True)
            options = pacsv.WriteOptions(quoting_style="none")
            writer = writer or pacsv.CSVWriter(out, table.schema, write_options=options)
        writer.write_table(table)
    writer.close()
    return Path(out)
