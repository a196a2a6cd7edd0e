"""`make experiments`: each candidate trained in a fresh process, the league table from the results."""

from __future__ import annotations

import yaml
from mlflow import MlflowClient

from pipeline.learning.config import EXPERIMENTS_DIR
from pipeline.learning.experiments import league_table, run_candidates
from pipeline.learning.train import TrainResult


def _result(loss: float, ratio: float, seconds: float, peak_mb: float, version: str, promoted: bool) -> TrainResult:
    validation = {"mean_log_loss": loss, "log_loss_ratio_to_oracle": ratio, "max_ece": 0.004}
    return TrainResult("run", version, promoted, "reason", validation, seconds, peak_mb)


def test_league_table_is_best_first_with_wall_time_and_peak_memory():
    table = league_table(
        [
            ("worse", _result(0.07, 1.05, 61.4, 1536.0, "2", False)),
            ("better", _result(0.065, 1.017, 280.0, 2600.0, "3", True)),
        ]
    ).splitlines()
    assert "wall" in table[0] and "peak memory" in table[0]
    assert table[1].startswith("better") and table[2].startswith("worse")
    assert " 4m 40s" in table[1] and "2.54 GB" in table[1] and table[1].rstrip().endswith("yes")
    assert " 1m 01s" in table[2] and "1.50 GB" in table[2] and not table[2].rstrip().endswith("yes")


def test_candidates_train_in_fresh_processes_and_skip_utility_configs(tmp_path, monkeypatch, capsys):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)  # the children's store (they read the environment)
    smoke = yaml.safe_load((EXPERIMENTS_DIR / "smoke.yaml").read_text())
    configs = {
        "a_candidate": {"candidate": True},
        "b_utility": {"candidate": False},
        "c_broken": {"candidate": True, "params": {"C": -1.0}},  # scikit-learn refuses it at fit time
        "d_candidate": {"candidate": True, "params": {"C": 0.05}},  # runs although c_broken failed
    }
    for name, change in configs.items():
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump({**smoke, "name": name, **change}))

    results, failed = run_candidates(tmp_path)

    assert [name for name, _ in results] == ["a_candidate", "d_candidate"]
    assert failed == ["c_broken"]
    assert "c_broken: training failed (exit status 1)" in capsys.readouterr().out
    result = results[0][1]
    assert result.promoted  # the first model in a fresh store
    run = MlflowClient(tracking_uri=uri).get_run(result.run_id)  # not a URI an earlier test set
    assert run.data.metrics["peak_rss_mb"] == result.peak_rss_mb
    assert run.data.metrics["train_seconds"] == result.seconds
    assert result.peak_rss_mb > 100  # an interpreter of its own, with scikit-learn and MLflow loaded
