"""What triage does on a data set: the share of each level and how often each red flag fires,
for the model report and MLflow (a clinician reviewing a model reads these beside its metrics)."""

from __future__ import annotations

import pandas as pd

from pipeline.contract.knowledge import KnowledgeBase
from pipeline.scoring.triage import triage_columns


def triage_mix(kb: KnowledgeBase, frame: pd.DataFrame, probs: pd.DataFrame) -> dict[str, dict[str, float]]:
    """{"level": share of rows per triage level, "red_flag": share of rows each flag fires on}."""
    schema = kb.schema
    out = triage_columns(kb, frame.reset_index(drop=True), probs.reset_index(drop=True))
    levels = pd.Series(out["triage"].to_pylist())
    flags = pd.Series(
        [name for cell in out["red_flags"].to_pylist() for name in cell.split(schema.list_separator) if cell]
    )
    n = max(len(levels), 1)
    return {
        "level": {level: float((levels == level).sum() / n) for level in schema.triage_levels},
        "red_flag": {flag.name: float((flags == flag.name).sum() / n) for flag in kb.red_flags},
    }


def triage_mix_lines(mix: dict[str, dict[str, float]]) -> list[str]:
    """The mix as Markdown bullet lines."""
    lines = ["Triage on these rows: " + ", ".join(f"{k} {v:.1%}" for k, v in mix["level"].items()) + "."]
    lines.append("Red flags fired: " + ", ".join(f"{k} {v:.2%}" for k, v in mix["red_flag"].items()) + ".")
    return lines
