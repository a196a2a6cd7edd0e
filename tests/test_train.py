"""Training end to end into a temporary MLflow store: logging, registry, champion rules,
pyfunc round trip, reproducibility, and the model's behaviour."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient

from pipeline.contract.loader import default_knowledge_base
from pipeline.learning.config import load_experiment
from pipeline.learning.splits import load_split
from pipeline.learning.train import train
from pipeline.tracking.model_logging import intake_example
from pipeline.tracking.registry import CHAMPION, CHAMPION_URI, REGISTERED_MODEL


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Two trainings of the smoke experiment into a fresh SQLite store."""
    root = tmp_path_factory.mktemp("mlflow")
    patch = pytest.MonkeyPatch()
    patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    config = load_experiment("smoke")
    first = train(config, cache_dir=root / "cache", experiment="test-train")
    second = train(config, cache_dir=root / "cache", experiment="test-train")
    yield {"root": root, "config": config, "first": first, "second": second}
    patch.undo()


def test_run_logs_params_tags_metrics_and_artifacts(store):
    run = MlflowClient().get_run(store["first"].run_id)
    assert run.data.params["family"] == "logistic"
    assert run.data.params["data.n_train"] == "4000"
    tags = run.data.tags
    assert tags["kb_sha256"] == default_knowledge_base().sha256
    for key in ("git_commit", "data.train_sha256", "data.validation_sha256", "version.scikit-learn"):
        assert tags[key]
    for key in (
        "val.mean_log_loss",
        "val.oracle_mean_log_loss",
        "val.log_loss_ratio_to_oracle",
        "val.max_ece",
        "val.ece.deep_vein_thrombosis",
        "val.calibration_slope.deconditioning",
        "val.roc_auc.cause_nutrient",
        "val.mean_abs_diff_oracle.vitamin_d_deficiency",
    ):
        assert key in run.data.metrics, key
    assert run.data.metrics["val.log_loss_ratio_to_oracle"] > 1.0  # nothing beats the Bayes posterior
    artifacts = {a.path for a in MlflowClient().list_artifacts(run.info.run_id)}
    assert {"validation_metrics.csv", "reliability_validation.png", "model_report.md"} <= artifacts
    report = mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/model_report.md")
    assert "not a diagnosis" in report and "## Missing data" in report and "## Intended use and limits" in report
    assert "cite a seed passage" in report and "clinical assumptions" in report
    assert "Triage on these rows: emergency" in report and "Red flags fired: " in report
    assert "val.triage_share.routine" in run.data.metrics and "val.red_flag_rate.very_high_ck" in run.data.metrics


def test_same_config_gives_same_metrics(store):
    assert store["first"].validation == store["second"].validation


def test_champion_moves_only_when_beaten_or_asked(store):
    client = MlflowClient()
    assert store["first"].promoted and not store["second"].promoted  # equal is not better
    assert str(client.get_model_version_by_alias(REGISTERED_MODEL, CHAMPION).version) == store["first"].version
    forced = train(store["config"], promote=True, cache_dir=store["root"] / "cache", experiment="test-train")
    assert forced.promoted
    assert str(client.get_model_version_by_alias(REGISTERED_MODEL, CHAMPION).version) == forced.version


def test_model_behaviour(store):
    kb = default_knowledge_base()
    d = store["config"].data
    frame, _, _ = load_split(kb, "validation", d.population, d.n_validation, d.seed, store["root"] / "cache")
    model = mlflow.pyfunc.load_model(CHAMPION_URI).unwrap_python_model().model
    rows = frame.iloc[:200]
    for symptom, condition in [
        ("pain_on_walking_relieved_by_rest", "peripheral_artery_disease"),
        ("calf_pain_tenderness_warmth", "deep_vein_thrombosis"),
        ("joint_pain_swelling", "rheumatoid_arthritis"),
    ]:
        yes, no = rows.copy(), rows.copy()
        yes[symptom], no[symptom] = 1.0, 0.0
        p_yes = model.predict_frame(yes)[f"p_{condition}"].to_numpy()
        p_no = model.predict_frame(no)[f"p_{condition}"].to_numpy()
        assert (p_yes > p_no).all(), symptom
    p = model.predict_frame(frame)
    assert ((p >= 0) & (p <= 1)).all().all()
    # each cause predicts "any of its conditions": its mean probability matches that label's rate
    for cause in kb.schema.causes:
        label = frame[[f"label_{c}" for c in cause.conditions]].max(axis=1)
        predicted = p[f"p_cause_{cause.name}"]
        se = np.sqrt(label.mean() * (1 - label.mean()) / len(label))
        assert abs(predicted.mean() - label.mean()) < 4 * se + 0.005, cause.name


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_same_code_against_a_real_mlflow_server(tmp_path, monkeypatch):
    port = _free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--backend-store-uri",
            f"sqlite:///{tmp_path / 'server.db'}",
            "--artifacts-destination",
            str(tmp_path / "artifacts"),
            "--workers",
            "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(120):
            try:
                urllib.request.urlopen(f"{url}/health", timeout=1)
                break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("mlflow server did not start")
        monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
        result = train(load_experiment("smoke"), cache_dir=tmp_path / "cache", experiment="server-test")
        assert str(MlflowClient().get_model_version_by_alias(REGISTERED_MODEL, CHAMPION).version) == result.version
        assert mlflow.pyfunc.load_model(CHAMPION_URI).predict(
            intake_example(
                load_split(default_knowledge_base(), "validation", "general", 2000, 7, tmp_path / "cache")[0],
                default_knowledge_base().schema,
                n=5,
            )
        ).shape == (5, len(default_knowledge_base().schema.scores_columns) + 1)
    finally:
        server.terminate()
        server.wait(timeout=30)
