"""`python -m pipeline evaluate`: the champion on fresh test sets from the general population
and from the older cardiometabolic preset, against the oracle, logged to MLflow."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from pipeline.contract.loader import default_knowledge_base
from pipeline.learning.ask_next_check import AskNextBenefit, ask_next_benefit
from pipeline.learning.gap_patterns import gap_by_findings
from pipeline.learning.judge import judge
from pipeline.learning.report import DISCLAIMER, has_tabulate, reliability_diagram
from pipeline.learning.splits import load_split, oracle_for
from pipeline.tracking.registry import CHAMPION_URI, load_model
from pipeline.tracking.store import configure, git_commit

POPULATIONS = ("general", "older_cardiometabolic")
EVALUATION_SEED = 20261124
ASK_NEXT_FORMS = 2000  # generated forms for the ask_next check (about a minute)
QUALITY_BAR = {"log_loss_ratio": 1.02, "max_ece": 0.01, "slope_range": (0.9, 1.1)}


@dataclass
class Evaluation:
    tables: dict[str, pd.DataFrame]
    summaries: dict[str, dict[str, float]]
    model_version: str
    checks: list[tuple[str, bool, str]]
    ask_next: AskNextBenefit | None = None
    patterns: pd.DataFrame | None = None  # the general population's gap by positive findings


def quality_checks(summary: dict[str, float], table: pd.DataFrame) -> list[tuple[str, bool, str]]:
    lo, hi = QUALITY_BAR["slope_range"]
    enough = table[table["positives"] >= 500]
    return [
        (
            "mean log-loss <= 1.02 x oracle",
            summary["log_loss_ratio_to_oracle"] <= QUALITY_BAR["log_loss_ratio"],
            f"{summary['log_loss_ratio_to_oracle']:.4f}",
        ),
        (
            "every label ECE <= 0.01 (15 equal-mass bins)",
            summary["max_ece"] <= QUALITY_BAR["max_ece"],
            f"max {summary['max_ece']:.4f} ({table['ece'].idxmax()})",
        ),
        (
            "calibration slope in [0.9, 1.1] for labels with >= 500 positives",
            bool(enough["calibration_slope"].between(lo, hi).all()),
            f"{enough['calibration_slope'].min():.3f}..{enough['calibration_slope'].max():.3f} over {len(enough)}",
        ),
    ]


def evaluate(
    model_uri: str = CHAMPION_URI,
    n: int = 100_000,
    seed: int = EVALUATION_SEED,
    cache_dir: Path | None = None,
) -> Evaluation:
    import mlflow

    kb = default_knowledge_base()
    schema = kb.schema
    experiment_id = configure()
    loaded = load_model(model_uri, schema)
    model, version = loaded.model, loaded.version
    tables, summaries, shas = {}, {}, {}
    with (
        mlflow.start_run(experiment_id=experiment_id, run_name=f"evaluate v{version}") as _run,
        tempfile.TemporaryDirectory() as tmp,
    ):
        tmp = Path(tmp)
        for population in POPULATIONS:
            frame, sha, path = load_split(kb, "evaluation", population, n, seed, cache_dir)
            oracle = oracle_for(kb, population, frame, path, sha)
            judged = judge(model, frame, oracle, schema)
            table, y, p = judged.table, judged.truth, judged.predicted
            tables[population], summaries[population], shas[population] = table, judged.summary, sha
            if population == "general":
                patterns = gap_by_findings(kb, frame, y, p, oracle)
                patterns.to_csv(tmp / "gap_by_positive_findings.csv")
                mlflow.log_metrics(
                    {
                        f"test_general.gap_share.positives_{k.replace('+', '_plus')}": v
                        for k, v in patterns["share_of_gap"].items()
                    }
                )
            table.to_csv(tmp / f"test_{population}_metrics.csv", index_label="output")
            reliability_diagram(
                y,
                p,
                oracle[list(schema.probability_columns)],
                tmp / f"reliability_test_{population}.png",
                f"model v{version}, test, {population}",
            )
            mlflow.log_metrics({f"test_{population}.{k}": v for k, v in summaries[population].items()})
            for label, row in table.iterrows():
                mlflow.log_metrics(
                    {
                        f"test_{population}.{m}.{label.removeprefix('p_')}": float(v)
                        for m, v in row.items()
                        if pd.notna(v)
                    }
                )
        checks = quality_checks(summaries["general"], tables["general"])
        benefit = ask_next_benefit(model, kb, min(n, ASK_NEXT_FORMS), seed + 1)
        mlflow.log_metrics(
            {
                "ask_next.forms": benefit.rows,
                "ask_next.log_loss_blanked": benefit.log_loss_blanked,
                "ask_next.log_loss_first_suggested": benefit.log_loss_first,
                "ask_next.log_loss_random_blanked": benefit.log_loss_random,
                "ask_next.difference_se": benefit.difference_se,
            }
        )
        report = (
            evaluation_report(tables, summaries, version, checks, n)
            + f"\n## ask_next\n{benefit.line()}\n"
            + "\n## Where the gap to the oracle is (general population, by positive yes/no findings)\n\n"
            + (patterns.to_markdown(floatfmt=".4f") if has_tabulate() else patterns.to_string(float_format="%.4f"))
            + "\n"
        )
        (tmp / "evaluation.md").write_text(report)
        mlflow.log_artifacts(str(tmp))
        mlflow.set_tags(
            {
                "model_uri": model_uri,
                "model_version": version,
                "git_commit": git_commit(),
                "kb_sha256": kb.sha256,
                **{f"data.test_{k}_sha256": v for k, v in shas.items()},
                "note": "synthetic data only; decision support, not a diagnosis",
            }
        )
    return Evaluation(tables, summaries, version, checks, benefit, patterns)


def shift_table(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """How calibration moved from the general to the older cardiometabolic population."""
    g, o = tables["general"], tables["older_cardiometabolic"]
    return pd.DataFrame(
        {
            "prevalence_general": g["prevalence"],
            "prevalence_older": o["prevalence"],
            "ece_general": g["ece"],
            "ece_older": o["ece"],
            "intercept_general": g["calibration_intercept"],
            "intercept_older": o["calibration_intercept"],
            "slope_general": g["calibration_slope"],
            "slope_older": o["calibration_slope"],
            "log_loss_gap_general": g["log_loss_gap"],
            "log_loss_gap_older": o["log_loss_gap"],
        }
    )


def evaluation_report(tables, summaries, version, checks, n) -> str:
    shift = shift_table(tables)
    g, o = summaries["general"], summaries["older_cardiometabolic"]
    lines = [
        f"# Evaluation of leg-fatigue-causes version {version}",
        "",
        DISCLAIMER,
        "",
        f"Fresh test sets of {n:,} synthetic rows from each population (seeds never used in training).",
        "",
        "## Quality bar (general population)",
        *[f"- [{'x' if ok else ' '}] {name}: {value}" for name, ok, value in checks],
        "",
        "## Prevalence shift: older cardiometabolic clinic",
        f"- mean log-loss ratio to the oracle: general {g['log_loss_ratio_to_oracle']:.4f}, "
        f"older {o['log_loss_ratio_to_oracle']:.4f}",
        f"- max ECE: general {g['max_ece']:.4f}, older {o['max_ece']:.4f}; mean ECE "
        f"{g['mean_ece']:.4f} -> {o['mean_ece']:.4f}",
        "- The oracle is recomputed with the shifted population's prior, so the gap measures what the "
        "model loses by having been calibrated on the general clinic.",
        "",
        shift.to_string(float_format=lambda v: f"{v:.4f}"),
    ]
    return "\n".join(lines) + "\n"


def print_evaluation(ev: Evaluation) -> None:
    for population, table in ev.tables.items():
        s = ev.summaries[population]
        print(
            f"\n{population}: mean log-loss {s['mean_log_loss']:.5f} vs oracle {s['oracle_mean_log_loss']:.5f} "
            f"(ratio {s['log_loss_ratio_to_oracle']:.4f}), max ECE {s['max_ece']:.4f}"
        )
        cols = [
            "prevalence",
            "roc_auc",
            "log_loss",
            "oracle_log_loss",
            "ece",
            "calibration_slope",
            "calibration_intercept",
        ]
        print(table[cols].to_string(float_format=lambda v: f"{v:.4f}"))
    print("\nquality bar (general population, model version " + ev.model_version + "):")
    for name, ok, value in ev.checks:
        print(f"  {'PASS' if ok else 'FAIL'}  {name}: {value}")
    if ev.ask_next is not None:
        print(f"\n{ev.ask_next.line()}")
    if ev.patterns is not None:
        print("\nwhere the gap to the oracle is (general population, forms by positive yes/no findings):")
        print(ev.patterns.to_string(float_format=lambda v: f"{v:.4f}"))
    print(f"\n{DISCLAIMER.replace('**', '')}")
