"""The registry: a model URI resolved to its model and version, and a model made for another
contract refused, whether it comes from the registry or a local directory; plain scoring finds
the compact scoring form from the registry's tables at the moment of scoring, explanations and
models logged before the compact form load the full model."""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pytest
import yaml
from helpers import KB, base_row, probabilities, read_rows, write_intake
from mlflow import MlflowClient

from pipeline.cli import main
from pipeline.learning.cause_model import CauseModel
from pipeline.scoring.compact import CompactModel
from pipeline.scoring.score import score_file
from pipeline.tracking import sqlite_registry
from pipeline.tracking.registry import (
    CHAMPION,
    CHAMPION_URI,
    REGISTERED_MODEL,
    ModelMismatchError,
    ModelUnavailableError,
    load_for_scoring,
    load_model,
    promotion_decision,
)
from pipeline.world.examples import SAMPLE_PATH

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def local_model(store, tmp_path_factory):
    dst = tmp_path_factory.mktemp("champion")
    return Path(mlflow.artifacts.download_artifacts(CHAMPION_URI, dst_path=str(dst)))


def edited_copy(local_model: Path, where: Path, edit) -> Path:
    copy = where / "edited-model"
    shutil.copytree(local_model, copy)
    spec = yaml.safe_load((copy / "MLmodel").read_text())
    edit(spec["metadata"])
    (copy / "MLmodel").write_text(yaml.safe_dump(spec, sort_keys=False))
    return copy


def test_model_for_another_schema_version_is_refused(local_model, tmp_path, capsys):
    copy = edited_copy(local_model, tmp_path, lambda meta: meta.update(schema_version=99))
    with pytest.raises(ModelMismatchError) as err:
        load_model(str(copy), KB.schema)
    message = str(err.value).replace(str(copy), "<model>")
    assert re.search(r"\b99\b", message) and re.search(r"\b1\b", message), message

    src = write_intake(tmp_path / "in.csv", [base_row("a")])
    capsys.readouterr()
    assert main(["score", "--input", str(src), "--output", str(tmp_path / "s.csv"), "--model", str(copy)]) == 2
    err_text = capsys.readouterr().err
    assert len(err_text.splitlines()) == 1 and err_text.startswith("error:") and "99" in err_text
    assert not (tmp_path / "s.csv").exists() and not (tmp_path / "s.rejects.csv").exists()


def test_model_with_another_label_set_is_refused(local_model, tmp_path):
    copy = edited_copy(local_model, tmp_path, lambda meta: meta["outputs"].remove("p_vasculitis"))
    with pytest.raises(ModelMismatchError, match="p_vasculitis"):
        load_model(str(copy), KB.schema)


def test_model_version_is_the_registered_version(store):
    for uri in (CHAMPION_URI, f"models:/{REGISTERED_MODEL}/{store.version}"):
        assert load_model(uri, KB.schema).version == store.version, uri


def test_model_version_of_latest_is_the_registered_version(store):
    assert load_model(f"models:/{REGISTERED_MODEL}/latest", KB.schema).version == store.version


def test_unedited_local_model_directory_scores_like_the_champion(store, local_model, tmp_path):
    loaded = load_model(str(local_model), KB.schema)
    assert loaded.version  # a local directory has no registry version, but the column is never empty
    src = FIXTURES / "score_golden.csv"
    score_file(src, tmp_path / "local.csv", loaded, KB)
    score_file(src, tmp_path / "registry.csv", store.loaded, KB)
    local, registry = read_rows(tmp_path / "local.csv")[1], read_rows(tmp_path / "registry.csv")[1]
    assert [r["record_id"] for r in local] == [r["record_id"] for r in registry] == ["p001", "p002", "p008", "p009"]
    for a, b in zip(local, registry, strict=True):
        np.testing.assert_array_equal(probabilities(a), probabilities(b))
        assert a["model_version"] == loaded.version
    assert (tmp_path / "local.rejects.csv").read_bytes() == (tmp_path / "registry.rejects.csv").read_bytes()


@pytest.mark.parametrize(
    ("mine", "champion", "forced", "promote", "words"),
    [
        (0.070, None, False, True, "no champion yet"),
        (0.070, 0.071, False, True, "<"),
        (0.071, 0.070, False, False, ">="),
        (0.070, 0.070, False, False, ">="),  # a tie keeps the champion
        (0.080, 0.070, True, True, "on request"),
    ],
)
def test_the_champion_moves_only_on_a_lower_log_loss_or_on_request(mine, champion, forced, promote, words):
    decision = promotion_decision(mine, champion, forced)
    assert decision.promote is promote and words in decision.reason


