"""Judging a model against the oracle on a data split: one function for training, evaluation
and the bench, so every figure of the gap to the Bayes limit is computed the same way."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipeline.contract.schema import Schema
from pipeline.learning.cause_model import targets
from pipeline.learning.metrics import metrics_table


@dataclass
class Judgement:
    """Per-output metrics (index: the p_ columns) with the gaps to the oracle, and their summary."""

    table: pd.DataFrame
    summary: dict[str, float]
    truth: pd.DataFrame  # 0/1 targets, the probability columns' names
    predicted: pd.DataFrame


def summarise(table: pd.DataFrame, n_conditions: int) -> dict[str, float]:
    """Averages over the conditions, and calibration worst cases over every output."""
    cond = table.iloc[:n_conditions]
    summary = {
        "mean_log_loss": cond["log_loss"].mean(),
        "mean_brier": cond["brier"].mean(),
        "mean_roc_auc": cond["roc_auc"].mean(),
        "mean_pr_auc": cond["pr_auc"].mean(),
        "max_ece": table["ece"].max(),
        "mean_ece": table["ece"].mean(),
    }
    if "oracle_log_loss" in table:
        summary["oracle_mean_log_loss"] = cond["oracle_log_loss"].mean()
        summary["log_loss_ratio_to_oracle"] = summary["mean_log_loss"] / summary["oracle_mean_log_loss"]
        summary["mean_log_loss_gap"] = cond["log_loss_gap"].mean()
        summary["mean_abs_diff_oracle"] = table["mean_abs_diff_oracle"].mean()
    enough = table[table["positives"] >= 500]
    summary["min_calibration_slope_500pos"] = enough["calibration_slope"].min()
    summary["max_calibration_slope_500pos"] = enough["calibration_slope"].max()
    return {k: float(v) for k, v in summary.items()}


def judge(
    model, frame: pd.DataFrame, oracle: pd.DataFrame | None, schema: Schema, *, calibrated: bool = True
) -> Judgement:
    """A fitted CauseModel on a labelled typed frame, against the oracle's posterior for the same rows.

    `calibrated=False` judges the base model before calibration (to show what calibration buys).
    """
    columns = list(schema.probability_columns)
    truth = pd.DataFrame(targets(frame, schema), columns=columns)
    p = model.predict_proba(frame) if calibrated else model.predict_uncalibrated(frame)
    predicted = pd.DataFrame(np.asarray(p, dtype=float), columns=columns)
    reference = None if oracle is None else oracle[columns].reset_index(drop=True)
    table = metrics_table(truth, predicted, reference)
    return Judgement(table, summarise(table, len(schema.conditions)), truth, predicted)
