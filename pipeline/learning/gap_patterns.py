"""Where the gap to the oracle is, by finding pattern: the conditions' log-loss of the model and of
the oracle summed over the forms with 0, 1, ..., TOP or more positive yes/no findings.

Noisy-OR findings interact: with several positive findings each condition's posterior depends on
which other conditions explain them (explaining away), a structure of every order that a logistic
model of per-field terms and pairwise products only approximates (the default's knowledge-base
posterior features carry most of it); this table shows how much of the gap sits there.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.learning.metrics import EPS

TOP = 6  # forms with this many positive findings or more form the last group


def _row_log_loss(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    p = np.clip(p, EPS, 1 - EPS)
    return -(y * np.log(p) + (1 - y) * np.log1p(-p)).sum(axis=1)


def positive_findings(kb, frame: pd.DataFrame) -> np.ndarray:
    """Per form, how many of the knowledge base's yes/no findings are answered yes."""
    yes_no = {c.name for c in kb.schema.columns_of(kind="yes_no")}
    fields = sorted({f.field for f in kb.findings if f.field in yes_no})
    return np.nansum(frame[fields].to_numpy(dtype=float), axis=1).astype(int)


def gap_by_findings(
    kb, frame: pd.DataFrame, truth: pd.DataFrame, predicted: pd.DataFrame, oracle: pd.DataFrame
) -> pd.DataFrame:
    """One row per group of forms (by positive findings, `TOP` meaning TOP or more): forms, the
    model's and the oracle's conditions' log-loss summed, the group's share of the whole gap, and
    its ratio to the oracle."""
    conditions = [f"p_{c}" for c in kb.schema.conditions]
    y = truth[conditions].to_numpy(dtype=float)
    model = _row_log_loss(y, predicted[conditions].to_numpy(dtype=float))
    best = _row_log_loss(y, oracle[conditions].reset_index(drop=True).to_numpy(dtype=float))
    group = np.minimum(positive_findings(kb, frame), TOP)
    table = (
        pd.DataFrame({"positive_findings": group, "model": model, "oracle": best})
        .groupby("positive_findings")
        .agg(forms=("model", "size"), model_log_loss=("model", "sum"), oracle_log_loss=("oracle", "sum"))
    )
    gap = table["model_log_loss"] - table["oracle_log_loss"]
    table["share_of_gap"] = gap / gap.sum() if gap.sum() != 0 else 0.0
    table["ratio_to_oracle"] = table["model_log_loss"] / table["oracle_log_loss"]
    table.index = [f"{k}+" if k == TOP else str(k) for k in table.index]
    table.index.name = "positive_findings"
    return table
