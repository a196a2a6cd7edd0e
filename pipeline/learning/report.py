"""Evidence for a run: reliability diagrams (model and oracle on the same axes) and a model
report following the TRIPOD items. Every report says what this is: decision support on
synthetic data, not a diagnosis."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from pipeline.learning.metrics import bootstrap_interval, log_loss, roc_auc_score  # noqa: E402

DISCLAIMER = (
    "**Decision support on synthetic data, not a diagnosis.** This model was trained and tested only "
    "on records sampled from a knowledge base built from one explanatory document; it has never seen "
    "a patient and must not be used for clinical decisions without validation on real data."
)


def reliability_points(y: np.ndarray, p: np.ndarray, n_bins: int = 15) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(p, kind="stable")
    bins = [b for b in np.array_split(order, min(n_bins, len(p))) if len(b)]
    return np.array([p[b].mean() for b in bins]), np.array([y[b].mean() for b in bins])


def reliability_diagram(
    y: pd.DataFrame,
    p: pd.DataFrame,
    p_oracle: pd.DataFrame | None,
    path: Path,
    title: str,
    n_bins: int = 15,
) -> Path:
    """One panel per label: observed frequency against mean predicted probability."""
    n = p.shape[1]
    cols = 6
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 2.6, rows * 2.5), squeeze=False)
    for j, name in enumerate(p.columns):
        ax = axes[j // cols][j % cols]
        top = max(float(p.iloc[:, j].quantile(0.999)), 0.05)
        ax.plot([0, top], [0, top], color="0.7", lw=0.8)
        x, obs = reliability_points(y.iloc[:, j].to_numpy(), p.iloc[:, j].to_numpy(), n_bins)
        ax.plot(x, obs, "o-", ms=2.5, lw=1, label="model")
        if p_oracle is not None:
            xo, oo = reliability_points(y.iloc[:, j].to_numpy(), p_oracle.iloc[:, j].to_numpy(), n_bins)
            ax.plot(xo, oo, "s--", ms=2.5, lw=1, label="oracle")
        ax.set_title(name.removeprefix("p_"), fontsize=7)
        ax.tick_params(labelsize=6)
    for j in range(n, rows * cols):
        axes[j // cols][j % cols].axis("off")
    axes[0][0].legend(fontsize=6)
    fig.suptitle(f"{title} (synthetic data; not a diagnosis)", fontsize=10)
    fig.supxlabel("mean predicted probability (equal-mass bins)", fontsize=8)
    fig.supylabel("observed frequency", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def intervals(y: pd.DataFrame, p: pd.DataFrame, n_boot: int = 100) -> pd.DataFrame:
    """95% bootstrap intervals of log-loss and ROC AUC per label."""
    rows = {}
    for j, name in enumerate(p.columns):
        yj, pj = y.iloc[:, j].to_numpy(), p.iloc[:, j].to_numpy()
        ll = bootstrap_interval(yj, pj, log_loss, n_boot=n_boot, seed=j)
        auc = (
            bootstrap_interval(yj, pj, _auc, n_boot=max(20, n_boot // 4), seed=j)
            if 0 < yj.sum() < len(yj)
            else (np.nan, np.nan)
        )
        rows[name] = {
            "log_loss_lo": ll[0],
            "log_loss_hi": ll[1],
            "roc_auc_lo": auc[0],
            "roc_auc_hi": auc[1],
        }
    return pd.DataFrame.from_dict(rows, orient="index")


def _auc(y: np.ndarray, p: np.ndarray) -> float:
    return float(roc_auc_score(y, p)) if 0 < y.sum() < len(y) else np.nan


def model_report(
    *,
    title: str,
    config_text: str,
    data_lines: list[str],
    predictors: list[str],
    table: pd.DataFrame,
    ci: pd.DataFrame,
    summary: dict[str, float],
    extra: list[str],
) -> str:
    """The model report in Markdown, by TRIPOD item."""
    n_conditions = sum(not str(name).startswith("p_cause_") for name in table.index)
    merged = table.join(ci)
    shown = merged[
        [
            "prevalence",
            "roc_auc",
            "roc_auc_lo",
            "roc_auc_hi",
            "log_loss",
            "log_loss_lo",
            "log_loss_hi",
            "oracle_log_loss",
            "ece",
            "calibration_slope",
            "calibration_intercept",
        ]
    ]
    lines = [
        f"# {title}",
        "",
        DISCLAIMER,
        "",
        "## Source of data",
        *[f"- {line}" for line in data_lines],
        "",
        "## Outcomes",
        f"{n_conditions} conditions (a label means present and contributing to the leg fatigue) and "
        f"{len(table) - n_conditions} causes (present when any of their conditions is), as in docs/intake-form.md.",
        "",
        "## Predictors",
        f"{len(predictors)} intake fields: " + ", ".join(predictors) + ".",
        "",
        "## Missing data",
        "A blank is information, not a value to guess: yes/no fields get a missing indicator next to "
        "the value (blank = 0 plus indicator), categories get their own `blank` category, numbers are "
        "median-filled with a missing indicator. Blanks in the synthetic data are missing at random "
        "at fixed per-field rates; the oracle marginalises them exactly.",
        "",
        "## Model and calibration",
        "```yaml",
        config_text.strip(),
        "```",
        "",
        "## Performance (validation set; 95% bootstrap intervals)",
        *[f"- {k}: {v:.5g}" for k, v in summary.items()],
        "",
        shown.to_markdown(floatfmt=".4f") if has_tabulate() else shown.to_string(float_format="%.4f"),
        "",
        *extra,
        "",
        "## Intended use and limits",
        "- Intended use: to rank and flag possible causes of persistent leg fatigue for a clinician "
        "reviewing an intake form, as decision support, on data like the synthetic population.",
        "- Not for: diagnosis, treatment decisions, or any use on real patients without external "
        "validation; the knowledge base's numbers are assumptions, not measurements.",
        "- Calibration holds for the population it was calibrated on; under a prevalence shift "
        "(for example an older cardiometabolic clinic) see `make evaluate`.",
    ]
    return "\n".join(lines) + "\n"


def has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True
