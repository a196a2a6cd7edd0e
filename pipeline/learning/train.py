"""`python -m pipeline train --experiment experiments/<name>.yaml`: fit, judge against the
oracle, log everything to MLflow, register, and move the champion alias only when earned."""

from __future__ import annotations

import json
import resource
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from pipeline.contract.knowledge import KnowledgeBase, basis_lines
from pipeline.contract.loader import default_knowledge_base
from pipeline.contract.schema import Schema
from pipeline.learning.cause_model import CauseModel, targets
from pipeline.learning.config import ExperimentConfig
from pipeline.learning.families import family
from pipeline.learning.features import knowledge_interactions, knowledge_thresholds
from pipeline.learning.judge import judge
from pipeline.learning.report import intervals, model_report, reliability_diagram
from pipeline.learning.splits import load_split, oracle_for
from pipeline.learning.triage_mix import triage_mix, triage_mix_lines
from pipeline.tracking.model_logging import log_and_register
from pipeline.tracking.registry import (
    REGISTERED_MODEL,
    ModelMismatchError,
    load_champion,
    promotion_decision,
    set_champion,
)
from pipeline.tracking.store import configure, git_commit, package_versions, tracking_uri
from pipeline.world.belief import ITERATIONS


def log_scaled_columns(kb: KnowledgeBase) -> tuple[str, ...]:
    """Numbers modelled on a log scale: the knowledge base's log-normal labs, and the duration."""
    return (*(lab.name for lab in kb.labs if lab.scale == "log"), "symptom_duration_weeks")


def build_model(config: ExperimentConfig, kb: KnowledgeBase) -> CauseModel:
    """An unfitted CauseModel as the experiment describes it."""
    features = config.features
    splines = family(config.family).splines_by_default if features.splines is None else features.splines
    return CauseModel(
        config.family,
        dict(config.params),
        config.calibration,
        log_scaled_columns(kb),
        splines,
        tuple(knowledge_interactions(kb)) if features.interactions else (),
        random_state=config.data.seed,
        thresholds=tuple(knowledge_thresholds(kb)) if features.thresholds else (),
        posterior=(
            {"population": config.data.population, "kb_sha256": kb.sha256, "iterations": ITERATIONS}
            if features.posterior
            else None
        ),
    )


def champion_log_loss(frame: pd.DataFrame, schema: Schema) -> float | None:
    """The current champion's mean condition log-loss on these rows; None without a usable champion."""
    try:
        champion = load_champion(schema)
    except ModelMismatchError:
        return None  # made for another contract: it could not score this schema's forms
    return None if champion is None else judge(champion.model, frame, None, schema).summary["mean_log_loss"]


@dataclass
class TrainResult:
    run_id: str
    version: str
    promoted: bool
    reason: str
    validation: dict[str, float]
    seconds: float
    peak_rss_mb: float  # the process's peak so far: the run's own when it has a process to itself


