"""`python -m pipeline train --experiment experiments/<name>.yaml`: fit, judge against the
oracle, log everything to MLflow, register, and move the champion alias only when earned."""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from pipeline.config import ExperimentConfig
from pipeline.dataset import columns_from_frame, csv_table_from_columns
from pipeline.datasets import load_split, oracle_for
from pipeline.features import knowledge_interactions
from pipeline.knowledge import KnowledgeBase, default_knowledge_base
from pipeline.metrics import metrics_table
from pipeline.model import CauseModel, targets
from pipeline.persistence import save_model
from pipeline.report import intervals, model_report, reliability_diagram
from pipeline.schema import Schema
from pipeline.tracking import (
    CHAMPION,
    CHAMPION_URI,
    REGISTERED_MODEL,
    configure,
    git_commit,
    package_versions,
    pip_requirements,
    tracking_uri,
)

PYFUNC_CODE = Path(__file__).with_name("pyfunc_model.py")


def log_columns(kb: KnowledgeBase) -> tuple[str, ...]:
    """Numbers modelled on a log scale: the knowledge base's log-normal labs, and the duration."""
    return (*(lab.name for lab in kb.labs if lab.scale == "log"), "symptom_duration_weeks")


def build_model(config: ExperimentConfig, kb: KnowledgeBase) -> CauseModel:
    params = dict(config.params)
    splines = bool(params.pop("splines", config.family == "logistic"))
    interactions = knowledge_interactions(kb) if params.pop("interactions", False) else []
    if "hidden_layer_sizes" in params:
        params["hidden_layer_sizes"] = tuple(params["hidden_layer_sizes"])
    return CauseModel(
        config.family,
        params,
        config.calibration,
        log_columns(kb),
        splines,
        tuple(interactions),
        random_state=config.data.seed,
    )


def summarise(table: pd.DataFrame, n_conditions: int) -> dict[str, float]:
    """Averages over the 21 conditions, and calibration worst cases over all 27 outputs."""
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


def intake_example(frame: pd.DataFrame, schema: Schema, n: int = 5) -> pd.DataFrame:
    """Synthetic rows in the plain intake form (strings, numbers, None for blanks)."""
    head = frame.head(n).reset_index(drop=True)
    return csv_table_from_columns(columns_from_frame(head, schema), schema).to_pandas()


def signature(schema: Schema):
    from mlflow.models import ModelSignature
    from mlflow.types.schema import AnyType, ColSpec
    from mlflow.types.schema import Schema as MlflowSchema

    # Any type: a plain intake CSV read by pandas gives int64 for whole numbers (MLflow will not
    # cast those to double), float64 for a column with blanks, text or 0/1 for yes/no, numbers
    # for numeric ids. The model's own validator applies the intake contract to whatever comes.
    inputs = [ColSpec(AnyType(), schema.id_column, required=True)]
    inputs += [ColSpec(AnyType(), col.name, required=col.required) for col in schema.columns]
    outputs = [ColSpec("double", name) for name in schema.probability_columns]
    return ModelSignature(inputs=MlflowSchema(inputs), outputs=MlflowSchema(outputs))


@dataclass
class TrainResult:
    run_id: str
    version: str
    promoted: bool
    reason: str
    validation: dict[str, float]
    seconds: float


def champion_log_loss(frame: pd.DataFrame, y: np.ndarray, schema: Schema) -> float | None:
    """The current champion's mean condition log-loss on these rows; None without a champion."""
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        champion = mlflow.pyfunc.load_model(CHAMPION_URI)
    except MlflowException:
        return None
    raw = intake_example(frame, schema, n=len(frame))
    p = champion.predict(raw).to_numpy()
    table = metrics_table(pd.DataFrame(y), pd.DataFrame(p))
    return float(table.iloc[: len(schema.conditions)]["log_loss"].mean())


def train(
    config: ExperimentConfig,
    promote: bool = False,
    cache_dir: Path | None = None,
    experiment: str = "leg-fatigue",
) -> TrainResult:
    import mlflow
    from mlflow import MlflowClient

    start = time.perf_counter()
    kb = default_knowledge_base()
    schema = kb.schema
    d = config.data
    train_df, train_sha, _ = load_split(kb, "train", d.population, d.n_train, d.seed, cache_dir)
    cal_df, cal_sha, _ = load_split(kb, "calibration", d.population, d.n_calibration, d.seed, cache_dir)
    val_df, val_sha, val_path = load_split(kb, "validation", d.population, d.n_validation, d.seed, cache_dir)

    model = build_model(config, kb).fit(train_df, targets(train_df, schema), cal_df, targets(cal_df, schema))
    fit_seconds = time.perf_counter() - start

    y_val = pd.DataFrame(targets(val_df, schema), columns=list(schema.probability_columns))
    p_val = model.predict_frame(val_df).reset_index(drop=True)
    p_raw = pd.DataFrame(model.predict_uncalibrated(val_df), columns=p_val.columns)
    oracle = oracle_for(kb, d.population, val_df, val_path, val_sha)[list(schema.probability_columns)]
    table = metrics_table(y_val, p_val, oracle)
    raw_table = metrics_table(y_val, p_raw, oracle)
    summary = summarise(table, len(schema.conditions))
    raw_summary = summarise(raw_table, len(schema.conditions))

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
        for label, row in table.iterrows():
            mlflow.log_metrics(
                {f"val.{m}.{label.removeprefix('p_')}": float(v) for m, v in row.items() if np.isfinite(v)}
            )

        table.to_csv(tmp / "validation_metrics.csv", index_label="output")
        reliability_diagram(
            y_val,
            p_val,
            oracle,
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
                f"{summary['max_ece']:.4f}."
            ],
        )
        (tmp / "model_report.md").write_text(report)
        mlflow.log_artifacts(str(tmp))

        model_file = save_model(model, tmp / "cause_model.skops")
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(PYFUNC_CODE),
            artifacts={"model": str(model_file)},
            signature=signature(schema),
            input_example=intake_example(val_df, schema),
            pip_requirements=pip_requirements(),
            registered_model_name=REGISTERED_MODEL,
            metadata={
                "schema_version": schema.version,
                "schema_sha256": schema.sha256,
                "kb_sha256": kb.sha256,
                "outputs": list(schema.probability_columns),
                "note": "decision support on synthetic data, not a diagnosis",
            },
        )
        version = str(info.registered_model_version)

        current = champion_log_loss(val_df, y_val.to_numpy(), schema)
        mine = summary["mean_log_loss"]
        if promote:
            promoted, reason = True, "promoted on request (--promote)"
        elif current is None:
            promoted, reason = True, "no champion yet"
        elif mine < current:
            promoted, reason = True, f"validation log-loss {mine:.5f} < champion's {current:.5f}"
        else:
            promoted, reason = False, f"validation log-loss {mine:.5f} >= champion's {current:.5f}"
        client = MlflowClient()
        if promoted:
            client.set_registered_model_alias(REGISTERED_MODEL, CHAMPION, version)
        client.set_model_version_tag(REGISTERED_MODEL, version, "promotion", reason)
        mlflow.set_tag("promotion", reason)
        seconds = time.perf_counter() - start
        mlflow.log_metric("train_seconds", seconds)
    return TrainResult(run.info.run_id, version, promoted, reason, summary, seconds)


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
    print(f"took {result.seconds:.0f} s; tracking store {tracking_uri()} (make ui to browse)")
