"""Per-label probability metrics: calibration error, calibration slope and intercept, and the rest.

scikit-learn's log_loss and brier_score_loss treat an (n, L) indicator matrix as multiclass,
so everything here works on one label at a time.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import expit
from sklearn.metrics import average_precision_score, roc_auc_score

EPS = 1e-12


def expected_calibration_error(y: np.ndarray, p: np.ndarray, n_bins: int = 15) -> float:
    """ECE over equal-mass bins: sum over bins of (bin size / n) * |mean(y) - mean(p)|.

    Two bins of two: |0.5 - 0.15| and |0.5 - 0.8|, weighted equally.

    >>> round(expected_calibration_error(np.array([0, 1, 0, 1]), np.array([0.1, 0.2, 0.7, 0.9]), 2), 3)
    0.325
    """
    y = np.asarray(y, dtype=float)
    p = np.asarray(p, dtype=float)
    order = np.argsort(p, kind="stable")
    bins = np.array_split(order, min(n_bins, len(p)))
    return float(sum(len(b) * abs(y[b].mean() - p[b].mean()) for b in bins if len(b)) / len(p))


def calibration_slope_intercept(y: np.ndarray, p: np.ndarray) -> tuple[float, float]:
    """Slope and intercept of the logistic recalibration logit P(y=1) = a + b logit(p).

    Fitted by Newton's method without a penalty; a perfectly calibrated p has b = 1, a = 0.
    """
    y = np.asarray(y, dtype=float)
    z = _logit(np.asarray(p, dtype=float))
    design = np.column_stack([np.ones_like(z), z])
    beta = np.array([0.0, 1.0])
    for _ in range(50):
        mu = expit(design @ beta)
        grad = design.T @ (y - mu)
        hess = design.T @ (design * (mu * (1 - mu))[:, None])
        step = np.linalg.solve(hess + 1e-12 * np.eye(2), grad)
        beta += step
        if np.max(np.abs(step)) < 1e-10:
            break
    return float(beta[1]), float(beta[0])


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, EPS, 1 - EPS)
    return np.log(p) - np.log1p(-p)


def log_loss(y: np.ndarray, p: np.ndarray) -> float:
    """Mean binary cross-entropy of one label (natural log)."""
    p = np.clip(np.asarray(p, dtype=float), EPS, 1 - EPS)
    y = np.asarray(y, dtype=float)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))


def brier(y: np.ndarray, p: np.ndarray) -> float:
    return float(np.mean((np.asarray(p, dtype=float) - np.asarray(y, dtype=float)) ** 2))


def label_metrics(
    y: np.ndarray, p: np.ndarray, p_oracle: np.ndarray | None = None, n_bins: int = 15
) -> dict[str, float]:
    """Every per-label metric; gaps to the oracle when its probabilities are given."""
    y = np.asarray(y, dtype=float)
    both = 0 < y.sum() < len(y)
    slope, intercept = calibration_slope_intercept(y, p) if both else (np.nan, np.nan)
    out = {
        "prevalence": float(y.mean()),
        "positives": float(y.sum()),
        "roc_auc": float(roc_auc_score(y, p)) if both else np.nan,
        "pr_auc": float(average_precision_score(y, p)) if both else np.nan,
        "brier": brier(y, p),
        "log_loss": log_loss(y, p),
        "ece": expected_calibration_error(y, p, n_bins),
        "calibration_slope": slope,
        "calibration_intercept": intercept,
    }
    if p_oracle is not None:
        out["oracle_log_loss"] = log_loss(y, p_oracle)
        out["log_loss_gap"] = out["log_loss"] - out["oracle_log_loss"]
        out["mean_abs_diff_oracle"] = float(np.mean(np.abs(np.asarray(p) - np.asarray(p_oracle))))
    return out


def metrics_table(
    y: pd.DataFrame, p: pd.DataFrame, p_oracle: pd.DataFrame | None = None, n_bins: int = 15
) -> pd.DataFrame:
    """One row of label_metrics per column of p (y and p_oracle aligned by column order)."""
    rows = {}
    for j, name in enumerate(p.columns):
        oracle = None if p_oracle is None else p_oracle.iloc[:, j].to_numpy()
        rows[name] = label_metrics(y.iloc[:, j].to_numpy(), p.iloc[:, j].to_numpy(), oracle, n_bins)
    return pd.DataFrame.from_dict(rows, orient="index")


def bootstrap_interval(
    y: np.ndarray, p: np.ndarray, metric, n_boot: int = 200, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap interval of metric(y, p) over rows."""
    rng = np.random.default_rng(seed)
    n = len(y)
    values = [metric(y[idx], p[idx]) for idx in (rng.integers(0, n, n) for _ in range(n_boot))]
    lo, hi = np.nanpercentile(values, [(1 - level) / 2 * 100, (1 + level) / 2 * 100])
    return float(lo), float(hi)