# ----------------------------------------------------------- the compact scoring form, found cheaply


def test_plain_scoring_reads_the_compact_form_without_mlflow_skops_or_sklearn(store, tmp_path):
    """The CLI scorer resolves the champion from the registry's tables and scores with the compact form;
    its files are byte for byte those of the full model."""
    probe = (
        "import json, sys\n"
        "from pipeline.cli import main\n"
        f"code = main(['score', '--input', {str(SAMPLE_PATH)!r}, '--output', {str(tmp_path / 'cli.csv')!r}])\n"
        "print(json.dumps({'code': code, 'heavy': sorted({m.split('.')[0] for m in sys.modules} "
        "& {'mlflow', 'skops', 'sklearn'})}))\n"
    )
    env = dict(os.environ)
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=env)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"code": 0, "heavy": []}, out.stderr[-2000:]
    score_file(SAMPLE_PATH, tmp_path / "full.csv", store.loaded, KB)
    assert (tmp_path / "cli.csv").read_bytes() == (tmp_path / "full.csv").read_bytes()
    assert (tmp_path / "cli.rejects.csv").read_bytes() == (tmp_path / "full.rejects.csv").read_bytes()


def test_explanations_and_old_models_load_the_full_model(store, local_model, tmp_path):
    assert isinstance(load_for_scoring(CHAMPION_URI, KB.schema).model, CompactModel)
    assert isinstance(load_for_scoring(CHAMPION_URI, KB.schema, full=True).model, CauseModel)
    local = load_for_scoring(str(local_model), KB.schema)
    assert isinstance(local.model, CompactModel) and local.version == load_model(str(local_model), KB.schema).version

    # a model logged before the compact form existed: no `scoring` artifact, scored in full, same scores
    old = tmp_path / "old-model"
    shutil.copytree(local_model, old)
    spec = yaml.safe_load((old / "MLmodel").read_text())
    del spec["flavors"]["python_function"]["artifacts"]["scoring"]
    (old / "MLmodel").write_text(yaml.safe_dump(spec, sort_keys=False))
    (old / "artifacts" / "scoring.npz").unlink()
    loaded = load_for_scoring(str(old), KB.schema)
    assert isinstance(loaded.model, CauseModel)
    score_file(SAMPLE_PATH, tmp_path / "old.csv", loaded, KB)
    score_file(SAMPLE_PATH, tmp_path / "compact.csv", local, KB)
    assert (tmp_path / "old.csv").read_bytes() == (tmp_path / "compact.csv").read_bytes()


@pytest.fixture()
def store_copy(store, tmp_path, monkeypatch):
    """A client of a copy of the session store's database (same artifacts), to move aliases in; the
    tracking URI (which loading in full sets) is the session store's again afterwards."""
    source = sqlite3.connect(str(store.root / "mlflow.db"))
    copy = sqlite3.connect(str(tmp_path / "mlflow.db"))
    with source, copy:
        source.backup(copy)
    source.close()
    copy.close()
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    previous = mlflow.get_tracking_uri()
    yield MlflowClient(tracking_uri=uri, registry_uri=uri)
    mlflow.set_tracking_uri(previous)


def test_the_alias_is_read_at_scoring_time_never_a_stale_copy(store, store_copy):
    first = store_copy.get_model_version(REGISTERED_MODEL, store.version)
    second = store_copy.create_model_version(REGISTERED_MODEL, first.source, first.run_id).version
    assert load_for_scoring(CHAMPION_URI, KB.schema).version == store.version
    store_copy.set_registered_model_alias(REGISTERED_MODEL, CHAMPION, second)
    for uri in (CHAMPION_URI, f"models:/{REGISTERED_MODEL}/latest", f"models:/{REGISTERED_MODEL}@latest"):
        found = sqlite_registry.resolve(uri)
        assert found is not None and found.version == str(second), uri
        assert load_for_scoring(uri, KB.schema).version == str(second), uri
    assert load_for_scoring(f"models:/{REGISTERED_MODEL}/{store.version}", KB.schema).version == store.version
    store_copy.delete_registered_model_alias(REGISTERED_MODEL, CHAMPION)
    assert sqlite_registry.resolve(CHAMPION_URI) is None  # then MLflow answers, with its own error
    with pytest.raises(ModelUnavailableError, match="alias"):
        load_for_scoring(CHAMPION_URI, KB.schema)


def test_a_registry_that_is_not_a_local_sqlite_file_is_left_to_mlflow(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    assert sqlite_registry.registry_database() is None and sqlite_registry.resolve(CHAMPION_URI) is None
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////nonexistent/mlflow.db")
    assert sqlite_registry.resolve(CHAMPION_URI) is None