def train(
    config: ExperimentConfig,
    promote: bool = False,
    cache_dir: Path | None = None,
    experiment: str = "leg-fatigue",
) -> TrainResult:
    import mlflow

    start = time.perf_counter()
    kb = default_knowledge_base()
    schema = kb.schema
    d = config.data
    train_df, train_sha, _ = load_split(kb, "train", d.population, d.n_train, d.seed, cache_dir)
    cal_df, cal_sha, _ = load_split(kb, "calibration", d.population, d.n_calibration, d.seed, cache_dir)
    val_df, val_sha, val_path = load_split(kb, "validation", d.population, d.n_validation, d.seed, cache_dir)

    model = build_model(config, kb).fit(
        train_df, targets(train_df, schema), cal_df, targets(cal_df, schema), schema=schema
    )
    fit_seconds = time.perf_counter() - start

    oracle = oracle_for(kb, d.population, val_df, val_path, val_sha)
    judged = judge(model, val_df, oracle, schema)
    raw = judge(model, val_df, oracle, schema, calibrated=False)
    table, summary, raw_summary = judged.table, judged.summary, raw.summary
    y_val, p_val = judged.truth, judged.predicted

    experiment_id = configure(experiment)
    with (
        mlflow.start_run(experiment_id=experiment_id, run_name=config.name) as run,
        tempfile.TemporaryDirectory() as tmp,
    ):
        tmp = Path(tmp)
        mlflow.log_params(config.flat_params())
        mlflow.set_tags(
            {
                "git_commit": git_commit(),
                "kb_sha256": kb.sha256,
                "schema_sha256": schema.sha256,
                "schema_version": str(schema.version),
                "config_sha256": config.sha256,
                "data.train_sha256": train_sha,
                "data.calibration_sha256": cal_sha,
                "data.validation_sha256": val_sha,
                **{f"version.{k}": v for k, v in package_versions().items()},
                "note": "synthetic data only; decision support, not a diagnosis",
            }
        )
        mlflow.log_metrics({f"val.{k}": v for k, v in summary.items()})
        mlflow.log_metrics({f"val_uncalibrated.{k}": v for k, v in raw_summary.items()})
        mlflow.log_metric("fit_seconds", fit_seconds)
        classifier = model.base_.named_steps["classifier"]
        if hasattr(classifier, "n_iter_") and np.ndim(classifier.n_iter_) == 0:  # the joint solver's steps
            mlflow.log_metric("fit_iterations", int(classifier.n_iter_))
            mlflow.log_metric("fit_converged", float(getattr(classifier, "converged_", True)))
        mix = triage_mix(kb, val_df, p_val)
        mlflow.log_metrics({f"val.triage_share.{k}": v for k, v in mix["level"].items()})
        mlflow.log_metrics({f"val.red_flag_rate.{k}": v for k, v in mix["red_flag"].items()})
        for label, row in table.iterrows():
            mlflow.log_metrics(
                {f"val.{m}.{label.removeprefix('p_')}": float(v) for m, v in row.items() if np.isfinite(v)}
            )

        table.to_csv(tmp / "validation_metrics.csv", index_label="output")
        reliability_diagram(
            y_val,
            p_val,
            oracle[list(schema.probability_columns)],
            tmp / "reliability_validation.png",
            f"{config.name}: validation reliability",
        )
        ci = intervals(y_val, p_val)
        report = model_report(
            title=f"Model report: {config.name}",
            config_text=yaml.safe_dump(asdict(config), sort_keys=False),
            data_lines=[
                f"synthetic records sampled from the knowledge base (sha256 {kb.sha256[:12]}), population "
                f"`{d.population}`; no patient data",
                f"train {d.n_train:,} rows, calibration {d.n_calibration:,}, validation {d.n_validation:,} "
                f"(separate seeds derived from {d.seed})",
                f"data sha256: train {train_sha[:12]}, calibration {cal_sha[:12]}, validation {val_sha[:12]}",
            ],
            predictors=list(schema.column_names),
            table=table,
            ci=ci,
            summary=summary,
            extra=[
                f"Before calibration: mean log-loss {raw_summary['mean_log_loss']:.5f}, "
                f"max ECE {raw_summary['max_ece']:.4f}; after: {summary['mean_log_loss']:.5f}, "
                f"{summary['max_ece']:.4f}.",
                "",
                "## Triage and red flags (validation rows, this model's probabilities)",
                *triage_mix_lines(mix),
                "",
                "## What the knowledge base rests on",
                *basis_lines(kb),
            ],
        )
        (tmp / "model_report.md").write_text(report)
        mlflow.log_artifacts(str(tmp))

        version = log_and_register(model, kb, val_df, tmp)
        decision = promotion_decision(summary["mean_log_loss"], champion_log_loss(val_df, schema), promote)
        set_champion(version, decision)
        mlflow.set_tag("promotion", decision.reason)
        seconds = time.perf_counter() - start
        peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
        mlflow.log_metrics({"train_seconds": seconds, "peak_rss_mb": peak_rss_mb})
    return TrainResult(run.info.run_id, version, decision.promote, decision.reason, summary, seconds, peak_rss_mb)


def print_result(config: ExperimentConfig, result: TrainResult) -> None:
    v = result.validation
    print(json.dumps({"experiment": config.name, "run_id": result.run_id, "version": result.version}))
    print(
        f"validation: mean log-loss {v['mean_log_loss']:.5f} vs oracle {v.get('oracle_mean_log_loss', 0):.5f} "
        f"(ratio {v.get('log_loss_ratio_to_oracle', float('nan')):.4f}); max ECE {v['max_ece']:.4f}; "
        f"mean ROC AUC {v['mean_roc_auc']:.4f}"
    )
    print(
        f"registered {REGISTERED_MODEL} version {result.version}; "
        f"{'champion' if result.promoted else 'not promoted'}: {result.reason}"
    )
    print(
        f"took {result.seconds:.0f} s, peak memory {result.peak_rss_mb / 1024:.2f} GB; tracking store {tracking_uri()} "
        "(make ui to browse)"
    )
