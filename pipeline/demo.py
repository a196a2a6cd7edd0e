"""`make demo`: the main job end to end on the embedded defaults.

Generate a synthetic data set and check it against the schema, train the quick experiment
and register it in the local MLflow store, then score data/examples/intake_sample.csv (with
its deliberately bad rows) with the champion and show what came out.
"""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd

from pipeline import DISCLAIMER
from pipeline.contract.loader import default_knowledge_base
from pipeline.contract.schema import REPO_ROOT
from pipeline.intake.outputs import default_rejects_path
from pipeline.intake.stream import iter_validated
from pipeline.learning.config import load_experiment
from pipeline.learning.train import print_result, train
from pipeline.scoring.score import score_file
from pipeline.tracking.registry import CHAMPION_URI, load_model
from pipeline.tracking.store import configure
from pipeline.world.examples import SAMPLE_PATH
from pipeline.world.generate import write_dataset
from pipeline.world.network import default_model

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

    rejects, labels = 0, []
    for chunk in iter_validated(path, schema, expected_extra=schema.label_columns):
        rejects += len(chunk.rejects)
        labels.append(chunk.raw.select(list(schema.label_columns)).to_pandas().astype(int))
    print(f"validated against the intake schema: {rejects} rejected cells")
    prevalence = pd.concat(labels).mean().rename(lambda c: c.removeprefix("label_"))
    print("prevalence per condition: " + ", ".join(f"{k} {v:.1%}" for k, v in prevalence.items()))
    return path


def main() -> None:
    print(f"Leg-fatigue risk scoring demo. {DISCLAIMER}\n")
    print("== 1. synthetic data")
    generate_and_validate()
    print("\n== 2. train the quick experiment, log it to MLflow and register it")
    config = load_experiment("quick")
    print_result(config, train(config))
    print("\n== 3. score the example intake export with the champion")
    kb = default_knowledge_base()
    configure()
    output = DEMO_DIR / "intake_sample_scores.csv"
    loaded = load_model(CHAMPION_URI, kb.schema)
    summary = score_file(SAMPLE_PATH, output, loaded, kb, progress=False)
    for warning in summary.warnings:
        print(f"warning: {warning}")
    print(f"{SAMPLE_PATH.relative_to(REPO_ROOT)}: {summary.line()}")
    scores = pd.read_csv(output, dtype=str, keep_default_na=False)
    rejects = pd.read_csv(default_rejects_path(output), dtype=str, keep_default_na=False)
    with pd.option_context("display.width", 160, "display.max_colwidth", 60):
        print(f"\nfirst scored rows ({output}):")
        print(scores[["record_id", "top_conditions", "triage", "red_flags", "specialists"]].head(8).to_string())
        print(f"\nrejects ({default_rejects_path(output)}):")
        print(rejects[["row", "record_id", "field", "reason"]].to_string())
    print(f"\nnext: make test | make experiments | make evaluate | make ui\n{DISCLAIMER}")
