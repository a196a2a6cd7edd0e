"""`make demo`: the main job end to end on the embedded defaults."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd

from pipeline.bayesnet import default_model
from pipeline.cli import DISCLAIMER
from pipeline.generate import write_dataset
from pipeline.reader import iter_raw_chunks, read_header
from pipeline.schema import REPO_ROOT
from pipeline.validate import header_warnings, validate_table

DEMO_DIR = REPO_ROOT / "data" / "generated" / "demo"


def generate_and_validate(n: int = 50_000, seed: int = 42) -> Path:
    """Generate a CSV data set, check it against the schema, print prevalences and speed."""
    model = default_model()
    schema = model.kb.schema
    path = DEMO_DIR / f"intake_general_n{n}_seed{seed}_kb{model.kb.short_hash}.csv"
    start = time.perf_counter()
    write_dataset(model, n, seed, path, "csv")
    seconds = time.perf_counter() - start
    print(f"generated {n:,} synthetic intake rows in {seconds:.1f} s ({n / seconds:,.0f} rows/s) -> {path}")

    header = read_header(path)
    header_warnings([h for h in header if not h.startswith("label_")], schema)
    first_seen: dict[str, int] = {}
    rejects, labels = 0, []
    for chunk in iter_raw_chunks(path, header):
        result = validate_table(chunk.table, chunk.rows, schema, first_seen)
        rejects += len(result.rejects) + len(chunk.malformed)
        labels.append(chunk.table.select(list(schema.label_columns)).to_pandas().astype(int))
    print(f"validated against the intake schema: {rejects} rejected cells")
    prevalence = pd.concat(labels).mean().rename(lambda c: c.removeprefix("label_"))
    print("prevalence per condition:")
    for name, value in prevalence.items():
        print(f"  {name:32s} {value:7.2%}")
    return path


def main() -> None:
    print(f"Leg-fatigue risk scoring demo. {DISCLAIMER}\n")
    generate_and_validate()
