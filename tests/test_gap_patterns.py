"""The gap-by-pattern table partitions the forms and adds up to the overall gap."""

from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.contract.loader import default_knowledge_base
from pipeline.learning.cause_model import targets
from pipeline.learning.gap_patterns import TOP, gap_by_findings, positive_findings
from pipeline.world.generate import generate_frame
from pipeline.world.network import default_model

KB = default_knowledge_base()
SCHEMA = KB.schema
COLUMNS = list(SCHEMA.probability_columns)


def _forms(n=3000):
    frame = generate_frame(default_model(), n, 5)
    truth = pd.DataFrame(targets(frame, SCHEMA), columns=COLUMNS)
    rng = np.random.default_rng(6)
    oracle = pd.DataFrame(np.clip(0.8 * truth.to_numpy() + 0.1 + 0.05 * rng.random(truth.shape), 0, 1), columns=COLUMNS)
    return frame, truth, oracle


def test_groups_partition_the_forms_and_the_gap():
    frame, truth, oracle = _forms()
    worse = oracle.copy()
    worse[:] = np.clip(oracle.to_numpy() * 0.7 + 0.1, 0, 1)
    table = gap_by_findings(KB, frame, truth, worse, oracle)
    assert table["forms"].sum() == len(frame)
    assert abs(table["share_of_gap"].sum() - 1) < 1e-9
    n_cond = len(SCHEMA.conditions)
    y, p, o = truth.to_numpy()[:, :n_cond], worse.to_numpy()[:, :n_cond], oracle.to_numpy()[:, :n_cond]
    total_model = -(y * np.log(p) + (1 - y) * np.log1p(-p)).sum()
    total_oracle = -(y * np.log(o) + (1 - y) * np.log1p(-o)).sum()
    assert np.isclose(table["model_log_loss"].sum(), total_model)
    assert np.isclose(table["oracle_log_loss"].sum(), total_oracle)
    assert set(table.index) <= {*map(str, range(TOP)), f"{TOP}+"}


def test_the_oracle_against_itself_has_ratio_one_and_counts_come_from_the_yes_no_findings():
    frame, truth, oracle = _forms(500)
    table = gap_by_findings(KB, frame, truth, oracle, oracle)
    assert np.allclose(table["ratio_to_oracle"], 1.0)
    one = frame.head(1).copy()
    yes_no = sorted({f.field for f in KB.findings if SCHEMA.column(f.field).kind == "yes_no"})
    one[yes_no] = 0.0
    one[yes_no[:3]] = 1.0
    one[yes_no[3]] = np.nan
    assert positive_findings(KB, one).tolist() == [3]


def test_make_evaluate_reports_where_the_gap_is(store, tmp_path):
    """`evaluate` (make evaluate) on the store's champion: the pattern table is returned, logged and
    in the report, and its groups add up to the whole general-population gap."""
    import mlflow

    from pipeline.learning.evaluate import evaluate

    ev = evaluate(n=300, cache_dir=tmp_path)
    patterns = ev.patterns
    assert patterns["forms"].sum() == 300
    general = ev.tables["general"]
    n_cond = len(SCHEMA.conditions)
    total = (patterns["model_log_loss"].sum() - patterns["oracle_log_loss"].sum()) / 300 / n_cond
    assert np.isclose(total, general["log_loss_gap"].iloc[:n_cond].mean())
    run = mlflow.search_runs(search_all_experiments=True, order_by=["start_time DESC"], max_results=1).iloc[0]
    shares = [c for c in run.index if c.startswith("metrics.test_general.gap_share.positives_")]
    assert shares and np.isclose(sum(run[c] for c in shares), 1.0)
    report = mlflow.artifacts.download_artifacts(run_id=run["run_id"], artifact_path="evaluation.md")
    assert "Where the gap to the oracle is" in Path(report).read_text()
